// Command topod-demo runs the demo behind `make demo` and `make demo-stop`:
// topod on its embedded defaults (bolt and file blobs under the demo's data
// directory), and the repository's vtctld, vtgate and vttablet (Vitess 24
// with the topod plugin) with --topo-implementation topod: the sharded
// keyspace commerce on real tablets (MariaDB started by mysqlctl; shards -80
// and 80-, a primary and a replica each), beside 2,000 vschema-only
// keyspaces of realistic vschemas: a SrvVSchema many times over the 1.5 MiB
// etcd accepts in one request, which stock etcd2 cannot store; vschemad,
// the vschema upload API, on loopback without authentication, its audit log
// in DATA/vschemad; and VTAdmin: stock vtadmin-api (bin/vtadmin) set up as
// Vitess's local example sets it up (DATA/vtadmin), and vtadmin-web's
// build (`make vtadmin-web`, --vtadmin-web) served by this program.
//
//	topod-demo start [--data-dir demo-data] [--keyspaces 2000] [--vtadmin-web DIR]
//	topod-demo stop  [--data-dir demo-data]
//
// start starts what is not running yet, loads the keyspaces that are not
// there yet through vtctld's gRPC API, prints what to try and returns,
// leaving the processes running (pid files in DATA/run, logs in DATA/logs).
// The vschemad commands it prints use example vschemas it writes to
// DATA/vschemas (vtlocal.VschemadTour). A second start reuses the data.
// stop stops the processes.
//
// vtctld, vtgate, vttablet and mysqlctl refuse to run as root; run as root,
// topod-demo runs every process as an unprivileged system user (topod-demo,
// created when absent).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/grpclog"

	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/vtctl/vtctldclient"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/proc"
	"github.com/topod-io/topod/internal/vtlocal"
)

func main() {
	quietGRPC()
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "topod-demo:", err)
		os.Exit(1)
	}
}

// quietGRPC keeps gRPC's client to its errors: it logs every refused
// connection as a warning, e.g. while topod starts, and the demo's output
// is its own lines.
func quietGRPC() {
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr))
}

// config is the demo's layout: where things live and listen.
type config struct {
	dataDir   string
	binDir    string
	user      string
	keyspaces int
	cell      string

	topodPort      int
	vtctldPort     int
	vtctldGRPCPort int
	vtgatePort     int
	vtgateGRPCPort int
	mysqlPort      int
	tabletPorts    int
	vschemadPort   int
	vtadminPort    int
	vtadminWebPort int
	// vtadminWeb is vtadmin-web's build (index.html and its assets); empty:
	// no VTAdmin web UI, vtadmin-api only.
	vtadminWeb string
}

func (c config) path(elem ...string) string {
	return filepath.Join(append([]string{c.dataDir}, elem...)...)
}

func (c config) bin(name string) string { return filepath.Join(c.binDir, name) }

func (c config) pidFile(name string) string { return c.path("run", name+".pid") }

func (c config) topodAddr() string { return fmt.Sprintf("127.0.0.1:%d", c.topodPort) }

func (c config) vschemadURL() string { return fmt.Sprintf("http://127.0.0.1:%d", c.vschemadPort) }

func (c config) vtadminURL() string { return fmt.Sprintf("http://127.0.0.1:%d", c.vtadminPort) }

func (c config) vtadminWebURL() string { return fmt.Sprintf("http://127.0.0.1:%d", c.vtadminWebPort) }

// tour is the vschemad walk-through the demo prints, its binary and files
// named by rel.
func (c config) tour(rel func(string) string) vtlocal.VschemadTour {
	return vtlocal.VschemadTour{
		Vschemad: rel(c.bin("vschemad")), Dir: rel(c.path("vschemas")),
		Server: c.vschemadURL(), MySQLPort: c.mysqlPort, Profile: jd.JD().Sized(c.keyspaces),
	}
}

// defaultConfig is the demo's layout when no flag says otherwise: `make
// demo`'s.
func defaultConfig() config {
	return config{
		dataDir: "demo-data", user: vtlocal.DefaultUser, keyspaces: 2000, cell: "zone1",
		topodPort: 15999, vtctldPort: 15000, vtctldGRPCPort: 15990, vtgatePort: 15001, vtgateGRPCPort: 15991, mysqlPort: 15306,
		tabletPorts: 15000, vschemadPort: 15980, vtadminPort: 14200, vtadminWebPort: 14201,
	}
}

