package fleet

import (
	"fmt"
	"strings"

	"github.com/topod-io/topod/bench/report"
)

// Sources are the access patterns the fleet reproduces, where Vitess v0.24
// has them, and how the benchmark does them.
func Sources() []report.Source {
	src := func(component, pattern, vitess, how string) report.Source {
		return report.Source{Component: component, Pattern: pattern, Vitess: vitess, How: how}
	}
	const direct, recreated = "called directly", "re-created"
	return []report.Source{
		src("vtgate", "at start: the cell's keyspace names", "go/vt/vtgate/vtgate.go (GetSrvKeyspaceNames), go/vt/discovery/keyspace_events.go", direct+": srvtopo.ResilientServer.GetSrvKeyspaceNames"),
		src("vtgate", "at start: the cell's SrvVSchema", "go/vt/vtgate/vtgate.go (GetSrvVSchema)", recreated+": topo.Conn.Get of the cell's SrvVSchema (what topo.Server.GetSrvVSchema reads), without the proto unmarshal: 200 decoded JD SrvVSchemas do not fit in one process"),
		src("vtgate", "one WatchSrvKeyspace per keyspace of its cell", "go/vt/discovery/keyspace_events.go (kew.ts.WatchSrvKeyspace), go/vt/srvtopo/watch_srvkeyspace.go", direct+": srvtopo.NewResilientServer(...).WatchSrvKeyspace, one ResilientServer a vtgate"),
		src("vtgate", "the cell's SrvVSchema watch", "go/vt/vtgate/executor.go (serv.WatchSrvVSchema), go/vt/srvtopo/watch_srvvschema.go", recreated+": topo.Conn.Watch of the cell's SrvVSchema (the watch topo.Server.WatchSrvVSchema opens), contents checked for the change, not unmarshalled"),
		src("vtgate", "tablet discovery: every tablet of its cell every --tablet-refresh-interval (1m); one read per tablet when the list is refused as too large", "go/vt/discovery/topology_watcher.go, go/vt/topo/tablet.go (GetTabletsByCell, GetTabletsIndividuallyByCell)", direct+": discovery.NewTopologyWatcher(...).Start with a health check that counts the tablets it is given"),
		src("vttablet", "at start: shard, keyspace, SrvKeyspace, SrvVSchema, its tablet record (CreateTablet, else GetTablet + UpdateTablet), the shard and its primary's record, the durability policy", "go/vt/vttablet/tabletmanager/tm_init.go", recreated+" with topo.Server's own calls (the tablet manager needs a MySQL)"),
		src("vttablet", "the throttler's WatchSrvKeyspace of its keyspace", "go/vt/vttablet/tabletserver/throttle/throttler.go (srvTopoServer.WatchSrvKeyspace)", direct+": a srvtopo.ResilientServer per tablet"),
		src("vttablet", "primaries watch their shard record", "go/vt/vttablet/tabletmanager/shard_watcher.go (ts.WatchShard)", direct+": topo.Server.WatchShard"),
		src("vttablet", "the vstreamer engine's SrvVSchema watch (every serving tablet)", "go/vt/vttablet/tabletserver/vstreamer/engine.go (vse.ts.WatchSrvVSchema)", "off by default (--tablet-vschema-watch): 11,416 copies of the SrvVSchema per change do not fit in one process"),
		src("VTOrc", "every --topo-information-refresh-duration (15s): the keyspaces, each keyspace and its shards (all keyspaces at once, 8 shard reads each in flight), every cell's tablets (all cells at once)", "go/vt/vtorc/logic/keyspace_shard_discovery.go (RefreshAllKeyspacesAndShards), go/vt/vtorc/logic/tablet_discovery.go (refreshAllTablets, getAllTablets)", recreated+" with topo.Server's GetKeyspaces, GetKeyspace, FindAllShardsInKeyspace, GetCellInfoNames, GetTabletsByCell: VTOrc's functions keep their results in its sqlite backend through package globals"),
		src("vtctld", "ApplyVSchema: GetKeyspace, SaveVSchema, RebuildSrvVSchema of every cell, GetVSchema", "go/vt/vtctl/grpcvtctldserver/server.go (ApplyVSchema)", recreated+" with topo.Server's own SaveVSchema and RebuildSrvVSchema (the calls ApplyVSchema makes)"),
		src("vtctld", "UpdateThrottlerConfig: lock the keyspace, UpdateKeyspace, UpdateSrvKeyspaceThrottlerConfig in every cell", "go/vt/vtctl/grpcvtctldserver/server.go (UpdateThrottlerConfig), go/vt/topo/srv_keyspace.go", recreated+" with topo.Server's LockKeyspace, UpdateKeyspace, UpdateSrvKeyspaceThrottlerConfig"),
		src("vtctld", "PlannedReparentShard's topology writes: shard lock, GetTabletMapForShard, new primary's record, shard record, old primary's record", "go/vt/vtctl/reparentutil/planned_reparenter.go, go/vt/vttablet/tabletmanager/rpc_actions.go (ChangeType), go/vt/topotools/tablet.go", recreated+" (the reparent itself needs tablets with MySQL)"),
		src("vtctld", "RebuildKeyspaceGraph", "go/vt/topotools/rebuild_keyspace.go", direct+": topotools.RebuildKeyspace"),
		src("vschemad", "a keyspace's vschema, then its piece of every cell's SrvVSchema", "(topod) pkg/vschemastore", direct+": vschemastore.Store.Apply, with topod's record access on topod"),
	}
}

