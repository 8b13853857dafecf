package etcdapi_test

import (
	"path/filepath"
	"testing"

	_ "vitess.io/vitess/go/vt/topo/etcd2topo"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/toposerver"
)

// TestVitessSuiteEtcd2OnTopodEtcd runs Vitess's own topo conformance
// suite, every check, through stock etcd2topo (--topo-implementation
// etcd2) pointed at topod's address, with topod on a real etcd.
func TestVitessSuiteEtcd2OnTopodEtcd(t *testing.T) {
	cluster := harness.StartEtcd(t, 1)
	srv := harness.StartTopod(t, harness.OpenEtcd(t, cluster.Endpoints()), toposerver.Options{})
	harness.VitessSuite(t, "etcd2", srv.Addr)
}

// TestVitessSuiteEtcd2OnTopodBolt runs the same suite with topod on bolt,
// the embedded default.
func TestVitessSuiteEtcd2OnTopodBolt(t *testing.T) {
	srv := harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{})
	harness.VitessSuite(t, "etcd2", srv.Addr)
}