func newRootCommand() *cobra.Command {
	c := defaultConfig()
	root := &cobra.Command{
		Use:           "topod-demo",
		Short:         "Run topod, vtctld, vtgate, tablets, vschemad and VTAdmin locally with 2,000 keyspaces",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.dataDir, "data-dir", c.dataDir, "directory of the demo's data, logs and pid files")
	pf.StringVar(&c.binDir, "bin", "", "directory of the topod, vtctld, vtgate, vttablet, mysqlctl, vschemad and vtadmin binaries (default: this program's)")
	pf.StringVar(&c.user, "user", c.user, "unprivileged user the processes run as when this program runs as root (created if absent)")
	start := &cobra.Command{
		Use:   "start",
		Short: "Start what is not running, load the keyspaces that are missing, print what to try",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.resolve(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			_, err := runStart(ctx, c)
			if err != nil && ctx.Err() != nil {
				return fmt.Errorf("interrupted (%w); what started keeps running: `make demo` resumes, `make demo-stop` stops it", err)
			}
			return err
		},
	}
	f := start.Flags()
	f.IntVar(&c.keyspaces, "keyspaces", c.keyspaces, "number of keyspaces (the JD profile resized: internal/jd)")
	f.StringVar(&c.cell, "cell", c.cell, "the cell of vtgate")
	f.IntVar(&c.topodPort, "topod-port", c.topodPort, "topod's gRPC port")
	f.IntVar(&c.vtctldPort, "vtctld-port", c.vtctldPort, "vtctld's HTTP port")
	f.IntVar(&c.vtctldGRPCPort, "vtctld-grpc-port", c.vtctldGRPCPort, "vtctld's gRPC port (vtctldclient --server)")
	f.IntVar(&c.vtgatePort, "vtgate-port", c.vtgatePort, "vtgate's HTTP port (/debug/vschema)")
	f.IntVar(&c.vtgateGRPCPort, "vtgate-grpc-port", c.vtgateGRPCPort, "vtgate's gRPC port (VTAdmin's queries)")
	f.IntVar(&c.mysqlPort, "mysql-port", c.mysqlPort, "vtgate's MySQL port")
	f.IntVar(&c.tabletPorts, "tablet-ports", c.tabletPorts, "tablet uid N (100, 101, 200, 201) serves HTTP on this+N, gRPC on this+1000+N, its mysqld on this+2000+N")
	f.IntVar(&c.vschemadPort, "vschemad-port", c.vschemadPort, "vschemad's HTTP port (the vschema upload API)")
	f.IntVar(&c.vtadminPort, "vtadmin-port", c.vtadminPort, "vtadmin-api's port (HTTP and gRPC)")
	f.IntVar(&c.vtadminWebPort, "vtadmin-web-port", c.vtadminWebPort, "vtadmin-web's HTTP port")
	f.StringVar(&c.vtadminWeb, "vtadmin-web", c.vtadminWeb, "vtadmin-web's build directory (`make vtadmin-web`); empty: vtadmin-api only")
	stopCmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop the demo's processes",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := c.resolve(); err != nil {
				return err
			}
			return runStop(c)
		},
	}
	root.AddCommand(start, stopCmd, newWebCommand())
	return root
}

// resolve makes the directories absolute and finds the binaries.
func (c *config) resolve() error {
	var err error
	if c.dataDir, err = filepath.Abs(c.dataDir); err != nil {
		return err
	}
	if c.binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find bin directory: %w (use --bin)", err)
		}
		c.binDir = filepath.Dir(exe)
	}
	if c.binDir, err = filepath.Abs(c.binDir); err != nil {
		return err
	}
	if c.vtadminWeb != "" {
		if c.vtadminWeb, err = filepath.Abs(c.vtadminWeb); err != nil {
			return err
		}
	}
	return nil
}

// binaries are the programs the demo runs.
var binaries = []string{"topod", "vtctld", "vtgate", "vttablet", "mysqlctl", "vschemad", "vtadmin"}

