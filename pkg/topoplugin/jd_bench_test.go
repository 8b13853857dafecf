package topoplugin_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo/etcd2topo"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/cache"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/record"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/toposerver"
)

// BenchmarkOneKeyspaceChange writes a JD-profile SrvVSchema (1,911 and
// 19,110 keyspaces) with Vitess's topo.Server through the plugin to topod on
// etcd (file blobs), then changes one keyspace per iteration and reports,
// per change: bytes written to etcd (the record), bytes uploaded to the blob
// store, bytes fetched by one watching plugin (against the size of the
// changed keyspace's piece), the watcher's time to
// reassemble the SrvVSchema from its cache, and the time until it saw the
// change. Stock etcd2 is tried on the same etcd for comparison:
//
//	go test -run '^$' -bench OneKeyspaceChange -benchtime 5x ./pkg/topoplugin/
func BenchmarkOneKeyspaceChange(b *testing.B) {
	for _, scale := range []int{1, 10} {
		profile := jd.JD().Scale(scale)
		b.Run(fmt.Sprintf("keyspaces=%d", profile.Keyspaces), func(b *testing.B) {
			benchOneKeyspaceChange(b, profile)
		})
	}
}

func benchOneKeyspaceChange(b *testing.B, profile jd.Profile) {
	ctx := context.Background()
	cluster := harness.StartEtcd(b, 1)
	srv := harness.StartTopod(b, harness.OpenEtcd(b, cluster.Endpoints()), toposerver.Options{})
	ts := harness.OpenTopo(b, "topod", srv.Addr, "/vitess")
	cell := "test"
	full := profile.SrvVSchema()
	b.Logf("SrvVSchema: %d keyspaces, %d bytes", len(full.Keyspaces), proto.Size(full))

	// Stock etcd2 on the same etcd, for comparison.
	etcd2, err := etcd2topo.NewServer(strings.Join(cluster.Endpoints(), ","), "/etcd2")
	if err != nil {
		b.Fatal(err)
	}
	data, _ := full.MarshalVT()
	_, err = etcd2.Update(ctx, "/cells/test/SrvVSchema", data, nil)
	etcd2.Close()
	b.Logf("stock etcd2 writing it: %v", err)

	start := time.Now()
	if err := ts.UpdateSrvVSchema(ctx, cell, full); err != nil {
		b.Fatal(err)
	}
	b.Logf("first write through topod: %v", time.Since(start))

	watchCache := cache.New(4 << 30)
	watcher, err := topoplugin.NewConnWithCache(srv.Addr, "/vitess/"+cell, watchCache)
	if err != nil {
		b.Fatal(err)
	}
	defer watcher.Close()
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, changes, err := watcher.Watch(watchCtx, "SrvVSchema")
	if err != nil {
		b.Fatal(err)
	}
	writer, err := topoplugin.NewConnWithCache(srv.Addr, "/vitess/"+cell, cache.New(4<<30))
	if err != nil {
		b.Fatal(err)
	}
	defer writer.Close()
	etcd := cluster.Client(b)

	var etcdBytes, uploaded, fetched, pieces int64
	var assemble, delivery time.Duration
	i := 0
	for b.Loop() {
		i++
		name, ks := profile.Keyspace(i % profile.Keyspaces)
		ks = proto.Clone(ks).(*vschemapb.Keyspace)
		ks.Tables[fmt.Sprintf("bench_table_%d", i)] = &vschemapb.Table{}
		full.Keyspaces[name] = ks
		piece, err := proto.MarshalOptions{Deterministic: true}.Marshal(ks)
		if err != nil {
			b.Fatal(err)
		}
		pieces += int64(len(piece))
		data, err := full.MarshalVT()
		if err != nil {
			b.Fatal(err)
		}
		up, got := writer.BlobStats(), watcher.BlobStats()
		written := time.Now()
		if _, err := writer.Update(ctx, "SrvVSchema", data, nil); err != nil {
			b.Fatal(err)
		}
		wd := <-changes
		if wd.Err != nil {
			b.Fatal(wd.Err)
		}
		delivery += time.Since(written)
		uploaded += writer.BlobStats().UploadedBytes - up.UploadedBytes
		fetched += watcher.BlobStats().FetchedBytes - got.FetchedBytes

		resp, err := etcd.Get(ctx, "/vitess/"+cell+"/SrvVSchema")
		if err != nil || len(resp.Kvs) != 1 {
			b.Fatalf("etcd get: %v", err)
		}
		value := resp.Kvs[0].Value
		etcdBytes += int64(len(resp.Kvs[0].Key) + len(value))
		t := time.Now()
		if _, err := record.Decode(ctx, value, func(_ context.Context, h content.Hash) ([]byte, error) {
			if v, ok := watchCache.Get(h); ok {
				return v, nil
			}
			return nil, fmt.Errorf("blob %s not cached", h)
		}); err != nil {
			b.Fatal(err)
		}
		assemble += time.Since(t)
	}
	n := float64(b.N)
	b.ReportMetric(float64(etcdBytes)/n, "etcd-B/change")
	b.ReportMetric(float64(uploaded)/n, "blob-B/change")
	b.ReportMetric(float64(fetched)/n, "fetched-B/change")
	b.ReportMetric(float64(pieces)/n, "piece-B/change")
	b.ReportMetric(float64(assemble.Milliseconds())/n, "assemble-ms")
	b.ReportMetric(float64(delivery.Milliseconds())/n, "delivery-ms")
}
