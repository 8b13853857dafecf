package vtlocal

import (
	"strconv"

	"github.com/topod-io/topod/pkg/tlsconfig"
)

// Topo is where the Vitess processes find the global topology.
type Topo struct {
	// Implementation is the --topo-implementation: "topod" (or "etcd2").
	Implementation string
	// Address is the --topo-global-server-address.
	Address string
	// Root is the --topo-global-root, e.g. "/vitess/global".
	Root string
	// TLS names, by component ("vtctld", "vtgate", "vttablet",
	// "vschemad"), the files of the client certificate the component
	// presents to topod (the plugin's --topod-tls-* flags). A component
	// not named speaks plaintext.
	TLS map[string]tlsconfig.Files
}

// Flags returns the topology flags every Vitess binary takes.
func (t Topo) Flags() []string {
	return []string{
		"--topo-implementation", t.Implementation,
		"--topo-global-server-address", t.Address,
		"--topo-global-root", t.Root,
	}
}

// FlagsOf returns the topology flags of component: Flags, and the
// --topod-tls-* flags of its certificate in t.TLS.
func (t Topo) FlagsOf(component string) []string {
	flags := t.Flags()
	f, ok := t.TLS[component]
	if !ok {
		return flags
	}
	for _, kv := range [][2]string{{"--topod-tls-ca", f.CA}, {"--topod-tls-cert", f.Cert}, {"--topod-tls-key", f.Key}, {"--topod-tls-server-name", f.ServerName}} {
		if kv[1] != "" {
			flags = append(flags, kv[0], kv[1])
		}
	}
	return flags
}

// GRPCMaxMessageSize is the largest gRPC message vtctld and vtadmin-api
// send and take (--grpc-max-message-size; Vitess's default is 16 MiB): a
// cell's SrvVSchema as vtctld's GetTopologyPath returns it, decoded to
// text, is 32.6 MB at the demo's 2,001 keyspaces.
const GRPCMaxMessageSize = 64 << 20

// VtctldArgs returns the arguments of a vtctld serving HTTP on port and the
// vtctld gRPC API (what vtctldclient talks to) on grpcPort, both on
// 127.0.0.1, with messages up to GRPCMaxMessageSize.
func VtctldArgs(t Topo, port, grpcPort int) []string {
	return append(t.FlagsOf("vtctld"),
		"--grpc-max-message-size", strconv.Itoa(GRPCMaxMessageSize),
		"--port", strconv.Itoa(port),
		"--bind-address", "127.0.0.1",
		"--grpc-port", strconv.Itoa(grpcPort),
		"--grpc-bind-address", "127.0.0.1",
		"--service-map", "grpc-vtctl,grpc-vtctld",
	)
}

// VtgateArgs returns the arguments of a vtgate of cell serving HTTP (status
// pages, /debug/vschema) on port and the MySQL protocol, with no
// authentication, on mysqlPort, both on 127.0.0.1. It starts with no tablets:
// it answers SHOW VITESS_KEYSPACES and /debug/vschema from the cell's
// SrvVSchema alone.
func VtgateArgs(t Topo, cell string, port, mysqlPort int) []string {
	return append(t.FlagsOf("vtgate"),
		"--cell", cell,
		"--cells-to-watch", cell,
		"--port", strconv.Itoa(port),
		"--bind-address", "127.0.0.1",
		"--mysql-server-port", strconv.Itoa(mysqlPort),
		"--mysql-server-bind-address", "127.0.0.1",
		"--mysql-auth-server-impl", "none",
		"--tablet-types-to-wait", "PRIMARY",
	)
}
