package vschematest

import (
	"context"
	"sync"
	"testing"

	"github.com/topod-io/topod/pkg/cache"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// RecordConns returns, for vschemastore.StoreOptions.RecordConn, the topod
// plugin's record-level connections to each cell (topoplugin.Conn
// implements vschemastore.RecordConn), each with a blob cache of its own. Only
// for topod topologies.
func (t *Topology) RecordConns(tb testing.TB) func(ctx context.Context, cell string) (vschemastore.RecordConn, error) {
	tb.Helper()
	if t.Impl != topoplugin.Name {
		tb.Fatalf("vschematest: record connections need topod, not %s", t.Impl)
	}
	var mu sync.Mutex
	conns := map[string]*topoplugin.Conn{}
	tb.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return func(ctx context.Context, cell string) (vschemastore.RecordConn, error) {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := conns[cell]; ok {
			return c, nil
		}
		ci, err := t.TS.GetCellInfo(ctx, cell, false)
		if err != nil {
			return nil, err
		}
		c, err := topoplugin.NewConnWithCache(ci.ServerAddress, ci.Root, cache.New(256<<20))
		if err != nil {
			return nil, err
		}
		conns[cell] = c
		return c, nil
	}
}
