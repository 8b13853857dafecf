package etcdkv_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/etcdkv"
	"github.com/topod-io/topod/pkg/kv/kvtest"
)

// TestConformance runs the shared backend suite against a real etcd.
func TestConformance(t *testing.T) {
	c := harness.StartEtcd(t, 1)
	kvtest.Run(t, func(t *testing.T) kv.Backend {
		return open(t, c)
	})
}

// open opens a backend on c's members, closed when t ends.
func open(tb testing.TB, c *harness.Etcd) *etcdkv.Backend {
	tb.Helper()
	b, err := etcdkv.Open(context.Background(), c.Endpoints(), etcdkv.Options{Logger: c.Logger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return b
}

// TestOpenUnreachable: Open of a cluster that does not answer fails with an
// error naming it and the dial timeout, which ended the wait (the caller's
// context, a minute, is still live).
func TestOpenUnreachable(t *testing.T) {
	tests := []struct {
		name      string
		endpoints []string
		timeout   time.Duration // Options.DialTimeout
		want      time.Duration // the timeout Open applies
	}{
		{"one closed port", []string{closedAddr(t)}, 2 * time.Second, 2 * time.Second},
		{"two closed ports", []string{closedAddr(t), closedAddr(t)}, 2 * time.Second, 2 * time.Second},
		{"closed port URL", []string{"http://" + closedAddr(t)}, 2 * time.Second, 2 * time.Second},
		{"default timeout", []string{closedAddr(t)}, 0, etcdkv.DefaultDialTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			b, err := etcdkv.Open(ctx, tt.endpoints, etcdkv.Options{DialTimeout: tt.timeout, Logger: zap.NewNop()})
			if err == nil {
				b.Close()
				t.Fatalf("Open(%v) succeeded", tt.endpoints)
			}
			want := fmt.Sprintf("etcd at %s unreachable (no answer within %v)", strings.Join(tt.endpoints, ","), tt.want)
			if !strings.Contains(err.Error(), want) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Open error %q, want it to contain %q and wrap context.DeadlineExceeded", err, want)
			}
			if ctx.Err() != nil {
				t.Errorf("Open waited for the caller's context to end, not its dial timeout: %v", err)
			}
		})
	}

	t.Run("no endpoints", func(t *testing.T) {
		if _, err := etcdkv.Open(context.Background(), nil, etcdkv.Options{}); err == nil {
			t.Fatal("Open(nil) succeeded")
		}
	})
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestWatchSurvivesMemberRestart stops and restarts each member of a
// three-member cluster in turn, so the member the watch stream is on goes
// away at some point: the watch carries on, with no event lost or repeated.
func TestWatchSurvivesMemberRestart(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 3)
	b := open(t, c)
	ctx := t.Context()

	ch, err := b.Watch(ctx, "/w/", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	write := func(what string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		rev, err := b.Update(wctx, "/w/"+what, []byte(what), 0)
		if err != nil {
			t.Fatalf("write %s: %v", what, err)
		}
		want = append(want, rev)
	}
	for i := range c.Size() {
		write(fmt.Sprintf("before-stop-%d", i))
		c.StopMember(i)
		write(fmt.Sprintf("while-%d-stopped", i))
		if err := c.RestartMember(i); err != nil {
			t.Fatal(err)
		}
		write(fmt.Sprintf("after-restart-%d", i))
	}

	wantRevisions(t, ch, want)
}

// TestWatchSurvivesQuorumLoss stops two members of three: the third loses
// its leader, etcd ends the watch (it requires a leader) and the backend
// re-establishes it once the cluster is back, with no event lost.
func TestWatchSurvivesQuorumLoss(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 3)
	b := open(t, c)
	ctx := t.Context()

	ch, err := b.Watch(ctx, "/q/", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	write := func(what string) {
		t.Helper()
		rev, err := b.Update(ctx, "/q/"+what, []byte(what), 0)
		if err != nil {
			t.Fatalf("write %s: %v", what, err)
		}
		want = append(want, rev)
	}
	write("before")
	wantRevisions(t, ch, want) // read it: an unread watch does not move
	c.StopMember(1)
	c.StopMember(2)
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return etcdkv.Rewatches(b) > 0, nil
	}); err != nil {
		t.Fatalf("the watch was not ended by the loss of the leader: %v", err)
	}
	if err := c.RestartMembers(1, 2); err != nil {
		t.Fatal(err)
	}
	write("after")
	wantRevisions(t, ch, want[1:])
}

