package faults

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/topod-io/topod/internal/harness"
)

var (
	run      = flag.Bool("faults", false, "run the fault suite (make test-faults); without it only the checker's own tests run")
	long     = flag.Bool("faults.long", false, "the long mode: longer phases, and the soak")
	phase    = flag.Duration("faults.phase", 0, "length of each phase (before, during, after a fault); default 3s, 20s with -faults.long")
	topodBin string // built by TestMain from ./cmd/topod
)

// phaseLength is how long each phase of a run lasts.
func phaseLength() time.Duration {
	switch {
	case *phase > 0:
		return *phase
	case *long:
		return 20 * time.Second
	default:
		return 3 * time.Second
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if topodBin != "" {
		os.RemoveAll(filepath.Dir(topodBin))
	}
	os.Exit(code)
}

// buildTopod builds topod from this tree, once, so that the suite tests
// the code beside it, not a binary left in bin/.
var buildTopod = sync.OnceValue(func() error {
	dir, err := os.MkdirTemp("", "faults-bin-")
	if err != nil {
		return err
	}
	topodBin, err = harness.BuildTopod(context.Background(), dir)
	return err
})

// needSuite skips t unless -faults is given, and builds topod.
func needSuite(t *testing.T) {
	t.Helper()
	if !*run {
		t.Skip("the fault suite runs with -faults (make test-faults)")
	}
	if err := buildTopod(); err != nil {
		t.Fatal(err)
	}
}
