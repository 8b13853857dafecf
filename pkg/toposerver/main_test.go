package toposerver_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine is left once they
// have run: streams, mirrors, leases and the blob collector must all end
// with Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// glog (linked in through Vitess) starts its flush loop when the
		// package is initialized, for the life of the process.
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	)
}