// runStart starts what is not running, loads what is missing, writes the
// vschemad tour's files and prints what to try. It returns the vschemad
// commands it printed.
func runStart(ctx context.Context, c config) ([]vtlocal.TryCommand, error) {
	begin := time.Now()
	for _, name := range binaries {
		if _, err := os.Stat(c.bin(name)); err != nil {
			return nil, fmt.Errorf("%s is missing: run `make build` (make demo does): %w", c.bin(name), err)
		}
	}
	id, err := proc.EnsureUser(c.user)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.dataDir, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{c.dataDir, c.path("topod"), c.path("logs"), c.path("vschemad"), c.path("vtadmin")} {
		if err := id.MkdirAll(d); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(c.path("run"), 0o755); err != nil {
		return nil, err
	}
	if err := id.CheckAccess(c.path("topod", "topo.db"), false); err != nil {
		return nil, err
	}
	fmt.Printf("topod demo: data in %s, processes run as user %s\n", c.dataDir, id.Name)

	tp := vtlocal.Topo{Implementation: "topod", Address: c.topodAddr(), Root: "/vitess/global"}
	err = startProcess(ctx, c, id, process{
		spec: proc.Spec{Name: "topod", Binary: c.bin("topod"), Args: []string{
			"--listen", c.topodAddr(),
			"--backend", "bolt://" + c.path("topod", "topo.db"),
			"--blobs", "file://" + c.path("topod", "blobs"),
			"--data-dir", c.path("topod"),
		}},
		ports: []int{c.topodPort},
		wait:  func(ctx context.Context, p *proc.Process) error { return p.WaitGRPCHealth(ctx, c.topodAddr()) },
	})
	if err != nil {
		return nil, err
	}
	// topod is up: open the topology through the plugin, and create the
	// cell, which vtgate and the tablets need before they start.
	ts, err := topo.OpenServer("topod", c.topodAddr(), tp.Root)
	if err != nil {
		return nil, fmt.Errorf("open the topology through the plugin: %w", err)
	}
	defer ts.Close()
	if err := ensureCell(ctx, ts, c); err != nil {
		return nil, err
	}
	err = startProcess(ctx, c, id, process{
		spec:  proc.Spec{Name: "vtctld", Binary: c.bin("vtctld"), Args: vtlocal.VtctldArgs(tp, c.vtctldPort, c.vtctldGRPCPort)},
		ports: []int{c.vtctldPort, c.vtctldGRPCPort},
		wait:  waitStatus(c.vtctldPort),
	})
	if err != nil {
		return nil, err
	}
	client, err := vtctldclient.New(ctx, "grpc", fmt.Sprintf("127.0.0.1:%d", c.vtctldGRPCPort))
	if err != nil {
		return nil, fmt.Errorf("vtctld client: %w", err)
	}
	defer client.Close()
	// The tablets register before vtgate starts, so that it finds them at
	// once (it reads its cell's tablets every minute after that).
	if err := startTablets(ctx, c, id, tp, ts, client); err != nil {
		return nil, err
	}
	err = startProcess(ctx, c, id, process{
		// ALTER VSCHEMA through vtgate, for anyone: it is a demo on loopback.
		spec: proc.Spec{Name: "vtgate", Binary: c.bin("vtgate"),
			Args: append(append(vtlocal.VtgateArgs(tp, c.cell, c.vtgatePort, c.mysqlPort), vtlocal.VtgateGRPCArgs(c.vtgateGRPCPort)...),
				"--vschema-ddl-authorized-users", "%")},
		ports: []int{c.vtgatePort, c.vtgateGRPCPort, c.mysqlPort},
		wait:  waitStatus(c.vtgatePort),
	})
	if err != nil {
		return nil, err
	}

	err = startProcess(ctx, c, id, process{
		// Unauthenticated, as on a developer's machine: vschemad serves so
		// only on loopback.
		spec:  proc.Spec{Name: "vschemad", Binary: c.bin("vschemad"), Args: vtlocal.VschemadArgs(tp, c.vschemadPort, c.path("vschemad", "audit.log"))},
		ports: []int{c.vschemadPort},
		wait: func(ctx context.Context, p *proc.Process) error {
			return p.WaitHTTP(ctx, c.vschemadURL()+"/healthz")
		},
	})
	if err != nil {
		return nil, err
	}

	if err := startVTAdmin(ctx, c, id); err != nil {
		return nil, err
	}

	summary, err := load(ctx, ts, client, c)
	if err != nil {
		return nil, err
	}
	if err := waitForTablets(ctx, c); err != nil {
		return nil, err
	}
	tour := c.tour(relToWd)
	if err := tour.WriteFiles(c.path("vschemas")); err != nil {
		return nil, fmt.Errorf("write the example vschemas: %w", err)
	}
	cmds := tour.Commands()
	printTry(c, summary, time.Since(begin), cmds)
	return cmds, nil
}

// process is one of the demo's long-running processes.
type process struct {
	// spec is what to run; startProcess fills in the directory, user, log
	// and detachment.
	spec  proc.Spec
	ports []int
	// wait returns when the process serves.
	wait func(context.Context, *proc.Process) error
}

// waitStatus waits for a Vitess process's status page on HTTP port.
func waitStatus(port int) func(context.Context, *proc.Process) error {
	return func(ctx context.Context, p *proc.Process) error {
		return p.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/debug/status", port))
	}
}

// startProcess starts pr unless its pid file names a live process of its
// binary, records its pid file and waits until it serves.
func startProcess(ctx context.Context, c config, id *proc.Identity, pr process) error {
	s := pr.spec
	if pid, ok := running(c, s.Name, s.Binary); ok {
		fmt.Printf("  %-25s already running (pid %d)\n", s.Name, pid)
		return nil
	}
	for _, port := range pr.ports {
		if err := portFree(port); err != nil {
			return fmt.Errorf("%s: %w (another demo or program uses it; `make demo-stop`, or see --help for the port flags)", s.Name, err)
		}
	}
	if s.Dir == "" {
		s.Dir = c.dataDir
	}
	s.User, s.Detach = id, true
	s.Log = c.path("logs", s.Name+".log")
	t0 := time.Now()
	p, err := proc.Start(s)
	if err != nil {
		return err
	}
	if err := p.WritePidFile(c.pidFile(s.Name)); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = pr.wait(wctx, p)
	cancel()
	if err != nil {
		return err
	}
	fmt.Printf("  %-25s started (pid %d) in %v\n", s.Name, p.Pid(), time.Since(t0).Round(10*time.Millisecond))
	return nil
}

// portFree reports an error if something listens on 127.0.0.1:port.
func portFree(port int) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("port %d is in use: %w", port, err)
	}
	return l.Close()
}

