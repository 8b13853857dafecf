package migrate_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"
	_ "vitess.io/vitess/go/vt/topo/etcd2topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/jdtopo"
	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/migrate"
	_ "github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/toposerver"
)

// profile is the test topology: 20 keyspaces of the JD profile on 2 cells.
func profile() jd.Profile {
	p := jd.JD().Sized(20)
	p.Cells = 2
	return p
}

func open(t *testing.T, impl, addr, root string) *topo.Server {
	t.Helper()
	ts, err := topo.OpenServer(impl, addr, root)
	if err != nil {
		t.Fatalf("open %s %s %s: %v", impl, addr, root, err)
	}
	t.Cleanup(ts.Close)
	return ts
}

// cancelAfter returns a progress callback that cancels after n files.
func cancelAfter(n int, cancel context.CancelFunc) func(migrate.Progress) {
	return func(p migrate.Progress) {
		if p.Done >= n {
			cancel()
		}
	}
}

// TestMigrate builds a topology through stock etcd2, migrates it into topod
// (interrupted, then resumed), verifies it, migrates it again (nothing to
// copy), repairs a destination change, and migrates it back into a fresh
// etcd2 root; a SrvVSchema over etcd's request limit is then reported by
// path while the rest is copied.
func TestMigrate(t *testing.T) {
	vschematest.QuietVitessLogs()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	p := profile()

	etcd := harness.StartEtcd(t, 1)
	etcdAddr := strings.TrimPrefix(etcd.Endpoint(0), "http://")
	src := open(t, "etcd2", etcdAddr, "/etcd2/global")
	if err := jdtopo.CreateCells(ctx, src, p, etcdAddr, "/etcd2"); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := jdtopo.Write(ctx, src, p); err != nil {
		t.Fatal(err)
	}
	t.Logf("source topology written through etcd2 in %v", time.Since(begin).Round(time.Millisecond))

	backend, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	topod := harness.StartTopod(t, backend, toposerver.Options{})
	dst := open(t, "topod", topod.Addr, "/vitess/global")
	opts := migrate.Options{CellAddress: topod.Addr, CellRootPrefix: migrate.DefaultCellRootPrefix("/vitess/global"), Concurrency: 8}

	// Interrupted a third of the way, then resumed.
	icx, icancel := context.WithCancel(ctx)
	interrupted := opts
	interrupted.Progress = cancelAfter(150, icancel)
	r, err := migrate.Copy(icx, src, dst, interrupted)
	icancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted copy: %v, want context.Canceled", err)
	}
	t.Logf("interrupted: %s", r.Summary())
	first := r.Created

	begin = time.Now()
	r, err = migrate.Copy(ctx, src, dst, opts)
	if err != nil {
		t.Fatalf("copy: %v (%v)", err, r.Failed)
	}
	t.Logf("resumed in %v: %s", time.Since(begin).Round(time.Millisecond), r.Summary())
	if r.Unchanged < first || r.Created == 0 || r.Created+r.Unchanged != r.Files || r.Files < 300 {
		t.Fatalf("resumed copy: %s; want the %d files of the interrupted run unchanged and the rest created", r.Summary(), first)
	}
	verify(ctx, t, src, dst, opts)

	// Typed reads agree too, and cells point at topod.
	for _, cell := range p.CellNames() {
		want, err := src.GetSrvVSchema(ctx, cell)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dst.GetSrvVSchema(ctx, cell)
		if err != nil || !proto.Equal(got, want) || len(got.Keyspaces) != p.Keyspaces {
			t.Fatalf("SrvVSchema of %s through topod: %d keyspaces, err %v; want the source's %d", cell, len(got.GetKeyspaces()), err, len(want.Keyspaces))
		}
		ci, err := dst.GetCellInfo(ctx, cell, true)
		if err != nil || ci.ServerAddress != topod.Addr || ci.Root != "/vitess/"+cell {
			t.Fatalf("destination CellInfo of %s: %v, %v", cell, ci, err)
		}
	}

	// Idempotent: a second run copies nothing.
	r, err = migrate.Copy(ctx, src, dst, opts)
	if err != nil || r.Copied() != 0 || r.Unchanged != r.Files {
		t.Fatalf("second copy: %s, %v; want every file unchanged", r.Summary(), err)
	}

	// A destination change is reported by path, and repaired.
	name, _ := p.KeyspaceRecord(3)
	changeKeyspace(ctx, t, dst, name, "changed")
	diffs, err := migrate.Verify(ctx, src, dst, opts)
	if err != nil || len(diffs) != 1 || diffs[0].File.String() != "global:keyspaces/"+name+"/Keyspace" || !strings.Contains(diffs[0].What, "changed") {
		t.Fatalf("verify after a change: %v, %v; want the one keyspace", diffs, err)
	}
	t.Logf("reported: %s", diffs[0])
	if r, err = migrate.Copy(ctx, src, dst, opts); err != nil || r.Updated != 1 {
		t.Fatalf("repair: %s, %v", r.Summary(), err)
	}
	verify(ctx, t, src, dst, opts)

	// Back into a fresh etcd2 root.
	back := open(t, "etcd2", etcdAddr, "/back/global")
	backOpts := migrate.Options{CellAddress: etcdAddr, CellRootPrefix: "/back"}
	if r, err = migrate.Copy(ctx, dst, back, backOpts); err != nil || r.Created != r.Files {
		t.Fatalf("copy back to etcd2: %s, %v", r.Summary(), err)
	}
	verify(ctx, t, dst, back, backOpts)

	// A cell the destination already has elsewhere is not repointed: its
	// files are skipped, the other cell's copied.
	taken := open(t, "etcd2", etcdAddr, "/taken/global")
	if err := taken.CreateCellInfo(ctx, "zone1", &topodatapb.CellInfo{ServerAddress: etcdAddr, Root: "/elsewhere/zone1"}); err != nil {
		t.Fatal(err)
	}
	r, err = migrate.Copy(ctx, dst, taken, migrate.Options{CellAddress: etcdAddr, CellRootPrefix: "/taken"})
	if err == nil || len(r.Failed) != 2 || r.Failed[0].File.String() != "global:cells/zone1/CellInfo" ||
		!strings.Contains(r.Failed[0].Err.Error(), `already has cell zone1 at root "/elsewhere/zone1"`) || r.Failed[1].File.String() != "zone1:" {
		t.Fatalf("copy onto a destination with cell zone1 elsewhere: %s, %v, %v", r.Summary(), r.Failed, err)
	}
	t.Logf("%s: %v", r.Failed[0].File, r.Failed[0].Err)

	// A destination address for a cell the source does not have is an
	// error before anything is copied.
	typo := open(t, "etcd2", etcdAddr, "/typo/global")
	r, err = migrate.Copy(ctx, dst, typo, migrate.Options{CellAddress: etcdAddr, CellAddresses: map[string]string{"zone9": etcdAddr}, CellRootPrefix: "/typo"})
	if err == nil || r != nil || !strings.Contains(err.Error(), `cell "zone9" has a destination address of its own but is not a cell of the source`) {
		t.Fatalf("copy with an address for an unknown cell: %v, %v", r, err)
	}
	if names, err := typo.GetKeyspaces(ctx); err != nil || len(names) != 0 {
		t.Fatalf("after the refused copy the destination has keyspaces %v (%v)", names, err)
	}

	// A SrvVSchema etcd refuses is reported by path; the rest is copied.
	big := jd.JD().Sized(320).SrvVSchema()
	if err := dst.UpdateSrvVSchema(ctx, "zone1", big); err != nil {
		t.Fatal(err)
	}
	fresh := open(t, "etcd2", etcdAddr, "/fresh/global")
	freshOpts := migrate.Options{CellAddress: etcdAddr, CellRootPrefix: "/fresh"}
	r, err = migrate.Copy(ctx, dst, fresh, freshOpts)
	if err == nil || len(r.Failed) != 1 || r.Failed[0].File.String() != "zone1:SrvVSchema" ||
		!strings.Contains(r.Failed[0].Err.Error(), "too large") || r.Created != r.Files-1 {
		t.Fatalf("copy of a %d-byte SrvVSchema to etcd2: %s, %v, %v; want it alone failed, as too large", proto.Size(big), r.Summary(), r.Failed, err)
	}
	t.Logf("%s: %v", r.Failed[0].File, r.Failed[0].Err)
	diffs, err = migrate.Verify(ctx, dst, fresh, freshOpts)
	if err != nil || len(diffs) != 1 || diffs[0].What != "missing in the destination" {
		t.Fatalf("verify: %v, %v; want the SrvVSchema missing", diffs, err)
	}
}

