package topoplugin

import (
	"context"
	"sync"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/cache"
)

// CellConns opens, per cell, a record-level Conn of its own to the cell's
// topod (its CellInfo's server address and root), to reach what
// topo.Server's connections, wrapped in topo.StatsConn, hide (e.g. for
// vschemastore.RecordConn). Cells that share a topod and root share a Conn.
type CellConns struct {
	ts    *topo.Server
	blobs *cache.Cache

	mu    sync.Mutex
	conns map[string]*Conn // by server address and root
}

// NewCellConns returns the cells' connections of ts, caching blobs in
// blobs, or in the process-wide cache (--topod-blob-cache-bytes) if nil.
func NewCellConns(ts *topo.Server, blobs *cache.Cache) *CellConns {
	if blobs == nil {
		blobs = sharedBlobCache()
	}
	return &CellConns{ts: ts, blobs: blobs, conns: map[string]*Conn{}}
}

// Get returns the connection to cell's topod, opening it the first time.
func (c *CellConns) Get(ctx context.Context, cell string) (*Conn, error) {
	ci, err := c.ts.GetCellInfo(ctx, cell, false)
	if err != nil {
		return nil, err
	}
	key := ci.ServerAddress + "|" + ci.Root
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn, ok := c.conns[key]; ok {
		return conn, nil
	}
	conn, err := NewConnWithCache(ci.ServerAddress, ci.Root, c.blobs)
	if err != nil {
		return nil, err
	}
	c.conns[key] = conn
	return conn, nil
}

// Close closes every connection opened.
func (c *CellConns) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, conn := range c.conns {
		conn.Close()
		delete(c.conns, key)
	}
}
