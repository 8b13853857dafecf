package kvtest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/kv"
)

// eventTimeout bounds how long the suite waits for a watch event or a
// lease to end. Waits return as soon as what they wait for happens.
const eventTimeout = 10 * time.Second

// wantErr fails t unless err matches target with errors.Is and its message
// names key, as the kv contract requires of every backend error.
func wantErr(t *testing.T, what string, err, target error, key string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want %v", what, target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %q, want errors.Is(err, %q)", what, err, target)
	}
	if key != "" && !strings.Contains(err.Error(), key) {
		t.Errorf("%s: error %q does not name the key %q", what, err, key)
	}
}

func mustCreate(t *testing.T, e *env, key, value string, lease kv.LeaseID) int64 {
	t.Helper()
	rev, err := e.b.Create(ctx(t), key, []byte(value), lease)
	if err != nil {
		t.Fatalf("Create(%q): %v", key, err)
	}
	if rev <= 0 {
		t.Fatalf("Create(%q) returned revision %d, want > 0", key, rev)
	}
	return rev
}

func mustUpdate(t *testing.T, e *env, key, value string, version int64) int64 {
	t.Helper()
	rev, err := e.b.Update(ctx(t), key, []byte(value), version)
	if err != nil {
		t.Fatalf("Update(%q, version %d): %v", key, version, err)
	}
	if rev <= 0 {
		t.Fatalf("Update(%q) returned revision %d, want > 0", key, rev)
	}
	return rev
}

func mustDelete(t *testing.T, e *env, key string, version int64) {
	t.Helper()
	before := mustGet(t, e, key)
	rev, err := e.b.Delete(ctx(t), key, version)
	if err != nil {
		t.Fatalf("Delete(%q, version %d): %v", key, version, err)
	}
	if rev <= before.ModRevision {
		t.Fatalf("Delete(%q) returned revision %d, want > the key's last revision %d", key, rev, before.ModRevision)
	}
}

func mustGet(t *testing.T, e *env, key string) kv.KV {
	t.Helper()
	got, err := e.b.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if got.Key != key {
		t.Fatalf("Get(%q) returned key %q", key, got.Key)
	}
	return got
}

// wantKV fails t unless got holds key's value and revisions.
func wantKV(t *testing.T, got kv.KV, key, value string, modRev, createRev int64) {
	t.Helper()
	if got.Key != key || string(got.Value) != value || got.ModRevision != modRev || got.CreateRevision != createRev {
		t.Fatalf("got {Key %q Value %q ModRevision %d CreateRevision %d}, want {%q %q %d %d}",
			got.Key, got.Value, got.ModRevision, got.CreateRevision, key, value, modRev, createRev)
	}
}

func wantNotFound(t *testing.T, e *env, key string) {
	t.Helper()
	_, err := e.b.Get(ctx(t), key)
	wantErr(t, "Get("+key+")", err, kv.ErrNotFound, key)
}

// watcher reads one watch channel event by event, checking on the way that
// responses carry no error, that every event is within its response's
// Revision and that revisions never go back.
type watcher struct {
	t       *testing.T
	ch      <-chan kv.WatchResponse
	pending []kv.Event
	lastRev int64
}

func newWatcher(t *testing.T, e *env, key string, prefix bool, afterRev int64) *watcher {
	t.Helper()
	ch, err := e.b.Watch(ctx(t), key, prefix, afterRev)
	if err != nil {
		t.Fatalf("Watch(%q, prefix %v, afterRev %d): %v", key, prefix, afterRev, err)
	}
	return &watcher{t: t, ch: ch}
}

// next returns the next event, failing the test if none comes in time.
func (w *watcher) next() kv.Event {
	w.t.Helper()
	timeout := time.After(eventTimeout)
	for len(w.pending) == 0 {
		select {
		case resp, ok := <-w.ch:
			if !ok {
				w.t.Fatalf("watch channel closed while waiting for an event")
			}
			if resp.Err != nil {
				w.t.Fatalf("watch response error: %v", resp.Err)
			}
			for _, ev := range resp.Events {
				if ev.KV.ModRevision > resp.Revision {
					w.t.Fatalf("event %s %q at revision %d in a response at revision %d",
						ev.Type, ev.KV.Key, ev.KV.ModRevision, resp.Revision)
				}
				if ev.KV.ModRevision < w.lastRev {
					w.t.Fatalf("event %s %q at revision %d after one at revision %d",
						ev.Type, ev.KV.Key, ev.KV.ModRevision, w.lastRev)
				}
				w.lastRev = ev.KV.ModRevision
			}
			w.pending = append(w.pending, resp.Events...)
		case <-timeout:
			w.t.Fatalf("no watch event within %v", eventTimeout)
		}
	}
	ev := w.pending[0]
	w.pending = w.pending[1:]
	return ev
}

// wantPut reads the next event and fails t unless it puts key to value at
// modRev (any modRev when modRev is 0).
func (w *watcher) wantPut(key, value string, modRev int64) kv.Event {
	w.t.Helper()
	ev := w.next()
	if ev.Type != kv.Put || ev.KV.Key != key || !bytes.Equal(ev.KV.Value, []byte(value)) ||
		(modRev != 0 && ev.KV.ModRevision != modRev) {
		w.t.Fatalf("got event %s %q = %q at revision %d, want PUT %q = %q at revision %d",
			ev.Type, ev.KV.Key, ev.KV.Value, ev.KV.ModRevision, key, value, modRev)
	}
	return ev
}

// wantDelete reads the next event and fails t unless it deletes key.
func (w *watcher) wantDelete(key string) kv.Event {
	w.t.Helper()
	ev := w.next()
	if ev.Type != kv.Delete || ev.KV.Key != key {
		w.t.Fatalf("got event %s %q at revision %d, want DELETE %q", ev.Type, ev.KV.Key, ev.KV.ModRevision, key)
	}
	return ev
}

// waitClosed drains the channel until it is closed, failing t if it is not
// closed in time.
func (w *watcher) waitClosed() {
	w.t.Helper()
	timeout := time.After(eventTimeout)
	for {
		select {
		case _, ok := <-w.ch:
			if !ok {
				return
			}
		case <-timeout:
			w.t.Fatalf("watch channel not closed within %v", eventTimeout)
		}
	}
}

// waitLeaseGone waits until the lease's Done channel is closed.
func waitLeaseGone(t *testing.T, l kv.Lease, timeout time.Duration) {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(timeout):
		t.Fatalf("lease %d: Done not closed within %v", l.ID(), timeout)
	}
}
