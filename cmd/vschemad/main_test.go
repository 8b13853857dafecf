package main

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/topod-io/topod/internal/vschematest"
)

func TestMain(m *testing.M) {
	vschematest.QuietVitessLogs()
	os.Exit(m.Run())
}

// runCLI runs the vschemad command line in-process.
func runCLI(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}
