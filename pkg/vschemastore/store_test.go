package vschemastore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// storeSetup is one topology and how the Store reaches its cells.
type storeSetup struct {
	name string
	kind vschematest.Kind
	fast bool // the topod fast path (record-level access)
}

var storeSetups = []storeSetup{
	{"topod-bolt", vschematest.Kinds[0], false},
	{"topod-bolt-fast", vschematest.Kinds[0], true},
	{"topod-etcd", vschematest.Kinds[1], false},
	{"topod-etcd-fast", vschematest.Kinds[1], true},
	{"etcd2", vschematest.Kinds[2], false},
}

func openStore(t testing.TB, topo *vschematest.Topology, fast bool) *vschemastore.Store {
	t.Helper()
	var opts vschemastore.StoreOptions
	if fast {
		opts.RecordConn = topo.RecordConns(t)
	}
	s, err := vschemastore.NewStore(topo.TS, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loadProfile creates the keyspaces of p and applies their vschemas and
// routing rules through s, in batches.
func loadProfile(t testing.TB, ctx context.Context, tp *vschematest.Topology, s *vschemastore.Store, p jd.Profile, batch int) {
	t.Helper()
	names := make([]string, p.Keyspaces)
	for i := range names {
		names[i] = p.KeyspaceName(i)
	}
	tp.CreateKeyspaces(t, names...)
	// Keyspaces holding sequences and reference sources first.
	var changes []vschemastore.Change
	for _, level := range vschematest.ProfileLevels(p) {
		for _, i := range level {
			name, ks := p.Keyspace(i)
			changes = append(changes, vschemastore.Change{Keyspace: name, VSchema: ks})
			if len(changes) == batch {
				apply(t, ctx, s, changes...)
				changes = nil
			}
		}
		if len(changes) > 0 {
			apply(t, ctx, s, changes...)
			changes = nil
		}
	}
	if _, err := s.PutRules(ctx, vschemastore.RoutingRules, p.RoutingRules(), "", false); err != nil {
		t.Fatalf("PutRules: %v", err)
	}
}

func apply(t testing.TB, ctx context.Context, s *vschemastore.Store, changes ...vschemastore.Change) *vschemastore.ApplyResult {
	t.Helper()
	res, err := s.Apply(ctx, changes, vschemastore.ApplyOptions{})
	if err != nil {
		t.Fatalf("Apply(%s...): %v", changes[0].Keyspace, err)
	}
	return res
}

// TestStoreApply applies, changes, deletes and rolls back vschemas on every
// topology, and checks after each step that the cells hold what Vitess's
// RebuildSrvVSchema would write.
func TestStoreApply(t *testing.T) {
	for _, setup := range storeSetups {
		t.Run(setup.name, func(t *testing.T) {
			ctx := t.Context()
			tp := setup.kind.Start(t, vschematest.Options{})
			s := openStore(t, tp, setup.fast)
			p := jd.JD().Sized(40)
			loadProfile(t, ctx, tp, s, p, 16)
			vschematest.AssertCellsAsRebuilt(t, ctx, tp)

			// One keyspace changes.
			name, ks := p.Keyspace(3)
			v1, ver1, err := s.GetKeyspace(ctx, name)
			if err != nil || !proto.Equal(v1, ks) {
				t.Fatalf("GetKeyspace = %v, %v", v1, err)
			}
			changed := proto.Clone(ks).(*vschemapb.Keyspace)
			changed.Tables["added_table"] = &vschemapb.Table{}
			if changed.Sharded {
				changed.Tables["added_table"].ColumnVindexes = []*vschemapb.ColumnVindex{{Column: "id", Name: "hash"}}
			}
			res := apply(t, ctx, s, vschemastore.Change{Keyspace: name, VSchema: changed, IfMatch: ver1})
			kr := res.Keyspaces[0]
			if !kr.Changed || !kr.Written || kr.OldVersion != ver1 || kr.NewVersion == ver1 || kr.Diff.TablesAdded != 1 {
				t.Fatalf("apply result %+v (diff %+v)", kr, kr.Diff)
			}
			for _, c := range res.Cells {
				want := vschemastore.ModeSplice
				if setup.fast {
					want = vschemastore.ModeManifest
				}
				if c.Mode != want || c.Error != "" {
					t.Errorf("cell %+v, want mode %s", c, want)
				}
			}
			for _, cell := range tp.Cells {
				got, err := s.GetCellKeyspace(ctx, cell, name)
				if err != nil || !proto.Equal(got, changed) {
					t.Errorf("cell %s serves %s = %v, %v", cell, name, got, err)
				}
			}
			vschematest.AssertCellsAsRebuilt(t, ctx, tp)

			// Applying the same again writes nothing.
			res = apply(t, ctx, s, vschemastore.Change{Keyspace: name, VSchema: changed})
			if res.Keyspaces[0].Changed || res.Keyspaces[0].Written {
				t.Errorf("re-apply: %+v", res.Keyspaces[0])
			}
			for _, c := range res.Cells {
				if c.Mode != vschemastore.ModeUnchanged {
					t.Errorf("re-apply: cell %+v", c)
				}
			}

			// The stale version is refused, and nothing changes.
			_, err = s.Apply(ctx, []vschemastore.Change{{Keyspace: name, VSchema: ks, IfMatch: ver1}}, vschemastore.ApplyOptions{})
			if !errors.Is(err, vschemastore.ErrVersionMismatch) {
				t.Fatalf("stale If-Match: %v", err)
			}
			if cur, _, _ := s.GetKeyspace(ctx, name); !proto.Equal(cur, changed) {
				t.Fatal("a refused write changed the vschema")
			}

			// A dry run reports the diff and writes nothing.
			res, err = s.Apply(ctx, []vschemastore.Change{{Keyspace: name, VSchema: ks}}, vschemastore.ApplyOptions{DryRun: true})
			if err != nil || !res.DryRun || res.Keyspaces[0].Diff.TablesRemoved != 1 || res.Keyspaces[0].Written || res.Cells != nil {
				t.Fatalf("dry run: %+v, %v", res, err)
			}
			if cur, _, _ := s.GetKeyspace(ctx, name); !proto.Equal(cur, changed) {
				t.Fatal("a dry run changed the vschema")
			}

			// History: the old version is still there, and rolling back
			// to it is an apply of it.
			old, err := s.GetKeyspaceAt(ctx, name, ver1)
			if err != nil || !proto.Equal(old, ks) {
				t.Fatalf("GetKeyspaceAt(%s) = %v, %v", ver1, old, err)
			}
			apply(t, ctx, s, vschemastore.Change{Keyspace: name, VSchema: old})
			vschematest.AssertCellsAsRebuilt(t, ctx, tp)

			// Delete: the keyspace still exists, so it serves an empty
			// vschema, as RebuildSrvVSchema has it.
			res = apply(t, ctx, s, vschemastore.Change{Keyspace: name})
			if !res.Keyspaces[0].Diff.Deleted {
				t.Errorf("delete diff %+v", res.Keyspaces[0].Diff)
			}
			if _, _, err := s.GetKeyspace(ctx, name); !errors.Is(err, vschemastore.ErrNotFound) {
				t.Fatalf("GetKeyspace after delete: %v", err)
			}
			vschematest.AssertCellsAsRebuilt(t, ctx, tp)
			if _, err := s.Apply(ctx, []vschemastore.Change{{Keyspace: name}}, vschemastore.ApplyOptions{}); !errors.Is(err, vschemastore.ErrNotFound) {
				t.Errorf("deleting again: %v", err)
			}
		})
	}
}

// TestStoreRules writes each kind of rules and checks the cells.
func TestStoreRules(t *testing.T) {
	for _, setup := range storeSetups {
		t.Run(setup.name, func(t *testing.T) {
			ctx := t.Context()
			tp := setup.kind.Start(t, vschematest.Options{})
			s := openStore(t, tp, setup.fast)
			p := jd.JD().Sized(12)
			loadProfile(t, ctx, tp, s, p, 100)
			// Two unsharded keyspaces: vtgate resolves any table name in one.
			var unsharded []string
			for i := range p.Keyspaces {
				if p.ShardCount(i) == 1 {
					unsharded = append(unsharded, p.KeyspaceName(i))
				}
			}
			a, b := unsharded[0], unsharded[1]
			table := "some_table"
			rules := []struct {
				kind  vschemastore.RulesKind
				value proto.Message
			}{
				{vschemastore.ShardRoutingRules, &vschemapb.ShardRoutingRules{Rules: []*vschemapb.ShardRoutingRule{{FromKeyspace: a, ToKeyspace: b, Shard: "-"}}}},
				{vschemastore.KeyspaceRoutingRules, &vschemapb.KeyspaceRoutingRules{Rules: []*vschemapb.KeyspaceRoutingRule{{FromKeyspace: "alias", ToKeyspace: b}}}},
				{vschemastore.MirrorRules, &vschemapb.MirrorRules{Rules: []*vschemapb.MirrorRule{{FromTable: a + "." + table, ToTable: b + "." + table, Percent: 50}}}},
				{vschemastore.RoutingRules, &vschemapb.RoutingRules{Rules: []*vschemapb.RoutingRule{{FromTable: "moved", ToTables: []string{a + "." + table}}}}},
				{vschemastore.RoutingRules, &vschemapb.RoutingRules{}}, // deletes the file
				{vschemastore.KeyspaceRoutingRules, &vschemapb.KeyspaceRoutingRules{}},
			}
			for _, r := range rules {
				res, err := s.PutRules(ctx, r.kind, r.value, "", false)
				if err != nil {
					t.Fatalf("PutRules(%s): %v", r.kind, err)
				}
				got, ver, err := s.GetRules(ctx, r.kind)
				if err != nil || !proto.Equal(got, r.value) || ver != res.NewVersion {
					t.Fatalf("GetRules(%s) = %v, %q, %v; want %v, %q", r.kind, got, ver, err, r.value, res.NewVersion)
				}
				vschematest.AssertCellsAsRebuilt(t, ctx, tp)
			}

			// Rules naming a keyspace that does not exist are refused.
			_, err := s.PutRules(ctx, vschemastore.RoutingRules, &vschemapb.RoutingRules{Rules: []*vschemapb.RoutingRule{{FromTable: "x", ToTables: []string{"nosuch.t"}}}}, "", false)
			var verr *vschemastore.ValidationError
			if !errors.As(err, &verr) || verr.Validation.Errors[0].Code != vschemastore.CodeMissingKeyspace {
				t.Fatalf("rules to a missing keyspace: %v", err)
			}
		})
	}
}

// TestStoreConcurrentWriters has writers of one keyspace and of several
// race, in one Store and across two (as two vschemad would): every write
// lands, the last one wins in the global topology and in every cell, and
// the cells are what RebuildSrvVSchema would write.
func TestStoreConcurrentWriters(t *testing.T) {
	for _, setup := range storeSetups {
		t.Run(setup.name, func(t *testing.T) {
			ctx := t.Context()
			tp := setup.kind.Start(t, vschematest.Options{})
			stores := []*vschemastore.Store{openStore(t, tp, setup.fast), openStore(t, tp, setup.fast)}
			// The second store has its own topo.Server, as another process.
			s2, err := vschemastore.NewStore(tp.Open(t), vschemastore.StoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			stores[1] = s2
			p := jd.JD().Sized(8)
			loadProfile(t, ctx, tp, stores[0], p, 100)

			const writers, rounds = 6, 5
			hot := p.KeyspaceName(0) // unsharded: tables need no vindex
			var wg sync.WaitGroup
			var mu sync.Mutex
			versions := map[string]bool{}
			errs := make(chan error, writers*rounds*2)
			for w := range writers {
				wg.Go(func() {
					s := stores[w%2]
					for r := range rounds {
						// Everyone writes the hot keyspace; each also writes
						// one keyspace of its own.
						ks := &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{fmt.Sprintf("w%d_r%d", w, r): {}}}
						res, err := s.Apply(ctx, []vschemastore.Change{{Keyspace: hot, VSchema: ks}}, vschemastore.ApplyOptions{})
						if err != nil {
							errs <- err
							continue
						}
						mu.Lock()
						if v := res.Keyspaces[0].NewVersion; versions[v] {
							errs <- fmt.Errorf("version %s reported by two writes", v)
						} else {
							versions[v] = true
						}
						mu.Unlock()
						own, cur := p.Keyspace(1 + w%(p.Keyspaces-1))
						cur = proto.Clone(cur).(*vschemapb.Keyspace)
						cur.RequireExplicitRouting = r%2 == 0
						if _, err := s.Apply(ctx, []vschemastore.Change{{Keyspace: own, VSchema: cur}}, vschemastore.ApplyOptions{}); err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if len(versions) != writers*rounds {
				t.Errorf("%d distinct versions for %d writes", len(versions), writers*rounds)
			}
			final, _, err := stores[0].GetKeyspace(ctx, hot)
			if err != nil {
				t.Fatal(err)
			}
			for _, cell := range tp.Cells {
				got, err := stores[1].GetCellKeyspace(ctx, cell, hot)
				if err != nil || !proto.Equal(got, final) {
					t.Errorf("cell %s serves %v for %s, the global topology has %v (%v)", cell, got, hot, final, err)
				}
			}
			vschematest.AssertCellsAsRebuilt(t, ctx, tp)
		})
	}
}

// TestStoreRefusals: invalid inputs, missing keyspaces and bad names are
// refused and leave the topology as it was.
func TestStoreRefusals(t *testing.T) {
	ctx := t.Context()
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	s := openStore(t, tp, false)
	p := jd.JD().Sized(6)
	loadProfile(t, ctx, tp, s, p, 100)
	before := tp.Snapshot(t)
	name, ks := p.Keyspace(2)
	bad := proto.Clone(ks).(*vschemapb.Keyspace)
	bad.Vindexes = map[string]*vschemapb.Vindex{"v": {Type: "no_such_type"}}
	cases := []struct {
		name   string
		change vschemastore.Change
		want   error
	}{
		{"unknown vindex type", vschemastore.Change{Keyspace: name, VSchema: bad}, &vschemastore.ValidationError{}},
		{"bad keyspace name", vschemastore.Change{Keyspace: "../x", VSchema: ks}, &vschemastore.ValidationError{}},
		{"keyspace not in the topology", vschemastore.Change{Keyspace: "nosuch", VSchema: ks}, vschemastore.ErrNoKeyspace},
		{"delete of a keyspace without vschema", vschemastore.Change{Keyspace: "nosuch"}, vschemastore.ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Apply(ctx, []vschemastore.Change{c.change}, vschemastore.ApplyOptions{})
			var verr *vschemastore.ValidationError
			if _, want := c.want.(*vschemastore.ValidationError); want && !errors.As(err, &verr) || !want && !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if after := tp.Snapshot(t); !before.Equal(after) {
				t.Fatal("the topology changed")
			}
		})
	}
}

// TestStoreNoCells: on a topology with keyspaces but no cell registered (no
// cells directory in the global topology), every write completes, says no
// cell was updated, and lists none; a cell registered afterwards gets its
// SrvVSchema whole from the next write.
func TestStoreNoCells(t *testing.T) {
	for _, setup := range storeSetups {
		t.Run(setup.name, func(t *testing.T) {
			ctx := t.Context()
			tp := setup.kind.Start(t, vschematest.Options{NoCells: true})
			s := openStore(t, tp, setup.fast)
			tp.CreateKeyspaces(t, "a", "b")
			if cells, err := s.Cells(ctx); err != nil || cells == nil || len(cells) != 0 {
				t.Errorf("Cells() = %#v, %v; want an empty list", cells, err)
			}
			v1 := &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{"t1": {}}}
			v2 := &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{"t1": {}, "t2": {}}}
			vb := &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{"tb": {}}}
			var first string // a's version after the first write
			applyCase := func(changes ...vschemastore.Change) func() (*vschemastore.ApplyResult, error) {
				return func() (*vschemastore.ApplyResult, error) { return s.Apply(ctx, changes, vschemastore.ApplyOptions{}) }
			}
			cases := []struct {
				name    string
				do      func() (*vschemastore.ApplyResult, error)
				want    map[string]*vschemapb.Keyspace // the global topology after (nil: no vschema)
				written []string
			}{
				{"apply", applyCase(vschemastore.Change{Keyspace: "a", VSchema: v1}), map[string]*vschemapb.Keyspace{"a": v1, "b": nil}, []string{"a"}},
				{"batch", applyCase(vschemastore.Change{Keyspace: "a", VSchema: v2}, vschemastore.Change{Keyspace: "b", VSchema: vb}),
					map[string]*vschemapb.Keyspace{"a": v2, "b": vb}, []string{"a", "b"}},
				{"rollback", func() (*vschemastore.ApplyResult, error) {
					old, err := s.GetKeyspaceAt(ctx, "a", first)
					if err != nil {
						return nil, err
					}
					return s.Apply(ctx, []vschemastore.Change{{Keyspace: "a", VSchema: old}}, vschemastore.ApplyOptions{})
				}, map[string]*vschemapb.Keyspace{"a": v1, "b": vb}, []string{"a"}},
				{"delete", applyCase(vschemastore.Change{Keyspace: "b"}), map[string]*vschemapb.Keyspace{"a": v1, "b": nil}, []string{"b"}},
				{"unchanged", applyCase(vschemastore.Change{Keyspace: "a", VSchema: v1}), map[string]*vschemapb.Keyspace{"a": v1, "b": nil}, nil},
			}
			for _, c := range cases {
				res, err := c.do()
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if !res.NoCells || res.Cells == nil || len(res.Cells) != 0 {
					t.Errorf("%s: NoCells %v, Cells %#v; want true and an empty list", c.name, res.NoCells, res.Cells)
				}
				var written []string
				for _, k := range res.Keyspaces {
					if k.Written {
						written = append(written, k.Keyspace)
					}
				}
				if !slices.Equal(written, c.written) {
					t.Errorf("%s: written %v, want %v", c.name, written, c.written)
				}
				if first == "" {
					first = res.Keyspaces[0].NewVersion
				}
				for name, want := range c.want {
					got, _, err := s.GetKeyspace(ctx, name)
					if want == nil && !errors.Is(err, vschemastore.ErrNotFound) || want != nil && (err != nil || !proto.Equal(got, want)) {
						t.Errorf("%s: keyspace %s has %v (%v), want %v", c.name, name, got, err, want)
					}
				}
			}

			// Rules, and a dry run (which lists no cell: it updates none).
			rr := &vschemapb.RoutingRules{Rules: []*vschemapb.RoutingRule{{FromTable: "moved", ToTables: []string{"a.t1"}}}}
			rres, err := s.PutRules(ctx, vschemastore.RoutingRules, rr, "", false)
			if err != nil || !rres.Written || !rres.NoCells || rres.Cells == nil || len(rres.Cells) != 0 {
				t.Fatalf("PutRules: %+v, %v", rres, err)
			}
			if got, _, err := s.GetRules(ctx, vschemastore.RoutingRules); err != nil || !proto.Equal(got, rr) {
				t.Fatalf("GetRules = %v, %v", got, err)
			}
			res, err := s.Apply(ctx, []vschemastore.Change{{Keyspace: "a", VSchema: v2}}, vschemastore.ApplyOptions{DryRun: true})
			if err != nil || res.NoCells || res.Cells != nil {
				t.Fatalf("dry run: %+v, %v", res, err)
			}

			// A cell registered now gets its SrvVSchema whole on the next
			// write, even one that changes nothing.
			tp.AddCell(t, "zone1")
			res, err = s.Apply(ctx, []vschemastore.Change{{Keyspace: "a", VSchema: v1}}, vschemastore.ApplyOptions{})
			if err != nil || res.NoCells || len(res.Cells) != 1 || res.Cells[0].Cell != "zone1" || res.Cells[0].Mode != vschemastore.ModeCreate {
				t.Fatalf("apply after the first cell: %+v, %v", res, err)
			}
			vschematest.AssertCellsAsRebuilt(t, ctx, tp)
			if cells, err := s.Cells(ctx); err != nil || !slices.Equal(cells, []string{"zone1"}) {
				t.Fatalf("Cells() = %v, %v", cells, err)
			}
		})
	}
}

// errInjected is the error of the faults the tests inject.
var errInjected = errors.New("injected fault")

// failOn returns a vschematest.Fault failing op on filePath in cell.
func failOn(cell, filePath string, ops ...string) vschematest.Fault {
	return func(c, op, p string) error {
		if c == cell && p == filePath && slices.Contains(ops, op) {
			return errInjected
		}
		return nil
	}
}

// TestStorePartialWrites: a write that fails after writing part of its
// change says what it wrote (a *PartialError naming the files and their
// versions), and what it wrote stands; one that fails before writing
// anything is no PartialError.
func TestStorePartialWrites(t *testing.T) {
	writes := []string{"Create", "Update", "Delete"}
	for _, kind := range vschematest.Kinds {
		t.Run(kind.Name, func(t *testing.T) {
			ctx := t.Context()
			tp := kind.Start(t, vschematest.Options{})
			tp.CreateKeyspaces(t, "a", "b")
			s, fault := tp.FaultyStore(t)
			ks := func(tables ...string) *vschemapb.Keyspace {
				k := &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{}}
				for _, tb := range tables {
					k.Tables[tb] = &vschemapb.Table{}
				}
				return k
			}
			apply := func(changes ...vschemastore.Change) func() error {
				return func() error { _, err := s.Apply(ctx, changes, vschemastore.ApplyOptions{}); return err }
			}
			putRules := func(rr *vschemapb.RoutingRules) func() error {
				return func() error { _, err := s.PutRules(ctx, vschemastore.RoutingRules, rr, "", false); return err }
			}
			rr := &vschemapb.RoutingRules{Rules: []*vschemapb.RoutingRule{{FromTable: "moved", ToTables: []string{"a.t1"}}}}
			cellError := &vschemastore.CellError{}
			cases := []struct {
				name    string
				setup   func() error // before the fault
				fault   vschematest.Fault
				do      func() error
				written []string // the paths the error names, in order; none: no PartialError
				deleted bool     // the first of them was deleted
				also    error    // the error is this one (errors.Is), or a *CellError if cellError
				want    map[string]*vschemapb.Keyspace
			}{{
				name:    "batch: the second keyspace's write fails",
				fault:   failOn(topo.GlobalCell, "keyspaces/b/VSchema", writes...),
				do:      apply(vschemastore.Change{Keyspace: "a", VSchema: ks("t1")}, vschemastore.Change{Keyspace: "b", VSchema: ks("tb")}),
				written: []string{"keyspaces/a/VSchema"}, also: errInjected,
				want: map[string]*vschemapb.Keyspace{"a": ks("t1"), "b": nil},
			}, {
				name:  "batch: the first keyspace's write fails",
				fault: failOn(topo.GlobalCell, "keyspaces/a/VSchema", writes...),
				do:    apply(vschemastore.Change{Keyspace: "a", VSchema: ks("t2")}, vschemastore.Change{Keyspace: "b", VSchema: ks("tb")}),
				also:  errInjected,
				want:  map[string]*vschemapb.Keyspace{"a": ks("t1"), "b": nil},
			}, {
				name:    "apply: the cells cannot be listed",
				fault:   failOn(topo.GlobalCell, topo.CellsPath, "ListDir"),
				do:      apply(vschemastore.Change{Keyspace: "a", VSchema: ks("t1", "t2")}),
				written: []string{"keyspaces/a/VSchema"}, also: errInjected,
				want: map[string]*vschemapb.Keyspace{"a": ks("t1", "t2")},
			}, {
				name:    "apply: a cell's SrvVSchema cannot be written",
				fault:   failOn("zone2", topo.SrvVSchemaFile, writes...),
				do:      apply(vschemastore.Change{Keyspace: "b", VSchema: ks("tb")}),
				written: []string{"keyspaces/b/VSchema"}, also: cellError,
				want: map[string]*vschemapb.Keyspace{"b": ks("tb")},
			}, {
				name:    "delete: the cells cannot be listed",
				fault:   failOn(topo.GlobalCell, topo.CellsPath, "ListDir"),
				do:      apply(vschemastore.Change{Keyspace: "b"}),
				written: []string{"keyspaces/b/VSchema"}, deleted: true, also: errInjected,
				want: map[string]*vschemapb.Keyspace{"b": nil},
			}, {
				name:  "unchanged: the cells cannot be listed",
				fault: failOn(topo.GlobalCell, topo.CellsPath, "ListDir"),
				do:    apply(vschemastore.Change{Keyspace: "a", VSchema: ks("t1", "t2")}),
				also:  errInjected,
				want:  map[string]*vschemapb.Keyspace{"a": ks("t1", "t2")},
			}, {
				name:    "rules: the cells cannot be listed",
				fault:   failOn(topo.GlobalCell, topo.CellsPath, "ListDir"),
				do:      putRules(rr),
				written: []string{topo.RoutingRulesFile}, also: errInjected,
			}, {
				name:    "rules deleted: a cell's SrvVSchema cannot be written",
				setup:   putRules(rr),
				fault:   failOn("zone1", topo.SrvVSchemaFile, writes...),
				do:      putRules(&vschemapb.RoutingRules{}),
				written: []string{topo.RoutingRulesFile}, deleted: true, also: cellError,
			}}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					if c.setup != nil {
						if err := c.setup(); err != nil {
							t.Fatalf("setup: %v", err)
						}
					}
					fault.Store(&c.fault)
					err := c.do()
					fault.Store(nil)
					if err == nil {
						t.Fatal("no error")
					}
					if c.also == cellError {
						if cerr := (*vschemastore.CellError)(nil); !errors.As(err, &cerr) {
							t.Errorf("%v: not a CellError", err)
						}
					} else if !errors.Is(err, c.also) {
						t.Errorf("%v: not %v", err, c.also)
					}
					var perr *vschemastore.PartialError
					if !errors.As(err, &perr) {
						if len(c.written) > 0 {
							t.Fatalf("%v: not a PartialError, want one naming %v", err, c.written)
						}
					} else {
						var paths []string
						for _, w := range perr.Writes {
							paths = append(paths, w.Path)
							if !strings.Contains(err.Error(), w.String()) {
								t.Errorf("%q does not name %s", err, w)
							}
						}
						if !slices.Equal(paths, c.written) || perr.Writes[0].Deleted != c.deleted || (perr.Writes[0].Version == "") != c.deleted {
							t.Fatalf("%v: writes %+v, want %v (deleted %v)", err, perr.Writes, c.written, c.deleted)
						}
						if !strings.Contains(err.Error(), "already written to the global topology, and not undone") {
							t.Errorf("%q does not say what was written", err)
						}
					}
					for name, want := range c.want {
						got, _, err := s.GetKeyspace(ctx, name)
						if want == nil && !errors.Is(err, vschemastore.ErrNotFound) || want != nil && (err != nil || !proto.Equal(got, want)) {
							t.Errorf("keyspace %s has %v (%v), want %v", name, got, err, want)
						}
					}
				})
			}
			// Rebuilding the cells repairs what the faults left behind.
			for _, cell := range tp.Cells {
				if _, err := s.RebuildCell(ctx, cell); err != nil {
					t.Fatal(err)
				}
			}
			vschematest.AssertCellsAsRebuilt(t, ctx, tp)
		})
	}
}
