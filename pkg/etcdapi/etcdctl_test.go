package etcdapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/toposerver"
)

// etcdctlVersion is the etcdctl the test runs: the version of the etcd
// the module graph pins (Makefile: bin/etcdctl).
const etcdctlVersion = "3.6.10"

// TestEtcdctl runs stock etcdctl, as subprocesses, against topod on etcd
// and on bolt, and checks what it prints.
func TestEtcdctl(t *testing.T) {
	bin := findEtcdctl(t)
	for _, b := range []struct {
		name string
		open func(t *testing.T) kv.Backend
	}{
		{"etcd", func(t *testing.T) kv.Backend { return harness.OpenEtcd(t, harness.StartEtcd(t, 1).Endpoints()) }},
		{"bolt", func(t *testing.T) kv.Backend { return harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")) }},
	} {
		t.Run(b.name, func(t *testing.T) {
			srv := harness.StartTopod(t, b.open(t), toposerver.Options{})
			c := &ctl{t: t, bin: bin, addr: srv.Addr, vars: map[string]string{"addr": srv.Addr}, bg: map[string]*ctlProcess{}}
			for _, step := range etcdctlSteps {
				c.run(step)
				if t.Failed() {
					return // later steps use what earlier ones captured
				}
			}
		})
	}
}

// findEtcdctl returns the etcdctl binary: bin/etcdctl of the repository
// (make bin/etcdctl), else etcdctl on $PATH. Without it, or at another
// version, the test fails: it is part of `make test`.
func findEtcdctl(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "etcdctl"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("etcdctl"); err != nil {
			t.Fatalf("etcdctl not found in ../../bin/etcdctl or $PATH: run `make bin/etcdctl` (it installs etcdctl %s into bin/)", etcdctlVersion)
		}
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	if !strings.Contains(string(out), "etcdctl version: "+etcdctlVersion+"\n") {
		t.Fatalf("%s is not etcdctl %s (it says %q): run `make bin/etcdctl`", bin, etcdctlVersion, out)
	}
	return bin
}

// ctlStep is one etcdctl command and what it must print. In args, stdin,
// want and match, {name} stands for a value an earlier step captured
// (and {addr} for topod's address).
type ctlStep struct {
	name  string
	args  []string
	stdin string
	// want is the exact output; match, if set instead, a regexp the
	// output must match, whose named groups are captured.
	want, match string
	// check, if set, checks the output further.
	check func(t *testing.T, out []byte, vars map[string]string)
	// bg runs the command in the background under that name, checking
	// nothing; await waits until the output of the background command of
	// that name is want.
	bg, await string
}

var etcdctlSteps = []ctlStep{
	{name: "put", args: []string{"put", "/ctl/a", "1", "-w", "json"}, match: `^\{"header":\{.*"revision":(?P<rev1>\d+),.*\}\}\n$`},
	{name: "update", args: []string{"put", "/ctl/a", "2"}, want: "OK\n"},
	{name: "put b", args: []string{"put", "/ctl/b", "3"}, want: "OK\n"},
	{name: "put with prev-kv", args: []string{"put", "/ctl/a", "4", "--prev-kv"}, want: "OK\n/ctl/a\n2\n"},
	{name: "get", args: []string{"get", "/ctl/a"}, want: "/ctl/a\n4\n"},
	{name: "get missing", args: []string{"get", "/ctl/zz"}, want: ""},
	{name: "get at a past revision", args: []string{"get", "/ctl/a", "--rev={rev1}"}, want: "/ctl/a\n1\n"},
	{name: "get prefix", args: []string{"get", "/ctl/", "--prefix"}, want: "/ctl/a\n4\n/ctl/b\n3\n"},
	{name: "get prefix keys-only", args: []string{"get", "/ctl/", "--prefix", "--keys-only"}, want: "/ctl/a\n\n/ctl/b\n\n"},
	{name: "get prefix at a past revision", args: []string{"get", "/ctl/", "--prefix", "--rev={rev1}"}, want: "/ctl/a\n1\n"},
	{name: "get prefix limit", args: []string{"get", "/ctl/", "--prefix", "--limit=1"}, want: "/ctl/a\n4\n"},
	{name: "get prefix sorted", args: []string{"get", "/ctl/", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"}, want: "/ctl/a\n4\n/ctl/b\n3\n"},
	{name: "get prefix sorted by value", args: []string{"get", "/ctl/", "--prefix", "--sort-by=VALUE", "--keys-only"}, want: "/ctl/b\n\n/ctl/a\n\n"},
	{name: "get from key", args: []string{"get", "/ctl/b", "--from-key", "--keys-only"}, want: "/ctl/b\n\n"},
	{name: "count", args: []string{"get", "/ctl/", "--prefix", "--count-only", "-w", "fields"}, match: `(?m)^"Count" : 2$`},
	{
		name: "txn success", args: []string{"txn", "-i"},
		stdin: "value(\"/ctl/a\") = \"4\"\nmod(\"/ctl/b\") > \"0\"\n\nput /ctl/c 5\nget /ctl/a\n\nput /ctl/c 6\n\n",
		want:  "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nSUCCESS\n\nOK\n\n/ctl/a\n4\n",
	},
	{
		name: "txn failure", args: []string{"txn", "--interactive"},
		stdin: "version(\"/ctl/c\") = \"2\"\n\nput /ctl/c 7\n\nget /ctl/c\ndel /ctl/c --prev-kv\n\n",
		want:  "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nFAILURE\n\n/ctl/c\n5\n\n1\n/ctl/c\n5\n",
	},
	{name: "del", args: []string{"del", "/ctl/b"}, want: "1\n"},
	{name: "del missing", args: []string{"del", "/ctl/b"}, want: "0\n"},
	{name: "del prefix", args: []string{"del", "/ctl/", "--prefix", "--prev-kv"}, want: "1\n/ctl/a\n4\n"},
	{name: "get after del", args: []string{"get", "/ctl/", "--prefix"}, want: ""},

	// A watch from the revision of a first put: it prints that put, and
	// then the puts made once it runs.
	{name: "put to watch", args: []string{"put", "/ctl/w/x", "0", "-w", "json"}, match: `"revision":(?P<wrev>\d+)`},
	{name: "watch", args: []string{"watch", "/ctl/w/", "--prefix", "--prev-kv", "--rev={wrev}"}, bg: "watch"},
	{name: "put watched", args: []string{"put", "/ctl/w/x", "1"}, want: "OK\n"},
	{name: "watch prints", await: "watch", want: "PUT\n/ctl/w/x\n0\nPUT\n/ctl/w/x\n0\n/ctl/w/x\n1\n"},
	{name: "delete watched", args: []string{"del", "/ctl/w/x"}, want: "1\n"},
	{name: "watch prints the delete", await: "watch", want: "PUT\n/ctl/w/x\n0\nPUT\n/ctl/w/x\n0\n/ctl/w/x\n1\nDELETE\n/ctl/w/x\n1\n/ctl/w/x\n\n"},

	{name: "lease grant", args: []string{"lease", "grant", "60"}, match: `^lease (?P<lease>[0-9a-f]{16}) granted with TTL\(60s\)\n$`},
	{name: "put with lease", args: []string{"put", "/ctl/l", "1", "--lease={lease}"}, want: "OK\n"},
	{name: "get with lease", args: []string{"get", "/ctl/l", "-w", "json"}, match: `"kvs":\[\{"key":"L2N0bC9s",.*"value":"MQ==","lease":\d+\}\]`},
	{name: "lease keep-alive once", args: []string{"lease", "keep-alive", "--once", "{lease}"}, want: "lease {lease} keepalived with TTL(60)\n"},
	{name: "lease time-to-live", args: []string{"lease", "timetolive", "{lease}", "--keys"}, match: `^lease {lease} granted with TTL\(60s\), remaining\((60|59|5\d)s\), attached keys\(\[/ctl/l\]\)\n$`},
	{name: "lease list", args: []string{"lease", "list"}, match: `^found \d+ leases\n(?s:.*){lease}\n`},
	{name: "lease revoke", args: []string{"lease", "revoke", "{lease}"}, want: "lease {lease} revoked\n"},
	{name: "revoked lease's key", args: []string{"get", "/ctl/l"}, want: ""},
	{name: "revoked lease", args: []string{"lease", "timetolive", "{lease}"}, want: "lease {lease} already expired\n"},

	{name: "endpoint status", args: []string{"endpoint", "status", "-w", "json"}, check: checkEndpointStatus},
	{name: "endpoint status table", args: []string{"endpoint", "status"}, match: `^{addr}, [0-9a-f]+, 3\.6\.10, `},
	{name: "endpoint health", args: []string{"endpoint", "health", "-w", "json"}, check: checkEndpointHealth},
	{name: "endpoint health text", args: []string{"endpoint", "health"}, match: `^{addr} is healthy: successfully committed proposal: took = `},
}

// checkEndpointStatus: topod reports etcd's version and itself as the
// one member, leader of its cluster, raft term 1 (it runs no raft).
func checkEndpointStatus(t *testing.T, out []byte, vars map[string]string) {
	var st []struct {
		Endpoint string
		Status   struct {
			Header struct {
				ClusterID uint64 `json:"cluster_id"`
				MemberID  uint64 `json:"member_id"`
				Revision  int64  `json:"revision"`
			} `json:"header"`
			Version  string `json:"version"`
			Leader   uint64 `json:"leader"`
			RaftTerm uint64 `json:"raftTerm"`
		}
	}
	if err := json.Unmarshal(out, &st); err != nil || len(st) != 1 {
		t.Fatalf("endpoint status: %v (%d endpoints) in %s", err, len(st), out)
	}
	s := st[0]
	if s.Endpoint != vars["addr"] || s.Status.Version != etcdctlVersion || s.Status.Leader == 0 ||
		s.Status.Leader != s.Status.Header.MemberID || s.Status.Header.ClusterID == 0 || s.Status.RaftTerm != 1 ||
		s.Status.Header.Revision <= 0 {
		t.Errorf("endpoint status: %+v; want endpoint %s, version %s, leader = member, raft term 1, a revision",
			s, vars["addr"], etcdctlVersion)
	}
}

func checkEndpointHealth(t *testing.T, out []byte, vars map[string]string) {
	var hs []struct {
		Endpoint string `json:"endpoint"`
		Health   bool   `json:"health"`
		Error    string `json:"error"`
	}
	if err := json.Unmarshal(out, &hs); err != nil || len(hs) != 1 {
		t.Fatalf("endpoint health: %v (%d endpoints) in %s", err, len(hs), out)
	}
	if h := hs[0]; h.Endpoint != vars["addr"] || !h.Health || h.Error != "" {
		t.Errorf("endpoint health: %+v; want %s healthy", h, vars["addr"])
	}
}

// ctl runs the steps of one topod.
type ctl struct {
	t    *testing.T
	bin  string
	addr string
	vars map[string]string
	bg   map[string]*ctlProcess
}

func (c *ctl) expand(s string) string {
	for k, v := range c.vars {
		s = strings.ReplaceAll(s, "{"+k+"}", v)
	}
	return s
}

func (c *ctl) command(ctx context.Context, step ctlStep) *exec.Cmd {
	args := []string{"--endpoints=" + c.addr, "--command-timeout=30s"}
	for _, a := range step.args {
		args = append(args, c.expand(a))
	}
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Stdin = strings.NewReader(c.expand(step.stdin))
	return cmd
}

func (c *ctl) run(step ctlStep) {
	t := c.t
	t.Helper()
	switch {
	case step.bg != "":
		c.start(step)
		return
	case step.await != "":
		c.bg[step.await].await(t, step.name, c.expand(step.want))
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := c.command(ctx, step)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: etcdctl %s: %v\nstdout: %s\nstderr: %s", step.name, strings.Join(cmd.Args[1:], " "), err, out, stderr.Bytes())
	}
	switch {
	case step.match != "":
		re := regexp.MustCompile(c.expand(step.match))
		m := re.FindSubmatch(out)
		if m == nil {
			t.Fatalf("%s: etcdctl %s printed\n%s\nwhich does not match %s", step.name, strings.Join(cmd.Args[1:], " "), out, re)
		}
		for i, name := range re.SubexpNames() {
			if name != "" {
				c.vars[name] = string(m[i])
			}
		}
	case step.check == nil:
		if want := c.expand(step.want); string(out) != want {
			t.Errorf("%s: etcdctl %s printed\n%q\nwant\n%q", step.name, strings.Join(cmd.Args[1:], " "), out, want)
		}
	}
	if step.check != nil {
		step.check(t, out, c.vars)
	}
}

// start runs step in the background until the test ends.
func (c *ctl) start(step ctlStep) {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := c.command(ctx, step)
	p := &ctlProcess{changed: make(chan struct{}, 1)}
	cmd.Stdout = p
	cmd.Stderr = &p.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", step.name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	p.exited = exited
	t.Cleanup(func() {
		cancel() // kills it
		<-exited
	})
	c.bg[step.bg] = p
}

// ctlProcess collects the output of a background etcdctl.
type ctlProcess struct {
	mu      sync.Mutex
	out     bytes.Buffer
	stderr  bytes.Buffer
	changed chan struct{}
	exited  <-chan error
}

func (p *ctlProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out.Write(b)
	select {
	case p.changed <- struct{}{}:
	default:
	}
	return len(b), nil
}

func (p *ctlProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// await waits until the process has printed want, failing if it prints
// anything else, exits, or takes longer than waitTimeout.
func (p *ctlProcess) await(t *testing.T, name, want string) {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		got := p.output()
		if got == want {
			return
		}
		if !strings.HasPrefix(want, got) {
			t.Fatalf("%s: printed\n%q\nwant\n%q", name, got, want)
		}
		select {
		case <-p.changed:
		case err := <-p.exited:
			t.Fatalf("%s: exited (%v) having printed\n%q\nwant\n%q\nstderr: %s", name, err, p.output(), want, p.stderr.Bytes())
		case <-timer.C:
			t.Fatalf("%s: printed within %v only\n%q\nwant\n%q", name, waitTimeout, got, want)
		}
	}
}
