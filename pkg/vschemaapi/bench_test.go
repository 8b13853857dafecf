package vschemaapi_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	vtctldatapb "vitess.io/vitess/go/vt/proto/vtctldata"
	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/vtctl/grpcvtctldserver"
	"vitess.io/vitess/go/vt/vtenv"
	_ "vitess.io/vitess/go/vt/vttablet/grpctmclient" // vtctld's tablet manager client

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaapi/wire"
)

// BenchmarkApplyOneKeyspace measures one keyspace's vschema change, in one
// run, three ways on the same topology:
//
//   - vtctld: Vitess's own ApplyVSchema then RebuildVSchemaGraph
//     (grpcvtctldserver, as vtctldclient ApplyVSchema does by default):
//     it reads every keyspace's vschema and rewrites every cell's
//     SrvVSchema whole;
//   - vschemad: a PUT to vschemad; on topod it updates each cell through
//     the plugin's record-level access (vschema.RecordConn): only the
//     changed piece, one manifest leaf and the root are encoded and
//     uploaded; on etcd2 as below;
//   - vschemad-portable (topod only): vschemad with
//     --topod-record-access=false, through topo.Conn alone: each cell's
//     SrvVSchema is read, the keyspace spliced into its bytes and written
//     back (the plugin re-splits it), never re-reading the other
//     keyspaces' vschemas.
//
// Every topology connection goes through a byte-counting proxy: the
// topo-read-B and topo-written-B metrics are the bytes received from and
// sent to the topology server per change, framing included. The profiles:
// the JD profile (1,911 keyspaces, 8 cells) on topod over a real etcd, and,
// because stock etcd2 cannot hold the JD SrvVSchema at all, 150 keyspaces
// on etcd2. The ratios are logged at the end.
//
//	go test -run '^$' -bench ApplyOneKeyspace -benchtime 5x ./pkg/vschemaapi/
func BenchmarkApplyOneKeyspace(b *testing.B) {
	setups := []struct {
		name    string
		start   func(testing.TB, vschematest.Options) *vschematest.Topology
		profile jd.Profile
	}{
		{"topod-etcd/keyspaces=1911", vschematest.StartTopodEtcd, jd.JD()},
		{"etcd2/keyspaces=150", vschematest.StartEtcd2, jd.JD().Sized(150)},
	}
	for _, s := range setups {
		b.Run(s.name, func(b *testing.B) {
			tp := s.start(b, vschematest.Options{Proxy: true, Cells: s.profile.CellNames()})
			benchApply(b, tp, s.profile)
		})
	}
}

// applyCost is what one way of applying cost per change.
type applyCost struct {
	d             time.Duration
	read, written float64
}

