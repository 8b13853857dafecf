package etcdapi_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/toposerver"
)

// BenchmarkRange reads one key through clientv3 with many readers at once
// (the read storm of vitess#20465), from a real etcd directly and from
// topod's etcd endpoint on that etcd, linearizable (etcd's default, and
// etcd2topo's) and serializable, and reports the Range requests that
// reached etcd per 1,000 reads: topod answers from memory, a linearizable
// read after one revision request shared by every read waiting at the time.
func BenchmarkRange(b *testing.B) {
	cluster := harness.StartEtcd(b, 1)
	srv := harness.StartTopod(b, harness.OpenEtcd(b, cluster.Endpoints()), toposerver.Options{})
	ctx := context.Background()
	const key = "/bench/vitess/global/keyspaces/ks/shards/-80/Shard"
	for _, target := range []struct {
		name     string
		endpoint string
	}{
		{"etcd", cluster.Endpoints()[0]},
		{"topod", srv.Addr},
	} {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{target.endpoint}})
		if err != nil {
			b.Fatal(err)
		}
		defer cli.Close()
		if _, err := cli.Put(ctx, key, "shard record"); err != nil {
			b.Fatal(err)
		}
		for _, mode := range []struct {
			name string
			opts []clientv3.OpOption
		}{
			{"linearizable", nil},
			{"serializable", []clientv3.OpOption{clientv3.WithSerializable()}},
		} {
			b.Run(target.name+"/"+mode.name, func(b *testing.B) {
				before, err := etcdMetric(ctx, cluster, "etcd_mvcc_range_total")
				if err != nil {
					b.Fatal(err)
				}
				b.SetParallelism(32)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := cli.Get(ctx, key, mode.opts...); err != nil {
							b.Error(err)
							return
						}
					}
				})
				after, err := etcdMetric(ctx, cluster, "etcd_mvcc_range_total")
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric((after-before)*1000/float64(b.N), "etcd-ranges/1000-reads")
			})
		}
	}
}

// BenchmarkWatchDelivery times one write until every watcher has its
// event, through clientv3, on a real etcd directly and through topod's etcd
// endpoint on that etcd: the cost of topod's two extra hops (the write
// through topod to etcd, the event from etcd through topod's mirror and
// window to the clients), one write at a time, to one watcher and to 50
// watchers each on a client of its own (the vtgates of a cell watching one
// SrvKeyspace).
func BenchmarkWatchDelivery(b *testing.B) {
	cluster := harness.StartEtcd(b, 1)
	srv := harness.StartTopod(b, harness.OpenEtcd(b, cluster.Endpoints()), toposerver.Options{})
	ctx := context.Background()
	for _, target := range []struct {
		name     string
		endpoint string
	}{
		{"etcd", cluster.Endpoints()[0]},
		{"topod", srv.Addr},
	} {
		for _, watchers := range []int{1, 50} {
			b.Run(fmt.Sprintf("%s/watchers=%d", target.name, watchers), func(b *testing.B) {
				key := fmt.Sprintf("/bench/watch/%s/%d", target.name, watchers)
				wctx, cancel := context.WithCancel(ctx)
				defer cancel()
				var all []clientv3.WatchChan
				for range watchers {
					cli := newClient(b, target.endpoint)
					events := cli.Watch(wctx, key, clientv3.WithCreatedNotify())
					<-events // created
					all = append(all, events)
				}
				writer := newClient(b, target.endpoint)
				b.ResetTimer()
				for i := range b.N {
					if _, err := writer.Put(ctx, key, strconv.Itoa(i)); err != nil {
						b.Fatal(err)
					}
					for _, events := range all {
						for got := false; !got; {
							resp := <-events
							if err := resp.Err(); err != nil {
								b.Fatal(err)
							}
							got = len(resp.Events) > 0
						}
					}
				}
			})
		}
	}
}

// etcdMetric reads metric name of member 0 of c.
func etcdMetric(ctx context.Context, c *harness.Etcd, name string) (float64, error) {
	m, err := c.Metrics(ctx, 0)
	if err != nil {
		return 0, err
	}
	v, ok := m.Lookup(name)
	if !ok {
		return 0, fmt.Errorf("etcd exports no %s", name)
	}
	return v, nil
}
