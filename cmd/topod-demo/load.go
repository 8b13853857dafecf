package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/mysql"
	"vitess.io/vitess/go/sqltypes"
	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/vtctl/vtctldclient"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	_ "vitess.io/vitess/go/vt/vtctl/grpcvtctldclient"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/vtlocal"
	_ "github.com/topod-io/topod/pkg/topoplugin"
)

// etcdRequestLimit is etcd's default --max-request-bytes (1.5 MiB).
const etcdRequestLimit = 1572864

// ensureCell creates the demo's cell in the global topology unless it
// exists.
func ensureCell(ctx context.Context, ts *topo.Server, c config) error {
	err := ts.CreateCellInfo(ctx, c.cell, &topodatapb.CellInfo{
		ServerAddress: c.topodAddr(),
		Root:          "/vitess/" + c.cell,
	})
	if err != nil && !topo.IsErrType(err, topo.NodeExists) {
		return fmt.Errorf("create cell %s: %w", c.cell, err)
	}
	return nil
}

// summary is what the demo holds once loaded.
type summary struct {
	keyspaces int
	tables    int
	srvBytes  int
	loaded    int           // keyspaces loaded by this run
	loadTime  time.Duration // time this run spent loading
}

// load loads the keyspaces of the profile that the topology lacks, then
// waits until vtgate serves all of them. Keyspace records are written
// through the plugin with topo.Server.CreateKeyspace (vtctld's
// CreateKeyspace would rebuild the SrvVSchema after each one: O(n²));
// vschemas and routing rules are applied through vtctld's gRPC API
// (Vitess's vtctldclient library) with skip_rebuild, and vtctld rebuilds the
// SrvVSchema once at the end.
func load(ctx context.Context, ts *topo.Server, client vtctldclient.VtctldClient, c config) (summary, error) {
	profile := jd.JD().Sized(c.keyspaces)
	var sum summary
	sum.keyspaces = c.keyspaces
	for i := range c.keyspaces {
		sum.tables += profile.TableCount(i)
	}

	// What is there already: keyspace records, and vschemas that made it
	// into the cell's SrvVSchema.
	names, err := ts.GetKeyspaces(ctx)
	if err != nil {
		return sum, fmt.Errorf("list keyspaces: %w", err)
	}
	exists := make(map[string]bool, len(names))
	for _, n := range names {
		exists[n] = true
	}
	srv, err := ts.GetSrvVSchema(ctx, c.cell)
	if err != nil && !topo.IsErrType(err, topo.NoNode) {
		return sum, fmt.Errorf("read the SrvVSchema of %s: %w", c.cell, err)
	}
	var create, apply []int
	touched := 0
	for i := range c.keyspaces {
		name := profile.KeyspaceName(i)
		missing, empty := !exists[name], len(srv.GetKeyspaces()[name].GetTables()) == 0
		if missing {
			create = append(create, i)
		}
		if empty {
			apply = append(apply, i)
		}
		if missing || empty {
			touched++
		}
	}
	rulesOK := srv != nil && proto.Equal(srv.GetRoutingRules(), profile.RoutingRules())

	if len(create) > 0 || len(apply) > 0 || !rulesOK {
		begin := time.Now()
		if len(create) == c.keyspaces {
			fmt.Printf("Loading %s keyspaces (%s tables, the JD profile resized):\n",
				thousands(c.keyspaces), thousands(sum.tables))
		} else {
			fmt.Printf("Reusing %s: %s keyspaces to create, %s vschemas to apply:\n",
				c.dataDir, thousands(len(create)), thousands(len(apply)))
		}
		bars := map[string]*progress{
			"create":  newProgress("create keyspaces", "topo.Server.CreateKeyspace through the plugin"),
			"vschema": newProgress("apply vschemas", "vtctld ApplyVSchema, skip_rebuild"),
		}
		loader := &vtlocal.Loader{
			Client: client, Profile: profile, Workers: 4,
			Progress: func(step string, done, total int) { bars[step].update(done, total) },
		}
		if len(create) > 0 {
			// Keyspace records go straight to the topology: vtctld's
			// CreateKeyspace would rebuild the SrvVSchema once per keyspace.
			if err := loader.CreateKeyspaceRecords(ctx, ts, create); err != nil {
				return sum, err
			}
			bars["create"].finish(len(create))
		}
		if len(apply) > 0 {
			if err := loader.ApplyVSchemas(ctx, apply); err != nil {
				return sum, err
			}
			bars["vschema"].finish(len(apply))
		}
		if err := loader.ApplyRoutingRules(ctx); err != nil {
			return sum, err
		}
		if err := timed("rebuild SrvVSchema (vtctld RebuildVSchemaGraph)", func() error { return loader.Rebuild(ctx) }); err != nil {
			return sum, err
		}
		if srv, err = ts.GetSrvVSchema(ctx, c.cell); err != nil {
			return sum, fmt.Errorf("read the SrvVSchema of %s: %w", c.cell, err)
		}
		sum.loaded = touched
		sum.loadTime = time.Since(begin)
	} else {
		fmt.Printf("Reusing %s: all %s keyspaces are loaded.\n", c.dataDir, thousands(c.keyspaces))
	}
	sum.srvBytes = proto.Size(srv)

	if err := waitForVtgate(ctx, c, profile, srv); err != nil {
		return sum, err
	}
	return sum, nil
}

