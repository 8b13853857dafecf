package vschematest

import (
	"context"
	"sync/atomic"
	"testing"

	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/topo/etcd2topo"

	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// Fault decides whether one topology operation fails: it returns the error
// the operation returns instead of running, or nil to run it. cell is
// topo.GlobalCell or a cell's name, op one of "ListDir", "Get", "Create",
// "Update" and "Delete", filePath the path relative to the cell's root, as
// topo.Conn has it. It is called concurrently.
type Fault func(cell, op, filePath string) error

// OpenFaulty opens another topo.Server on the topology (as Open does)
// whose connections, global and cells', consult fault before each
// ListDir, Get, Create, Update and Delete; the other operations run as
// they are. Its connections do not offer topod's record-level access.
func (t *Topology) OpenFaulty(tb testing.TB, fault Fault) *topo.Server {
	tb.Helper()
	var base topo.Factory
	switch t.Impl {
	case topoplugin.Name:
		base = topoplugin.Factory{}
	case "etcd2":
		base = etcd2topo.Factory{}
	default:
		tb.Fatalf("vschematest: no factory for topology implementation %s", t.Impl)
	}
	ts, err := topo.NewWithFactory(faultyFactory{base: base, fault: fault}, t.Addr, t.Root)
	if err != nil {
		tb.Fatalf("vschematest: open faulty %s topology at %s: %v", t.Impl, t.Addr, err)
	}
	tb.Cleanup(ts.Close)
	return ts
}

// FaultyStore returns a vschemastore.Store over OpenFaulty's topo.Server,
// and the fault it consults: none until the test stores one.
func (t *Topology) FaultyStore(tb testing.TB) (*vschemastore.Store, *atomic.Pointer[Fault]) {
	tb.Helper()
	fault := new(atomic.Pointer[Fault])
	s, err := vschemastore.NewStore(t.OpenFaulty(tb, func(cell, op, p string) error {
		if f := fault.Load(); f != nil {
			return (*f)(cell, op, p)
		}
		return nil
	}), vschemastore.StoreOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return s, fault
}

// faultyFactory creates the connections of base, wrapped in faultyConn.
type faultyFactory struct {
	base  topo.Factory
	fault Fault
}

func (f faultyFactory) HasGlobalReadOnlyCell(serverAddr, root string) bool {
	return f.base.HasGlobalReadOnlyCell(serverAddr, root)
}

func (f faultyFactory) Create(cell, serverAddr, root string) (topo.Conn, error) {
	c, err := f.base.Create(cell, serverAddr, root)
	if err != nil {
		return nil, err
	}
	return &faultyConn{Conn: c, cell: cell, fault: f.fault}, nil
}

// faultyConn is a topo.Conn whose reads and writes consult fault first.
type faultyConn struct {
	topo.Conn
	cell  string
	fault Fault
}

func (c *faultyConn) ListDir(ctx context.Context, dirPath string, full bool) ([]topo.DirEntry, error) {
	if err := c.fault(c.cell, "ListDir", dirPath); err != nil {
		return nil, err
	}
	return c.Conn.ListDir(ctx, dirPath, full)
}

func (c *faultyConn) Get(ctx context.Context, filePath string) ([]byte, topo.Version, error) {
	if err := c.fault(c.cell, "Get", filePath); err != nil {
		return nil, nil, err
	}
	return c.Conn.Get(ctx, filePath)
}

func (c *faultyConn) Create(ctx context.Context, filePath string, contents []byte) (topo.Version, error) {
	if err := c.fault(c.cell, "Create", filePath); err != nil {
		return nil, err
	}
	return c.Conn.Create(ctx, filePath, contents)
}

func (c *faultyConn) Update(ctx context.Context, filePath string, contents []byte, version topo.Version) (topo.Version, error) {
	if err := c.fault(c.cell, "Update", filePath); err != nil {
		return nil, err
	}
	return c.Conn.Update(ctx, filePath, contents, version)
}

func (c *faultyConn) Delete(ctx context.Context, filePath string, version topo.Version) error {
	if err := c.fault(c.cell, "Delete", filePath); err != nil {
		return err
	}
	return c.Conn.Delete(ctx, filePath, version)
}
