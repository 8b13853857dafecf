package harness_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/topod-io/topod/internal/harness"
)

func TestStartEtcd(t *testing.T) {
	for _, members := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d members", members), func(t *testing.T) {
			t.Parallel()
			c := harness.StartEtcd(t, members)
			if got := len(c.Endpoints()); got != members {
				t.Fatalf("Endpoints: %d, want %d", got, members)
			}
			if got := strings.Count(c.ClientURLs(), ",") + 1; got != members {
				t.Fatalf("ClientURLs %q: %d URLs, want %d", c.ClientURLs(), got, members)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cli := c.Client(t)

			ml, err := cli.MemberList(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(ml.Members) != members {
				t.Fatalf("member list: %d members, want %d", len(ml.Members), members)
			}
			if c.Leader() < 0 {
				t.Fatal("no leader")
			}

			// Every member serves the same data.
			if _, err := cli.Put(ctx, "k", "v"); err != nil {
				t.Fatal(err)
			}
			for i, ep := range c.Endpoints() {
				resp, err := singleClient(t, c, ep).Get(ctx, "k")
				if err != nil {
					t.Fatalf("member %d: %v", i, err)
				}
				if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
					t.Fatalf("member %d: got %v", i, resp.Kvs)
				}
			}
		})
	}
}

// TestDefaultRequestLimit checks that etcd's default 1.5 MiB request limit
// is in force.
func TestDefaultRequestLimit(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 1)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := cli.Put(ctx, "small", strings.Repeat("x", 1<<20)); err != nil {
		t.Fatalf("1 MiB put: %v", err)
	}
	_, err := cli.Put(ctx, "big", strings.Repeat("x", 1600*1024))
	if !errors.Is(err, rpctypes.ErrRequestTooLarge) {
		t.Fatalf("1.56 MiB put: %v, want %v", err, rpctypes.ErrRequestTooLarge)
	}
}

func TestStopRestartMember(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 3)
	cli := c.Client(t)

	for i := range c.Size() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c.StopMember(i)
		if c.Running(i) {
			t.Fatalf("member %d still running", i)
		}
		// The two others keep serving, through the client's failover.
		key := fmt.Sprintf("k%d", i)
		if _, err := cli.Put(ctx, key, "while stopped"); err != nil {
			t.Fatalf("put with member %d stopped: %v", i, err)
		}
		if err := c.RestartMember(i); err != nil {
			t.Fatal(err)
		}
		// The restarted member has caught up, on the same port.
		resp, err := singleClient(t, c, c.Endpoint(i)).Get(ctx, key)
		if err != nil {
			t.Fatalf("get from restarted member %d: %v", i, err)
		}
		if len(resp.Kvs) != 1 {
			t.Fatalf("restarted member %d: %s missing", i, key)
		}
		cancel()
	}
}

func TestRestartAfterQuorumLoss(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 3)
	c.StopMember(1)
	c.StopMember(2)
	if err := c.RestartMembers(1, 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Client(t).Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
}

func TestCompact(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 1)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first, err := cli.Put(ctx, "k", "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "k", "2"); err != nil {
		t.Fatal(err)
	}
	rev, err := c.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	_, err = cli.Get(ctx, "k", clientv3.WithRev(first.Header.Revision))
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("get at compacted revision: %v, want %v", err, rpctypes.ErrCompacted)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	c := harness.StartEtcd(t, 1)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := cli.Watch(wctx, "w", clientv3.WithCreatedNotify())
	if resp := <-wch; !resp.Created {
		t.Fatalf("watch not created: %v", resp.Err())
	}
	if _, err := cli.Get(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	m, err := c.Metrics(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if watchers, ok := m.Lookup("etcd_debugging_mvcc_watcher_total"); !ok || watchers < 1 {
		t.Fatalf("etcd_debugging_mvcc_watcher_total = %v, want >= 1", watchers)
	}
	if sent := m.Sum("etcd_network_client_grpc_sent_bytes_total"); sent <= 0 {
		t.Fatalf("etcd_network_client_grpc_sent_bytes_total = %v, want > 0", sent)
	}
	// etcd's own gRPC counters are exported although Vitess, linked in,
	// registers look-alikes of their names.
	if ranges, ok := m.Lookup("grpc_server_handled_total", "grpc_service", "etcdserverpb.KV", "grpc_method", "Range"); !ok || ranges < 1 {
		t.Fatalf("grpc_server_handled_total{Range} = %v, %v; want >= 1", ranges, ok)
	}
	if _, ok := m.Lookup("no_such_metric"); ok {
		t.Fatal("Lookup found a metric etcd does not export")
	}
}

// singleClient returns a client talking to one endpoint only.
func singleClient(t *testing.T, c *harness.Etcd, ep string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{ep},
		DialTimeout: 5 * time.Second,
		Logger:      c.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
