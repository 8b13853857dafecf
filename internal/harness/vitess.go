package harness

import (
	"context"
	"fmt"
	"path"
	"testing"

	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/topo/test"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
)

// VitessSuite runs Vitess's own topo conformance suite, every check,
// through the topo implementation ("topod": the plugin; "etcd2": stock
// etcd2topo, on topod's etcd API) registered in the test binary, against
// the topod at addr. Each check gets its own tree, as in etcd2topo's test.
func VitessSuite(t *testing.T, implementation, addr string) {
	index := 0
	test.TopoServerTestSuite(t, t.Context(), func() *topo.Server {
		root := fmt.Sprintf("/test-%d", index)
		index++
		return OpenTopo(t, implementation, addr, root)
	}, []string{})
}

// OpenTopo opens a topo.Server through implementation on addr, with a
// global cell at root/global and the suite's local cell at root/test.
func OpenTopo(tb testing.TB, implementation, addr, root string) *topo.Server {
	tb.Helper()
	ts, err := topo.OpenServer(implementation, addr, path.Join(root, topo.GlobalCell))
	if err != nil {
		tb.Fatalf("OpenServer %s: %v", implementation, err)
	}
	if err := ts.CreateCellInfo(context.Background(), test.LocalCellName, &topodatapb.CellInfo{
		ServerAddress: addr,
		Root:          path.Join(root, test.LocalCellName),
	}); err != nil && !topo.IsErrType(err, topo.NodeExists) {
		tb.Fatalf("CreateCellInfo: %v", err)
	}
	return ts
}