// running returns the pid of the demo's process name if its pid file names
// a live process of binary.
func running(c config, name, binary string) (int, bool) {
	b, err := os.ReadFile(c.pidFile(name))
	if err != nil {
		return 0, false
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		return 0, false
	}
	return pid, proc.Running(pid, binary)
}

func runStop(c config) error {
	id, err := proc.EnsureUser(c.user)
	if err != nil {
		return err
	}
	// mysqlctl shutdown needs no more than VT_MYSQL_ROOT: with no mysqld
	// installed, no tablet runs.
	mysqlRoot, _ := vtlocal.FindMySQL()
	tablets := demoTablets(c, id, mysqlRoot)
	var errs []error
	stop := func(name, binary string) {
		stopped, err := proc.StopPidFile(c.pidFile(name), binary, 15*time.Second)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		case stopped:
			fmt.Printf("  %-25s stopped\n", name)
		default:
			fmt.Printf("  %-25s was not running\n", name)
		}
	}
	// VTAdmin, vschemad and vtgate, then the tablets while topod still runs
	// (a vttablet's shutdown waits for the topology), their mysqld, vtctld
	// and topod.
	stop("vtadmin-web", c.bin("topod-demo"))
	stop("vtadmin", c.bin("vtadmin"))
	stop("vschemad", c.bin("vschemad"))
	stop("vtgate", c.bin("vtgate"))
	for _, t := range commerceTablets(c) {
		stop(tablets.VttabletSpec(t).Name, c.bin("vttablet"))
	}
	for _, t := range commerceTablets(c) {
		name := "mysqld-" + t.Name()
		if !tablets.MySQLRunning(t) {
			fmt.Printf("  %-25s was not running\n", name)
			continue
		}
		if err := tablets.StopMySQL(context.Background(), t); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		fmt.Printf("  %-25s stopped (mysqlctl shutdown)\n", name)
	}
	stop("vtctld", c.bin("vtctld"))
	stop("topod", c.bin("topod"))
	if len(errs) == 0 {
		fmt.Printf("topod demo stopped; its data stays in %s (`make demo` reuses it; delete the directory to start afresh)\n", c.dataDir)
	}
	return errors.Join(errs...)
}
