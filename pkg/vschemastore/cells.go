package vschemastore

// This file keeps the cells' SrvVSchemas in step with the global topology,
// one changed keyspace at a time.
//
// Correctness under concurrent writers (in this process, in other vschemad
// processes, on any topology) rests on one ordering: a cell update reads
// the cell's SrvVSchema (and its version) first, then the global values of
// the keyspaces it brings in step, and writes compare-and-set on the
// version it read. A writer updates the cells only after its global write.
// So the last successful write of a cell read the global values after every
// global write that preceded its read, and any later global write is
// followed by its writer's own cell update: the cell converges to the global
// topology, and no update is lost. This needs the global reads to reflect
// every write completed before them, by any client: they are marked
// WithFreshReads for topologies that answer from a cache. Rounds are grouped per cell: writers that
// arrive while a round runs are served together by the next one, so N
// concurrent applies cost about two rounds, not N.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/srvvschema"
)

// Cell update modes, in CellResult.Mode.
const (
	ModeUnchanged = "unchanged"
	ModeSplice    = "splice"
	ModeManifest  = "manifest"
	ModeCreate    = "create"
	ModeRebuild   = "rebuild"
)

// syncKeys is what a cell update brings in step.
type syncKeys struct {
	keyspaces []string
	rules     bool // the four rules
	rebuild   bool // the whole SrvVSchema
}

// cellSyncer runs the update rounds of one cell, one at a time.
type cellSyncer struct {
	s    *Store
	cell string

	mu      sync.Mutex
	pending map[string]bool
	rules   bool
	rebuild bool
	waiters []chan CellResult
	running bool
}

func (s *Store) syncer(cell string) *cellSyncer {
	s.cellsMu.Lock()
	defer s.cellsMu.Unlock()
	c := s.cells[cell]
	if c == nil {
		c = &cellSyncer{s: s, cell: cell, pending: map[string]bool{}}
		s.cells[cell] = c
	}
	return c
}

// sync waits for a round that started after the call to bring keys in step
// in the cell, and returns its result. If ctx ends first, the round still
// runs; the result says the caller stopped waiting.
func (c *cellSyncer) sync(ctx context.Context, keys syncKeys) CellResult {
	ch := make(chan CellResult, 1)
	c.mu.Lock()
	for _, k := range keys.keyspaces {
		c.pending[k] = true
	}
	c.rules = c.rules || keys.rules
	c.rebuild = c.rebuild || keys.rebuild
	c.waiters = append(c.waiters, ch)
	if !c.running {
		c.running = true
		go c.run()
	}
	c.mu.Unlock()
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		return CellResult{Cell: c.cell, Error: fmt.Sprintf("stopped waiting for the update: %v", ctx.Err())}
	}
}

// run serves rounds until no writer waits.
func (c *cellSyncer) run() {
	for {
		c.mu.Lock()
		if len(c.waiters) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		keys := syncKeys{keyspaces: slices.Sorted(maps.Keys(c.pending)), rules: c.rules, rebuild: c.rebuild}
		waiters := c.waiters
		c.pending, c.rules, c.rebuild, c.waiters = map[string]bool{}, false, false, nil
		c.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), c.s.opts.CellRoundTimeout)
		r := c.s.updateCell(ctx, c.cell, keys)
		cancel()
		for _, w := range waiters {
			w <- r
		}
	}
}

// errConflict: the cell changed between read and write; try again.
var errConflict = errors.New("conflict")

