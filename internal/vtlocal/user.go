// Package vtlocal runs the repository's Vitess binaries (bin/vtctld,
// bin/vtgate, and tablets: bin/mysqlctl's MariaDB behind bin/vttablet) and
// topod on loopback ports, for the end-to-end tests and the demo, and loads
// a internal/jd topology into them through vtctld's gRPC API. It also gives
// vschemad's arguments (VschemadArgs) and the demo's walk through vschemad
// (VschemadTour).
//
// vtctld, vtgate, vttablet and mysqlctl refuse to run as root. When the caller is root,
// processes run as an unprivileged system user (created with useradd when
// absent); otherwise they run as the caller.
package vtlocal

// DefaultUser is the unprivileged user the Vitess processes run as when the
// caller is root.
const DefaultUser = "topod-demo"
