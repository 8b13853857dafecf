// Package jdtopo writes a internal/jd profile's whole topology through a Vitess
// topo.Server, with Vitess's own typed helpers, as a cluster managed by
// vtctld would hold it: keyspaces, shards, tablets (and with them each
// cell's ShardReplication), VSchemas, routing rules, SrvKeyspaces and the
// cells' SrvVSchemas. Tests of tools that read a real topology (migration)
// build their source with it.
package jdtopo

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/topo/topoproto"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/jd"
)

// Write writes profile p into ts, whose cells (p.CellNames()) must exist.
func Write(ctx context.Context, ts *topo.Server, p jd.Profile) error {
	return WriteWith(ctx, ts, p, Options{})
}

// Options adjust WriteWith.
type Options struct {
	// VSchema, if set, returns the vschema written for keyspace i instead
	// of the profile's (a benchmark shrinks them to fit a size limit).
	VSchema func(i int) *vschemapb.Keyspace
	// Concurrency is the number of writes in flight (default 8).
	Concurrency int
}

// WriteWith writes profile p into ts as Write does, adjusted by opts.
func WriteWith(ctx context.Context, ts *topo.Server, p jd.Profile, opts Options) error {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	cells := p.CellNames()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)
	for i := range p.Keyspaces {
		g.Go(func() error { return writeKeyspace(gctx, ts, p, i, opts) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, cell := range cells {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(opts.Concurrency)
		for _, tablet := range p.CellTablets(cell) {
			g.Go(func() error {
				if err := ts.CreateTablet(gctx, tablet); err != nil {
					return fmt.Errorf("jdtopo: CreateTablet %s: %w", topoproto.TabletAliasString(tablet.Alias), err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	if err := ts.SaveRoutingRules(ctx, p.RoutingRules()); err != nil {
		return fmt.Errorf("jdtopo: SaveRoutingRules: %w", err)
	}
	if err := ts.RebuildSrvVSchema(ctx, cells); err != nil {
		return fmt.Errorf("jdtopo: RebuildSrvVSchema: %w", err)
	}
	return nil
}

func writeKeyspace(ctx context.Context, ts *topo.Server, p jd.Profile, i int, opts Options) error {
	name, ks := p.KeyspaceRecord(i)
	if err := ts.CreateKeyspace(ctx, name, ks); err != nil {
		return fmt.Errorf("jdtopo: CreateKeyspace %s: %w", name, err)
	}
	for _, sr := range p.KeyspaceShards(i) {
		if err := ts.CreateShard(ctx, name, sr.Name); err != nil {
			return fmt.Errorf("jdtopo: CreateShard %s/%s: %w", name, sr.Name, err)
		}
		if _, err := ts.UpdateShardFields(ctx, name, sr.Name, func(si *topo.ShardInfo) error {
			si.PrimaryAlias = sr.Shard.PrimaryAlias
			si.PrimaryTermStartTime = sr.Shard.PrimaryTermStartTime
			si.IsPrimaryServing = sr.Shard.IsPrimaryServing
			return nil
		}); err != nil {
			return fmt.Errorf("jdtopo: UpdateShardFields %s/%s: %w", name, sr.Name, err)
		}
	}
	var vs *vschemapb.Keyspace
	if opts.VSchema != nil {
		vs = opts.VSchema(i)
	} else {
		_, vs = p.Keyspace(i)
	}
	if err := ts.SaveVSchema(ctx, &topo.KeyspaceVSchemaInfo{Name: name, Keyspace: vs}); err != nil {
		return fmt.Errorf("jdtopo: SaveVSchema %s: %w", name, err)
	}
	_, srv := p.SrvKeyspace(i)
	for _, cell := range p.CellNames() {
		if err := ts.UpdateSrvKeyspace(ctx, cell, name, srv); err != nil {
			return fmt.Errorf("jdtopo: UpdateSrvKeyspace %s in %s: %w", name, cell, err)
		}
	}
	return nil
}

// CreateCells creates p's cells in ts, all on the server at addr, each with
// its root at rootPrefix/<cell>.
func CreateCells(ctx context.Context, ts *topo.Server, p jd.Profile, addr, rootPrefix string) error {
	for _, cell := range p.CellNames() {
		if err := ts.CreateCellInfo(ctx, cell, &topodatapb.CellInfo{ServerAddress: addr, Root: rootPrefix + "/" + cell}); err != nil {
			return fmt.Errorf("jdtopo: CreateCellInfo %s: %w", cell, err)
		}
	}
	return nil
}
