package boltkv

import (
	"path/filepath"
	"testing"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/kvtest"
)

// openTest opens a backend on a new file in t's temporary directory and
// closes it when t ends.
func openTest(t testing.TB, opts Options) (*Backend, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "topod.db")
	b, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, path
}

func TestConformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Backend {
		b, _ := openTest(t, Options{})
		return b
	})
}
