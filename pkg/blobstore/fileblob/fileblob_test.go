package fileblob

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/blobstore/blobtest"
	"github.com/topod-io/topod/pkg/content"
)

func newFixture(t *testing.T) blobtest.Fixture {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return blobtest.Fixture{
		Store: s,
		Overwrite: func(_ context.Context, h content.Hash, data []byte) error {
			p := s.Path(h)
			if err := os.Chmod(p, 0o644); err != nil {
				return err
			}
			return os.WriteFile(p, data, 0o644)
		},
	}
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, newFixture)
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, data := blobtest.Blob(1, 100)
	if err := s.Put(context.Background(), h, data); err != nil {
		t.Fatal(err)
	}
	name := h.String()
	p := filepath.Join(dir, name[:2], name)
	info, err := os.Stat(p)
	if err != nil {
		t.Fatalf("blob not at %s: %v", p, err)
	}
	if info.Mode().Perm() != 0o444 || info.Size() != 100 {
		t.Errorf("blob file mode %v size %d, want -r--r--r-- 100", info.Mode(), info.Size())
	}
	left, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil || len(left) != 0 {
		t.Errorf("tmp/ after Put: %v, %v; want empty", left, err)
	}
}

// TestWalkSkipsForeignFiles checks that files which are not blobs (temporary
// files, stray names, blobs in the wrong fan-out directory) are not walked.
func TestWalkSkipsForeignFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, data := blobtest.Blob(1, 10)
	if err := s.Put(context.Background(), h, data); err != nil {
		t.Fatal(err)
	}
	other, _ := blobtest.Blob(2, 10)
	wrongDir := "00"
	if strings.HasPrefix(other.String(), wrongDir) {
		wrongDir = "01"
	}
	for _, p := range []string{
		filepath.Join("tmp", h.String()+".123"),
		filepath.Join(h.String()[:2], "README"),
		filepath.Join(h.String()[:2], strings.ToUpper(other.String())),
		filepath.Join(wrongDir, other.String()),
		filepath.Join("zz", other.String()),
		"lost+found",
	} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var seen []content.Hash
	if err := s.Walk(context.Background(), func(h content.Hash, _ int64, _ time.Time) error {
		seen = append(seen, h)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != h {
		t.Fatalf("Walk saw %v, want only %s", seen, h)
	}
}

func TestOpenRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "tmp", "stale")
	fresh := filepath.Join(dir, "tmp", "fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file still there after Open: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file (maybe a Put in progress) removed by Open: %v", err)
	}
}

func TestOpenURL(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		url     string
		wantDir string
		wantErr string
	}{
		{name: "absolute path", url: "file://" + dir, wantDir: dir},
		{name: "localhost", url: "file://localhost" + dir, wantDir: dir},
		{name: "upper-case scheme", url: "FILE://" + dir, wantDir: dir},
		{name: "two slashes", url: "file://var/lib/topod", wantErr: "three slashes"},
		{name: "opaque", url: "file:blobs", wantErr: "file:///absolute/path"},
		{name: "no path", url: "file://", wantErr: "no path"},
		{name: "parameters", url: "file://" + dir + "?sync=false", wantErr: "no parameters"},
		{name: "no scheme", url: dir, wantErr: "no scheme"},
		{name: "unknown scheme", url: "gs://bucket", wantErr: `unknown scheme "gs"`},
		{name: "s3 not linked in", url: "s3://bucket", wantErr: "import _"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := blobstore.Open(context.Background(), tt.url, blobstore.Options{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Open(%q) error = %v, want one containing %q", tt.url, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%q): %v", tt.url, err)
			}
			defer s.Close()
			if got := s.(*Store).Dir(); got != tt.wantDir {
				t.Fatalf("Open(%q) dir = %s, want %s", tt.url, got, tt.wantDir)
			}
		})
	}
}

func TestOpenNotADirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(f); err == nil {
		t.Fatal("Open of a regular file succeeded")
	}
}

func BenchmarkStore(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	blobtest.Bench(b, s)
}
