package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"vitess.io/vitess/go/vt/topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vtctldatapb "vitess.io/vitess/go/vt/proto/vtctldata"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/proc"
	"github.com/topod-io/topod/internal/vtlocal"
)

const (
	// outageFor is how long the test keeps querying vtgate while topod or
	// etcd is down.
	outageFor = 5 * time.Second
	// writeWait is the deadline of a topology write during an outage.
	writeWait = 5 * time.Second
)

// TestTabletsOnTopod runs the sharded keyspace commerce (shards -80 and
// 80-, a primary and a replica each) on real tablets: MariaDB started by
// bin/mysqlctl behind bin/vttablet, every Vitess process with
// --topo-implementation topod on bin/topod over a real etcd. It checks that
//   - tablets register (tablet and shard records), vtgate discovers them
//     (SHOW VITESS_TABLETS), RebuildKeyspaceGraph builds the SrvKeyspace
//     and queries route by vindex to both shards, on primaries and @replica;
//   - PlannedReparentShard takes the shard lock through topod (it waits
//     while the test holds it) and releases it;
//   - a vttablet restart re-registers and vtgate sees it serving again;
//   - with topod killed (SIGKILL), and separately with etcd stopped behind
//     a live topod, vtgate keeps serving queries, a topology write fails
//     with an error, and once the store is back nothing is lost and a new
//     vschema change reaches vtgate.
//
// Replicas are pointed at their primary by the test (CHANGE MASTER ...
// MASTER_USE_GTID=current_pos): stock Vitess cannot do it on MariaDB
// (README, "Tablets on MariaDB").
func TestTabletsOnTopod(t *testing.T) {
	bin := binaries(t, "topod", "vtctld", "vtgate", "vttablet", "mysqlctl")
	mysqlCLI := mysqlClient(t)
	mysqlRoot, err := vtlocal.FindMySQL()
	if err != nil {
		t.Fatalf("%v (make test installs it)", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	id, work := processUser(t)
	testStart := time.Now()
	since := func() time.Duration { return time.Since(testStart).Round(time.Millisecond) }

	ports, err := freeport.Pick(1 + 4*3)
	if err != nil {
		t.Fatal(err)
	}
	topodAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	etcd := harness.StartEtcd(t, 1)
	// As in deploy/'s prod overlay: each component its own client
	// certificate, topod enforcing the shipped authorization policy.
	guard := newGuard(t, id, work)
	startTopod := func() *harness.TopodProc {
		return startTopodOnEtcd(t, ctx, bin["topod"], "topod", topodAddr, etcd, work, guard)
	}
	topod := startTopod()
	tp := vtlocal.Topo{Implementation: "topod", Address: topodAddr, Root: globalRoot, TLS: guard.clients}
	// vtgate reads its cell's tablets every 2 s instead of every minute,
	// so that it discovers the tablets as they register.
	ts, vt := startVitess(ctx, t, bin, work, id, tp, "/vitess/"+cell, "--tablet-refresh-interval", "2s")
	client := vt.client
	next := 1
	shards := vtlocal.CommerceShards(cell, func(uint32) (int, int, int) {
		next += 3
		return ports[next-3], ports[next-2], ports[next-1]
	})
	tablets := vtlocal.Tablets{
		MySQL: vtlocal.MySQL{Root: filepath.Join(work, "vtdataroot"), VTMySQLRoot: mysqlRoot},
		Topo:  tp, Bin: filepath.Dir(bin["vttablet"]), Logs: filepath.Join(work, "logs"), User: id,
	}
	if err := tablets.Prepare(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: topod, vtctld, vtgate up (as user %s); logs in %s", since(), id.Name, tablets.Logs)

	if _, err := client.CreateKeyspace(ctx, &vtctldatapb.CreateKeyspaceRequest{Name: vtlocal.CommerceKeyspace, DurabilityPolicy: "none"}); err != nil {
		t.Fatalf("CreateKeyspace: %v", err)
	}

	// Every mysqld, two at a time.
	var all []vtlocal.Tablet
	for _, s := range shards {
		all = append(all, s.Primary, s.Replica)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for _, tab := range all {
		g.Go(func() error { return tablets.StartMySQL(gctx, tab) })
	}
	t.Cleanup(func() {
		// After the vttablets have stopped.
		var g errgroup.Group
		for _, tab := range all {
			g.Go(func() error { return tablets.StopMySQL(context.Background(), tab) })
		}
		if err := g.Wait(); err != nil {
			t.Errorf("stop mysqld: %v", err)
		}
	})
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: %d mysqld initialized by mysqlctl", since(), len(all))

	vttablets := map[uint32]*proc.Process{}
	// The vttablets stop first, together, while topod still runs (a
	// vttablet's shutdown waits for the topology); the cleanups stop
	// the rest.
	defer func() {
		var g errgroup.Group
		for _, p := range vttablets {
			g.Go(func() error { p.Stop(10 * time.Second); return nil })
		}
		g.Wait()
	}()
	startTablet := func(tab vtlocal.Tablet) {
		t.Helper()
		p, err := tablets.StartVttablet(ctx, tab)
		if err != nil {
			t.Fatal(err)
		}
		stopAtEnd(t, p)
		vttablets[tab.UID] = p
	}
	// The primaries-to-be first: PlannedReparentShard on a fresh shard
	// then has no replica to repoint (which fails on MariaDB).
	for _, s := range shards {
		startTablet(s.Primary)
	}
	for _, s := range shards {
		rec, err := ts.GetTablet(ctx, s.Primary.Alias())
		if err != nil {
			t.Fatalf("tablet record of %s: %v", s.Primary.Name(), err)
		}
		if rec.Keyspace != vtlocal.CommerceKeyspace || rec.Shard != s.Primary.Shard || rec.Type != topodatapb.TabletType_REPLICA {
			t.Fatalf("tablet record of %s: %s/%s %v", s.Primary.Name(), rec.Keyspace, rec.Shard, rec.Type)
		}
		if _, err := ts.GetShard(ctx, vtlocal.CommerceKeyspace, s.Primary.Shard); err != nil {
			t.Fatalf("shard record %s: %v", s.Primary.Target(), err)
		}
	}
	t.Logf("%v: tablets %s and %s registered (tablet and shard records)", since(), shards[0].Primary.Name(), shards[1].Primary.Name())

	// PlannedReparentShard waits for the shard lock the test holds.
	prs := func(ctx context.Context, s vtlocal.CommerceShard) error {
		_, err := client.PlannedReparentShard(ctx, &vtctldatapb.PlannedReparentShardRequest{
			Keyspace: vtlocal.CommerceKeyspace, Shard: s.Primary.Shard, NewPrimary: s.Primary.Alias(),
		})
		return err
	}
	lockCtx, unlock, err := ts.LockShard(ctx, vtlocal.CommerceKeyspace, shards[1].Primary.Shard, "e2e holds the shard lock")
	if err != nil {
		t.Fatalf("LockShard: %v", err)
	}
	blocked, cancelBlocked := context.WithTimeout(ctx, 3*time.Second)
	err = prs(blocked, shards[1])
	cancelBlocked()
	if err == nil {
		t.Fatalf("PlannedReparentShard %s succeeded while the test held the shard lock", shards[1].Primary.Target())
	}
	if si, err := ts.GetShard(ctx, vtlocal.CommerceKeyspace, shards[1].Primary.Shard); err != nil || si.PrimaryAlias != nil {
		t.Fatalf("shard %s after the PlannedReparentShard that waited for the lock: primary %v (%v), want none", shards[1].Primary.Target(), si.GetPrimaryAlias(), err)
	}
	t.Logf("%v: PlannedReparentShard %s while the test holds the shard lock: %v; the shard has no primary", since(), shards[1].Primary.Target(), err)
	var lockErr error
	if unlock(&lockErr); lockErr != nil || lockCtx.Err() != nil {
		t.Fatalf("unlock: %v (lock context: %v)", lockErr, lockCtx.Err())
	}
	for _, s := range shards {
		begin := time.Now()
		if err := prs(ctx, s); err != nil {
			t.Fatalf("PlannedReparentShard %s: %v", s.Primary.Target(), err)
		}
		t.Logf("%v: PlannedReparentShard %s to %s in %v", since(), s.Primary.Target(), s.Primary.Name(), time.Since(begin).Round(time.Millisecond))
		// The lock is free again.
		_, unlock, err := ts.TryLockShard(ctx, vtlocal.CommerceKeyspace, s.Primary.Shard, "e2e checks PRS released the lock")
		if err != nil {
			t.Fatalf("shard %s still locked after PlannedReparentShard: %v", s.Primary.Target(), err)
		}
		unlock(&lockErr)
		si, err := ts.GetShard(ctx, vtlocal.CommerceKeyspace, s.Primary.Shard)
		if err != nil || !isTablet(si.PrimaryAlias, s.Primary) {
			t.Fatalf("shard record %s after PlannedReparentShard: primary %v (%v), want %s", s.Primary.Target(), si.GetPrimaryAlias(), err, s.Primary.Name())
		}
	}

	// The replicas, pointed at their primaries.
	for _, s := range shards {
		startTablet(s.Replica)
		if err := tablets.Replicate(ctx, s.Replica, s.Primary); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%v: replicas registered and replicating", since())

	// Schema and vschema through vtctld, then the SrvKeyspace.
	if _, err := client.ApplySchema(ctx, &vtctldatapb.ApplySchemaRequest{Keyspace: vtlocal.CommerceKeyspace, Sql: []string{vtlocal.CommerceSchema}}); err != nil {
		t.Fatalf("ApplySchema: %v", err)
	}
	if _, err := client.ApplyVSchema(ctx, &vtctldatapb.ApplyVSchemaRequest{Keyspace: vtlocal.CommerceKeyspace, VSchema: vtlocal.CommerceVSchema()}); err != nil {
		t.Fatalf("ApplyVSchema: %v", err)
	}
	if _, err := client.RebuildKeyspaceGraph(ctx, &vtctldatapb.RebuildKeyspaceGraphRequest{Keyspace: vtlocal.CommerceKeyspace}); err != nil {
		t.Fatalf("RebuildKeyspaceGraph: %v", err)
	}
	sk, err := ts.GetSrvKeyspace(ctx, cell, vtlocal.CommerceKeyspace)
	if err != nil {
		t.Fatalf("SrvKeyspace: %v", err)
	}
	for _, p := range sk.Partitions {
		if len(p.ShardReferences) != len(shards) {
			t.Fatalf("SrvKeyspace partition %v has %d shards, want %d", p.ServedType, len(p.ShardReferences), len(shards))
		}
	}

	// vtgate discovers every tablet and routes by vindex.
	sql := func(db, q string) ([][]string, error) { return mysqlQuery(ctx, mysqlCLI, vt.vtgateMySQL, db, q) }
	serving := func(want map[string]string) func() error {
		return func() error {
			rows, err := sql("", "SHOW VITESS_TABLETS")
			if err != nil {
				return err
			}
			got := map[string]string{}
			for _, r := range rows {
				// Cell Keyspace Shard TabletType State Alias ...
				if len(r) > 5 && r[4] == "SERVING" {
					got[r[5]] = r[3]
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("SHOW VITESS_TABLETS: serving %v, want %v", got, want)
			}
			return nil
		}
	}
	want := map[string]string{}
	for _, s := range shards {
		want[s.Primary.Name()], want[s.Replica.Name()] = "PRIMARY", "REPLICA"
	}
	waitFor(ctx, t, vt.vtgate, 60*time.Second, "vtgate to see every tablet serving", serving(want))
	t.Logf("%v: vtgate lists the 4 tablets SERVING in SHOW VITESS_TABLETS", since())
	var values []string
	for i := 1; i <= 8; i++ {
		values = append(values, fmt.Sprintf("(%d, 'c%d@example.com')", i, i))
	}
	if _, err := sql(vtlocal.CommerceKeyspace, "insert into customer (customer_id, email) values "+strings.Join(values, ", ")); err != nil {
		t.Fatalf("insert: %v", err)
	}
	count := func(db string) (int, error) {
		rows, err := sql(db, "select count(*) from customer")
		if err != nil {
			return 0, err
		}
		if len(rows) != 1 || len(rows[0]) != 1 {
			return 0, fmt.Errorf("select count(*) from %s: %v", db, rows)
		}
		return strconv.Atoi(rows[0][0])
	}
	wantCount := func(db string, n int) func() error {
		return func() error {
			got, err := count(db)
			if err == nil && got != n {
				err = fmt.Errorf("%s has %d rows, want %d", db, got, n)
			}
			return err
		}
	}
	if err := wantCount(vtlocal.CommerceKeyspace, 8)(); err != nil {
		t.Fatal(err)
	}
	perShard := 0
	for _, s := range shards {
		n, err := count(vtlocal.CommerceKeyspace + ":" + s.Primary.Shard)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("no row landed on shard %s", s.Primary.Shard)
		}
		perShard += n
	}
	if perShard != 8 {
		t.Errorf("the shards hold %d rows together, want 8", perShard)
	}
	waitFor(ctx, t, vt.vtgate, 10*time.Second, "the rows on the replicas", wantCount(vtlocal.CommerceKeyspace+"@replica", 8))
	t.Logf("%v: 8 rows inserted through vtgate, spread over both shards, read back on the primaries and @replica", since())
	// vtgate watches the SrvVSchema and, once it routes to commerce, its
	// SrvKeyspace through the plugin (TopodWatches counts the open watches).
	waitFor(ctx, t, vt.vtgate, 30*time.Second, "vtgate to watch the SrvVSchema and commerce's SrvKeyspace", func() error {
		vars, err := get(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/vars", vt.vtgateHTTP))
		if err != nil {
			return err
		}
		var stats struct{ TopodWatches int }
		if err := json.Unmarshal([]byte(vars), &stats); err != nil {
			return fmt.Errorf("vtgate's /debug/vars: %w", err)
		}
		if stats.TopodWatches < 2 {
			return fmt.Errorf("vtgate holds %d topod watches", stats.TopodWatches)
		}
		return nil
	})

	// A vttablet restart re-registers and serves again.
	restarted := shards[1].Replica
	vttablets[restarted.UID].Stop(30 * time.Second)
	delete(want, restarted.Name())
	waitFor(ctx, t, vt.vtgate, 30*time.Second, "vtgate to see "+restarted.Name()+" stopped", serving(want))
	startTablet(restarted)
	want[restarted.Name()] = "REPLICA"
	waitFor(ctx, t, vt.vtgate, 60*time.Second, "vtgate to see "+restarted.Name()+" serving again", serving(want))
	waitFor(ctx, t, vt.vtgate, 10*time.Second, "reads from the restarted replica", wantCount(vtlocal.CommerceKeyspace+":80-@replica", perShardCount(t, count, "80-")))
	t.Logf("%v: vttablet %s restarted, re-registered, serving again", since(), restarted.Name())

	// Outages: vtgate keeps serving from what it has; a topology write
	// fails; once the store is back, nothing is lost and changes flow.
	inserted := 8
	during := func(what string) {
		t.Helper()
		deadline := time.Now().Add(outageFor)
		for time.Now().Before(deadline) {
			inserted++
			if _, err := sql(vtlocal.CommerceKeyspace, fmt.Sprintf("insert into customer (customer_id, email) values (%d, 'x')", inserted)); err != nil {
				t.Fatalf("%s: insert through vtgate: %v", what, err)
			}
			for _, db := range []string{vtlocal.CommerceKeyspace, vtlocal.CommerceKeyspace + "@replica"} {
				if _, err := count(db); err != nil {
					t.Fatalf("%s: select through vtgate from %s: %v", what, db, err)
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		// A file of its own in the global topology, through the plugin, and
		// a vschema change through vtctld: each waits for the store up to
		// its caller's deadline, as with etcd2, then fails.
		conn, err := ts.ConnForCell(ctx, topo.GlobalCell)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, writeWait)
		_, werr := conn.Create(wctx, "e2e/outage-probe", []byte(what))
		cancel()
		wctx, cancel = context.WithTimeout(ctx, writeWait)
		_, ferr := client.ApplyVSchema(wctx, &vtctldatapb.ApplyVSchemaRequest{Keyspace: vtlocal.CommerceKeyspace, VSchema: vtlocal.CommerceVSchema()})
		cancel()
		if !topo.IsErrType(werr, topo.Timeout) || ferr == nil {
			t.Fatalf("%s: topology writes: plugin %v (want a topo timeout); vtctld ApplyVSchema %v (want an error)", what, werr, ferr)
		}
		t.Logf("%v: %s: vtgate served %d inserts and reads for %v; topology writes failed: plugin: %v; vtctld ApplyVSchema: %v",
			since(), what, inserted, outageFor, werr, ferr)
	}
	recovered := func(what, table string) {
		t.Helper()
		for _, tab := range all {
			rec, err := ts.GetTablet(ctx, tab.Alias())
			if err != nil {
				t.Fatalf("after %s: tablet record of %s: %v", what, tab.Name(), err)
			}
			if want := want[tab.Name()]; rec.Type.String() != want {
				t.Fatalf("after %s: %s is %v, want %s", what, tab.Name(), rec.Type, want)
			}
		}
		vs := vtlocal.CommerceVSchema()
		vs.Tables[table] = vs.Tables["customer"]
		begin := time.Now()
		if _, err := client.ApplyVSchema(ctx, &vtctldatapb.ApplyVSchemaRequest{Keyspace: vtlocal.CommerceKeyspace, VSchema: vs}); err != nil {
			t.Fatalf("after %s: ApplyVSchema: %v", what, err)
		}
		waitFor(ctx, t, vt.vtgate, convergeWithin, "vtgate to show table "+table, func() error {
			rows, err := sql(vtlocal.CommerceKeyspace, "SHOW VSCHEMA TABLES")
			if err != nil {
				return err
			}
			if !strings.Contains(fmt.Sprint(rows), table) {
				return fmt.Errorf("SHOW VSCHEMA TABLES: %v", rows)
			}
			return nil
		})
		waitFor(ctx, t, vt.vtgate, 10*time.Second, "every row", wantCount(vtlocal.CommerceKeyspace, inserted))
		t.Logf("%v: after %s: tablet records intact, %d rows, a vschema change reached vtgate %v after ApplyVSchema", since(), what, inserted, time.Since(begin).Round(time.Millisecond))
	}

	topod.Kill()
	during("topod killed (SIGKILL)")
	topod = startTopod()
	recovered("topod's restart", "customer_after_topod")

	etcd.StopMember(0)
	during("etcd stopped behind a live topod")
	if err := etcd.RestartMember(0); err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
	recovered("etcd's restart", "customer_after_etcd")

	if exited, err := vt.vtgate.Exited(); exited {
		t.Fatalf("vtgate exited: %v", err)
	}
	if err := topod.Process().ExitError(); err != nil {
		t.Fatal(err)
	}
}

// isTablet reports whether alias is tablet t's.
func isTablet(alias *topodatapb.TabletAlias, t vtlocal.Tablet) bool {
	return alias != nil && alias.Cell == t.Cell && alias.Uid == t.UID
}

// perShardCount is the number of rows on shard's primary.
func perShardCount(t *testing.T, count func(string) (int, error), shard string) int {
	t.Helper()
	n, err := count(vtlocal.CommerceKeyspace + ":" + shard)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// mysqlQuery runs q with the mysql client at mysqlCLI against vtgate's
// MySQL port, in database db (a keyspace, "keyspace:shard" or
// "keyspace@type"; none when empty), and returns the rows' fields.
func mysqlQuery(ctx context.Context, mysqlCLI string, port int, db, q string) ([][]string, error) {
	args := []string{"-h", "127.0.0.1", "-P", strconv.Itoa(port), "--batch", "--skip-column-names", "-e", q}
	if db != "" {
		args = append(args, "-D", db)
	}
	out, err := exec.CommandContext(ctx, mysqlCLI, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("mysql -D %q -e %q: %v: %s", db, q, err, strings.TrimSpace(string(out)))
	}
	var rows [][]string
	for line := range strings.Lines(string(out)) {
		if line = strings.TrimRight(line, "\n"); line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows, nil
}
