package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/mysql"
	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/vtctl/vtctldclient"

	vtctldatapb "vitess.io/vitess/go/vt/proto/vtctldata"

	"github.com/topod-io/topod/internal/proc"
	"github.com/topod-io/topod/internal/vtlocal"
)

// commerceShards are the demo's tablets, on the ports --tablet-ports gives.
func commerceShards(c config) []vtlocal.CommerceShard {
	return vtlocal.CommerceShards(c.cell, func(uid uint32) (int, int, int) {
		base := c.tabletPorts + int(uid)
		return base, base + 1000, base + 2000
	})
}

// commerceTablets are the demo's tablets, primaries-to-be first.
func commerceTablets(c config) []vtlocal.Tablet {
	var tablets []vtlocal.Tablet
	for _, s := range commerceShards(c) {
		tablets = append(tablets, s.Primary)
	}
	for _, s := range commerceShards(c) {
		tablets = append(tablets, s.Replica)
	}
	return tablets
}

// demoTablets runs the demo's tablets: VTDATAROOT is DATA/vtdataroot.
func demoTablets(c config, id *proc.Identity, mysqlRoot string) vtlocal.Tablets {
	return vtlocal.Tablets{
		MySQL: vtlocal.MySQL{Root: c.path("vtdataroot"), VTMySQLRoot: mysqlRoot},
		Topo:  vtlocal.Topo{Implementation: "topod", Address: c.topodAddr(), Root: "/vitess/global"},
		Bin:   c.binDir, Logs: c.path("logs"), User: id, Detach: true,
	}
}

// startTablets brings the keyspace commerce up on real tablets, doing only
// what a previous run has not done: the keyspace (durability "none"), each
// tablet's mysqld (mysqlctl init, or start), the primaries' vttablets, a
// PlannedReparentShard on each shard without a primary, the replicas'
// vttablets and their MariaDB replication from the primary, the table, the
// vschema and the SrvKeyspace.
func startTablets(ctx context.Context, c config, id *proc.Identity, tp vtlocal.Topo, ts *topo.Server, client vtctldclient.VtctldClient) error {
	mysqlRoot, err := vtlocal.FindMySQL()
	if err != nil {
		return fmt.Errorf("%w (make demo installs it)", err)
	}
	tablets := demoTablets(c, id, mysqlRoot)
	if err := tablets.Prepare(); err != nil {
		return err
	}
	ks := vtlocal.CommerceKeyspace
	if _, err := ts.GetKeyspace(ctx, ks); topo.IsErrType(err, topo.NoNode) {
		if _, err := client.CreateKeyspace(ctx, &vtctldatapb.CreateKeyspaceRequest{Name: ks, DurabilityPolicy: "none"}); err != nil {
			return fmt.Errorf("create keyspace %s: %w", ks, err)
		}
	} else if err != nil {
		return fmt.Errorf("read keyspace %s: %w", ks, err)
	}
	for _, t := range commerceTablets(c) {
		if tablets.MySQLRunning(t) {
			continue
		}
		begin := time.Now()
		if err := tablets.StartMySQL(ctx, t); err != nil {
			return err
		}
		fmt.Printf("  %-25s started by mysqlctl in %v\n", "mysqld-"+t.Name(), time.Since(begin).Round(10*time.Millisecond))
	}
	startVttablet := func(t vtlocal.Tablet) error {
		return startProcess(ctx, c, id, process{
			spec:  tablets.VttabletSpec(t),
			ports: []int{t.Port, t.GRPCPort},
			wait:  waitStatus(t.Port),
		})
	}
	for _, s := range commerceShards(c) {
		if err := startVttablet(s.Primary); err != nil {
			return err
		}
		// A fresh shard's primary, before its replica's vttablet runs:
		// PlannedReparentShard would try to repoint the replica, which
		// stock Vitess cannot do on MariaDB.
		si, err := ts.GetShard(ctx, ks, s.Primary.Shard)
		if err != nil {
			return fmt.Errorf("read shard %s: %w", s.Primary.Target(), err)
		}
		if si.PrimaryAlias == nil {
			if _, err := client.PlannedReparentShard(ctx, &vtctldatapb.PlannedReparentShardRequest{
				Keyspace: ks, Shard: s.Primary.Shard, NewPrimary: s.Primary.Alias(),
			}); err != nil {
				return fmt.Errorf("PlannedReparentShard %s: %w", s.Primary.Target(), err)
			}
			fmt.Printf("  %-25s primary of %s (PlannedReparentShard)\n", s.Primary.Name(), s.Primary.Target())
		} else if err := tablets.SetWritable(ctx, s.Primary); err != nil {
			return err
		}
		if err := startVttablet(s.Replica); err != nil {
			return err
		}
		if err := tablets.Replicate(ctx, s.Replica, s.Primary); err != nil {
			return err
		}
	}

	// The table, on the primaries (the replicas replicate it).
	schema, err := client.GetSchema(ctx, &vtctldatapb.GetSchemaRequest{TabletAlias: commerceShards(c)[0].Primary.Alias(), Tables: []string{"customer"}})
	if err != nil {
		return fmt.Errorf("read the schema of %s: %w", ks, err)
	}
	if len(schema.GetSchema().GetTableDefinitions()) == 0 {
		if _, err := client.ApplySchema(ctx, &vtctldatapb.ApplySchemaRequest{Keyspace: ks, Sql: []string{vtlocal.CommerceSchema}}); err != nil {
			return fmt.Errorf("create the table of %s: %w", ks, err)
		}
	}
	// The vschema (which rebuilds the SrvVSchema when it changes), and the
	// SrvKeyspace.
	vs, err := ts.GetVSchema(ctx, ks)
	if err != nil {
		return fmt.Errorf("read the vschema of %s: %w", ks, err)
	}
	if !proto.Equal(vs.Keyspace, vtlocal.CommerceVSchema()) {
		if _, err := client.ApplyVSchema(ctx, &vtctldatapb.ApplyVSchemaRequest{Keyspace: ks, VSchema: vtlocal.CommerceVSchema()}); err != nil {
			return fmt.Errorf("apply the vschema of %s: %w", ks, err)
		}
	}
	if _, err := client.RebuildKeyspaceGraph(ctx, &vtctldatapb.RebuildKeyspaceGraphRequest{Keyspace: ks}); err != nil {
		return fmt.Errorf("RebuildKeyspaceGraph %s: %w", ks, err)
	}
	return nil
}

