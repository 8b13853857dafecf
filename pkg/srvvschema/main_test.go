package srvvschema_test

import (
	"os"
	"testing"

	"github.com/topod-io/topod/internal/vschematest"
)

func TestMain(m *testing.M) {
	vschematest.QuietVitessLogs()
	os.Exit(m.Run())
}
