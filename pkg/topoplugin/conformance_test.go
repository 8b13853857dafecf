package topoplugin_test

import (
	"path/filepath"
	"testing"

	"github.com/topod-io/topod/internal/etcdtest"
	"github.com/topod-io/topod/internal/topodtest"
	_ "github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/toposerver"
)

// TestConformanceBolt runs Vitess's own topo conformance suite, every check,
// through the plugin against topod on bolt.
func TestConformanceBolt(t *testing.T) {
	srv := topodtest.Start(t, topodtest.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{})
	topodtest.VitessSuite(t, "topod", srv.Addr)
}

// TestConformanceEtcd runs the same suite against topod on a real etcd.
func TestConformanceEtcd(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	srv := topodtest.Start(t, topodtest.OpenEtcd(t, cluster.Endpoints()), toposerver.Options{})
	topodtest.VitessSuite(t, "topod", srv.Addr)
}
