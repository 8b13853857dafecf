package vtlocal

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	vtctldatapb "vitess.io/vitess/go/vt/proto/vtctldata"
	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/vtctl/vtctldclient"

	"github.com/topod-io/topod/internal/jd"
)

// Loader loads the keyspaces of a internal/jd profile into a Vitess cluster
// through vtctld's gRPC API (Vitess's own vtctldclient library), as an
// operator's tooling would.
//
// vtctld's CreateKeyspace rebuilds the SrvVSchema of every cell, reading
// every keyspace's vschema, and ApplyVSchema does too unless asked not to.
// So a bulk load creates every keyspace first (while their vschemas are
// still empty and cheap to read), then applies the vschemas and routing
// rules with skip_rebuild, and rebuilds the SrvVSchema once at the end. Even
// so, n CreateKeyspace calls read O(n²) (empty) vschemas: for thousands of
// keyspaces, CreateKeyspaceRecords writes the keyspace records through the
// topology directly instead.
type Loader struct {
	Client  vtctldclient.VtctldClient
	Profile jd.Profile
	// Workers is the number of requests in flight; default 4.
	Workers int
	// Progress, if set, is called after each keyspace of a step with the
	// step's name ("create", "vschema") and how far it got. Calls are
	// serialised.
	Progress func(step string, done, total int)
}

// CreateKeyspaces creates keyspaces idx (indexes into the profile) with
// CreateKeyspace, their durability policy from the profile. A keyspace that
// exists already is left as it is.
func (l *Loader) CreateKeyspaces(ctx context.Context, idx []int) error {
	return l.each(ctx, "create", idx, func(ctx context.Context, i int) error {
		name, ks := l.Profile.KeyspaceRecord(i)
		_, err := l.Client.CreateKeyspace(ctx, &vtctldatapb.CreateKeyspaceRequest{
			Name:             name,
			Force:            true, // exists already: fine (a load resumed)
			DurabilityPolicy: ks.DurabilityPolicy,
		})
		if err != nil {
			return fmt.Errorf("CreateKeyspace %s: %w", name, err)
		}
		return nil
	})
}

// CreateKeyspaceRecords creates keyspaces idx directly in the topology
// through ts, with topo.Server.CreateKeyspace as vtctld's CreateKeyspace
// does, but without its SrvVSchema rebuild per keyspace, which makes a bulk
// load of n keyspaces read O(n²) vschemas. It reports progress as step
// "create". A keyspace that exists already is left as it is.
func (l *Loader) CreateKeyspaceRecords(ctx context.Context, ts *topo.Server, idx []int) error {
	return l.each(ctx, "create", idx, func(ctx context.Context, i int) error {
		name, ks := l.Profile.KeyspaceRecord(i)
		if err := ts.CreateKeyspace(ctx, name, ks); err != nil && !topo.IsErrType(err, topo.NodeExists) {
			return fmt.Errorf("CreateKeyspace %s: %w", name, err)
		}
		return nil
	})
}

// ApplyVSchemas applies the vschemas of keyspaces idx with ApplyVSchema,
// skipping the SrvVSchema rebuild: call Rebuild when done.
func (l *Loader) ApplyVSchemas(ctx context.Context, idx []int) error {
	return l.each(ctx, "vschema", idx, func(ctx context.Context, i int) error {
		name, vs := l.Profile.Keyspace(i)
		_, err := l.Client.ApplyVSchema(ctx, &vtctldatapb.ApplyVSchemaRequest{
			Keyspace:    name,
			VSchema:     vs,
			SkipRebuild: true,
		})
		if err != nil {
			return fmt.Errorf("ApplyVSchema %s (%d tables): %w", name, len(vs.Tables), err)
		}
		return nil
	})
}

// ApplyRoutingRules applies the profile's routing rules with
// ApplyRoutingRules, skipping the SrvVSchema rebuild.
func (l *Loader) ApplyRoutingRules(ctx context.Context) error {
	rr := l.Profile.RoutingRules()
	if _, err := l.Client.ApplyRoutingRules(ctx, &vtctldatapb.ApplyRoutingRulesRequest{
		RoutingRules: rr,
		SkipRebuild:  true,
	}); err != nil {
		return fmt.Errorf("ApplyRoutingRules (%d rules): %w", len(rr.Rules), err)
	}
	return nil
}

// Rebuild rebuilds the SrvVSchema of every cell with RebuildVSchemaGraph.
func (l *Loader) Rebuild(ctx context.Context) error {
	if _, err := l.Client.RebuildVSchemaGraph(ctx, &vtctldatapb.RebuildVSchemaGraphRequest{}); err != nil {
		return fmt.Errorf("RebuildVSchemaGraph: %w", err)
	}
	return nil
}

// Load creates keyspaces idx, applies their vschemas and the profile's
// routing rules, and rebuilds the SrvVSchema once.
func (l *Loader) Load(ctx context.Context, idx []int) error {
	if err := l.CreateKeyspaces(ctx, idx); err != nil {
		return err
	}
	if err := l.ApplyVSchemas(ctx, idx); err != nil {
		return err
	}
	if err := l.ApplyRoutingRules(ctx); err != nil {
		return err
	}
	return l.Rebuild(ctx)
}

// each runs f for every index in idx, Workers at a time, reporting
// progress; the first error cancels the rest.
func (l *Loader) each(ctx context.Context, step string, idx []int, f func(context.Context, int) error) error {
	workers := l.Workers
	if workers <= 0 {
		workers = 4
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	var done atomic.Int64
	progress := make(chan int, len(idx))
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		last := 0
		for n := range progress {
			// Workers finish out of order: report only forward moves.
			if l.Progress != nil && n > last {
				last = n
				l.Progress(step, n, len(idx))
			}
		}
	}()
	for _, i := range idx {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := f(ctx, i); err != nil {
				return err
			}
			progress <- int(done.Add(1))
			return nil
		})
	}
	err := g.Wait()
	close(progress)
	<-reported
	return err
}

// Range returns the indexes 0 .. n-1.
func Range(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}
