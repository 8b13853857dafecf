package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// topoBinaries are the Vitess commands built here that open the topology.
// bin/mysqlctl and bin/mysqlctld never do and link no topo plugin.
var topoBinaries = []string{"vtgate", "vtctld", "vttablet", "vtorc", "vtbackup"}

// TestBinariesLinkEveryTopo checks that every Vitess command that opens the
// topology links the topod plugin beside the topo implementations stock
// Vitess links (etcd2, zk2, consul): each registers its flags.
func TestBinariesLinkEveryTopo(t *testing.T) {
	bin := binaries(t, topoBinaries...)
	for _, name := range topoBinaries {
		out, err := exec.Command(bin[name], "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --help: %v\n%s", name, err, out)
		}
		// The plugin's TLS flags (their effect is tested in pkg/topoplugin).
		for _, flag := range []string{"--topod-tls-ca", "--topod-tls-cert", "--topod-tls-key", "--topod-tls-server-name"} {
			if !strings.Contains(string(out), flag) {
				t.Errorf("%s has no %s flag", name, flag)
			}
		}
		for impl, flag := range map[string]string{
			"topod":  "--topod-request-timeout",
			"etcd2":  "--topo-etcd-lease-ttl",
			"zk2":    "--topo-zk-base-timeout",
			"consul": "--topo-consul-lock-delay",
		} {
			if !strings.Contains(string(out), flag) {
				t.Errorf("%s does not link the %s topo plugin: no %s flag", name, impl, flag)
			}
		}
	}
}
