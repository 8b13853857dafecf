package vschemaapi

import (
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/topod-io/topod/pkg/vschemastore"
)

// WriteTokens writes a tokens file for the external tests.
var WriteTokens = writeTokens

// NewTestHandler returns the API over store, unauthenticated, with an audit
// log in a temporary file: for the external tests that give the API a
// Store of their own (on a topology whose operations fail on purpose).
func NewTestHandler(tb testing.TB, store *vschemastore.Store) http.Handler {
	tb.Helper()
	audit, err := openAudit(filepath.Join(tb.TempDir(), "audit.log"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { audit.Close() })
	return (&apiServer{store: store, audit: audit, maxBody: 64 << 20, log: slog.New(slog.DiscardHandler)}).handler()
}
