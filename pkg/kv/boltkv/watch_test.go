package boltkv

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/kv"
)

// lastResponse reads ch until it is closed and returns the last response.
func lastResponse(t *testing.T, ch <-chan kv.WatchResponse) (last kv.WatchResponse, events int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				return last, events
			}
			last = resp
			events += len(resp.Events)
		case <-timeout:
			t.Fatalf("watch channel not closed")
		}
	}
}

func TestWatchFromBeforeOpen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "topod.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := b.Create(ctx, "/k", []byte("v1"), 0)
	r2, _ := b.Update(ctx, "/k", []byte("v2"), r1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openAt(t, path, Options{})
	ch, err := b.Watch(ctx, "/k", false, r1)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	last, events := lastResponse(t, ch)
	if events != 0 || !errors.Is(last.Err, kv.ErrCompacted) {
		t.Fatalf("watch from before Open: %d events, last %+v; want only ErrCompacted", events, last)
	}
	// From the revision at Open on, nothing is missing.
	w, err := b.Watch(ctx, "/k", false, r2)
	if err != nil {
		t.Fatal(err)
	}
	r3, _ := b.Update(ctx, "/k", []byte("v3"), r2)
	resp := <-w
	if resp.Err != nil || len(resp.Events) != 1 || resp.Events[0].KV.ModRevision != r3 {
		t.Fatalf("watch from the revision at Open: %+v, want the put at %d", resp, r3)
	}
}

func TestWatchRingEviction(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{WatchRingEvents: 5, NoSync: true})
	var revs []int64
	for i := range 10 {
		rev, err := b.Update(ctx, "/k", fmt.Appendf(nil, "%d", i), 0)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	ch, err := b.Watch(ctx, "/k", false, revs[3])
	if err != nil {
		t.Fatal(err)
	}
	if last, _ := lastResponse(t, ch); !errors.Is(last.Err, kv.ErrCompacted) {
		t.Fatalf("watch from an evicted revision: last %+v, want ErrCompacted", last)
	}
	// The ring still holds the last 5 events: from revs[4] on is fine.
	ch, err = b.Watch(ctx, "/k", false, revs[4])
	if err != nil {
		t.Fatal(err)
	}
	resp := <-ch
	if resp.Err != nil || len(resp.Events) != 5 || resp.Events[0].KV.ModRevision != revs[5] {
		t.Fatalf("replay from revs[4]: %+v, want the 5 events from %d", resp, revs[5])
	}
}

func TestWatchRingBytes(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{WatchRingBytes: 3 << 10, NoSync: true})
	var revs []int64
	for range 10 {
		rev, err := b.Update(ctx, "/k", make([]byte, 1<<10), 0)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	ch, err := b.Watch(ctx, "/k", false, revs[5])
	if err != nil {
		t.Fatal(err)
	}
	if last, _ := lastResponse(t, ch); !errors.Is(last.Err, kv.ErrCompacted) {
		t.Fatalf("watch beyond the ring's bytes: last %+v, want ErrCompacted", last)
	}
}

func TestSlowWatcherEnded(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{WatcherBacklog: 10, NoSync: true})
	slow, err := b.Watch(ctx, "/k", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The slow watcher is never read while writing: writes must not wait for
	// it.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			if _, err := b.Update(ctx, "/k", fmt.Appendf(nil, "%d", i), 0); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writes blocked behind a slow watcher")
	}
	last, events := lastResponse(t, slow)
	if !errors.Is(last.Err, kv.ErrCompacted) {
		t.Fatalf("slow watcher's last response %+v, want ErrCompacted", last)
	}
	if events > 2*10 {
		t.Errorf("slow watcher held %d events, want at most twice its backlog", events)
	}
}

func TestWatchFutureRevision(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{NoSync: true})
	r1, _ := b.Create(ctx, "/k", []byte("v1"), 0)
	ch, err := b.Watch(ctx, "/k", false, r1+2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := b.Update(ctx, "/k", fmt.Appendf(nil, "v%d", i+2), 0); err != nil {
			t.Fatal(err)
		}
	}
	resp := <-ch
	if resp.Err != nil || len(resp.Events) == 0 || resp.Events[0].KV.ModRevision != r1+3 {
		t.Fatalf("watch after a future revision: first response %+v, want the put at %d", resp, r1+3)
	}
}