func (c *Config) settings() []report.Setting {
	s := func(name string, v any) report.Setting { return report.Setting{Name: name, Value: fmt.Sprint(v)} }
	out := []report.Setting{
		s("topologies", strings.Join(c.Topologies, ",")),
		s("steady", c.Steady), s("leader-window", c.LeaderWindow), s("compact-window", c.CompactWindow), s("compact-every", c.CompactEvery),
		s("settle", c.Settle), s("tablet-refresh-interval", c.TabletRefresh), s("vtorc-refresh", c.VTOrcRefresh),
		s("tablets-per-conn", c.TabletsPerConn), s("tablet-vschema-watch", c.TabletVSchemaWatch),
		s("vtgate-restart-batch", c.VtgateBatch), s("tablet-restart-batch", c.TabletBatch), s("start-concurrency", c.StartConcurrency),
		s("reparent-shards", c.ReparentShards), s("restart-cell", c.RestartCell),
		s("etcd-members", c.EtcdMembers), s("cell-etcd-members", c.CellEtcdMembers), s("topod-flags", strings.Join(c.TopodFlags, " ")),
		s("plugin-cache-bytes", c.PluginCacheBytes), s("sample-interval", c.SampleInterval), s("etcd-unsafe-no-fsync", c.EtcdUnsafeNoFsync),
	}
	if c.external() {
		out = append(out, s("etcd-endpoints", strings.Join(c.EtcdEndpoints, ",")))
	}
	if len(c.TopodAddrs) > 0 {
		out = append(out, s("topod-addr", strings.Join(c.TopodAddrs, ",")))
	}
	return out
}

func (c *Config) notes() []string {
	var out []string
	if c.TabletsPerConn > 1 {
		out = append(out, fmt.Sprintf("tablets share connections: %d tablets of a cell to a topo.Server (--tablets-per-conn); each tablet still runs its own start sequence and opens its own watches (its own srvtopo.ResilientServer). "+
			"A connection per tablet would be %d etcd clients (or gRPC connections) in one driver process; vtgates and VTOrcs each have their own.", c.TabletsPerConn, c.Profile.Topo.Tablets*2))
	}
	out = append(out,
		"every client is a goroutine in the driver process, and the driver shares the machine's cores with etcd and topod: delivery and start times include the driver's own queueing; the etcd and topod CPU and RSS figures are their processes' own (their Prometheus process metrics)",
		"etcd figures are sums over every member of every etcd cluster of the topology, read from each member's Prometheus endpoint just before and just after each scenario: requests are grpc_server_handled_total of unary methods (Range, Put, Txn, DeleteRange, LeaseGrant, ...), and for the streaming methods the messages received (Watch: watch create/cancel requests; LeaseKeepAlive: keep-alives); watch streams opened are grpc_server_started_total{grpc_method=\"Watch\"}; bytes are etcd_network_client_grpc_received/sent_bytes_total; watchers and streams are etcd_debugging_mvcc_watcher_total and _watch_stream_total at their peak; CPU is process_cpu_seconds_total, RSS process_resident_memory_bytes (peak of the samples), db size etcd_mvcc_db_total_size_in_bytes",
		"a change's delivery: per watcher, from the start of the change's first write until the watcher's callback or channel returned it (the throttler threshold in the SrvKeyspace, the new table in the SrvVSchema's bytes, the new primary in the shard record); missed: watchers that had not seen it within --change-timeout",
	)
	return out
}

