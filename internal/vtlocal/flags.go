package vtlocal

import "strconv"

// Topo is where the Vitess processes find the global topology.
type Topo struct {
	// Implementation is the --topo-implementation: "topod" (or "etcd2").
	Implementation string
	// Address is the --topo-global-server-address.
	Address string
	// Root is the --topo-global-root, e.g. "/vitess/global".
	Root string
}

// Flags returns the topology flags every Vitess binary takes.
func (t Topo) Flags() []string {
	return []string{
		"--topo-implementation", t.Implementation,
		"--topo-global-server-address", t.Address,
		"--topo-global-root", t.Root,
	}
}

// VtctldArgs returns the arguments of a vtctld serving HTTP on port and the
// vtctld gRPC API (what vtctldclient talks to) on grpcPort, both on
// 127.0.0.1.
func VtctldArgs(t Topo, port, grpcPort int) []string {
	return append(t.Flags(),
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
	return append(t.Flags(),
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
