package faults

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
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
	if len(os.Args) > 1 && os.Args[1] == etcdChildCommand {
		os.Exit(etcdChildMain(os.Args[2:]))
	}
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
	topodBin = filepath.Join(dir, "topod")
	out, err := exec.Command("go", "build", "-o", topodBin, "../cmd/topod").CombinedOutput()
	if err != nil {
		return fmt.Errorf("build topod: %v\n%s", err, out)
	}
	return nil
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
