package kvtest

import (
	"context"
	"fmt"
	"testing"
)

// checkWatchKey: a watch on one key sees exactly that key's puts and
// deletes ("/x" does not see "/xy" nor "/x/y"), with the key's full state.
func checkWatchKey(t *testing.T, e *env) {
	x := e.key("x")
	w := newWatcher(t, e, x, false, 0)

	mustCreate(t, e, e.key("xy"), "xy", 0)
	mustCreate(t, e, e.key("x/y"), "x/y", 0)
	r1 := mustCreate(t, e, x, "v1", 0)
	mustUpdate(t, e, e.key("xy"), "xy2", 0)
	r2 := mustUpdate(t, e, x, "v2", r1)

	ev := w.wantPut(x, "v1", r1)
	if ev.KV.CreateRevision != r1 {
		t.Errorf("create event CreateRevision = %d, want %d", ev.KV.CreateRevision, r1)
	}
	ev = w.wantPut(x, "v2", r2)
	if ev.KV.CreateRevision != r1 {
		t.Errorf("update event CreateRevision = %d, want %d", ev.KV.CreateRevision, r1)
	}
	mustDelete(t, e, e.key("xy"), 0)
	mustDelete(t, e, x, 0)
	del := w.wantDelete(x)
	if del.KV.ModRevision <= r2 {
		t.Errorf("delete event at revision %d, not after the update at %d", del.KV.ModRevision, r2)
	}
}

// checkWatchPrefix: a prefix watch sees every key under the prefix, and no
// other.
func checkWatchPrefix(t *testing.T, e *env) {
	dir := e.key("dir/")
	w := newWatcher(t, e, dir, true, 0)

	ra := mustCreate(t, e, e.key("dir/a"), "a", 0)
	mustCreate(t, e, e.key("dirty"), "not under dir/", 0)
	rb := mustCreate(t, e, e.key("dir/b/c"), "c", 0)
	mustCreate(t, e, e.key("other/a"), "not under dir/", 0)
	ra2 := mustUpdate(t, e, e.key("dir/a"), "a2", ra)
	mustDelete(t, e, e.key("dir/b/c"), rb)
	mustDelete(t, e, e.key("dirty"), 0)
	rLast := mustCreate(t, e, e.key("dir/z"), "z", 0)

	w.wantPut(e.key("dir/a"), "a", ra)
	w.wantPut(e.key("dir/b/c"), "c", rb)
	w.wantPut(e.key("dir/a"), "a2", ra2)
	w.wantDelete(e.key("dir/b/c"))
	w.wantPut(e.key("dir/z"), "z", rLast)
}

// checkWatchAfterRev: a watch from a past revision first replays the changes
// made after it, then goes on live, with no gap and no repeat.
func checkWatchAfterRev(t *testing.T, e *env) {
	k := e.key("k")
	// A write first, so that r1-1 is a real revision (0 means "now").
	mustCreate(t, e, e.key("before"), "b", 0)
	r1 := mustCreate(t, e, k, "v1", 0)
	r2 := mustUpdate(t, e, k, "v2", r1)
	r3 := mustUpdate(t, e, k, "v3", r2)

	w := newWatcher(t, e, k, false, r1)
	w.wantPut(k, "v2", r2)
	w.wantPut(k, "v3", r3)
	r4 := mustUpdate(t, e, k, "v4", r3)
	w.wantPut(k, "v4", r4)

	// The same from a prefix watch, from before the key existed.
	pw := newWatcher(t, e, e.key("k"), true, r1-1)
	pw.wantPut(k, "v1", r1)
	pw.wantPut(k, "v2", r2)
	pw.wantPut(k, "v3", r3)
	pw.wantPut(k, "v4", r4)
	mustDelete(t, e, k, r4)
	pw.wantDelete(k)
}

// checkWatchFromList: a watch from the revision a List reported delivers
// the writes made after the List, even on a store that has never been
// written (whose revision must not read as 0, "now").
func checkWatchFromList(t *testing.T, e *env) {
	k := e.key("k")
	_, rev, err := e.b.List(ctx(t), e.key(""), false)
	if err != nil {
		t.Fatal(err)
	}
	if rev <= 0 {
		t.Fatalf("List reported revision %d; a revision read is never 0 (Watch takes 0 for now)", rev)
	}
	r1 := mustCreate(t, e, k, "v1", 0)
	w := newWatcher(t, e, k, false, rev)
	w.wantPut(k, "v1", r1)
}

// checkWatchFromNow: afterRev 0 watches from the current revision on: no
// past change is delivered.
func checkWatchFromNow(t *testing.T, e *env) {
	k := e.key("k")
	r1 := mustCreate(t, e, k, "v1", 0)
	w := newWatcher(t, e, k, false, 0)
	r2 := mustUpdate(t, e, k, "v2", r1)
	w.wantPut(k, "v2", r2)
}

// checkWatchDelete: a delete event names the key and carries the delete's
// revision: after the last put, before any later write.
func checkWatchDelete(t *testing.T, e *env) {
	k := e.key("k")
	w := newWatcher(t, e, k, false, 0)
	r1 := mustCreate(t, e, k, "v1", 0)
	mustDelete(t, e, k, r1)
	r2 := mustCreate(t, e, k, "v2", 0)
	mustDelete(t, e, k, 0)
	_, rLast, err := e.b.List(ctx(t), k, true)
	if err != nil {
		t.Fatalf("List: %v", err)
	}

	w.wantPut(k, "v1", r1)
	del := w.wantDelete(k)
	if del.KV.ModRevision <= r1 || del.KV.ModRevision >= r2 {
		t.Errorf("first delete event at revision %d, want in (%d, %d)", del.KV.ModRevision, r1, r2)
	}
	w.wantPut(k, "v2", r2)
	del = w.wantDelete(k)
	if del.KV.ModRevision <= r2 || del.KV.ModRevision > rLast {
		t.Errorf("second delete event at revision %d, want in (%d, %d]", del.KV.ModRevision, r2, rLast)
	}
}

// checkWatchOrder: many writes to many keys arrive in revision order, each
// exactly once, at the revision its write returned.
func checkWatchOrder(t *testing.T, e *env) {
	const n = 100
	w := newWatcher(t, e, e.prefix, true, 0)
	type write struct {
		key string
		rev int64
	}
	var writes []write
	for i := range n {
		key := e.key(fmt.Sprintf("k%d", i%7))
		writes = append(writes, write{key, mustUpdate(t, e, key, fmt.Sprint(i), 0)})
	}
	for i, want := range writes {
		w.wantPut(want.key, fmt.Sprint(i), want.rev)
	}
}

// checkWatchCancel: the watch channel is closed once its context ends.
func checkWatchCancel(t *testing.T, e *env) {
	k := e.key("k")
	wctx, cancel := context.WithCancel(ctx(t))
	ch, err := e.b.Watch(wctx, k, false, 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	w := &watcher{t: t, ch: ch}
	r1 := mustCreate(t, e, k, "v1", 0)
	w.wantPut(k, "v1", r1)

	cancel()
	// Writes after the cancel must not keep the channel open.
	mustUpdate(t, e, k, "v2", 0)
	w.waitClosed()
}
