package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	vtctldatapb "vitess.io/vitess/go/vt/proto/vtctldata"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/proc"
	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/internal/vtlocal"
)

// etcdValueCap is the largest value topod may leave in etcd.
const etcdValueCap = 64 << 10

// mixedImpls are the two topo implementations of the mixed fleet: stock
// Vitess's etcd2topo, speaking etcd's v3 API to topod, and the plugin.
var mixedImpls = []string{"etcd2", "topod"}

// TestMixedFleetOnTopod runs stock etcd2 Vitess processes and plugin ones
// side by side on one bin/topod (on a real etcd): the global topology of
// every process and the cell's CellInfo name topod's address, and each
// process reads it with its own --topo-implementation. The keyspace
// commerce has two shards, each with one real tablet (MariaDB behind
// bin/vttablet): -80's vttablet runs etcd2, 80-'s the plugin. A vtctld and
// a vtgate run with each implementation. It checks that
//   - the cell registered through etcd2 reads back through the plugin, and
//     each tablet's record, written through one implementation, through
//     the other;
//   - a shard lock held through one implementation makes the other side's
//     vtctld wait in PlannedReparentShard (its lock request queued behind
//     the test's), and the reparent goes on once the lock is released:
//     held through the plugin, a stock etcd2 vtctld waits on -80; held
//     through etcd2topo, the plugin's vtctld waits on 80-; releasing one
//     lock lets only its own reparent go;
//   - both vtgates list both tablets serving in SHOW VITESS_TABLETS and
//     route rows, inserted through either, to both shards' tablets;
//   - the JD SrvVSchema (1,911 keyspaces, kept by topod in blobs), written
//     through the plugin, reads back whole through stock etcd2topo, and
//     both vtgates list every keyspace in SHOW VITESS_KEYSPACES; a
//     one-keyspace change reaches both (SHOW VSCHEMA TABLES), its delay
//     printed;
//   - no value in etcd, read directly, is over 64 KiB.
func TestMixedFleetOnTopod(t *testing.T) {
	bin := binaries(t, "topod", "vtctld", "vtgate", "vttablet", "mysqlctl", "vschemad")
	mysqlCLI := mysqlClient(t)
	mysqlRoot, err := vtlocal.FindMySQL()
	if err != nil {
		t.Fatalf("%v (make test installs it)", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	id, work := processUser(t)
	testStart := time.Now()
	since := func() time.Duration { return time.Since(testStart).Round(time.Millisecond) }

	ports, err := freeport.Pick(1 + 2*3)
	if err != nil {
		t.Fatal(err)
	}
	port := func() int { p := ports[0]; ports = ports[1:]; return p }
	topodAddr := "127.0.0.1:" + strconv.Itoa(port())
	etcd := harness.StartEtcd(t, 1)
	topod := startTopodOnEtcd(t, ctx, bin["topod"], "topod", topodAddr, etcd, work, nil)

	// The test's own topo.Servers, one per implementation, on topod.
	topos, servers := map[string]vtlocal.Topo{}, map[string]*topo.Server{}
	for _, impl := range mixedImpls {
		topos[impl] = vtlocal.Topo{Implementation: impl, Address: topodAddr, Root: globalRoot}
		ts, err := topo.OpenServer(impl, topodAddr, globalRoot)
		if err != nil {
			t.Fatalf("open the %s topology on topod: %v", impl, err)
		}
		t.Cleanup(ts.Close)
		servers[impl] = ts
	}
	other := func(impl string) string {
		if impl == "etcd2" {
			return "topod"
		}
		return "etcd2"
	}
	// The cell, registered by stock etcd2, as the plugin reads it.
	if err := servers["etcd2"].CreateCellInfo(ctx, cell, &topodatapb.CellInfo{ServerAddress: topodAddr, Root: "/vitess/" + cell}); err != nil {
		t.Fatalf("CreateCellInfo %s through etcd2: %v", cell, err)
	}
	if ci, err := servers["topod"].GetCellInfo(ctx, cell, true); err != nil || ci.ServerAddress != topodAddr || ci.Root != "/vitess/"+cell {
		t.Fatalf("CellInfo %s through the plugin: %v (%v), want server %s", cell, ci, err, topodAddr)
	}

	// A vtctld and a vtgate per implementation. vtgates read their cell's
	// tablets every 2 s, to discover them as they register.
	vts := map[string]*vitess{}
	for _, impl := range mixedImpls {
		vts[impl] = startVtctldVtgate(ctx, t, bin, work, id, topos[impl], "--tablet-refresh-interval", "2s")
	}
	t.Logf("%v: topod on etcd, vtctld and vtgate with etcd2 and with the plugin (as user %s); logs in %s", since(), id.Name, filepath.Join(work, "logs"))

	// One tablet per implementation, each the only one of its shard.
	tablets := map[string]vtlocal.Tablet{}
	for impl, s := range map[string]struct {
		uid   uint32
		shard string
	}{"etcd2": {100, "-80"}, "topod": {200, "80-"}} {
		tablets[impl] = vtlocal.Tablet{Cell: cell, UID: s.uid, Keyspace: vtlocal.CommerceKeyspace, Shard: s.shard, Port: port(), GRPCPort: port(), MySQLPort: port()}
	}
	runners := map[string]vtlocal.Tablets{}
	for _, impl := range mixedImpls {
		runners[impl] = vtlocal.Tablets{
			MySQL: vtlocal.MySQL{Root: filepath.Join(work, "vtdataroot"), VTMySQLRoot: mysqlRoot},
			Topo:  topos[impl], Bin: filepath.Dir(bin["vttablet"]), Logs: filepath.Join(work, "logs"), User: id,
		}
	}
	if err := runners["topod"].Prepare(); err != nil {
		t.Fatal(err)
	}
	if _, err := vts["etcd2"].client.CreateKeyspace(ctx, &vtctldatapb.CreateKeyspaceRequest{Name: vtlocal.CommerceKeyspace, DurabilityPolicy: "none"}); err != nil {
		t.Fatalf("CreateKeyspace through the etcd2 vtctld: %v", err)
	}
	var g errgroup.Group
	for _, impl := range mixedImpls {
		g.Go(func() error { return runners[impl].StartMySQL(ctx, tablets[impl]) })
	}
	t.Cleanup(func() {
		// After the vttablets have stopped.
		var g errgroup.Group
		for _, impl := range mixedImpls {
			g.Go(func() error { return runners[impl].StopMySQL(context.Background(), tablets[impl]) })
		}
		if err := g.Wait(); err != nil {
			t.Errorf("stop mysqld: %v", err)
		}
	})
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: 2 mysqld initialized by mysqlctl", since())

	vttablets := map[string]*proc.Process{}
	// The vttablets stop first, together, while topod still runs.
	defer func() {
		var g errgroup.Group
		for _, p := range vttablets {
			g.Go(func() error { p.Stop(10 * time.Second); return nil })
		}
		g.Wait()
	}()
	for _, impl := range mixedImpls {
		p, err := runners[impl].StartVttablet(ctx, tablets[impl])
		if err != nil {
			t.Fatal(err)
		}
		stopAtEnd(t, p)
		vttablets[impl] = p
	}
	// Each tablet's record, written through its implementation, read
	// through the other.
	for impl, tab := range tablets {
		rec, err := servers[other(impl)].GetTablet(ctx, tab.Alias())
		if err != nil {
			t.Fatalf("tablet record of %s (registered through %s) read through %s: %v", tab.Name(), impl, other(impl), err)
		}
		if rec.Keyspace != vtlocal.CommerceKeyspace || rec.Shard != tab.Shard || rec.Type != topodatapb.TabletType_REPLICA {
			t.Fatalf("tablet record of %s through %s: %s/%s %v", tab.Name(), other(impl), rec.Keyspace, rec.Shard, rec.Type)
		}
	}
	t.Logf("%v: tablet %s (etcd2, shard -80) and %s (plugin, shard 80-) registered; each record read through the other implementation",
		since(), tablets["etcd2"].Name(), tablets["topod"].Name())

	// Shard locks across implementations.
	type prsResult struct {
		err error
		at  time.Time
	}
	type lockCase struct {
		tab            vtlocal.Tablet
		holder, vtctld string // the implementations holding the lock and running the reparent
		unlock         func(*error)
		done           chan prsResult
	}
	cases := []*lockCase{
		{tab: tablets["etcd2"], holder: "topod", vtctld: "etcd2"},
		{tab: tablets["topod"], holder: "etcd2", vtctld: "topod"},
	}
	locksDir := func(c *lockCase) string {
		return "keyspaces/" + vtlocal.CommerceKeyspace + "/shards/" + c.tab.Shard + "/locks"
	}
	for _, c := range cases {
		var err error
		_, c.unlock, err = servers[c.holder].LockShard(ctx, vtlocal.CommerceKeyspace, c.tab.Shard, "e2e holds the shard lock through "+c.holder)
		if err != nil {
			t.Fatalf("LockShard %s through %s: %v", c.tab.Target(), c.holder, err)
		}
		// The other implementation sees it held.
		if _, unlock, err := servers[c.vtctld].TryLockShard(ctx, vtlocal.CommerceKeyspace, c.tab.Shard, "e2e tries the held lock"); err == nil {
			unlock(&err)
			t.Fatalf("TryLockShard %s through %s succeeded while the test held the lock through %s", c.tab.Target(), c.vtctld, c.holder)
		} else if !topo.IsErrType(err, topo.NodeExists) {
			t.Fatalf("TryLockShard %s through %s while held through %s: %v, want NodeExists", c.tab.Target(), c.vtctld, c.holder, err)
		}
	}
	for _, c := range cases {
		c.done = make(chan prsResult, 1)
		go func() {
			_, err := vts[c.vtctld].client.PlannedReparentShard(ctx, &vtctldatapb.PlannedReparentShardRequest{
				Keyspace: vtlocal.CommerceKeyspace, Shard: c.tab.Shard, NewPrimary: c.tab.Alias(),
			})
			c.done <- prsResult{err, time.Now()}
		}()
	}
	// Each reparent waits: its lock file is queued behind the test's.
	globalConn, err := servers["topod"].ConnForCell(ctx, topo.GlobalCell)
	if err != nil {
		t.Fatal(err)
	}
	queued := func(c *lockCase) (int, error) {
		entries, err := globalConn.ListDir(ctx, locksDir(c), false)
		if topo.IsErrType(err, topo.NoNode) {
			return 0, nil
		}
		return len(entries), err
	}
	waitStart := time.Now()
	for {
		waiting := 0
		for _, c := range cases {
			select {
			case r := <-c.done:
				t.Fatalf("PlannedReparentShard %s through the %s vtctld returned while the test held the lock through %s: %v", c.tab.Target(), c.vtctld, c.holder, r.err)
			default:
			}
			n, err := queued(c)
			if err != nil {
				t.Fatalf("list %s: %v", locksDir(c), err)
			}
			if n >= 2 {
				waiting++
			}
		}
		if waiting == len(cases) {
			break
		}
		if time.Since(waitStart) > 30*time.Second {
			t.Fatalf("after 30 s the reparents' lock requests are not queued behind the test's locks")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range cases {
		if si, err := servers[c.holder].GetShard(ctx, vtlocal.CommerceKeyspace, c.tab.Shard); err != nil || si.PrimaryAlias != nil {
			t.Fatalf("shard %s while its lock is held: primary %v (%v), want none", c.tab.Target(), si.GetPrimaryAlias(), err)
		}
		t.Logf("%v: PlannedReparentShard %s through the %s vtctld waits: its lock request is queued behind the lock the test holds through %s",
			since(), c.tab.Target(), c.vtctld, c.holder)
	}
	for i, c := range cases {
		var lockErr error
		released := time.Now()
		if c.unlock(&lockErr); lockErr != nil {
			t.Fatalf("unlock %s through %s: %v", c.tab.Target(), c.holder, lockErr)
		}
		var r prsResult
		select {
		case r = <-c.done:
		case <-time.After(60 * time.Second):
			t.Fatalf("PlannedReparentShard %s through the %s vtctld still running 60 s after the lock was released", c.tab.Target(), c.vtctld)
		}
		if r.err != nil {
			t.Fatalf("PlannedReparentShard %s through the %s vtctld, once the lock was released: %v", c.tab.Target(), c.vtctld, r.err)
		}
		// The other reparent still waits for its own lock.
		for _, later := range cases[i+1:] {
			select {
			case r := <-later.done:
				t.Fatalf("PlannedReparentShard %s returned when the lock of %s was released, while its own was held: %v", later.tab.Target(), c.tab.Target(), r.err)
			default:
			}
		}
		for _, impl := range mixedImpls {
			si, err := servers[impl].GetShard(ctx, vtlocal.CommerceKeyspace, c.tab.Shard)
			if err != nil || !isTablet(si.PrimaryAlias, c.tab) {
				t.Fatalf("shard %s after PlannedReparentShard, through %s: primary %v (%v), want %s", c.tab.Target(), impl, si.GetPrimaryAlias(), err, c.tab.Name())
			}
			// The lock is free through either implementation.
			_, unlock, err := servers[impl].TryLockShard(ctx, vtlocal.CommerceKeyspace, c.tab.Shard, "e2e checks the lock is free")
			if err != nil {
				t.Fatalf("shard %s still locked (through %s) after PlannedReparentShard: %v", c.tab.Target(), impl, err)
			}
			unlock(&lockErr)
		}
		t.Logf("%v: lock of %s released through %s; the %s vtctld's PlannedReparentShard made %s primary %v later",
			since(), c.tab.Target(), c.holder, c.vtctld, c.tab.Name(), r.at.Sub(released).Round(time.Millisecond))
	}

	// Schema and vschema through the vtctlds, alternately.
	if _, err := vts["topod"].client.ApplySchema(ctx, &vtctldatapb.ApplySchemaRequest{Keyspace: vtlocal.CommerceKeyspace, Sql: []string{vtlocal.CommerceSchema}}); err != nil {
		t.Fatalf("ApplySchema through the plugin vtctld: %v", err)
	}
	if _, err := vts["etcd2"].client.ApplyVSchema(ctx, &vtctldatapb.ApplyVSchemaRequest{Keyspace: vtlocal.CommerceKeyspace, VSchema: vtlocal.CommerceVSchema()}); err != nil {
		t.Fatalf("ApplyVSchema through the etcd2 vtctld: %v", err)
	}
	if _, err := vts["topod"].client.RebuildKeyspaceGraph(ctx, &vtctldatapb.RebuildKeyspaceGraphRequest{Keyspace: vtlocal.CommerceKeyspace}); err != nil {
		t.Fatalf("RebuildKeyspaceGraph through the plugin vtctld: %v", err)
	}
	sk, err := servers["etcd2"].GetSrvKeyspace(ctx, cell, vtlocal.CommerceKeyspace)
	if err != nil {
		t.Fatalf("SrvKeyspace through etcd2: %v", err)
	}
	for _, p := range sk.Partitions {
		if len(p.ShardReferences) != len(tablets) {
			t.Fatalf("SrvKeyspace partition %v has %d shards, want %d", p.ServedType, len(p.ShardReferences), len(tablets))
		}
	}

	// Both vtgates serve both tablets.
	sql := func(impl, db, q string) ([][]string, error) {
		return mysqlQuery(ctx, mysqlCLI, vts[impl].vtgateMySQL, db, q)
	}
	wantServing := map[string]string{tablets["etcd2"].Name(): "PRIMARY", tablets["topod"].Name(): "PRIMARY"}
	for _, impl := range mixedImpls {
		waitFor(ctx, t, vts[impl].vtgate, 60*time.Second, "the "+impl+" vtgate to serve both tablets and commerce's vschema", func() error {
			got, err := servingTablets(ctx, mysqlCLI, vts[impl].vtgateMySQL)
			if err != nil {
				return err
			}
			if fmt.Sprint(got) != fmt.Sprint(wantServing) {
				return fmt.Errorf("SHOW VITESS_TABLETS: serving %v, want %v", got, wantServing)
			}
			rows, err := sql(impl, vtlocal.CommerceKeyspace, "SHOW VSCHEMA TABLES")
			if err != nil {
				return err
			}
			if !hasRow(rows, "customer") {
				return fmt.Errorf("SHOW VSCHEMA TABLES of commerce: %v", rows)
			}
			return nil
		})
	}
	t.Logf("%v: both vtgates list %s and %s SERVING PRIMARY in SHOW VITESS_TABLETS", since(), tablets["etcd2"].Name(), tablets["topod"].Name())

	// Rows inserted through each vtgate, read through both.
	for i, impl := range mixedImpls {
		var values []string
		for n := 4*i + 1; n <= 4*i+4; n++ {
			values = append(values, fmt.Sprintf("(%d, 'c%d@example.com')", n, n))
		}
		if _, err := sql(impl, vtlocal.CommerceKeyspace, "insert into customer (customer_id, email) values "+strings.Join(values, ", ")); err != nil {
			t.Fatalf("insert through the %s vtgate: %v", impl, err)
		}
	}
	count := func(impl, db string) int {
		t.Helper()
		rows, err := sql(impl, db, "select count(*) from customer")
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || len(rows[0]) != 1 {
			t.Fatalf("select count(*) from %s through the %s vtgate: %v", db, impl, rows)
		}
		n, err := strconv.Atoi(rows[0][0])
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	perShard := map[string]int{}
	for _, impl := range mixedImpls {
		rows, err := sql(impl, vtlocal.CommerceKeyspace, "select customer_id from customer order by customer_id")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(rows) != "[[1] [2] [3] [4] [5] [6] [7] [8]]" {
			t.Fatalf("the %s vtgate reads customer_id %v, want 1 to 8", impl, rows)
		}
		sum := 0
		for _, tab := range tablets {
			n := count(impl, vtlocal.CommerceKeyspace+":"+tab.Shard)
			if n == 0 {
				t.Fatalf("the %s vtgate reads no row on shard %s (tablet %s)", impl, tab.Shard, tab.Name())
			}
			if seen, ok := perShard[tab.Shard]; ok && seen != n {
				t.Fatalf("the %s vtgate reads %d rows on shard %s, the other vtgate %d", impl, n, tab.Shard, seen)
			}
			perShard[tab.Shard] = n
			sum += n
		}
		if sum != 8 {
			t.Fatalf("through the %s vtgate the shards hold %d rows together, want 8", impl, sum)
		}
	}
	t.Logf("%v: 4 rows inserted through each vtgate; each vtgate reads all 8, %d on %s (tablet %s, etcd2) and %d on %s (tablet %s, plugin)", since(),
		perShard[tablets["etcd2"].Shard], tablets["etcd2"].Shard, tablets["etcd2"].Name(), perShard[tablets["topod"].Shard], tablets["topod"].Shard, tablets["topod"].Name())

	// The JD SrvVSchema, with commerce, through the plugin.
	current, err := servers["topod"].GetSrvVSchema(ctx, cell)
	if err != nil {
		t.Fatal(err)
	}
	profile := jd.JD()
	srv := profile.SrvVSchema()
	if _, clash := srv.Keyspaces[vtlocal.CommerceKeyspace]; clash {
		t.Fatalf("the JD profile has a keyspace %s", vtlocal.CommerceKeyspace)
	}
	srv.Keyspaces[vtlocal.CommerceKeyspace] = current.Keyspaces[vtlocal.CommerceKeyspace]
	names := make([]string, 0, len(srv.Keyspaces))
	for name := range srv.Keyspaces {
		names = append(names, name)
	}
	slices.Sort(names)
	blobsDir := filepath.Join(work, "topod", "blobs")
	blobsBefore := countFiles(t, blobsDir)
	written := time.Now()
	if err := servers["topod"].UpdateSrvVSchema(ctx, cell, srv); err != nil {
		t.Fatalf("UpdateSrvVSchema (JD) through the plugin: %v", err)
	}
	writeTook := time.Since(written)
	served := waitAll(ctx, t, 3*time.Minute, "SHOW VITESS_KEYSPACES to list every keyspace", written, vtgateProbes(vts, func(impl string) error {
		ks, err := showKeyspaces(ctx, mysqlCLI, vts[impl].vtgateMySQL)
		if err != nil {
			return err
		}
		if !slices.Equal(ks, names) {
			return fmt.Errorf("SHOW VITESS_KEYSPACES lists %d keyspaces, want %d", len(ks), len(names))
		}
		return nil
	}))
	t.Logf("%v: the JD SrvVSchema (%d keyspaces with commerce, %d bytes) written through the plugin in %v (topod's blob store: %d files, from %d); "+
		"SHOW VITESS_KEYSPACES lists every keyspace on the etcd2 vtgate %v after the write began (%v after it returned), on the plugin vtgate %v (%v)",
		since(), len(srv.Keyspaces), proto.Size(srv), writeTook.Round(time.Millisecond), countFiles(t, blobsDir), blobsBefore,
		served["etcd2"].Round(time.Millisecond), (served["etcd2"] - writeTook).Round(time.Millisecond),
		served["topod"].Round(time.Millisecond), (served["topod"] - writeTook).Round(time.Millisecond))
	read := time.Now()
	got, err := servers["etcd2"].GetSrvVSchema(ctx, cell)
	if err != nil {
		t.Fatalf("GetSrvVSchema through etcd2: %v", err)
	}
	readTook := time.Since(read)
	if !proto.Equal(got, srv) {
		t.Fatalf("the SrvVSchema read through etcd2 (%d keyspaces, %d bytes) is not the one written (%d keyspaces, %d bytes)", len(got.Keyspaces), proto.Size(got), len(srv.Keyspaces), proto.Size(srv))
	}
	t.Logf("%v: stock etcd2topo reads it whole from topod (GetSrvVSchema %v), proto-equal to what was written", since(), readTook.Round(time.Millisecond))

	// A one-keyspace change through vschemad (on the plugin): the
	// keyspace's record, then its vschema with one more table.
	ksIndex := selfContainedKeyspace(profile, 7)
	ksName, ks := profile.Keyspace(ksIndex)
	const table = "e2e_mixed_change"
	showsTable := func(impl string, want bool) error {
		rows, err := sql(impl, ksName, "SHOW VSCHEMA TABLES")
		if err != nil {
			return err
		}
		if has := hasRow(rows, table); has != want || len(rows) < len(ks.Tables) {
			return fmt.Errorf("SHOW VSCHEMA TABLES of %s through the %s vtgate: %d tables, %s among them: %v, want %v", ksName, impl, len(rows), table, has, want)
		}
		return nil
	}
	for _, impl := range mixedImpls {
		if err := showsTable(impl, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := servers["etcd2"].CreateKeyspace(ctx, ksName, &topodatapb.Keyspace{}); err != nil {
		t.Fatalf("CreateKeyspace %s through etcd2: %v", ksName, err)
	}
	vschemadPort, err := freeport.Pick(1)
	if err != nil {
		t.Fatal(err)
	}
	vschemadURL := fmt.Sprintf("http://127.0.0.1:%d", vschemadPort[0])
	vschemad := start(t, proc.Spec{Name: "vschemad", Binary: bin["vschemad"],
		Args: vtlocal.VschemadArgs(topos["topod"], vschemadPort[0], filepath.Join(work, "vschemad-audit.log")),
		Log:  filepath.Join(work, "logs", "vschemad.log"), Dir: work, User: id})
	if err := vschemad.WaitHTTP(ctx, vschemadURL+"/healthz"); err != nil {
		t.Fatal(err)
	}
	ks.Tables[table] = newTable(ks)
	body := vschematest.VSchemaJSON(t, ks)
	written = time.Now()
	status, eresp, applied := putVSchema(ctx, t, vschemadURL, ksName, body)
	writeTook = time.Since(written)
	if status != http.StatusOK {
		t.Fatalf("vschemad PUT %s: %d %s", ksName, status, eresp.Message)
	}
	if r := cellResult(applied.Cells, cell); r == nil || r.Error != "" {
		t.Fatalf("vschemad's answer for cell %s: %+v", cell, r)
	}
	served = waitAll(ctx, t, 2*time.Minute, "table "+table+" in SHOW VSCHEMA TABLES of "+ksName, written, vtgateProbes(vts, func(impl string) error {
		return showsTable(impl, true)
	}))
	t.Logf("%v: one-keyspace change (table %s added to %s, %d bytes of vschema JSON) written through vschemad in %v; "+
		"the etcd2 vtgate serves it %v after the write began (%v after vschemad answered), the plugin vtgate %v (%v)",
		since(), table, ksName, len(body), writeTook.Round(time.Millisecond),
		served["etcd2"].Round(time.Millisecond), (served["etcd2"] - writeTook).Round(time.Millisecond),
		served["topod"].Round(time.Millisecond), (served["topod"] - writeTook).Round(time.Millisecond))

	// commerce still routes through both.
	for _, impl := range mixedImpls {
		if n := count(impl, vtlocal.CommerceKeyspace); n != 8 {
			t.Fatalf("after the JD SrvVSchema the %s vtgate reads %d rows of commerce, want 8", impl, n)
		}
	}

	// etcd itself, read directly: no value over 64 KiB.
	cli := etcd.Client(t)
	resp, err := cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	largest, largestKey, total, srvRecord := 0, "", 0, -1
	for _, kv := range resp.Kvs {
		if string(kv.Key) == "/vitess/"+cell+"/"+topo.SrvVSchemaFile {
			srvRecord = len(kv.Value)
		}
		total += len(kv.Value)
		if len(kv.Value) > largest {
			largest, largestKey = len(kv.Value), string(kv.Key)
		}
	}
	if largest > etcdValueCap {
		t.Fatalf("etcd value %s is %d bytes, over %d", largestKey, largest, etcdValueCap)
	}
	if srvRecord < 0 {
		t.Fatalf("etcd has no key /vitess/%s/%s", cell, topo.SrvVSchemaFile)
	}
	t.Logf("%v: etcd, read directly, holds %d keys, %d bytes of values; the largest, %s, is %d bytes (cap %d); the SrvVSchema's record is %d bytes",
		since(), len(resp.Kvs), total, largestKey, largest, etcdValueCap, srvRecord)

	if err := topod.Process().ExitError(); err != nil {
		t.Fatal(err)
	}
	procs := map[string]*proc.Process{"vschemad": vschemad}
	for _, impl := range mixedImpls {
		procs[impl+" vtctld"], procs[impl+" vtgate"], procs[impl+" vttablet"] = vts[impl].vtctld, vts[impl].vtgate, vttablets[impl]
	}
	for name, p := range procs {
		if exited, err := p.Exited(); exited {
			t.Fatalf("%s exited: %v", name, err)
		}
	}
}

// servingTablets asks the vtgate on MySQL port for SHOW VITESS_TABLETS and
// returns the type of each SERVING tablet, by alias.
func servingTablets(ctx context.Context, mysqlCLI string, port int) (map[string]string, error) {
	rows, err := mysqlQuery(ctx, mysqlCLI, port, "", "SHOW VITESS_TABLETS")
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	for _, r := range rows {
		// Cell Keyspace Shard TabletType State Alias ...
		if len(r) > 5 && r[4] == "SERVING" {
			got[r[5]] = r[3]
		}
	}
	return got, nil
}

// hasRow reports whether one of rows is the single field s.
func hasRow(rows [][]string, s string) bool {
	return slices.ContainsFunc(rows, func(r []string) bool { return len(r) == 1 && r[0] == s })
}

// probe is a condition on a process.
type probe struct {
	p     *proc.Process
	check func() error
}

// vtgateProbes returns check for each implementation's vtgate.
func vtgateProbes(vts map[string]*vitess, check func(impl string) error) map[string]probe {
	probes := map[string]probe{}
	for impl, vt := range vts {
		probes[impl] = probe{vt.vtgate, func() error { return check(impl) }}
	}
	return probes
}

// waitAll polls every probe until each has succeeded once, and returns how
// long after from each first did. It fails the test after within, or at
// once if a probe's process exits.
func waitAll(ctx context.Context, t *testing.T, within time.Duration, what string, from time.Time, probes map[string]probe) map[string]time.Duration {
	t.Helper()
	deadline := time.Now().Add(within)
	passed := map[string]time.Duration{}
	for {
		errs := map[string]error{}
		for name, pr := range probes {
			if _, ok := passed[name]; ok {
				continue
			}
			if err := pr.check(); err != nil {
				errs[name] = err
				continue
			}
			passed[name] = time.Since(from)
		}
		if len(errs) == 0 {
			return passed
		}
		for name, err := range errs {
			if exited, perr := probes[name].p.Exited(); exited {
				t.Fatalf("waiting for %s: %s exited: %v (%v)", what, probes[name].p.Spec.Name, perr, err)
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				t.Fatalf("waited %v for %s: %s: %v", within, what, probes[name].p.Spec.Name, err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// selfContainedKeyspace returns the index of the first keyspace of p from
// from on whose vschema refers to no other keyspace (no reference table,
// sequence or lookup vindex elsewhere): vschemad validates such references
// against the keyspace records, which the test creates for that keyspace
// only.
func selfContainedKeyspace(p jd.Profile, from int) int {
	for i := from; i < p.Keyspaces; i++ {
		name, ks := p.Keyspace(i)
		if !refersElsewhere(name, ks) {
			return i
		}
	}
	panic("jd: no self-contained keyspace")
}

func refersElsewhere(name string, ks *vschemapb.Keyspace) bool {
	elsewhere := func(qualified string) bool {
		other, _, ok := strings.Cut(qualified, ".")
		return ok && other != name
	}
	for _, v := range ks.Vindexes {
		if elsewhere(v.Params["table"]) {
			return true
		}
	}
	for _, t := range ks.Tables {
		if elsewhere(t.Source) || t.AutoIncrement != nil && elsewhere(t.AutoIncrement.Sequence) {
			return true
		}
	}
	return false
}