// waitForVtgate waits until vtgate serves the loaded SrvVSchema: SHOW
// VITESS_KEYSPACES lists every keyspace, and SHOW VSCHEMA TABLES in the
// profile's last keyspace lists its tables (vschemas reach vtgate only with
// the final rebuild), both asked over the MySQL protocol.
func waitForVtgate(ctx context.Context, c config, profile jd.Profile, srv *vschemapb.SrvVSchema) error {
	want := len(srv.GetKeyspaces())
	last := c.keyspaces - 1
	lastName, lastTables := profile.KeyspaceName(last), profile.TableCount(last)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	check := func() error {
		n, err := countRows(ctx, c.mysqlPort, "", "SHOW VITESS_KEYSPACES")
		if err != nil {
			return err
		}
		if n < want {
			return fmt.Errorf("SHOW VITESS_KEYSPACES lists %d keyspaces", n)
		}
		if n, err = countRows(ctx, c.mysqlPort, lastName, "SHOW VSCHEMA TABLES"); err != nil {
			return err
		}
		if n < lastTables {
			return fmt.Errorf("SHOW VSCHEMA TABLES in %s lists %d tables, want %d", lastName, n, lastTables)
		}
		return nil
	}
	return timed(fmt.Sprintf("vtgate: waiting for it to serve %s keyspaces", thousands(want)), func() error {
		for {
			err := check()
			if err == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("vtgate does not serve the SrvVSchema (%v); see %s", err, c.path("logs", "vtgate.log"))
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
}

// countRows runs q on vtgate's MySQL port, in keyspace db if not empty,
// and returns the number of rows.
func countRows(ctx context.Context, port int, db, q string) (int, error) {
	qr, err := query(ctx, port, db, q)
	if err != nil {
		return 0, err
	}
	return len(qr.Rows), nil
}

// query runs q on vtgate's MySQL port, in keyspace db if not empty.
func query(ctx context.Context, port int, db, q string) (*sqltypes.Result, error) {
	conn, err := mysql.Connect(ctx, &mysql.ConnParams{Host: "127.0.0.1", Port: port, Uname: "demo", DbName: db})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	qr, err := conn.ExecuteFetch(q, 1<<20, false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	return qr, nil
}

// relToWd names path p relative to the working directory if it is under
// it, else as it is.
func relToWd(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// printTry prints what the demo runs and what to try, vschemad's commands
// among them.
func printTry(c config, s summary, took time.Duration, vschemad []vtlocal.TryCommand) {
	rel := relToWd
	profile := jd.JD().Sized(c.keyspaces)
	unsharded := 0
	for unsharded < c.keyspaces-1 && profile.ShardCount(unsharded) > 1 {
		unsharded++
	}
	ks := profile.KeyspaceName(unsharded)
	fmt.Println()
	fmt.Printf("topod demo is up: %s keyspaces, %s tables; the SrvVSchema of %s is %.1f MiB (%.1fx etcd's 1.5 MiB request limit).\n",
		thousands(s.keyspaces), thousands(s.tables), c.cell, float64(s.srvBytes)/(1<<20), float64(s.srvBytes)/etcdRequestLimit)
	if s.loaded > 0 {
		fmt.Printf("Loaded %s keyspaces in %v; ready in %v.\n", thousands(s.loaded), s.loadTime.Round(100*time.Millisecond), took.Round(100*time.Millisecond))
	} else {
		fmt.Printf("Ready in %v.\n", took.Round(100*time.Millisecond))
	}
	shards := commerceShards(c)
	tour := c.tour(rel)
	fmt.Printf(`
  topod    gRPC 127.0.0.1:%d   bolt and file blobs in %s
  vtctld   HTTP 127.0.0.1:%d   gRPC  127.0.0.1:%d
  vtgate   HTTP 127.0.0.1:%d   MySQL 127.0.0.1:%d   gRPC 127.0.0.1:%d
  tablets  %s: shard -80 %s (primary) and %s, shard 80- %s (primary) and %s,
           on MariaDB in %s (status pages http://127.0.0.1:%d/debug/status ...)
  vschemad %s   the vschema upload API (unauthenticated, on loopback), audit log %s
  vtadmin  %s
  logs     %s

Try the sharded keyspace %s on its tablets:
  mysql -h 127.0.0.1 -P %d -e 'show vitess_tablets'
  mysql -h 127.0.0.1 -P %d -D %s -e "insert into customer (customer_id, email) values (1, 'alice@example.com'), (2, 'bob@example.com'), (3, 'carol@example.com'), (4, 'dave@example.com') on duplicate key update email = values(email)"
  mysql -h 127.0.0.1 -P %d -D %s -e 'select * from customer order by customer_id'   # rows from both shards
  mysql -h 127.0.0.1 -P %d -D '%s:-80' -e 'select * from customer'                  # the rows on shard -80
  mysql -h 127.0.0.1 -P %d -D '%s:80-' -e 'select * from customer'                  # the rows on shard 80-
  mysql -h 127.0.0.1 -P %d -D '%s@replica' -e 'select * from customer order by customer_id'   # read from the replicas

And the %s vschema-only keyspaces:
  mysql -h 127.0.0.1 -P %d -e 'show vitess_keyspaces'
  mysql -h 127.0.0.1 -P %d -D %s -e 'show vschema tables'
  curl -s http://127.0.0.1:%d/debug/vschema | grep -A12 '"%s": {'
  mysql -h 127.0.0.1 -P %d -D %s -e 'alter vschema add table demo_added'   # a one-keyspace change
  mysql -h 127.0.0.1 -P %d -D %s -e 'show vschema tables' | grep demo_added
  status pages: http://127.0.0.1:%d/debug/status (vtgate), http://127.0.0.1:%d/debug/status (vtctld)

And vschemad, at %s, on keyspace %s (example vschemas in %s):
%s
Stop it with: make demo-stop
`, c.topodPort, rel(c.path("topod")), c.vtctldPort, c.vtctldGRPCPort, c.vtgatePort, c.mysqlPort, c.vtgateGRPCPort,
		vtlocal.CommerceKeyspace, shards[0].Primary.Name(), shards[0].Replica.Name(), shards[1].Primary.Name(), shards[1].Replica.Name(),
		rel(c.path("vtdataroot")), shards[0].Primary.Port, c.vschemadURL(), rel(c.path("vschemad", "audit.log")), vtadminLine(c), rel(c.path("logs")),
		vtlocal.CommerceKeyspace, c.mysqlPort,
		c.mysqlPort, vtlocal.CommerceKeyspace, c.mysqlPort, vtlocal.CommerceKeyspace, c.mysqlPort, vtlocal.CommerceKeyspace,
		c.mysqlPort, vtlocal.CommerceKeyspace, c.mysqlPort, vtlocal.CommerceKeyspace,
		thousands(s.keyspaces), c.mysqlPort, c.mysqlPort, ks, c.vtgatePort, ks, c.mysqlPort, ks, c.mysqlPort, ks, c.vtgatePort, c.vtctldPort,
		c.vschemadURL(), tour.Profile.KeyspaceName(tour.Keyspace()), rel(c.path("vschemas")), formatTry(vschemad))
}

// vtadminLine says where VTAdmin is.
func vtadminLine(c config) string {
	api := fmt.Sprintf("API %s (vtadmin-api; discovery and RBAC in %s)", c.vtadminURL(), relToWd(c.path("vtadmin")))
	if c.vtadminWeb == "" {
		return api + "; no web UI (`make vtadmin-web` builds it, --vtadmin-web serves it)"
	}
	return fmt.Sprintf("%s   the web UI; %s", c.vtadminWebURL(), api)
}

// formatTry lays out commands one a line, indented, each followed by its
// comment.
func formatTry(cmds []vtlocal.TryCommand) string {
	var b strings.Builder
	for _, t := range cmds {
		fmt.Fprintf(&b, "  %s   # %s\n", t.Line, t.Comment)
	}
	return b.String()
}

// thousands formats n with comma separators: 552,104.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
