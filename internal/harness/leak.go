package harness

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyTestMain runs a package's tests (call it from TestMain) and fails
// them if a goroutine outlives them. glog's flush loop is not counted: glog,
// linked in through Vitess, starts it when the package is initialized, for
// the life of the process.
func VerifyTestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"))
}