// wantRevisions reads ch until it has delivered events at exactly the
// revisions want, in order.
func wantRevisions(t *testing.T, ch <-chan kv.WatchResponse, want []int64) {
	t.Helper()
	var got []int64
	timeout := time.After(20 * time.Second)
	for len(got) < len(want) {
		select {
		case resp, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(got), len(want))
			}
			if resp.Err != nil {
				t.Fatalf("watch error after %d of %d events: %v", len(got), len(want), resp.Err)
			}
			for _, ev := range resp.Events {
				got = append(got, ev.KV.ModRevision)
			}
		case <-timeout:
			t.Fatalf("got events at %v, want %v", got, want)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got events at %v, want %v", got, want)
	}
}

// TestCompacted checks that history etcd compacted away reads as
// kv.ErrCompacted, for GetRevision and for a watch from an old revision.
func TestCompacted(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 1)
	b := open(t, c)
	ctx := t.Context()

	old, err := b.Create(ctx, "/c/k", []byte("1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := b.Update(ctx, "/c/k", []byte("2"), old)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Compact(ctx, cur); err != nil {
		t.Fatal(err)
	}

	if _, err := b.GetRevision(ctx, "/c/k", old); !errors.Is(err, kv.ErrCompacted) || !strings.Contains(err.Error(), "/c/k") {
		t.Errorf("GetRevision at compacted revision: %v, want ErrCompacted naming the key", err)
	}
	if v, err := b.GetRevision(ctx, "/c/k", cur); err != nil || string(v) != "2" {
		t.Errorf("GetRevision at compaction revision: %q, %v", v, err)
	}

	for _, prefix := range []bool{false, true} {
		t.Run(fmt.Sprintf("watch prefix %v", prefix), func(t *testing.T) {
			ch, err := b.Watch(ctx, "/c/k", prefix, old-1)
			if err != nil {
				t.Fatal(err)
			}
			select {
			case resp := <-ch:
				if !errors.Is(resp.Err, kv.ErrCompacted) || len(resp.Events) != 0 {
					t.Fatalf("got %+v, want a response with ErrCompacted", resp)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no response")
			}
			select {
			case resp, ok := <-ch:
				if ok {
					t.Fatalf("got %+v after ErrCompacted, want the channel closed", resp)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("channel not closed")
			}
		})
	}

	// From the compaction revision on, history is there.
	ch, err := b.Watch(ctx, "/c/k", false, cur-1)
	if err != nil {
		t.Fatal(err)
	}
	if resp := <-ch; resp.Err != nil || len(resp.Events) != 1 || resp.Events[0].KV.ModRevision != cur {
		t.Fatalf("watch from the compaction revision: %+v", resp)
	}
}

// TestEphemeralKey checks that a key created with a lease goes when the
// lease ends, however it ends.
func TestEphemeralKey(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 1)
	reader := open(t, c)

	const ttl = 3 * time.Second
	tests := []struct {
		name string
		// end ends the lease; the key must be gone within within.
		end    func(t *testing.T, b *etcdkv.Backend, l kv.Lease, cancel context.CancelFunc)
		within time.Duration
	}{
		{"revoked", func(t *testing.T, b *etcdkv.Backend, l kv.Lease, cancel context.CancelFunc) {
			if err := l.Revoke(t.Context()); err != nil {
				t.Fatal(err)
			}
		}, time.Second},
		{"grant context ends", func(t *testing.T, b *etcdkv.Backend, l kv.Lease, cancel context.CancelFunc) {
			cancel()
		}, time.Second},
		{"backend closed: expires", func(t *testing.T, b *etcdkv.Backend, l kv.Lease, cancel context.CancelFunc) {
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
		}, ttl + 3*time.Second},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := open(t, c)
			gctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			l, err := b.Grant(gctx, ttl)
			if err != nil {
				t.Fatal(err)
			}
			key := fmt.Sprintf("/e/%d", i)
			if _, err := b.Create(t.Context(), key, []byte("v"), l.ID()); err != nil {
				t.Fatal(err)
			}
			// Kept alive past its TTL.
			time.Sleep(ttl + time.Second)
			if _, err := reader.Get(t.Context(), key); err != nil {
				t.Fatalf("Get while the lease lives: %v", err)
			}

			start := time.Now()
			tt.end(t, b, l, cancel)
			for {
				_, err := reader.Get(t.Context(), key)
				if errors.Is(err, kv.ErrNotFound) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if time.Since(start) > tt.within {
					t.Fatalf("key still there %v after the lease ended", time.Since(start))
				}
				time.Sleep(50 * time.Millisecond)
			}
			select {
			case <-l.Done():
			case <-time.After(tt.within):
				t.Fatal("lease Done not closed")
			}
		})
	}
}

