package blobgc_test

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/blobgc"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/kv/boltkv"
)

// BenchmarkCollectJD measures a collection over a JD-sized store: the
// JD-profile SrvVSchema (1,911 keyspaces, ~17.6 MiB) in each of 8 cells,
// plus 20 past versions of one cell's (each changing one keyspace, as
// vschema changes do, and all readable with GetVersion), on bolt and the
// file store. Each iteration is a dry run (nothing changes between them);
// the first report is logged.
func BenchmarkCollectJD(b *testing.B) {
	ctx := context.Background()
	start := time.Now()
	kvb, err := boltkv.Open(filepath.Join(b.TempDir(), "topo.db"), boltkv.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer kvb.Close()
	s, err := fileblob.Open(filepath.Join(b.TempDir(), "blobs"))
	if err != nil {
		b.Fatal(err)
	}
	w := &writer{t: b, backend: kvb, store: s, grace: time.Hour}
	p := jd.JD()
	srv := p.SrvVSchema()
	marshal := func() []byte {
		data, err := proto.MarshalOptions{Deterministic: true}.Marshal(srv)
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	base := marshal()
	for _, cell := range p.CellNames() {
		w.write(fmt.Sprintf("/vitess/%s/SrvVSchema", cell), base)
	}
	names := slices.Sorted(maps.Keys(srv.Keyspaces))
	for i := range 20 {
		ks := srv.Keyspaces[names[i*97%len(names)]]
		ks.Tables[fmt.Sprintf("gc_bench_%d", i)] = &vschemapb.Table{}
		w.write(fmt.Sprintf("/vitess/%s/SrvVSchema", p.CellName(0)), marshal())
	}
	b.Logf("setup: %d bytes per SrvVSchema, %v", len(base), time.Since(start))

	b.ResetTimer()
	first := true
	for b.Loop() {
		r, err := blobgc.Collect(ctx, kvb, s, blobgc.Options{DryRun: true})
		if err != nil {
			b.Fatal(err)
		}
		if first {
			first = false
			b.Logf("%s", r.Summary())
			b.ReportMetric(float64(r.Stored), "blobs")
			b.ReportMetric(float64(r.Values), "values")
		}
	}
}