// Checks checks a run's figures: every scenario of every topology has
// figures, no change was missed, and the requests the clients made add up
// with those the servers counted (steady state: etcd's KV requests for
// stock etcd2, topod's record requests for topod; within 5% + 50 for
// requests in flight across the scenario's edges and the locks' own).
func Checks(run *report.Run) []report.Check {
	var out []report.Check
	for _, t := range run.Topologies {
		var missing, failed, missedIn []string
		missed := 0
		want := t.Planned
		if len(want) == 0 {
			want = scenariosBefore
		}
		for _, name := range want {
			sc := t.Scenario(name)
			if sc == nil {
				missing = append(missing, name)
				continue
			}
			if sc.Error != "" {
				failed = append(failed, name+": "+sc.Error)
			}
			for _, d := range []*report.Delivery{sc.Client.Change, sc.Client.TabletSeen} {
				if d != nil && d.Missed > 0 {
					missed += d.Missed
					missedIn = append(missedIn, fmt.Sprintf("%s: %d of %d", name, d.Missed, d.Watchers))
				}
			}
		}
		out = append(out,
			report.Check{Topology: t.Name, Name: "every scenario measured", OK: len(missing) == 0 && len(failed) == 0 && t.Error == "",
				Detail: fmt.Sprintf("missing: %v; failed: %v", missing, failed)},
			report.Check{Topology: t.Name, Name: "no missed change", OK: missed == 0, Detail: fmt.Sprintf("%d watcher(s) missed a change %v", missed, missedIn)},
		)
		if sc := t.Scenario(ScSteady); sc != nil {
			reads := func(c map[string]int64) float64 {
				n := c[CallGet] + c[CallList] + c[CallListDir] + c[CallCreate] + c[CallUpdate] + c[CallDelete]
				if t.Kind == string(Stock) {
					n += c[CallWatch] + c[CallWatchRecursive] // etcd2topo's watch reads the file first
				}
				return float64(n)
			}
			c := sc.Client.Calls
			client, inner := reads(c), reads(sc.Client.CallsInner)
			if sc.Client.CallsInner == nil { // reports from before the inner count
				inner = client
			}
			var server float64
			var what string
			if t.Kind == string(Stock) {
				e, at := sc.Etcd.Requests, "etcd"
				if sc.Topod != nil { // stock clients on topod's etcd endpoint
					e, at = sc.Topod.Requests, "topod's etcd endpoint"
				}
				server = e["Range"] + e["Txn"] + e["Put"] + e["DeleteRange"]
				what = at + " Range+Txn+Put+DeleteRange vs the clients' Get+List+ListDir+Create+Update+Delete+Watch"
			} else if sc.Topod != nil {
				q := sc.Topod.Requests
				server = q["Get"] + q["List"] + q["ListDir"] + q["Create"] + q["Update"] + q["Delete"]
				what = "topod Get+List+ListDir+Create+Update+Delete vs the clients' same calls"
			}
			tol := 0.05*client + 50 + 10*float64(c[CallLock])
			out = append(out, report.Check{Topology: t.Name, Name: "requests counted on both sides (steady state)", OK: client > 0 && server >= inner-tol && server <= client+tol,
				Detail: fmt.Sprintf("%s: %.0f vs %.0f to %.0f (the clients' calls between the servers' reads, and around them; tolerance %.0f)", what, server, inner, client, tol)})
		}
	}
	return out
}