func TestRevokeIsOneRevision(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{NoSync: true})
	l, err := b.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	for i := range 3 {
		if last, err = b.Create(ctx, fmt.Sprintf("/l/%d", i), nil, l.ID()); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := b.Watch(ctx, "/l/", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	resp := <-ch
	if resp.Err != nil || len(resp.Events) != 3 || resp.Revision != last+1 {
		t.Fatalf("revoke: %+v, want 3 deletes at revision %d", resp, last+1)
	}
	for _, ev := range resp.Events {
		if ev.Type != kv.Delete || ev.KV.ModRevision != last+1 {
			t.Errorf("revoke event %+v, want a delete at %d", ev, last+1)
		}
	}
}

func TestUpdateKeepsLease(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{NoSync: true})
	l, err := b.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rev, _ := b.Create(ctx, "/k", []byte("v1"), l.ID())
	if _, err := b.Update(ctx, "/k", []byte("v2"), rev); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Get(ctx, "/k"); got.Lease != l.ID() {
		t.Fatalf("Lease after Update = %d, want %d", got.Lease, l.ID())
	}
	if err := l.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "/k"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("updated leased key after Revoke: %v, want ErrNotFound", err)
	}
}

// TestWatchNoGapNoRepeat registers watches from recent revisions while
// writers run: each must see every later revision exactly once, in order.
func TestWatchNoGapNoRepeat(t *testing.T) {
	const writers, writes, watchers = 4, 250, 16
	ctx := t.Context()
	b, _ := openTest(t, Options{NoSync: true})
	final := make(chan int64, writers)
	start := make(chan struct{})
	for w := range writers {
		go func() {
			<-start
			var rev int64
			for i := range writes {
				var err error
				if rev, err = b.Update(ctx, fmt.Sprintf("/w%d", w), fmt.Appendf(nil, "%d", i), 0); err != nil {
					t.Error(err)
				}
			}
			final <- rev
		}()
	}
	close(start)

	type check struct {
		ch       <-chan kv.WatchResponse
		afterRev int64
	}
	var checks []check
	for i := range watchers {
		afterRev := int64(0)
		if i%2 == 1 {
			_, rev, err := b.List(ctx, "/", true)
			if err != nil {
				t.Fatal(err)
			}
			afterRev = rev
		}
		ch, err := b.Watch(ctx, "/", true, afterRev)
		if err != nil {
			t.Fatal(err)
		}
		checks = append(checks, check{ch, afterRev})
		time.Sleep(time.Millisecond)
	}
	for range writers {
		<-final
	}
	// A last write every watcher sees, whenever it started.
	last, err := b.Update(ctx, "/end", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range checks {
		next := c.afterRev + 1
		for next <= last {
			resp, ok := <-c.ch
			if !ok || resp.Err != nil {
				t.Fatalf("watcher %d ended at revision %d: %v", i, next, resp.Err)
			}
			for _, ev := range resp.Events {
				if c.afterRev == 0 && next == 1 {
					next = ev.KV.ModRevision // watching from "now": starts anywhere
				}
				if ev.KV.ModRevision != next {
					t.Fatalf("watcher %d (after %d): got revision %d, want %d", i, c.afterRev, ev.KV.ModRevision, next)
				}
				next++
			}
		}
	}
}

// TestWatchProgress: a progress watch gets, for a write to keys it does
// not watch, a response with no event at that write's revision, at once
// (not only on its interval), merged into a response waiting for it.
func TestWatchProgress(t *testing.T) {
	b, _ := openTest(t, Options{})
	ctx := t.Context()
	ch, err := b.WatchProgress(ctx, "/in/", true, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := b.Create(ctx, "/out/a", []byte("x"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp := recvWithin(t, ch); len(resp.Events) != 0 || resp.Revision != rev || resp.Err != nil {
		t.Fatalf("after a write outside the prefix: %+v, want progress to %d", resp, rev)
	}
	in, err := b.Create(ctx, "/in/a", []byte("y"), 0)
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.Create(ctx, "/out/b", []byte("z"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// The event at in and the progress to out, in one response or two.
	var events int
	for last := int64(0); last < out; {
		resp := recvWithin(t, ch)
		if resp.Err != nil {
			t.Fatal(resp.Err)
		}
		events += len(resp.Events)
		for _, ev := range resp.Events {
			if ev.KV.ModRevision != in {
				t.Fatalf("event at %d, want only %d", ev.KV.ModRevision, in)
			}
		}
		last = resp.Revision
	}
	if events != 1 {
		t.Fatalf("%d events, want 1", events)
	}
	plain, err := b.Watch(ctx, "/in/", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/out/c", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	third, err := b.Create(ctx, "/in/c", []byte("x"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp := recvWithin(t, plain); len(resp.Events) != 1 || resp.Revision != third {
		t.Fatalf("a plain watch got %+v, want only the event at %d", resp, third)
	}
}

// recvWithin returns the next response of ch, failing t if none comes
// within 10 s.
func recvWithin(t *testing.T, ch <-chan kv.WatchResponse) kv.WatchResponse {
	t.Helper()
	select {
	case resp := <-ch:
		return resp
	case <-time.After(10 * time.Second):
		t.Fatal("no watch response within 10 s")
		return kv.WatchResponse{}
	}
}