// updateCell brings keys in step in one cell: through the topod fast path
// when the cell offers it, else by splicing the marshalled SrvVSchema;
// compare-and-set, retried on conflict.
func (s *Store) updateCell(ctx context.Context, cell string, keys syncKeys) CellResult {
	r := CellResult{Cell: cell}
	conn, err := s.ts.ConnForCell(ctx, cell)
	if err != nil {
		r.Error = fmt.Sprintf("connect: %v", err)
		return r
	}
	wait := casBackoff()
	for r.Attempts = 1; r.Attempts <= maxAttempts; r.Attempts++ {
		if err := pause(ctx, wait, r.Attempts-1); err != nil {
			r.Error = err.Error()
			return r
		}
		if !keys.rebuild {
			err := s.updateCellFast(ctx, cell, keys, &r)
			switch {
			case err == nil:
				return r
			case errors.Is(err, errConflict):
				continue
			case !errors.Is(err, errNoFastPath):
				r.Error = err.Error()
				return r
			}
		}
		err := s.updateCellPortable(ctx, conn, keys, &r)
		switch {
		case err == nil:
			return r
		case errors.Is(err, errConflict):
			continue
		default:
			r.Error = err.Error()
			return r
		}
	}
	r.Attempts--
	r.Error = fmt.Sprintf("%s/%s: written by others during each of %d attempts", cell, topo.SrvVSchemaFile, maxAttempts)
	return r
}

// updateCellPortable is the update through topo.Conn alone: the cell's
// SrvVSchema is read, the changed keyspaces spliced into its wire bytes,
// and written back with the version read.
func (s *Store) updateCellPortable(ctx context.Context, conn topo.Conn, keys syncKeys, r *CellResult) error {
	data, ver, err := conn.Get(ctx, topo.SrvVSchemaFile)
	missing := topo.IsErrType(err, topo.NoNode)
	if err != nil && !missing {
		return fmt.Errorf("read %s: %w", topo.SrvVSchemaFile, err)
	}
	if missing || keys.rebuild {
		// A cell without a SrvVSchema gets it whole, as RebuildSrvVSchema
		// would write it: one full read of the global topology.
		srv, err := s.BuildSrvVSchema(srvvschema.WithFreshReads(ctx))
		if err != nil {
			return err
		}
		out, err := srv.MarshalVT()
		if err != nil {
			return fmt.Errorf("marshal %s: %w", topo.SrvVSchemaFile, err)
		}
		var nv topo.Version
		if missing {
			nv, err = conn.Create(ctx, topo.SrvVSchemaFile, out)
			r.Mode = ModeCreate
		} else {
			nv, err = conn.Update(ctx, topo.SrvVSchemaFile, out, ver)
			r.Mode = ModeRebuild
		}
		if topo.IsErrType(err, topo.NodeExists) || topo.IsErrType(err, topo.BadVersion) || topo.IsErrType(err, topo.NoNode) {
			return errConflict
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", topo.SrvVSchemaFile, err)
		}
		r.Version = versionString(nv)
		s.manifests.Delete(r.Cell)
		return nil
	}
	edit, err := s.readEdit(ctx, keys)
	if err != nil {
		return err
	}
	out, changed, err := srvvschema.Splice(data, edit)
	if err != nil {
		return err
	}
	if !changed {
		r.Mode, r.Version = ModeUnchanged, versionString(ver)
		return nil
	}
	nv, err := conn.Update(ctx, topo.SrvVSchemaFile, out, ver)
	if topo.IsErrType(err, topo.BadVersion) || topo.IsErrType(err, topo.NoNode) {
		return errConflict
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", topo.SrvVSchemaFile, err)
	}
	r.Mode, r.Version = ModeSplice, versionString(nv)
	return nil
}

// readEdit reads, from the global topology, the serving values of keys: what
// RebuildSrvVSchema would put in a SrvVSchema for them. The reads are
// marked fresh (WithFreshReads): they must not lag other writers.
func (s *Store) readEdit(ctx context.Context, keys syncKeys) (srvvschema.Edit, error) {
	ctx = srvvschema.WithFreshReads(ctx)
	e := srvvschema.Edit{Keyspaces: make(map[string]*vschemapb.Keyspace, len(keys.keyspaces))}
	values := make([]*vschemapb.Keyspace, len(keys.keyspaces))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, name := range keys.keyspaces {
		g.Go(func() error {
			var err error
			values[i], err = s.servingValue(gctx, name)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return srvvschema.Edit{}, err
	}
	for i, name := range keys.keyspaces {
		e.Keyspaces[name] = values[i]
	}
	if keys.rules {
		rules, err := s.readRules(ctx)
		if err != nil {
			return srvvschema.Edit{}, err
		}
		e.Rules = rules
	}
	return e, nil
}
