package kvmirror_test

import (
	"testing"

	"github.com/topod-io/topod/internal/harness"
)

// TestMain fails the package's tests if any goroutine is left once they
// have run: a mirror's Run, its subscriptions and its backend watches must
// all end with their contexts.
func TestMain(m *testing.M) {
	harness.VerifyTestMain(m)
}
