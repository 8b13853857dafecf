package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	vtlog "vitess.io/vitess/go/vt/log"
	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/jdtopo"
	"github.com/topod-io/topod/internal/proc"
	"github.com/topod-io/topod/internal/vtlocal"
	"github.com/topod-io/topod/pkg/migrate"
)

// TestMigrateEtcd2ToTopod builds a topology (2 cells, 20 keyspaces with
// shards, tablets, ShardReplication, VSchemas, routing rules, SrvKeyspaces
// and SrvVSchemas) through stock etcd2 on one etcd, migrates it with
// pkg/migrate (what `topod migrate` runs) into a global bin/topod and one
// bin/topod per cell, each on an etcd of its own,
// verifies it, and starts bin/vtgate with --topo-implementation topod on
// the migrated topology: SHOW VITESS_KEYSPACES lists every keyspace and
// /debug/vschema every table.
func TestMigrateEtcd2ToTopod(t *testing.T) {
	bin := binaries(t, "topod", "vtgate")
	mysqlCLI := mysqlClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	id, work := processUser(t)
	vtlog.SwapLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	testStart := time.Now()
	since := func() time.Duration { return time.Since(testStart).Round(time.Millisecond) }

	// The source: stock etcd2 on its own etcd.
	p := jd.JD().Sized(20)
	p.Cells = 2
	srcEtcd := harness.StartEtcd(t, 1)
	srcAddr := strings.Join(trimScheme(srcEtcd.Endpoints()), ",")
	src, err := topo.OpenServer("etcd2", srcAddr, "/vitess/global")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := jdtopo.CreateCells(ctx, src, p, srcAddr, "/vitess"); err != nil {
		t.Fatal(err)
	}
	if err := jdtopo.Write(ctx, src, p); err != nil {
		t.Fatal(err)
	}

	t.Logf("%v: source topology written through etcd2", since())

	// The destination: one store per cell, as the seed's deployments run
	// it: bin/topod on an etcd of its own for the global topology and for
	// each cell.
	ports, err := freeport.Pick(3 + p.Cells)
	if err != nil {
		t.Fatal(err)
	}
	topodAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	startTopodOnEtcd(t, ctx, bin["topod"], "topod", topodAddr, harness.StartEtcd(t, 1), work, nil)
	cellAddrs := map[string]string{}
	for i := range p.Cells {
		cell := p.CellName(i)
		cellAddrs[cell] = "127.0.0.1:" + strconv.Itoa(ports[3+i])
		startTopodOnEtcd(t, ctx, bin["topod"], "topod-"+cell, cellAddrs[cell], harness.StartEtcd(t, 1), work, nil)
	}
	dst, err := topo.OpenServer("topod", topodAddr, globalRoot)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()

	opts := migrate.Options{CellAddress: topodAddr, CellAddresses: cellAddrs, CellRootPrefix: migrate.DefaultCellRootPrefix(globalRoot)}
	begin := time.Now()
	r, err := migrate.Copy(ctx, src, dst, opts)
	if err != nil {
		t.Fatalf("migrate: %v (%v)", err, r.Failed)
	}
	t.Logf("migrated in %v: %s", time.Since(begin).Round(time.Millisecond), r.Summary())
	diffs, err := migrate.Verify(ctx, src, dst, opts)
	if err != nil || len(diffs) != 0 {
		t.Fatalf("verify: %v, %v", diffs, err)
	}

	t.Logf("%v: verified, no difference", since())
	for cell, addr := range cellAddrs {
		ci, err := dst.GetCellInfo(ctx, cell, true)
		if err != nil || ci.ServerAddress != addr {
			t.Fatalf("destination CellInfo of %s: %v (%v), want its own topod at %s", cell, ci, err, addr)
		}
		if _, err := dst.GetSrvVSchema(ctx, cell); err != nil {
			t.Fatalf("the SrvVSchema of %s in its own topod: %v", cell, err)
		}
	}

	// vtgate on the migrated topology.
	tp := vtlocal.Topo{Implementation: "topod", Address: topodAddr, Root: globalRoot}
	vtgateHTTP, vtgateMySQL := ports[1], ports[2]
	vtgate := start(t, proc.Spec{
		Name:   "vtgate",
		Binary: bin["vtgate"],
		// The generated tablets do not run (their hosts do not resolve):
		// do not wait for them, nor for their schemas (5 s a keyspace).
		Args: append(vtlocal.VtgateArgs(tp, p.CellName(0), vtgateHTTP, vtgateMySQL),
			"--gateway-initial-tablet-timeout", "1s", "--schema-change-signal=false"),
		Log:  filepath.Join(work, "logs", "migrate-vtgate.log"),
		Dir:  work,
		User: id,
	})
	if err := vtgate.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/status", vtgateHTTP)); err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: vtgate up", since())
	names := make([]string, p.Keyspaces)
	for i := range names {
		names[i] = p.KeyspaceName(i)
	}
	want := p.SrvVSchema()
	vschemaURL := fmt.Sprintf("http://127.0.0.1:%d/debug/vschema", vtgateHTTP)
	waitFor(ctx, t, vtgate, 30*time.Second, "vtgate to serve the migrated keyspaces", func() error {
		if err := servesTables(ctx, vschemaURL, want); err != nil {
			return err
		}
		ks, err := showKeyspaces(ctx, mysqlCLI, vtgateMySQL)
		if err != nil {
			return err
		}
		if !slices.Equal(ks, names) {
			return fmt.Errorf("SHOW VITESS_KEYSPACES lists %v, want %v", ks, names)
		}
		return nil
	})
	t.Logf("%v: vtgate on the migrated topology lists all %d keyspaces in SHOW VITESS_KEYSPACES and serves every table", since(), p.Keyspaces)
}
