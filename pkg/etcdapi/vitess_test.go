package etcdapi_test

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"testing"

	"vitess.io/vitess/go/vt/topo"
	_ "vitess.io/vitess/go/vt/topo/etcd2topo"
	"vitess.io/vitess/go/vt/topo/test"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"

	"github.com/topod-io/topod/internal/etcdtest"
	"github.com/topod-io/topod/internal/topodtest"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/kv/etcdkv"
	"github.com/topod-io/topod/pkg/toposerver"
)

// TestVitessSuiteEtcd2OnTopodEtcd runs Vitess's own topo conformance
// suite, every check, through stock etcd2topo (--topo-implementation
// etcd2) pointed at topod's address, with topod on a real etcd.
func TestVitessSuiteEtcd2OnTopodEtcd(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	srv := topodtest.Start(t, openEtcd(t, cluster.Endpoints()), toposerver.Options{})
	runVitessSuite(t, srv.Addr)
}

// TestVitessSuiteEtcd2OnTopodBolt runs the same suite with topod on bolt,
// the embedded default.
func TestVitessSuiteEtcd2OnTopodBolt(t *testing.T) {
	srv := topodtest.Start(t, openBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{})
	runVitessSuite(t, srv.Addr)
}

func runVitessSuite(t *testing.T, addr string) {
	index := 0
	test.TopoServerTestSuite(t, t.Context(), func() *topo.Server {
		root := fmt.Sprintf("/test-%d", index)
		index++
		return openEtcd2(t, addr, root)
	}, []string{})
}

// openEtcd2 opens a topo.Server through stock etcd2topo on addr, with a
// global cell at root/global and the suite's local cell at root/test.
func openEtcd2(t testing.TB, addr, root string) *topo.Server {
	t.Helper()
	ts, err := topo.OpenServer("etcd2", addr, path.Join(root, topo.GlobalCell))
	if err != nil {
		t.Fatalf("OpenServer: %v", err)
	}
	if err := ts.CreateCellInfo(context.Background(), test.LocalCellName, &topodatapb.CellInfo{
		ServerAddress: addr,
		Root:          path.Join(root, test.LocalCellName),
	}); err != nil && !topo.IsErrType(err, topo.NodeExists) {
		t.Fatalf("CreateCellInfo: %v", err)
	}
	return ts
}

func openBolt(t testing.TB, file string) kv.Backend {
	t.Helper()
	b, err := boltkv.Open(file, boltkv.Options{})
	if err != nil {
		t.Fatalf("open bolt: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func openEtcd(t testing.TB, endpoints []string) kv.Backend {
	t.Helper()
	b, err := etcdkv.Open(context.Background(), endpoints, etcdkv.Options{})
	if err != nil {
		t.Fatalf("open etcd: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
