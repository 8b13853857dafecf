package etcdkv_test

import (
	"testing"
	"time"

	"github.com/topod-io/topod/internal/harness"
)

// TestWatchProgress: while nothing changes, WatchProgress delivers
// progress (no events, the current revision); a change still arrives as an
// event; and a non-positive interval is refused.
func TestWatchProgress(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 1)
	b := open(t, c)
	ctx := t.Context()
	if _, err := b.WatchProgress(ctx, "/p/", true, 0, 0); err == nil {
		t.Fatal("WatchProgress with interval 0 accepted")
	}
	rev, err := b.Update(ctx, "/elsewhere", []byte("x"), 0)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := b.WatchProgress(ctx, "/p/", true, 0, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	next := func() (events int, revision int64) {
		t.Helper()
		select {
		case resp := <-ch:
			if resp.Err != nil {
				t.Fatal(resp.Err)
			}
			return len(resp.Events), resp.Revision
		case <-time.After(30 * time.Second):
			t.Fatal("no response in 30s")
		}
		return 0, 0
	}
	if n, r := next(); n != 0 || r < rev {
		t.Fatalf("first response: %d events at %d, want progress at >= %d", n, r, rev)
	}
	wrote, err := b.Update(ctx, "/p/k", []byte("v"), 0)
	if err != nil {
		t.Fatal(err)
	}
	for {
		n, r := next()
		if n > 0 {
			if r != wrote {
				t.Fatalf("event at %d, want %d", r, wrote)
			}
			break
		}
		if r >= wrote {
			t.Fatalf("progress at %d before the event of revision %d", r, wrote)
		}
	}
	if n, r := next(); n != 0 || r < wrote {
		t.Fatalf("after the event: %d events at %d, want progress at >= %d", n, r, wrote)
	}
}
