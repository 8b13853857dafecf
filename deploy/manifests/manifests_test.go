package manifests

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// deployDir is deploy/, relative to this package.
const deployDir = ".."

// Overlays are the kustomizations a user applies; Examples hold only
// custom resources (their CRDs are not built into Kubernetes).
var (
	Overlays = []string{"overlays/dev", "overlays/prod", "overlays/multicell"}
	Examples = []string{"examples/cert-manager", "examples/servicemonitor", "examples/vitess-operator"}
)

// userSecrets reads the Secrets deploy/README.md documents as the user's
// to create: the first column of the table under "## Secrets".
func userSecrets(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([a-z0-9-]+)` \\|")
	var names []string
	in := false
	for s := bufio.NewScanner(bytes.NewReader(b)); s.Scan(); {
		line := s.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Secrets"
			continue
		}
		if m := row.FindStringSubmatch(line); in && m != nil {
			names = append(names, m[1])
		}
	}
	if len(names) == 0 {
		t.Fatal("deploy/README.md documents no Secret under ## Secrets")
	}
	return names
}

func render(t testing.TB, dir string) []Object {
	t.Helper()
	objs, err := Render(filepath.Join(deployDir, dir))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestOverlaysRenderAndHold renders every overlay and example with the
// kustomize Go API, decodes each object strictly into its k8s.io/api type,
// and runs every check.
func TestOverlaysRenderAndHold(t *testing.T) {
	secrets := userSecrets(t)
	for _, dir := range append(append([]string{}, Overlays...), Examples...) {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			if len(objs) == 0 {
				t.Fatal("renders nothing")
			}
			if err := Check(objs, secrets); err != nil {
				t.Fatal(err)
			}
			if slices.Contains(Hardened, dir) {
				if err := CheckHardened(objs); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestOverlaysHaveWhatTheyPromise checks the shape each overlay's README
// section promises.
func TestOverlaysHaveWhatTheyPromise(t *testing.T) {
	type want struct{ kind, name string }
	for _, tc := range []struct {
		dir  string
		want []want
		// tablets per keyspace/shard, by cell
		tablets map[string]int
	}{
		{"overlays/dev", []want{{"Deployment", "topod"}, {"PersistentVolumeClaim", "topod-data"}, {"Deployment", "vtorc"}, {"Deployment", "vschemad"}},
			map[string]int{"zone1 commerce/-80": 3, "zone1 commerce/80-": 3}},
		{"overlays/prod", []want{{"StatefulSet", "etcd"}, {"StatefulSet", "minio"}, {"PodDisruptionBudget", "topod"},
			{"HorizontalPodAutoscaler", "vtgate"}, {"Job", "keyspace-init-commerce"}},
			map[string]int{"zone1 commerce/-80": 3, "zone1 commerce/80-": 3}},
		{"overlays/multicell", []want{{"StatefulSet", "etcd"}, {"StatefulSet", "zone1-etcd"}, {"StatefulSet", "zone2-etcd"},
			{"Deployment", "topod"}, {"Deployment", "zone1-topod"}, {"Deployment", "zone2-topod"}},
			map[string]int{"zone1 commerce/0": 3, "zone2 commerce/0": 3}},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			objs := render(t, tc.dir)
			for _, w := range tc.want {
				found := false
				for _, o := range objs {
					found = found || (o.GVK().Kind == w.kind && o.Unstructured.GetName() == w.name)
				}
				if !found {
					t.Errorf("no %s %s in %s", w.kind, w.name, Kinds(objs))
				}
			}
			cs, err := Containers(objs)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, c := range cs {
				if shard, cell, ok := tabletShard(c); ok {
					spec, _, _, _ := PodSpec(c.Object)
					_ = spec
					got[cell+" "+shard] += int(replicas(c.Object))
				}
			}
			if len(got) != len(tc.tablets) {
				t.Errorf("tablets %v, want %v", got, tc.tablets)
			}
			for k, v := range tc.tablets {
				if got[k] != v {
					t.Errorf("tablets %v, want %v", got, tc.tablets)
				}
			}
		})
	}
}

// replicas is a workload's replica count (1 if unset).
func replicas(o Object) int32 {
	v, found, _ := unstructuredInt(o, "spec", "replicas")
	if !found {
		return 1
	}
	return int32(v)
}

func unstructuredInt(o Object, fields ...string) (int64, bool, error) {
	m := o.Unstructured.Object
	for _, f := range fields[:len(fields)-1] {
		next, ok := m[f].(map[string]any)
		if !ok {
			return 0, false, nil
		}
		m = next
	}
	v, ok := m[fields[len(fields)-1]].(int64)
	return v, ok, nil
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries returns the directory of the repository's commands:
// $DEPLOY_BIN_DIR (make test sets it to bin/, which `make build` filled),
// or a directory this test run builds them into (several minutes on a
// cold build cache: give go test -timeout 30m).
func binaries(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if d := os.Getenv("DEPLOY_BIN_DIR"); d != "" {
			binDir = d
			return
		}
		binDir, binErr = os.MkdirTemp("", "deploy-bin-")
		if binErr != nil {
			return
		}
		root, _ := filepath.Abs("../..")
		// The Makefile's flags, so that a `make build` before shares the
		// build cache.
		flags := []string{"build", "-trimpath", "-ldflags=-buildid=", "-buildvcs=false"}
		for _, args := range [][]string{
			append(flags, "-o", binDir+"/", "./cmd/...", "vitess.io/vitess/go/cmd/vtctldclient"),
			append(flags[:4:4], "-o", filepath.Join(binDir, "etcd"), "go.etcd.io/etcd/server/v3"),
		} {
			cmd := exec.Command("go", args...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = &buildError{args, out, err}
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

type buildError struct {
	args []string
	out  []byte
	err  error
}

func (e *buildError) Error() string {
	return "go " + strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + string(e.out)
}

// thirdParty are the executables of images the repository does not build:
// their command lines are not run here (the API server test still checks
// the objects).
var thirdParty = map[string]string{
	"mc": "MinIO's client (quay.io/minio/mc)",
}

// flagErrors are what a binary prints when its command line has a flag
// it does not know.
var flagErrors = regexp.MustCompile(`unknown flag|unknown shorthand flag|flag provided but not defined|invalid argument|unknown command`)

// acceptsCommandLine runs bin with argv (its own name first) and --help
// after the last argument: every flag before it is parsed (an unknown one
// or a bad value is an error), then the binary prints its help and exits
// 0 without running.
func acceptsCommandLine(t testing.TB, bin string, argv []string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(append([]string{}, argv[1:]...), "--help")...)
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"HOME=" + cmd.Dir, "TMPDIR=" + cmd.Dir, "VTDATAROOT=" + cmd.Dir}
	out, err := cmd.CombinedOutput()
	return string(out), err == nil && !flagErrors.Match(out)
}

// commandLine is a container's command line or one of its exec probes'.
type commandLine struct {
	c    Container
	argv []string
}

// TestCommandLinesAcceptedByTheBinaries runs every container's command
// line (and exec probe), with its $(VAR) references expanded as the kubelet does, against
// the real binary built from this repository (topod, vschemad, Vitess 24's
// commands with the plugin, installbin, vtctldclient) or from the module
// graph (etcd 3.6.10); MinIO's server when bin/minio was built.
func TestCommandLinesAcceptedByTheBinaries(t *testing.T) {
	dir := binaries(t)
	seen := map[string]bool{}
	for _, overlay := range Overlays {
		cs, err := Containers(render(t, overlay))
		if err != nil {
			t.Fatal(err)
		}
		var lines []commandLine
		for _, c := range cs {
			lines = append(lines, commandLine{c, c.Argv})
			for _, p := range c.ProbeArgvs {
				lines = append(lines, commandLine{c, p})
			}
		}
		for _, l := range lines {
			c, argv := l.c, l.argv
			key := strings.Join(argv, "\x00")
			if seen[key] {
				continue
			}
			seen[key] = true
			name := path.Base(argv[0])
			if why, ok := thirdParty[name]; ok {
				t.Logf("%s: %s is %s: not run", c.Where(), name, why)
				continue
			}
			bin := filepath.Join(dir, name)
			if name == "minio" {
				if bin, _ = filepath.Abs(filepath.Join("..", "..", "bin", "minio")); !exists(bin) {
					t.Logf("%s: bin/minio not built (make bin/minio): not run", c.Where())
					continue
				}
			}
			if !exists(bin) {
				t.Errorf("%s: runs %s, which the repository does not build", c.Where(), argv[0])
				continue
			}
			if out, ok := acceptsCommandLine(t, bin, argv); !ok {
				t.Errorf("%s: %s refuses %q:\n%s", c.Where(), name, argv[1:], out)
			}
		}
	}
	if len(seen) < 10 {
		t.Fatalf("only %d command lines", len(seen))
	}
	t.Logf("%d distinct command lines run", len(seen))
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestBadFixturesAreCaught renders each overlay under testdata/bad (the
// dev overlay with one mistake) and requires the mistake to be found.
func TestBadFixturesAreCaught(t *testing.T) {
	secrets := userSecrets(t)
	for _, tc := range []struct {
		fixture string
		want    string // a substring of the error
		flags   bool   // caught by running the binary
	}{
		{"misspelled-field", `unknown field "spec.template.spec.containers[0].imagePullPolicyy"`, false},
		{"wrong-flag", "refuses", true},
		{"missing-secret", "Secret vtgate-tls, which is neither in the overlay nor a documented user-provided Secret", false},
		{"co-scheduled-tablets", "tablets of shard commerce/-80 may share a node", false},
		{"latest-tag", `has no pinned tag`, false},
		{"topo-mismatch", "every Vitess component must use the same topology flags", false},
		{"no-probe", "no liveness probe", false},
		{"dangling-service", "names Service topod-typo, which the overlay does not have", false},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			dir := filepath.Join("manifests", "testdata", "bad", tc.fixture)
			objs, err := Render(filepath.Join(deployDir, dir))
			if err == nil && !tc.flags {
				err = Check(objs, secrets)
			}
			if tc.flags {
				if err != nil {
					t.Fatal(err)
				}
				cs, _ := Containers(objs)
				var refused []string
				for _, c := range cs {
					if c.Binary() != "vtgate" {
						continue
					}
					if out, ok := acceptsCommandLine(t, filepath.Join(binaries(t), "vtgate"), c.Argv); !ok {
						refused = append(refused, "refuses: "+out)
					}
				}
				if len(refused) == 0 {
					t.Fatal("vtgate accepted the misspelled flag")
				}
				t.Logf("caught: %.300s", refused[0])
				return
			}
			if err == nil {
				t.Fatalf("%s passed every check", tc.fixture)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not say %q:\n%v", tc.want, err)
			}
			t.Logf("caught: %.300s", err)
		})
	}
}

// TestExpand covers the kubelet's $(VAR) rules.
func TestExpand(t *testing.T) {
	env := map[string]string{"A": "a", "B": "b"}
	for _, tc := range []struct{ in, want string }{
		{"$(A)-$(B)", "a-b"},
		{"$(C)", "$(C)"},
		{"$$(A)", "$(A)"},
		{"x$", "x$"},
		{"$(A", "$(A"},
		{"10$(A)", "10a"},
	} {
		if got := Expand(tc.in, env); got != tc.want {
			t.Errorf("Expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
