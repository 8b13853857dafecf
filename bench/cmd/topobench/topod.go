package main

import (
	"context"
	"fmt"

	"github.com/topod-io/topod/bench/servers"
)

// topodBuildFlags are extra flags of the go build of topod (the smoke test
// builds it with -race when it runs with -race).
var topodBuildFlags []string

// buildTopod builds the topod binary from the module the driver runs in
// into dir, and returns its path.
func buildTopod(ctx context.Context, dir string) (string, error) {
	return servers.BuildTopod(ctx, dir, topodBuildFlags...)
}

// topodCluster is a set of topod replicas, each a separate process serving
// one etcd (bench/servers).
type topodCluster struct {
	*servers.Topod
	procs []*servers.TopodProc
}

// startTopod starts replicas topod processes of bin on the etcd at
// endpoint, with their data and logs under dir.
func startTopod(ctx context.Context, bin, endpoint, dir string, replicas int, extra []string) (*topodCluster, error) {
	t, err := servers.StartTopod(ctx, bin, []string{endpoint}, dir, replicas, extra)
	if err != nil {
		return nil, fmt.Errorf("start topod: %w", err)
	}
	return &topodCluster{Topod: t, procs: t.Procs}, nil
}

// pick returns the address of a replica chosen at random.
func (c *topodCluster) pick() string { return c.Pick() }

// Stats returns the CPU time and memory of the replicas, summed.
func (c *topodCluster) Stats() (procStats, error) { return c.Topod.Stats() }

// procStats is what /proc tells of a process.
type procStats = servers.ProcStats

// readProcStats reads /proc/PID/stat and /proc/PID/status. Linux only.
func readProcStats(pid int) (procStats, error) { return servers.ReadProcStats(pid) }

// clockTick is the unit of the times in /proc/PID/stat (USER_HZ, 100 on
// every Linux platform Go supports).
const clockTick = servers.ClockTick