// changeKeyspace sets the durability policy of keyspace name in ts,
// writing the file as another tool might.
func changeKeyspace(ctx context.Context, t *testing.T, ts *topo.Server, name, policy string) {
	t.Helper()
	conn, err := ts.ConnForCell(ctx, topo.GlobalCell)
	if err != nil {
		t.Fatal(err)
	}
	p := "keyspaces/" + name + "/Keyspace"
	data, version, err := conn.Get(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	ks := &topodatapb.Keyspace{}
	if err := proto.Unmarshal(data, ks); err != nil {
		t.Fatal(err)
	}
	ks.DurabilityPolicy = policy
	if data, err = proto.Marshal(ks); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Update(ctx, p, data, version); err != nil {
		t.Fatal(err)
	}
}

func verify(ctx context.Context, t *testing.T, from, to *topo.Server, opts migrate.Options) {
	t.Helper()
	diffs, err := migrate.Verify(ctx, from, to, opts)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, d := range diffs {
		t.Errorf("difference: %s", d)
	}
	if len(diffs) > 0 {
		t.FailNow()
	}
}

// TestDefaultCellRootPrefix is the parent of the global root.
func TestDefaultCellRootPrefix(t *testing.T) {
	for root, want := range map[string]string{
		"/vitess/global": "/vitess",
		"/global":        "/",
		"vitess/global/": "/vitess",
	} {
		if got := migrate.DefaultCellRootPrefix(root); got != want {
			t.Errorf("DefaultCellRootPrefix(%q) = %q, want %q", root, got, want)
		}
	}
}
