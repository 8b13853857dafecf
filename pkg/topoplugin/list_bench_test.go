package topoplugin_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/jdtopo"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// BenchmarkListJDStore lays the JD profile's whole topology (1,911
// keyspaces, 4,438 shards, 11,416 tablets on 8 cells, their vschemas,
// SrvKeyspaces and SrvVSchemas) out through the plugin into topod on bolt
// at its default limits, then lists the whole store, List("/"): as a
// client that does not page (a plugin of an earlier release: one message)
// and in pages, reporting the largest message and the time of each, and
// the plugin's List of one cell's tablets. TOPOD_BENCH_JD_SCALE (a
// fraction, default 1) shrinks the profile.
//
//	go test -run '^$' -bench ListJDStore -benchtime 5x ./pkg/topoplugin/
func BenchmarkListJDStore(b *testing.B) {
	ctx := context.Background()
	p := jd.JD()
	if s := os.Getenv("TOPOD_BENCH_JD_SCALE"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			b.Fatal(err)
		}
		p = p.Sized(int(float64(p.Keyspaces) * f))
	}
	store, err := boltkv.Open(filepath.Join(b.TempDir(), "topo.db"), boltkv.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	srv := harness.StartTopod(b, store, toposerver.Options{})
	ts := harness.OpenTopo(b, "topod", srv.Addr, "/vitess")
	if err := jdtopo.CreateCells(ctx, ts, p, srv.Addr, "/vitess"); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := jdtopo.Write(ctx, ts, p); err != nil {
		b.Fatal(err)
	}
	b.Logf("JD profile (%d keyspaces) written in %v", p.Keyspaces, time.Since(start).Round(time.Second))
	cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	client := topodv1.NewTopoClient(cc)
	cell := p.CellNames()[0]
	conn, err := topoplugin.NewConn(srv.Addr, "/vitess/"+cell)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()

	var unpaged, paged, tablets time.Duration
	var files, pages, tabletFiles int
	var wholeBytes, largestPage int
	for b.Loop() {
		t := time.Now()
		resp, err := client.List(ctx, &topodv1.ListRequest{Prefix: "/"})
		if err != nil {
			b.Fatal(err)
		}
		unpaged += time.Since(t)
		files, wholeBytes = len(resp.Kvs), proto.Size(resp)

		req := &topodv1.ListRequest{Prefix: "/", Paged: true}
		n, got := 0, 0
		for {
			t = time.Now()
			resp, err := client.List(ctx, req)
			paged += time.Since(t)
			if err != nil {
				b.Fatal(err)
			}
			n++
			got += len(resp.Kvs)
			largestPage = max(largestPage, proto.Size(resp))
			if len(resp.NextPageToken) == 0 {
				break
			}
			req.PageToken = resp.NextPageToken
		}
		pages = n
		if got != files {
			b.Fatalf("paged: %d files, unpaged %d", got, files)
		}

		t = time.Now()
		kvs, err := conn.List(ctx, "tablets/")
		if err != nil {
			b.Fatal(err)
		}
		tablets += time.Since(t)
		tabletFiles = len(kvs)
	}
	iters := float64(b.N)
	b.ReportMetric(float64(files), "files")
	b.ReportMetric(float64(wholeBytes)/(1<<20), "unpaged-MiB")
	b.ReportMetric(float64(unpaged.Milliseconds())/iters, "unpaged-ms")
	b.ReportMetric(float64(pages), "pages")
	b.ReportMetric(float64(largestPage)/(1<<20), "largest-page-MiB")
	b.ReportMetric(float64(paged.Milliseconds())/iters, "paged-ms")
	b.ReportMetric(float64(tabletFiles), "cell-tablets")
	b.ReportMetric(float64(tablets.Milliseconds())/iters, "plugin-tablets-ms")
}
