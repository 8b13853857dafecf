package topoplugin_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/topo/etcd2topo"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/toposerver"
)

// BenchmarkVersusEtcd2 measures Get, Update and watch delivery (the time from
// an Update to the watcher seeing it) through the plugin against topod on
// etcd, and through Vitess's own etcd2topo against the same etcd, in one run:
//
//	go test -run '^$' -bench VersusEtcd2 ./pkg/topoplugin/
func BenchmarkVersusEtcd2(b *testing.B) {
	cluster := harness.StartEtcd(b, 1)
	srv := harness.StartTopod(b, harness.OpenEtcd(b, cluster.Endpoints()), toposerver.Options{})
	etcd2, err := etcd2topo.NewServer(strings.Join(cluster.Endpoints(), ","), "/bench/etcd2")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(etcd2.Close)
	value := make([]byte, 1024) // about a Tablet record
	for _, impl := range []struct {
		name string
		conn topo.Conn
	}{
		{"topod", newConn(b, srv.Addr, "/bench/topod")},
		{"etcd2", etcd2},
	} {
		ctx := context.Background()
		if _, err := impl.conn.Update(ctx, "file", value, nil); err != nil {
			b.Fatal(err)
		}
		b.Run("Get/"+impl.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := impl.conn.Get(ctx, "file"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Update/"+impl.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := impl.conn.Update(ctx, "file", value, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("WatchDelivery/"+impl.name, func(b *testing.B) {
			watchCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			_, changes, err := impl.conn.Watch(watchCtx, "file")
			if err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				want := strconv.Itoa(i)
				if _, err := impl.conn.Update(ctx, "file", []byte(want), nil); err != nil {
					b.Fatal(err)
				}
				for wd := range changes {
					if wd.Err != nil {
						b.Fatal(wd.Err)
					}
					if string(wd.Contents) == want {
						break
					}
				}
			}
		})
	}
}
