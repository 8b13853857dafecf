package fleet

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/topo/etcd2topo"

	"github.com/topod-io/topod/pkg/cache"
	"github.com/topod-io/topod/pkg/topoplugin"
)

// Kind is how clients reach the topology.
type Kind string

// Kinds.
const (
	// Stock is Vitess's etcd2topo: every connection an etcd client of its
	// own, straight to etcd.
	Stock Kind = "etcd2"
	// Topod is the topod plugin: every connection a gRPC connection of its
	// own to topod.
	Topod Kind = "topod"
)

// Cell is where one cell's topology lives: its CellInfo.
type Cell struct {
	Name string
	Addr string // CellInfo.ServerAddress: etcd endpoints or topod replicas, comma-separated
	Root string
}

// Topology is one topology under test as its clients see it: the global
// topology's address and root and the cells'. Every topo.Server of every
// client is made by Dial, and counts its calls in Calls.
type Topology struct {
	Kind       Kind
	GlobalAddr string
	GlobalRoot string
	Cells      []Cell
	// PluginCacheBytes bounds each plugin connection's blob cache.
	PluginCacheBytes int64
	Calls            Calls
	conns            atomic.Int64 // connections open
	dials            atomic.Int64 // connections opened
}

// Dial returns a new topo.Server with connections of its own (a global
// one now, a cell's when first used), as one more Vitess process has.
func (t *Topology) Dial() (*topo.Server, error) {
	ts, err := topo.NewWithFactory(factory{t}, t.GlobalAddr, t.GlobalRoot)
	if err != nil {
		return nil, fmt.Errorf("fleet: open topology %s at %s: %w", t.Kind, t.GlobalAddr, err)
	}
	return ts, nil
}

// Conns returns the connections open now and opened in all.
func (t *Topology) Conns() (open, opened int64) { return t.conns.Load(), t.dials.Load() }

type factory struct{ t *Topology }

func (f factory) HasGlobalReadOnlyCell(string, string) bool { return false }

func (f factory) Create(cell, addr, root string) (topo.Conn, error) {
	var conn topo.Conn
	switch f.t.Kind {
	case Stock:
		c, err := etcd2topo.NewServer(addr, root)
		if err != nil {
			return nil, fmt.Errorf("etcd2topo.NewServer(%s, %s): %w", addr, root, err)
		}
		conn = &drainedConn{Conn: c}
	case Topod:
		c, err := topoplugin.NewConnWithCache(addr, root, cache.New(f.t.PluginCacheBytes))
		if err != nil {
			return nil, fmt.Errorf("topoplugin.NewConnWithCache(%s, %s): %w", addr, root, err)
		}
		conn = c
	default:
		return nil, fmt.Errorf("fleet: unknown topology kind %q", f.t.Kind)
	}
	f.t.conns.Add(1)
	f.t.dials.Add(1)
	return &countingConn{Conn: conn, t: f.t}, nil
}

// Call kinds the clients count.
const (
	CallGet            = "Get"
	CallList           = "List"
	CallListDir        = "ListDir"
	CallCreate         = "Create"
	CallUpdate         = "Update"
	CallDelete         = "Delete"
	CallWatch          = "Watch"
	CallWatchRecursive = "WatchRecursive"
	CallLock           = "Lock"
)

var callKinds = [...]string{CallGet, CallList, CallListDir, CallCreate, CallUpdate, CallDelete, CallWatch, CallWatchRecursive, CallLock}

// Calls counts the clients' topo.Conn calls by kind: what the clients
// asked of the topology, to hold against what the servers counted; and the
// failed ones by kind and error (Failed).
type Calls struct {
	n      [len(callKinds)]atomic.Int64
	failed counts
}

func (c *Calls) add(kind string, err error) {
	for i, k := range callKinds {
		if k == kind {
			c.n[i].Add(1)
		}
	}
	if err != nil && !topo.IsErrType(err, topo.NoNode) && !topo.IsErrType(err, topo.NodeExists) && !topo.IsErrType(err, topo.BadVersion) {
		c.failed.add(kind + ": " + errClass(err))
	}
}