func benchApply(b *testing.B, tp *vschematest.Topology, p jd.Profile) {
	ctx := context.Background()
	start := time.Now()
	loadWithVitess(b, tp, p)
	srv0, _ := tp.TS.GetSrvVSchema(ctx, tp.Cells[0])
	b.Logf("%s: %d keyspaces, %d cells, SrvVSchema %d bytes; loaded in %v", tp.Kind, p.Keyspaces, len(tp.Cells), proto.Size(srv0), time.Since(start).Round(time.Millisecond))

	// The keyspace that changes: the median-sized one.
	idx := make([]int, p.Keyspaces)
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(x, y int) bool { return p.TableCount(idx[x]) < p.TableCount(idx[y]) })
	name, base := p.Keyspace(idx[len(idx)/2])
	b.Logf("changing keyspace %s: %d tables, %d bytes", name, len(base.Tables), proto.Size(base))
	// Each change adds a table, or takes it away again.
	version := func(i int) *vschemapb.Keyspace {
		ks := proto.Clone(base).(*vschemapb.Keyspace)
		if i%2 == 1 {
			t := &vschemapb.Table{}
			if ks.Sharded {
				for _, tbl := range ks.Tables {
					if tbl.Type == "" && len(tbl.ColumnVindexes) > 0 {
						t.ColumnVindexes = tbl.ColumnVindexes[:1]
						break
					}
				}
			}
			ks.Tables[fmt.Sprintf("bench_%d", i)] = t
		}
		return ks
	}

	vtctld := grpcvtctldserver.NewVtctldServer(vtenv.NewTestEnv(), tp.TS)
	server := vschematest.StartVSchemad(b, tp, nil)
	portable := (*vschematest.VSchemad)(nil)
	if tp.Impl == "topod" {
		portable = vschematest.StartVSchemad(b, tp, &vschematest.VSchemadOptions{Portable: true})
	}
	ways := []struct {
		name  string
		apply func(i int) error
	}{
		{"vtctld", func(i int) error {
			if _, err := vtctld.ApplyVSchema(ctx, &vtctldatapb.ApplyVSchemaRequest{Keyspace: name, VSchema: version(i), SkipRebuild: true}); err != nil {
				return err
			}
			_, err := vtctld.RebuildVSchemaGraph(ctx, &vtctldatapb.RebuildVSchemaGraphRequest{})
			return err
		}},
		{"vschemad", func(i int) error { return put(b, server, name, version(i)) }},
	}
	if portable != nil {
		ways = append(ways, struct {
			name  string
			apply func(i int) error
		}{"vschemad-portable", func(i int) error { return put(b, portable, name, version(i)) }})
	}

	costs := map[string]applyCost{}
	n := 0
	for _, w := range ways {
		b.Run(w.name, func(b *testing.B) {
			// One change first, untimed: connections, caches, manifests.
			n++
			if err := w.apply(n); err != nil {
				b.Fatal(err)
			}
			w0, r0 := tp.Proxy.Counts()
			iters := 0
			for b.Loop() {
				n++
				iters++
				if err := w.apply(n); err != nil {
					b.Fatal(err)
				}
			}
			w1, r1 := tp.Proxy.Counts()
			c := applyCost{d: b.Elapsed() / time.Duration(iters), read: float64(r1-r0) / float64(iters), written: float64(w1-w0) / float64(iters)}
			costs[w.name] = c
			b.ReportMetric(float64(c.d.Microseconds())/1000, "ms/change")
			b.ReportMetric(c.read, "topo-read-B/change")
			b.ReportMetric(c.written, "topo-written-B/change")
		})
	}
	// The cells agree with Vitess's own rebuild after all that.
	for _, cell := range tp.Cells {
		got, err := tp.TS.GetSrvVSchema(ctx, cell)
		if err != nil {
			b.Fatal(err)
		}
		want, err := tp.TS.GetVSchema(ctx, name)
		if err != nil || !proto.Equal(got.Keyspaces[name], want.Keyspace) {
			b.Fatalf("cell %s does not serve the last change of %s", cell, name)
		}
	}
	base0, ok := costs["vtctld"]
	if !ok {
		return
	}
	var lines []string
	for _, w := range ways {
		c, ok := costs[w.name]
		if !ok {
			continue
		}
		lines = append(lines, fmt.Sprintf("%-14s %9.1f ms %12.0f B read %12.0f B written   vtctld/this: time %6.1fx, read %8.1fx, written %7.1fx",
			w.name, float64(c.d.Microseconds())/1000, c.read, c.written,
			float64(base0.d)/float64(c.d), base0.read/max(c.read, 1), base0.written/max(c.written, 1)))
	}
	b.Logf("one keyspace's apply, per change, %s, %d keyspaces, %d cells:\n%s", tp.Kind, p.Keyspaces, len(tp.Cells), strings.Join(lines, "\n"))
}

// put applies ks through a vschemad server.
func put(b *testing.B, s *vschematest.VSchemad, name string, ks *vschemapb.Keyspace) error {
	code, body, _ := vschematest.Call(b, nil, http.MethodPut, s.URL+"/api/v1/keyspaces/"+name+"/vschema", vschematest.VSchemaJSON(b, ks))
	if code != http.StatusOK {
		return fmt.Errorf("PUT %s: %d %s", name, code, body)
	}
	res := vschematest.Decode[wire.ApplyResponse](b, body)
	if !res.Keyspaces[0].Written {
		return fmt.Errorf("PUT %s: nothing written: %s", name, body)
	}
	for _, c := range res.Cells {
		if want := map[bool]string{true: "manifest", false: "splice"}[s.RecordAccess]; c.Mode != want {
			return fmt.Errorf("PUT %s: cell %s updated by %q", name, c.Cell, c.Mode)
		}
	}
	return nil
}

// loadWithVitess creates p's keyspaces and vschemas with Vitess's own
// topo.Server (many at a time) and builds the cells' SrvVSchemas once with
// RebuildSrvVSchema, as a vtctld would have.
func loadWithVitess(b *testing.B, tp *vschematest.Topology, p jd.Profile) {
	ctx := context.Background()
	var g errgroup.Group
	g.SetLimit(32)
	for i := range p.Keyspaces {
		g.Go(func() error {
			name, ks := p.Keyspace(i)
			if err := tp.TS.CreateKeyspace(ctx, name, &topodatapb.Keyspace{}); err != nil && !topo.IsErrType(err, topo.NodeExists) {
				return err
			}
			return tp.TS.SaveVSchema(ctx, &topo.KeyspaceVSchemaInfo{Name: name, Keyspace: ks})
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	if err := tp.TS.SaveRoutingRules(ctx, p.RoutingRules()); err != nil {
		b.Fatal(err)
	}
	if err := tp.TS.RebuildSrvVSchema(ctx, nil); err != nil {
		b.Fatal(err)
	}
}
