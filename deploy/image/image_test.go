package image

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// buildFlags are the flags of every image binary (the Makefile's too).
var buildFlags = []string{"build", "-trimpath", "-ldflags=-buildid=", "-buildvcs=false"}

// goBuild builds packages statically into dir.
func goBuild(t *testing.T, dir string, pkgs ...string) {
	t.Helper()
	cmd := exec.Command("go", append(append(append([]string{}, buildFlags...), "-o", dir+"/"), pkgs...)...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// runHelp runs an image's entrypoint, from its unpacked filesystem, with
// --help.
func runHelp(t *testing.T, root string, entrypoint []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, entrypoint[0]), "--help")
	cmd.Dir = filepath.Join(root, "tmp")
	cmd.Env = []string{"HOME=/tmp", "TMPDIR=" + cmd.Dir}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help from the unpacked image: %v\n%s", entrypoint[0], err, out)
	}
	return string(out)
}

// TestReproducibleAndRunnable builds the topod image's binary twice
// (separate builds), the image from each, and requires one digest; then
// writes it into an OCI layout, reads it back, unpacks it and runs its
// entrypoint's --help from the unpacked filesystem.
func TestReproducibleAndRunnable(t *testing.T) {
	spec, _ := Lookup("topod")
	var digests []string
	var dirs []string
	var first v1.Image
	for range 2 {
		dir := t.TempDir()
		goBuild(t, dir, "./cmd/topod")
		dirs = append(dirs, dir)
		img, err := Build(spec, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
		if first == nil {
			first = img
		}
	}
	a, _ := os.ReadFile(filepath.Join(dirs[0], "topod"))
	b, _ := os.ReadFile(filepath.Join(dirs[1], "topod"))
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of topod differ")
	}
	if digests[0] != digests[1] {
		t.Fatalf("two builds, two digests: %v", digests)
	}
	t.Logf("topod image %s, twice", digests[0])

	img := first
	dir := filepath.Join(t.TempDir(), "oci")
	const ref = "registry.example.com/topod/topod:test"
	if err := WriteLayout(dir, []string{ref}, map[string]v1.Image{ref: img}); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLayout(dir, ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := back.Digest(); d.String() != digests[0] {
		t.Fatalf("the layout holds %s, built %s", d, digests[0])
	}
	cf, err := back.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "1000:1000" || !cf.Created.Time.Equal(epoch) {
		t.Fatalf("config user %q created %v", cf.Config.User, cf.Created)
	}
	root := t.TempDir()
	if err := Extract(back, root); err != nil {
		t.Fatal(err)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil || !strings.Contains(string(passwd), "vitess:x:1000:1000:") {
		t.Fatalf("/etc/passwd: %q, %v", passwd, err)
	}
	if out := runHelp(t, root, cf.Config.Entrypoint); !strings.Contains(out, "--backend") {
		t.Fatalf("topod --help from the image:\n%s", out)
	}
}

// TestEveryImage builds every image, twice, from $DEPLOY_BIN_DIR (the
// binaries `make build` made) when DEPLOY_ALL_IMAGES is set (make
// test-deploy), unpacks each and runs its entrypoint's --help from the
// unpacked filesystem. Otherwise it is skipped: compressing every Vitess
// binary takes a minute or two.
func TestEveryImage(t *testing.T) {
	dir := os.Getenv("DEPLOY_BIN_DIR")
	if dir == "" || os.Getenv("DEPLOY_ALL_IMAGES") == "" {
		t.Skip("DEPLOY_ALL_IMAGES and DEPLOY_BIN_DIR are not set (make test-deploy sets them): only the topod image is checked")
	}
	for _, spec := range Images {
		t.Run(spec.Name, func(t *testing.T) {
			img, err := Build(spec, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Build(spec, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			d1, _ := img.Digest()
			d2, _ := again.Digest()
			if d1 != d2 {
				t.Fatalf("same binaries, two digests: %s %s", d1, d2)
			}
			root := t.TempDir()
			if err := Extract(img, root); err != nil {
				t.Fatal(err)
			}
			runHelp(t, root, spec.Entrypoint())
			t.Logf("%s %s", spec.Name, d1)
		})
	}
}

// TestCheckStatic refuses a dynamically linked binary.
func TestCheckStatic(t *testing.T) {
	for _, tc := range []struct {
		file   string
		static bool
	}{
		{"/bin/sh", false},
	} {
		f, err := os.Open(tc.file)
		if err != nil {
			t.Skip(err)
		}
		err = CheckStatic(f)
		f.Close()
		if (err == nil) != tc.static {
			t.Errorf("CheckStatic(%s) = %v, want static %v", tc.file, err, tc.static)
		}
	}
}
