package inspect_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/blobstore/blobtest"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/inspect"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/kv/etcdkv"
	"github.com/topod-io/topod/pkg/srvvschema"
	_ "github.com/topod-io/topod/pkg/topoplugin" // the topod implementation
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

const globalRoot = "/vitess/global"

// fixture is topod on a real backend, holding a Vitess topology written
// through the plugin with Vitess's own topo.Server.
type fixture struct {
	kind    string
	backend kv.Backend
	store   *fileblob.Store
	srv     *harness.Topod
	etcd    *harness.Etcd
	ts      *topo.Server

	// zone1's SrvVSchema at version v1, then (one keyspace changed) v2;
	// zone2's, which differs from v1 in three keyspaces.
	srv1, srv2, zone2 *vschemapb.SrvVSchema
	// small is zone3's, stored inline.
	small  *vschemapb.SrvVSchema
	v1, v2 int64
	orphan content.Hash
	// written are the files the test wrote with their Vitess type, for
	// get to compare.
	written map[string]proto.Message
}

// start starts topod on kind ("bolt" or "etcd", a real embedded etcd) and
// writes the topology: cells, a keyspace with two shards and a tablet, its
// vschema, serving keyspace, routing rules of every kind (the keyspace
// routing rules large enough to be chunked), a SrvVSchema of 40 JD
// keyspaces in zone1 (kept as blobs) written twice, and a different one
// in zone2; then uploads a blob no record refers to.
func start(t *testing.T, kind string) *fixture {
	t.Helper()
	ctx := t.Context()
	fx := &fixture{kind: kind, written: map[string]proto.Message{}}
	var err error
	switch kind {
	case "bolt":
		b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		fx.backend = b
	case "etcd":
		fx.etcd = harness.StartEtcd(t, 1)
		b, err := etcdkv.Open(ctx, fx.etcd.Endpoints(), etcdkv.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		fx.backend = b
	}
	if fx.store, err = fileblob.Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	fx.srv = harness.StartTopod(t, fx.backend, toposerver.Options{Blobs: fx.store})
	if fx.ts, err = topo.OpenServer("topod", fx.srv.Addr, globalRoot); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fx.ts.Close)

	ts := fx.ts
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	for _, cell := range []string{"zone1", "zone2"} {
		ci := &topodatapb.CellInfo{ServerAddress: fx.srv.Addr, Root: "/vitess/" + cell}
		must("CreateCellInfo", ts.CreateCellInfo(ctx, cell, ci))
		fx.written["/vitess/global/cells/"+cell+"/CellInfo"] = ci
	}
	alias := &topodatapb.CellsAlias{Cells: []string{"zone1", "zone2"}}
	must("CreateCellsAlias", ts.CreateCellsAlias(ctx, "region1", alias))
	fx.written["/vitess/global/cells_aliases/region1/CellsAlias"] = alias
	ks := &topodatapb.Keyspace{DurabilityPolicy: "none", SidecarDbName: "_vt"}
	must("CreateKeyspace", ts.CreateKeyspace(ctx, "commerce", ks))
	fx.written["/vitess/global/keyspaces/commerce/Keyspace"] = ks
	for _, shard := range []string{"-80", "80-"} {
		must("CreateShard", ts.CreateShard(ctx, "commerce", shard))
	}
	tablet := &topodatapb.Tablet{
		Alias:    &topodatapb.TabletAlias{Cell: "zone1", Uid: 100},
		Hostname: "tablet-100", Keyspace: "commerce", Shard: "-80", Type: topodatapb.TabletType_PRIMARY,
		PortMap: map[string]int32{"grpc": 16100, "vt": 15100}, MysqlHostname: "db-100", MysqlPort: 3306,
	}
	must("CreateTablet", ts.CreateTablet(ctx, tablet))
	fx.written["/vitess/zone1/tablets/zone1-0000000100/Tablet"] = tablet
	fx.written["/vitess/zone1/keyspaces/commerce/shards/-80/ShardReplication"] = &topodatapb.ShardReplication{
		Nodes: []*topodatapb.ShardReplication_Node{{TabletAlias: tablet.Alias}},
	}
	vs := &vschemapb.Keyspace{
		Sharded:  true,
		Vindexes: map[string]*vschemapb.Vindex{"hash": {Type: "hash"}},
		Tables: map[string]*vschemapb.Table{"customer": {
			ColumnVindexes: []*vschemapb.ColumnVindex{{Name: "hash", Columns: []string{"customer_id"}}},
		}},
	}
	must("SaveVSchema", ts.SaveVSchema(ctx, &topo.KeyspaceVSchemaInfo{Name: "commerce", Keyspace: vs}))
	fx.written["/vitess/global/keyspaces/commerce/VSchema"] = vs
	srvKs := &topodatapb.SrvKeyspace{Partitions: []*topodatapb.SrvKeyspace_KeyspacePartition{{
		ServedType:      topodatapb.TabletType_PRIMARY,
		ShardReferences: []*topodatapb.ShardReference{{Name: "-80"}, {Name: "80-"}},
	}}}
	must("UpdateSrvKeyspace", ts.UpdateSrvKeyspace(ctx, "zone1", "commerce", srvKs))
	fx.written["/vitess/zone1/keyspaces/commerce/SrvKeyspace"] = srvKs
	rr := &vschemapb.RoutingRules{Rules: []*vschemapb.RoutingRule{{FromTable: "customer", ToTables: []string{"commerce.customer"}}}}
	must("SaveRoutingRules", ts.SaveRoutingRules(ctx, rr))
	fx.written["/vitess/global/RoutingRules"] = rr
	srr := &vschemapb.ShardRoutingRules{Rules: []*vschemapb.ShardRoutingRule{{FromKeyspace: "old", ToKeyspace: "commerce", Shard: "-80"}}}
	must("SaveShardRoutingRules", ts.SaveShardRoutingRules(ctx, srr))
	fx.written["/vitess/global/ShardRoutingRules"] = srr
	mr := &vschemapb.MirrorRules{Rules: []*vschemapb.MirrorRule{{FromTable: "commerce.customer", ToTable: "mirror.customer", Percent: 10}}}
	must("SaveMirrorRules", ts.SaveMirrorRules(ctx, mr))
	fx.written["/vitess/global/MirrorRules"] = mr
	// Keyspace routing rules over the inline limit: stored as chunks.
	krr := &vschemapb.KeyspaceRoutingRules{}
	for i := range 2000 {
		krr.Rules = append(krr.Rules, &vschemapb.KeyspaceRoutingRule{FromKeyspace: fmt.Sprintf("source_keyspace_%04d", i), ToKeyspace: "commerce"})
	}
	must("CreateKeyspaceRoutingRules", ts.CreateKeyspaceRoutingRules(ctx, krr))
	fx.written["/vitess/global/routing_rules/keyspace/Rules"] = krr
	ext := &topodatapb.ExternalVitessCluster{TopoConfig: &topodatapb.TopoConfig{TopoType: "etcd2", Server: "10.0.0.1:2379", Root: "/vitess/other"}}
	must("CreateExternalVitessCluster", ts.CreateExternalVitessCluster(ctx, "other", ext))
	fx.written["/vitess/global/ExternalClusters/vitess/other"] = ext

	// zone1's SrvVSchema, twice: v2 adds a table to ks0003.
	fx.srv1 = jd.JD().Sized(40).SrvVSchema()
	fx.v1 = fx.updateSrvVSchema(t, "zone1", fx.srv1)
	fx.srv2 = proto.Clone(fx.srv1).(*vschemapb.SrvVSchema)
	fx.srv2.Keyspaces["ks0003"].Tables["inspect_added"] = &vschemapb.Table{}
	fx.v2 = fx.updateSrvVSchema(t, "zone1", fx.srv2)
	fx.written["/vitess/zone1/SrvVSchema"] = fx.srv2
	// zone2's: ks0001 removed, ks0007 changed, keyspace extra added.
	fx.zone2 = proto.Clone(fx.srv1).(*vschemapb.SrvVSchema)
	delete(fx.zone2.Keyspaces, "ks0001")
	fx.zone2.Keyspaces["ks0007"].Tables["zone2_only"] = &vschemapb.Table{}
	fx.zone2.Keyspaces["extra"] = &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{"t": {}}}
	fx.updateSrvVSchema(t, "zone2", fx.zone2)
	fx.written["/vitess/zone2/SrvVSchema"] = fx.zone2

	// A blob uploaded through topod that no record refers to.
	orphan, data := blobtest.Blob(42, 5000)
	cc, err := grpc.NewClient(fx.srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := topodv1.NewTopoClient(cc).PutBlobs(ctx, &topodv1.PutBlobsRequest{Blobs: []*topodv1.Blob{{Hash: orphan[:], Data: data}}}); err != nil {
		t.Fatal(err)
	}
	fx.orphan = orphan

	// A small SrvVSchema, stored inline, in a cell of its own: one
	// keyspace of zone1's and other routing rules.
	small := &vschemapb.SrvVSchema{
		Keyspaces:    map[string]*vschemapb.Keyspace{"ks0003": fx.srv2.Keyspaces["ks0003"]},
		RoutingRules: &vschemapb.RoutingRules{Rules: []*vschemapb.RoutingRule{{FromTable: "a", ToTables: []string{"b.a"}}}},
	}
	data, err = small.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.backend.Update(ctx, smallSrvVSchemaKey, data, 0); err != nil {
		t.Fatal(err)
	}
	fx.written[smallSrvVSchemaKey] = small
	fx.small = small
	return fx
}

