package vschematest

import (
	"context"
	"testing"

	"github.com/topod-io/topod/pkg/cache"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// RecordConns returns, for vschemastore.StoreOptions.RecordConn, the topod
// plugin's record-level connections to each cell (topoplugin.Conn
// implements vschemastore.RecordConn), with a blob cache of their own. Only
// for topod topologies.
func (t *Topology) RecordConns(tb testing.TB) func(ctx context.Context, cell string) (vschemastore.RecordConn, error) {
	tb.Helper()
	if t.Impl != topoplugin.Name {
		tb.Fatalf("vschematest: record connections need topod, not %s", t.Impl)
	}
	conns := topoplugin.NewCellConns(t.TS, cache.New(256<<20))
	tb.Cleanup(conns.Close)
	return func(ctx context.Context, cell string) (vschemastore.RecordConn, error) {
		c, err := conns.Get(ctx, cell)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}