// waitForTablets waits until vtgate lists every tablet of commerce as
// serving in SHOW VITESS_TABLETS.
func waitForTablets(ctx context.Context, c config) error {
	var want []string
	for _, t := range commerceTablets(c) {
		want = append(want, t.Name())
	}
	slices.Sort(want)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return timed(fmt.Sprintf("vtgate: waiting for the %d tablets of %s to serve", len(want), vtlocal.CommerceKeyspace), func() error {
		var last error
		for {
			serving, err := servingTablets(ctx, c.mysqlPort)
			if err == nil && slices.Equal(serving, want) {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("serving: %v", serving)
			}
			last = err
			select {
			case <-ctx.Done():
				return fmt.Errorf("vtgate does not see every tablet serving (%v); see the logs in %s", last, c.path("logs"))
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
}

// servingTablets returns the aliases SHOW VITESS_TABLETS lists as SERVING
// in commerce, sorted.
func servingTablets(ctx context.Context, port int) ([]string, error) {
	conn, err := mysql.Connect(ctx, &mysql.ConnParams{Host: "127.0.0.1", Port: port, Uname: "demo"})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	qr, err := conn.ExecuteFetch("SHOW VITESS_TABLETS", 10000, true)
	if err != nil {
		return nil, err
	}
	col := map[string]int{}
	for i, f := range qr.Fields {
		col[f.Name] = i
	}
	var serving []string
	for _, r := range qr.Rows {
		if r[col["Keyspace"]].ToString() == vtlocal.CommerceKeyspace && r[col["State"]].ToString() == "SERVING" {
			serving = append(serving, r[col["Alias"]].ToString())
		}
	}
	slices.Sort(serving)
	return serving, nil
}