// TestUpdateKeepsLease: updating an ephemeral key leaves it ephemeral (a
// plain etcd Put would detach it from its lease).
func TestUpdateKeepsLease(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 1)
	b := open(t, c)
	ctx := t.Context()
	l, err := b.Grant(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := b.Create(ctx, "/l/k", []byte("1"), l.ID())
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range []int64{rev, 0} {
		if _, err := b.Update(ctx, "/l/k", []byte("2"), version); err != nil {
			t.Fatal(err)
		}
		got, err := b.Get(ctx, "/l/k")
		if err != nil {
			t.Fatal(err)
		}
		if got.Lease != l.ID() {
			t.Fatalf("after Update(version %d), Lease = %d, want %d", version, got.Lease, l.ID())
		}
	}
	if err := l.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "/l/k"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("Get after Revoke: %v, want ErrNotFound", err)
	}
}

// TestRequestTooLarge: etcd's size limit reaches the caller with etcd's
// message and the key.
func TestRequestTooLarge(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 1)
	b := open(t, c)
	big := make([]byte, 1600*1024) // over etcd's default 1.5 MiB
	tests := []struct {
		name string
		op   func() error
	}{
		{"create", func() error { _, err := b.Create(t.Context(), "/big", big, 0); return err }},
		{"update", func() error { _, err := b.Update(t.Context(), "/big", big, 0); return err }},
		{"update with version", func() error { _, err := b.Update(t.Context(), "/big", big, 7); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if err == nil || !strings.Contains(err.Error(), "request is too large") || !strings.Contains(err.Error(), "/big") {
				t.Fatalf("got %v, want etcd's \"request is too large\" naming the key", err)
			}
		})
	}
}

// TestClosed: after Close every operation is kv.ErrClosed and watches end
// with it.
func TestClosed(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 1)
	b, err := etcdkv.Open(t.Context(), c.Endpoints(), etcdkv.Options{Logger: c.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := b.Watch(t.Context(), "/x", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := b.Grant(t.Context(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	select {
	case resp := <-ch:
		if !errors.Is(resp.Err, kv.ErrClosed) {
			t.Fatalf("watch after Close: %+v, want ErrClosed", resp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch not ended by Close")
	}
	if _, ok := <-ch; ok {
		t.Fatal("watch channel still open")
	}

	ctx := t.Context()
	ops := []struct {
		name string
		op   func() error
	}{
		{"Get", func() error { _, err := b.Get(ctx, "/x"); return err }},
		{"GetRevision", func() error { _, err := b.GetRevision(ctx, "/x", 1); return err }},
		{"List", func() error { _, _, err := b.List(ctx, "/", false); return err }},
		{"Create", func() error { _, err := b.Create(ctx, "/x", nil, 0); return err }},
		{"Update", func() error { _, err := b.Update(ctx, "/x", nil, 0); return err }},
		{"Delete", func() error { _, err := b.Delete(ctx, "/x", 0); return err }},
		{"Watch", func() error { _, err := b.Watch(ctx, "/x", false, 0); return err }},
		{"Grant", func() error { _, err := b.Grant(ctx, time.Second); return err }},
		{"Alive", func() error { return l.Alive(ctx) }},
		{"Revoke", func() error { return l.Revoke(ctx) }},
	}
	for _, tt := range ops {
		if err := tt.op(); !errors.Is(err, kv.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", tt.name, err)
		}
	}
}

// TestWatchEverything: a prefix watch on "" sees every key.
func TestWatchEverything(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 1)
	b := open(t, c)
	ch, err := b.Watch(t.Context(), "", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	for _, key := range []string{"/a", "b", "\xff"} {
		rev, err := b.Create(t.Context(), key, []byte("v"), 0)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, rev)
	}
	wantRevisions(t, ch, want)
}

// TestAuth opens the backend on an etcd with authentication enabled.
func TestAuth(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 1)
	cli := c.Client(t)
	ctx := t.Context()
	for _, step := range []func() error{
		func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "root", "secret"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name, user, password string
		wantErr              string
	}{
		{"right password", "root", "secret", ""},
		{"wrong password", "root", "wrong", "authentication failed"},
		{"no credentials", "", "", "user name is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := etcdkv.Open(ctx, c.Endpoints(), etcdkv.Options{
				Username: tt.user, Password: tt.password, Logger: c.Logger(),
			})
			if err == nil {
				defer b.Close()
				_, err = b.Update(ctx, "/auth/k", []byte("v"), 0)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
