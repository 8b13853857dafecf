package topoplugin_test

import (
	"path/filepath"
	"testing"

	"github.com/topod-io/topod/internal/harness"
	_ "github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/toposerver"
)

// TestConformanceBolt runs Vitess's own topo conformance suite, every check,
// through the plugin against topod on bolt.
func TestConformanceBolt(t *testing.T) {
	srv := harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{})
	harness.VitessSuite(t, "topod", srv.Addr)
}

// TestConformanceEtcd runs the same suite against topod on a real etcd.
func TestConformanceEtcd(t *testing.T) {
	cluster := harness.StartEtcd(t, 1)
	srv := harness.StartTopod(t, harness.OpenEtcd(t, cluster.Endpoints()), toposerver.Options{})
	harness.VitessSuite(t, "topod", srv.Addr)
}
