package vschemaapi

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// WriteTokens writes a tokens file for the external tests.
var WriteTokens = writeTokens

// NewTestHandler returns the API over store, unauthenticated, with an audit
// log in a temporary file: for the external tests that give the API a
// Store of their own (on a topology whose operations fail on purpose).
func NewTestHandler(tb testing.TB, store Store) http.Handler {
	tb.Helper()
	h, _ := NewTestHandlerAt(tb, store, filepath.Join(tb.TempDir(), "audit.log"))
	return h
}

// NewTestHandlerAt is NewTestHandler with its audit log at auditPath
// (opened as vschemad opens it, recovering its tail), and a function that
// makes every later append to it fail for real: the log's file is swapped
// for a read-only descriptor of the same file, so the kernel refuses the
// write and the truncate back (EBADF), as a full or failed disk would.
func NewTestHandlerAt(tb testing.TB, store Store, auditPath string) (http.Handler, func()) {
	tb.Helper()
	audit, err := OpenAudit(auditPath, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { audit.Close() })
	breakAudit := func() {
		ro, err := os.Open(auditPath)
		if err != nil {
			tb.Error(err)
			return
		}
		audit.mu.Lock()
		defer audit.mu.Unlock()
		audit.f.Close()
		audit.f = ro
	}
	return NewHandler(store, Anyone, audit, Options{MaxBodyBytes: 64 << 20}), breakAudit
}
