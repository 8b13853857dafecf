package toposerver_test

import (
	"testing"

	"github.com/topod-io/topod/internal/harness"
)

// TestMain fails the package's tests if any goroutine is left once they
// have run: streams, mirrors, leases and the blob collector must all end
// with Close.
func TestMain(m *testing.M) {
	harness.VerifyTestMain(m)
}
