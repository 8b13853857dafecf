package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Packages BuildTopod and BuildEtcd build. etcd's is the version go.mod
// pins, the one the embedded members run too.
const (
	topodPackage = "github.com/topod-io/topod/cmd/topod"
	etcdPackage  = "go.etcd.io/etcd/server/v3"
)

// BuildTopod builds the topod binary of the module the process runs in
// into dir, with extra go build flags (such as -race), and returns its
// path: a test runs the code beside it, not a binary left in bin/.
func BuildTopod(ctx context.Context, dir string, flags ...string) (string, error) {
	return build(ctx, topodPackage, filepath.Join(dir, "topod"), flags)
}

// BuildEtcd builds the etcd server at the version go.mod pins into dir and
// returns its path.
func BuildEtcd(ctx context.Context, dir string) (string, error) {
	return build(ctx, etcdPackage, filepath.Join(dir, "etcd"), nil)
}

func build(ctx context.Context, pkg, out string, flags []string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: go %s: %w\n%s", pkg, strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// ModuleRoot returns the directory of the go.mod above the working
// directory: the topod module's root in its tests and benchmarks.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root: no go.mod above the working directory (run from the topod module)")
		}
		dir = parent
	}
}

// EtcdBinary returns the path of an etcd binary at the version go.mod
// pins, built once per version (and Go release) into the user's cache
// directory and shared by every test and benchmark run after.
func EtcdBinary(ctx context.Context) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("etcd binary: %w", err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("etcd binary: %w", err)
	}
	version := ""
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == etcdPackage {
			version = f[1]
		}
	}
	if version == "" {
		return "", fmt.Errorf("etcd binary: go.mod requires no %s", etcdPackage)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "topod-harness", fmt.Sprintf("etcd-%s-%s-%s-%s", version, runtime.Version(), runtime.GOOS, runtime.GOARCH))
	bin := filepath.Join(dir, "etcd")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("etcd binary: %w", err)
	}
	// Build beside the final path and rename: concurrent test binaries
	// each build, and the last rename wins with an identical file.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("etcd binary: %w", err)
	}
	defer os.RemoveAll(tmp)
	built, err := BuildEtcd(ctx, tmp)
	if err != nil {
		return "", err
	}
	if err := os.Rename(built, bin); err != nil {
		return "", fmt.Errorf("etcd binary: %w", err)
	}
	return bin, nil
}