// Failed returns the failed calls by "kind: error class" (errClass).
func (c *Calls) Failed() map[string]int64 { return c.failed.snapshot() }

// Snapshot returns the counts by kind.
func (c *Calls) Snapshot() map[string]int64 {
	out := make(map[string]int64, len(callKinds))
	for i, k := range callKinds {
		out[k] = c.n[i].Load()
	}
	return out
}

// countingConn counts a connection's calls.
type countingConn struct {
	topo.Conn
	t      *Topology
	closed atomic.Bool
}

func (c *countingConn) Close() {
	if c.closed.CompareAndSwap(false, true) {
		c.t.conns.Add(-1)
	}
	c.Conn.Close()
}

func (c *countingConn) ListDir(ctx context.Context, p string, full bool) ([]topo.DirEntry, error) {
	r, err := c.Conn.ListDir(ctx, p, full)
	c.t.Calls.add(CallListDir, err)
	return r, err
}

func (c *countingConn) Create(ctx context.Context, p string, contents []byte) (topo.Version, error) {
	r, err := c.Conn.Create(ctx, p, contents)
	c.t.Calls.add(CallCreate, err)
	return r, err
}

func (c *countingConn) Update(ctx context.Context, p string, contents []byte, v topo.Version) (topo.Version, error) {
	r, err := c.Conn.Update(ctx, p, contents, v)
	c.t.Calls.add(CallUpdate, err)
	return r, err
}

func (c *countingConn) Get(ctx context.Context, p string) ([]byte, topo.Version, error) {
	b, v, err := c.Conn.Get(ctx, p)
	c.t.Calls.add(CallGet, err)
	return b, v, err
}

func (c *countingConn) List(ctx context.Context, p string) ([]topo.KVInfo, error) {
	r, err := c.Conn.List(ctx, p)
	c.t.Calls.add(CallList, err)
	return r, err
}

func (c *countingConn) Delete(ctx context.Context, p string, v topo.Version) error {
	err := c.Conn.Delete(ctx, p, v)
	c.t.Calls.add(CallDelete, err)
	return err
}

func (c *countingConn) Lock(ctx context.Context, p, contents string) (topo.LockDescriptor, error) {
	r, err := c.Conn.Lock(ctx, p, contents)
	c.t.Calls.add(CallLock, err)
	return r, err
}

func (c *countingConn) LockWithTTL(ctx context.Context, p, contents string, ttl time.Duration) (topo.LockDescriptor, error) {
	r, err := c.Conn.LockWithTTL(ctx, p, contents, ttl)
	c.t.Calls.add(CallLock, err)
	return r, err
}

func (c *countingConn) LockName(ctx context.Context, p, contents string) (topo.LockDescriptor, error) {
	r, err := c.Conn.LockName(ctx, p, contents)
	c.t.Calls.add(CallLock, err)
	return r, err
}

func (c *countingConn) TryLock(ctx context.Context, p, contents string) (topo.LockDescriptor, error) {
	r, err := c.Conn.TryLock(ctx, p, contents)
	c.t.Calls.add(CallLock, err)
	return r, err
}

func (c *countingConn) Watch(ctx context.Context, p string) (*topo.WatchData, <-chan *topo.WatchData, error) {
	cur, ch, err := c.Conn.Watch(ctx, p)
	c.t.Calls.add(CallWatch, err)
	return cur, ch, err
}

func (c *countingConn) WatchRecursive(ctx context.Context, p string) ([]*topo.WatchDataRecursive, <-chan *topo.WatchDataRecursive, error) {
	cur, ch, err := c.Conn.WatchRecursive(ctx, p)
	c.t.Calls.add(CallWatchRecursive, err)
	return cur, ch, err
}

// Unwrap returns the connection counted, for callers that need the
// implementation's own methods (the topod plugin's record access).
func (c *countingConn) Unwrap() topo.Conn { return c.Conn }