// smallSrvVSchemaKey is a SrvVSchema stored inline.
const smallSrvVSchemaKey = "/vitess/zone3/SrvVSchema"

// updateSrvVSchema writes cell's SrvVSchema through the plugin and returns
// its version.
func (fx *fixture) updateSrvVSchema(t *testing.T, cell string, srv *vschemapb.SrvVSchema) int64 {
	t.Helper()
	ctx := t.Context()
	if err := fx.ts.UpdateSrvVSchema(ctx, cell, srv); err != nil {
		t.Fatalf("UpdateSrvVSchema %s: %v", cell, err)
	}
	conn, err := fx.ts.ConnForCell(ctx, cell)
	if err != nil {
		t.Fatal(err)
	}
	_, v, err := conn.Get(ctx, "SrvVSchema")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(v.String(), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// source is one way of reading the fixture.
type source struct {
	name string
	src  inspect.Source
}

// sources are both Sources on fx: through topod, and on the backend and
// store directly.
func (fx *fixture) sources(t *testing.T) []source {
	t.Helper()
	tp, err := inspect.DialTopod(fx.srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	return []source{
		{"topod", tp},
		{"direct", inspect.NewDirect(fx.backend, fx.store, fx.kind+" direct")},
	}
}

func encode(t *testing.T, srv *vschemapb.SrvVSchema) *srvvschema.Encoded {
	t.Helper()
	enc, err := srvvschema.Encode(srv)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// TestInspect runs every inspection against topod on bolt and on a real
// etcd, through topod and directly.
func TestInspect(t *testing.T) {
	for _, kind := range []string{"bolt", "etcd"} {
		t.Run(kind, func(t *testing.T) {
			fx := start(t, kind)
			for _, s := range fx.sources(t) {
				t.Run(s.name, func(t *testing.T) {
					t.Run("ls", func(t *testing.T) { testLs(t, fx, s.src) })
					t.Run("get", func(t *testing.T) { testGet(t, fx, s.src) })
					t.Run("manifest", func(t *testing.T) { testManifest(t, fx, s.src) })
					t.Run("diff", func(t *testing.T) { testDiff(t, fx, s.src) })
					t.Run("versions", func(t *testing.T) { testVersions(t, fx, s.src) })
				})
			}
			t.Run("blobs", func(t *testing.T) { testBlobs(t, fx) })
			t.Run("history gone", func(t *testing.T) { testHistoryGone(t, fx) })
		})
	}
}

func testLs(t *testing.T, fx *fixture, src inspect.Source) {
	ctx := t.Context()
	srv2Size := int64(proto.Size(fx.srv2))
	tests := []struct {
		dir       string
		recursive bool
		// want are entries expected, by name: type, stored kind and codec,
		// and for directories the file count.
		want map[string]inspect.Entry
		// n is how many entries, -1 if not checked.
		n int
	}{
		{"/vitess/global", false, map[string]inspect.Entry{
			"cells/":            {Dir: true, Files: 2},
			"cells_aliases/":    {Dir: true, Files: 1},
			"keyspaces/":        {Dir: true},
			"RoutingRules":      {Type: "vschema.RoutingRules", Stored: &inspect.Stored{Kind: "inline"}},
			"ShardRoutingRules": {Type: "vschema.ShardRoutingRules", Stored: &inspect.Stored{Kind: "inline"}},
			"MirrorRules":       {Type: "vschema.MirrorRules", Stored: &inspect.Stored{Kind: "inline"}},
			"routing_rules/":    {Dir: true, Files: 1},
			"ExternalClusters/": {Dir: true, Files: 1},
		}, -1},
		{"/vitess/zone1", false, map[string]inspect.Entry{
			"SrvVSchema": {Type: "vschema.SrvVSchema", Size: srv2Size, Version: fx.v2, Stored: &inspect.Stored{Kind: "blobs", Codec: "srvvschema"}},
			"keyspaces/": {Dir: true, Files: 2}, // SrvKeyspace, ShardReplication
			"tablets/":   {Dir: true, Files: 1},
		}, 3},
		{"/vitess/zone1", true, map[string]inspect.Entry{
			"SrvVSchema":                                     {Type: "vschema.SrvVSchema", Size: srv2Size, Version: fx.v2},
			"keyspaces/commerce/SrvKeyspace":                 {Type: "topodata.SrvKeyspace"},
			"keyspaces/commerce/shards/-80/ShardReplication": {Type: "topodata.ShardReplication"},
			"tablets/zone1-0000000100/Tablet":                {Type: "topodata.Tablet", Stored: &inspect.Stored{Kind: "inline"}},
		}, 4},
		{"/vitess/global/routing_rules", true, map[string]inspect.Entry{
			"keyspace/Rules": {Type: "vschema.KeyspaceRoutingRules", Stored: &inspect.Stored{Kind: "blobs", Codec: "chunks"}},
		}, 1},
		{"/", false, map[string]inspect.Entry{"vitess/": {Dir: true}}, 1},
		// A file lists itself.
		{"/vitess/zone2/SrvVSchema", false, map[string]inspect.Entry{
			"SrvVSchema": {Type: "vschema.SrvVSchema", Size: int64(proto.Size(fx.zone2))},
		}, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s recursive=%v", tt.dir, tt.recursive), func(t *testing.T) {
			entries, err := inspect.Ls(ctx, src, tt.dir, tt.recursive)
			if err != nil {
				t.Fatal(err)
			}
			if tt.n >= 0 && len(entries) != tt.n {
				t.Errorf("%d entries, want %d: %+v", len(entries), tt.n, entries)
			}
			got := map[string]inspect.Entry{}
			for _, e := range entries {
				got[e.Name] = e
				if e.Version <= 0 {
					t.Errorf("%s: version %d", e.Name, e.Version)
				}
				if !e.Dir && e.Size <= 0 {
					t.Errorf("%s: size %d", e.Name, e.Size)
				}
			}
			for name, w := range tt.want {
				g, ok := got[name]
				switch {
				case !ok:
					t.Errorf("no entry %q in %v", name, slices.Collect(maps.Keys(got)))
					continue
				case g.Dir != w.Dir || (w.Files != 0 && g.Files != w.Files) || g.Type != w.Type:
					t.Errorf("%s: got dir %v, %d files, type %q; want %v, %d, %q", name, g.Dir, g.Files, g.Type, w.Dir, w.Files, w.Type)
				case w.Size != 0 && g.Size != w.Size:
					t.Errorf("%s: size %d, want %d", name, g.Size, w.Size)
				case w.Version != 0 && g.Version != w.Version:
					t.Errorf("%s: version %d, want %d", name, g.Version, w.Version)
				case w.Stored != nil && (g.Stored.Kind != w.Stored.Kind || g.Stored.Codec != w.Stored.Codec):
					t.Errorf("%s: stored %s, want %s", name, g.Stored, w.Stored)
				}
			}
			var table strings.Builder
			if err := inspect.WriteLs(&table, entries); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(table.String(), "NAME") || strings.Count(table.String(), "\n") != len(entries)+1 {
				t.Errorf("table:\n%s", table.String())
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		_, err := inspect.Ls(ctx, src, "/vitess/nowhere", false)
		if !errors.Is(err, inspect.ErrNotFound) || !strings.Contains(err.Error(), "/vitess/nowhere") {
			t.Fatalf("got %v, want not found naming the path", err)
		}
	})
}

func testGet(t *testing.T, fx *fixture, src inspect.Source) {
	ctx := t.Context()
	for key, want := range fx.written {
		t.Run(key, func(t *testing.T) {
			f, err := inspect.Get(ctx, src, key, 0, inspect.Options{})
			if err != nil {
				t.Fatal(err)
			}
			wantType := string(want.ProtoReflect().Descriptor().FullName())
			if f.Type != wantType || f.Encoding != "json" {
				t.Fatalf("type %q encoding %q, want %q json", f.Type, f.Encoding, wantType)
			}
			got := want.ProtoReflect().New().Interface()
			if err := protojson.Unmarshal(f.Value, got); err != nil {
				t.Fatalf("value is not %s JSON: %v\n%s", wantType, err, f.Value)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("decoded %s differs from what was written", key)
			}
			// Vitess's own decoder for what it knows: proto field names.
			if strings.HasSuffix(key, "/Keyspace") && !strings.Contains(string(f.Value), `"durability_policy"`) {
				t.Errorf("JSON without proto field names:\n%s", f.Value)
			}
			if f.Stored.Size <= 0 || f.Version <= 0 {
				t.Errorf("stored %+v, version %d", f.Stored, f.Version)
			}
			var text strings.Builder
			if err := f.WriteText(&text); err != nil || !strings.Contains(text.String(), "type:     "+wantType) {
				t.Errorf("text (%v):\n%.400s", err, text.String())
			}
		})
	}
	t.Run("shard", func(t *testing.T) {
		// A file the test did not write itself: compared with what Vitess
		// reads through the plugin.
		si, err := fx.ts.GetShard(ctx, "commerce", "80-")
		if err != nil {
			t.Fatal(err)
		}
		f, err := inspect.Get(ctx, src, "/vitess/global/keyspaces/commerce/shards/80-/Shard", 0, inspect.Options{})
		if err != nil {
			t.Fatal(err)
		}
		got := &topodatapb.Shard{}
		if err := protojson.Unmarshal(f.Value, got); err != nil || !proto.Equal(got, si.Shard) {
			t.Fatalf("shard: %v\n%s", err, f.Value)
		}
	})
	t.Run("progress", func(t *testing.T) {
		defer inspect.SetProgressMinBlobs(inspect.SetProgressMinBlobs(10))
		var got []inspect.Progress
		if _, err := inspect.Get(ctx, src, "/vitess/zone1/SrvVSchema", 0, inspect.Options{Progress: func(p inspect.Progress) { got = append(got, p) }}); err != nil {
			t.Fatal(err)
		}
		n := len(encode(t, fx.srv2).Blobs)
		// The start, at most a report a twentieth of the way, the end.
		if len(got) < 2 || len(got) > 23 || got[len(got)-1] != (inspect.Progress{What: "blobs", Total: n, Done: n, Final: true}) {
			t.Fatalf("progress of %d blobs: %+v", n, got)
		}
	})
	t.Run("past version", func(t *testing.T) {
		f, err := inspect.Get(ctx, src, "/vitess/zone1/SrvVSchema", fx.v1, inspect.Options{})
		if err != nil {
			t.Fatal(err)
		}
		got := &vschemapb.SrvVSchema{}
		if err := protojson.Unmarshal(f.Value, got); err != nil || !proto.Equal(got, fx.srv1) {
			t.Fatalf("version %d: %v", fx.v1, err)
		}
	})
	for _, tc := range []struct {
		name    string
		key     string
		version int64
		want    error
	}{
		{"missing file", "/vitess/global/keyspaces/nosuch/Keyspace", 0, inspect.ErrNotFound},
		{"before the file existed", "/vitess/zone1/SrvVSchema", 1, inspect.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := inspect.Get(ctx, src, tc.key, tc.version, inspect.Options{})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("got %v, want %v naming %s", err, tc.want, tc.key)
			}
		})
	}
}

func testManifest(t *testing.T, fx *fixture, src inspect.Source) {
	ctx := t.Context()
	for _, tc := range []struct {
		key      string
		version  int64
		srv      *vschemapb.SrvVSchema
		computed bool
	}{
		{"/vitess/zone1/SrvVSchema", 0, fx.srv2, false},
		{"/vitess/zone1/SrvVSchema", fx.v1, fx.srv1, false},
		{"/vitess/zone2/SrvVSchema", 0, fx.zone2, false},
		{smallSrvVSchemaKey, 0, fx.small, true},
	} {
		t.Run(fmt.Sprintf("%s@%d", tc.key, tc.version), func(t *testing.T) {
			m, err := inspect.ReadManifest(ctx, src, tc.key, tc.version, inspect.Options{})
			if err != nil {
				t.Fatal(err)
			}
			enc := encode(t, tc.srv)
			if m.Root != enc.Root.String() || m.Computed != tc.computed || (!tc.computed && m.Stored.Root != m.Root) {
				t.Errorf("root %s (stored %s, computed %v), want %s", m.Root, m.Stored.Root, m.Computed, enc.Root)
			}
			if m.Size != int64(proto.Size(tc.srv)) || len(m.Keyspaces) != len(tc.srv.Keyspaces) {
				t.Errorf("size %d with %d keyspaces, want %d with %d", m.Size, len(m.Keyspaces), proto.Size(tc.srv), len(tc.srv.Keyspaces))
			}
			var total int64
			for _, b := range enc.Blobs {
				total += int64(len(b))
			}
			if m.Blobs != len(enc.Blobs) || m.BlobBytes != total {
				t.Errorf("%d blobs of %d bytes, want %d of %d", m.Blobs, m.BlobBytes, len(enc.Blobs), total)
			}
			for _, p := range m.Keyspaces {
				e, ok := enc.Manifest.Keyspace(p.Name)
				if !ok || p.Hash != e.Hash.String() || p.Size != e.Size {
					t.Errorf("keyspace %s: piece %s of %d bytes, want %s of %d", p.Name, p.Hash, p.Size, e.Hash, e.Size)
				}
				// The piece is the keyspace's vschema, stored.
				data, err := fx.store.Get(ctx, e.Hash)
				if !tc.computed && (err != nil || int64(len(data)) != p.Size) {
					t.Errorf("keyspace %s: piece in the store: %d bytes, %v", p.Name, len(data), err)
				}
			}
			names := []string{}
			for _, p := range m.Parts {
				names = append(names, p.Name)
			}
			want := []string{"routing_rules", "shard_routing_rules", "mirror_rules"}
			if tc.computed {
				want = want[:1]
			}
			if !slices.Equal(names, want) {
				t.Errorf("parts %v, want %v", names, want)
			}
			var text strings.Builder
			if err := m.WriteText(&text); err != nil || !strings.Contains(text.String(), "ks0003") || !strings.Contains(text.String(), m.Root) {
				t.Errorf("text (%v):\n%.600s", err, text.String())
			}
		})
	}
	t.Run("not a SrvVSchema", func(t *testing.T) {
		_, err := inspect.ReadManifest(ctx, src, "/vitess/global/routing_rules/keyspace/Rules", 0, inspect.Options{})
		if err == nil || !strings.Contains(err.Error(), "not a SrvVSchema") {
			t.Fatalf("got %v", err)
		}
	})
}

// wantDiff computes, from the protos, which keyspaces differ.
func wantDiff(from, to *vschemapb.SrvVSchema) map[string]string {
	out := map[string]string{}
	for name, ks := range from.Keyspaces {
		switch other, ok := to.Keyspaces[name]; {
		case !ok:
			out[name] = "removed"
		case !proto.Equal(ks, other):
			out[name] = "changed"
		}
	}
	for name := range to.Keyspaces {
		if _, ok := from.Keyspaces[name]; !ok {
			out[name] = "added"
		}
	}
	return out
}

func testDiff(t *testing.T, fx *fixture, src inspect.Source) {
	ctx := t.Context()
	z1, z2 := "/vitess/zone1/SrvVSchema", "/vitess/zone2/SrvVSchema"
	tests := []struct {
		name     string
		from, to inspect.Ref
		fromSrv  *vschemapb.SrvVSchema
		toSrv    *vschemapb.SrvVSchema
		want     map[string]string
	}{
		{"one keyspace changed", inspect.Ref{Key: z1, Version: fx.v1}, inspect.Ref{Key: z1}, fx.srv1, fx.srv2, map[string]string{"ks0003": "changed"}},
		{"two versions given", inspect.Ref{Key: z1, Version: fx.v2}, inspect.Ref{Key: z1, Version: fx.v1}, fx.srv2, fx.srv1, map[string]string{"ks0003": "changed"}},
		{"the same", inspect.Ref{Key: z1, Version: fx.v2}, inspect.Ref{Key: z1}, fx.srv2, fx.srv2, map[string]string{}},
		{"two cells", inspect.Ref{Key: z1, Version: fx.v1}, inspect.Ref{Key: z2}, fx.srv1, fx.zone2,
			map[string]string{"ks0001": "removed", "ks0007": "changed", "extra": "added"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if w := wantDiff(tt.fromSrv, tt.toSrv); !mapsEqual(w, tt.want) {
				t.Fatalf("test case: the protos differ in %v", w)
			}
			d, err := inspect.Compare(ctx, src, tt.from, tt.to, inspect.Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, c := range d.Keyspaces {
				got[c.Name] = c.Change
			}
			if !mapsEqual(got, tt.want) {
				t.Errorf("diff %v, want %v", got, tt.want)
			}
			if len(d.Parts) != 0 {
				t.Errorf("parts differ: %+v", d.Parts)
			}
			if d.Unchanged != len(tt.toSrv.Keyspaces)-len(tt.want)+countValue(tt.want, "removed") {
				t.Errorf("%d unchanged", d.Unchanged)
			}
			if d.Empty() != (len(tt.want) == 0) {
				t.Errorf("Empty() = %v", d.Empty())
			}
			var text strings.Builder
			if err := d.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			for name, change := range tt.want {
				if !strings.Contains(text.String(), name) || !strings.Contains(text.String(), change) {
					t.Errorf("text does not show %s %s:\n%s", name, change, text.String())
				}
			}
		})
	}
	t.Run("inline and rules changed", func(t *testing.T) {
		// A SrvVSchema small enough to be stored inline compares with the
		// stored one by the pieces the codec would give it.
		key := smallSrvVSchemaKey
		d, err := inspect.Compare(ctx, src, inspect.Ref{Key: z1}, inspect.Ref{Key: key}, inspect.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !d.To.Computed || len(d.Keyspaces) != len(fx.srv2.Keyspaces)-1 || d.Unchanged != 1 {
			t.Errorf("to computed %v, %d keyspaces differ, %d the same", d.To.Computed, len(d.Keyspaces), d.Unchanged)
		}
		parts := map[string]string{}
		for _, p := range d.Parts {
			parts[p.Name] = p.Change
		}
		if want := map[string]string{"routing_rules": "changed", "shard_routing_rules": "removed", "mirror_rules": "removed"}; !mapsEqual(parts, want) {
			t.Errorf("parts %v, want %v", parts, want)
		}
	})
}

func countValue(m map[string]string, v string) int {
	n := 0
	for _, x := range m {
		if x == v {
			n++
		}
	}
	return n
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func testVersions(t *testing.T, fx *fixture, src inspect.Source) {
	ctx := t.Context()
	vs, err := inspect.Versions(ctx, src, "/vitess/zone1/SrvVSchema")
	if _, ok := src.(inspect.Historian); !ok {
		if !errors.Is(err, inspect.ErrNoHistory) {
			t.Fatalf("through topod: got %v, want ErrNoHistory", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, v := range vs {
		got = append(got, v.Version)
		if v.Current != (v.Version == fx.v2) || v.Stored.Codec != "srvvschema" {
			t.Errorf("version %d: current %v, stored %s", v.Version, v.Current, v.Stored)
		}
	}
	if !slices.Equal(got, []int64{fx.v1, fx.v2}) {
		t.Fatalf("versions %v, want %d and %d", got, fx.v1, fx.v2)
	}
}

// blobSet is every blob the store holds.
func blobSet(t *testing.T, s blobstore.Store) map[content.Hash]bool {
	t.Helper()
	out := map[content.Hash]bool{}
	if err := s.Walk(t.Context(), func(h content.Hash, _ int64, _ time.Time) error {
		out[h] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func unreferenced(u *inspect.Usage) map[string]inspect.Unreferenced {
	out := map[string]inspect.Unreferenced{}
	for _, b := range u.Unreferenced {
		out[b.Hash] = b
	}
	return out
}

// testBlobs: the usage counts every stored blob, the deliberately uploaded
// orphan is the only unreferenced one (the first SrvVSchema's blobs are
// still referenced, by the backend's history), and nothing is deleted.
func testBlobs(t *testing.T, fx *fixture) {
	ctx := t.Context()
	before := blobSet(t, fx.store)
	for _, tc := range []struct {
		name        string
		later       time.Duration
		collectable bool
	}{
		{"just uploaded", 0, false},
		{"past the grace period", 2 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := inspect.Blobs(ctx, fx.backend, fx.store, "test store", inspect.BlobOptions{
				Grace: time.Hour,
				Now:   func() time.Time { return time.Now().Add(tc.later) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if u.Blobs != len(before) || u.Referenced != len(before)-1 || len(u.Unreferenced) != 1 {
				t.Fatalf("%d blobs, %d referenced, %d unreferenced; want %d, %d, 1", u.Blobs, u.Referenced, len(u.Unreferenced), len(before), len(before)-1)
			}
			o := u.Unreferenced[0]
			if o.Hash != fx.orphan.String() || o.Size != 5000 || o.Collectable != tc.collectable || u.UnreferencedBytes != 5000 {
				t.Errorf("unreferenced %+v, want the orphan %s, collectable %v", o, fx.orphan, tc.collectable)
			}
			if age := time.Since(o.StoredAt); age < 0 || age > time.Minute {
				t.Errorf("orphan stored %v ago", age)
			}
			if u.Bytes != u.ReferencedBytes+u.UnreferencedBytes || len(u.Dangling) != 0 {
				t.Errorf("bytes %d = %d referenced + %d unreferenced? dangling %v", u.Bytes, u.ReferencedBytes, u.UnreferencedBytes, u.Dangling)
			}
			var text strings.Builder
			if err := u.WriteText(&text, time.Now()); err != nil || !strings.Contains(text.String(), fx.orphan.String()) {
				t.Errorf("text (%v):\n%s", err, text.String())
			}
		})
	}
	if after := blobSet(t, fx.store); len(after) != len(before) {
		t.Fatalf("the store held %d blobs, now %d", len(before), len(after))
	}
	for _, srv := range []*vschemapb.SrvVSchema{fx.srv1, fx.srv2, fx.zone2} {
		for h := range encode(t, srv).Blobs {
			if !before[h] {
				t.Errorf("blob %s of a SrvVSchema written is not stored", h)
			}
		}
	}
}

// testHistoryGone: once the backend no longer holds the first version
// (etcd compacted; bolt keeps 20 superseded versions a key), it cannot be
// read or compared, and the blobs only it referred to are unreferenced.
func testHistoryGone(t *testing.T, fx *fixture) {
	ctx := t.Context()
	key := "/vitess/zone1/SrvVSchema"
	switch fx.kind {
	case "etcd":
		rev, err := fx.etcd.Revision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := fx.etcd.Compact(ctx, rev); err != nil {
			t.Fatal(err)
		}
	case "bolt":
		srv := proto.Clone(fx.srv2).(*vschemapb.SrvVSchema)
		for i := range 21 {
			srv.Keyspaces["ks0005"].Tables[fmt.Sprintf("churn_%d", i)] = &vschemapb.Table{}
			fx.updateSrvVSchema(t, "zone1", srv)
		}
	}
	for _, s := range fx.sources(t) {
		t.Run(s.name, func(t *testing.T) {
			_, err := inspect.Get(ctx, s.src, key, fx.v1, inspect.Options{})
			if !errors.Is(err, inspect.ErrVersionGone) || !strings.Contains(err.Error(), key) {
				t.Errorf("get version %d: %v, want ErrVersionGone naming the path", fx.v1, err)
			}
			_, err = inspect.Compare(ctx, s.src, inspect.Ref{Key: key, Version: fx.v1}, inspect.Ref{Key: key}, inspect.Options{})
			if !errors.Is(err, inspect.ErrVersionGone) {
				t.Errorf("diff from version %d: %v, want ErrVersionGone", fx.v1, err)
			}
		})
	}
	u, err := inspect.Blobs(ctx, fx.backend, fx.store, "test store", inspect.BlobOptions{})
	if err != nil {
		t.Fatal(err)
	}
	un := unreferenced(u)
	root1 := encode(t, fx.srv1).Root.String()
	if _, ok := un[root1]; !ok {
		t.Errorf("version %d's root %s is not reported unreferenced (%d are)", fx.v1, root1, len(un))
	}
	if _, ok := un[fx.orphan.String()]; !ok {
		t.Errorf("the orphan is not reported unreferenced")
	}
}

// TestUnreachable: a topod that is not there is an error naming its
// address.
func TestUnreachable(t *testing.T) {
	ln := "127.0.0.1:1"
	tp, err := inspect.DialTopod(ln, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = inspect.Get(ctx, tp, "/vitess/global/keyspaces/commerce/Keyspace", 0, inspect.Options{})
	if err == nil || !strings.Contains(err.Error(), "topod at "+ln) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("got %v, want unreachable naming %s", err, ln)
	}
}

// TestDecodeUnknown: files that are not Vitess protos are shown as text
// or base64; a file of a Vitess type whose contents do not decode is shown
// raw with an error.
func TestDecodeUnknown(t *testing.T) {
	dir := t.TempDir()
	b, err := boltkv.Open(filepath.Join(dir, "topo.db"), boltkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := fileblob.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for key, value := range map[string]string{
		"/vitess/global/metadata/owner":         "team-db",
		"/vitess/global/bin":                    "\xff\xfe\x00",
		"/vitess/global/keyspaces/bad/Keyspace": "\xff\xff\xff",
	} {
		if _, err := b.Update(ctx, key, []byte(value), 0); err != nil {
			t.Fatal(err)
		}
	}
	src := inspect.NewDirect(b, s, "test")
	for _, tc := range []struct {
		key, encoding, value string
		err                  bool
	}{
		{"/vitess/global/metadata/owner", "text", `"team-db"`, false},
		{"/vitess/global/bin", "base64", `"//4A"`, false},
		{"/vitess/global/keyspaces/bad/Keyspace", "base64", `"////"`, true},
	} {
		f, err := inspect.Get(ctx, src, tc.key, 0, inspect.Options{})
		if f == nil || f.Encoding != tc.encoding || string(f.Value) != tc.value || (err != nil) != tc.err {
			t.Errorf("%s: %+v, %v", tc.key, f, err)
		}
		if tc.err && !errors.Is(err, inspect.ErrUndecodable) {
			t.Errorf("%s: %v, want ErrUndecodable", tc.key, err)
		}
	}
	var out strings.Builder
	if err := inspect.WriteJSON(&out, map[string]any{"a": json.RawMessage(`{"b":1}`)}); err != nil || !strings.Contains(out.String(), "\"b\": 1") {
		t.Errorf("WriteJSON: %v %s", err, out.String())
	}
}

// TestReadOnlyStore: the store Blobs hands the collector refuses every
// write and leaves the store as it was.
func TestReadOnlyStore(t *testing.T) {
	ctx := t.Context()
	s, err := fileblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h, data := blobtest.Blob(1, 100)
	if err := s.Put(ctx, h, data); err != nil {
		t.Fatal(err)
	}
	ro := inspect.ReadOnlyStore(s)
	h2, data2 := blobtest.Blob(2, 100)
	for name, err := range map[string]error{
		"Put":     ro.Put(ctx, h2, data2),
		"Delete":  ro.Delete(ctx, h),
		"PutMeta": ro.PutMeta(ctx, "owner.json", []byte("{}"), ""),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if deleted, err := ro.DeleteIfOlder(ctx, h, time.Now().Add(time.Hour)); deleted || err == nil {
		t.Errorf("DeleteIfOlder: %v, %v", deleted, err)
	}
	if _, err := ro.Refresh(ctx, []content.Hash{h}, time.Now().Add(time.Hour)); err == nil {
		t.Errorf("Refresh: no error")
	}
	if got, err := ro.Get(ctx, h); err != nil || string(got) != string(data) {
		t.Errorf("Get: %v", err)
	}
	if set := blobSet(t, s); len(set) != 1 || !set[h] {
		t.Errorf("the store holds %v", set)
	}
	if _, _, err := s.GetMeta(ctx, "owner.json"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("GetMeta: %v, want none", err)
	}
}
