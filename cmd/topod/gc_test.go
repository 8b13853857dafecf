package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/blobstore/blobtest"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/record"
)

// seedDataDir writes, into the default layout of dataDir (bolt topo.db and
// blobs/), a large record and an unreferenced blob, all stored two hours
// ago. It returns the record's blobs and the unreferenced one.
func seedDataDir(t *testing.T, dataDir string) (referenced []content.Hash, orphan content.Hash) {
	t.Helper()
	ctx := t.Context()
	b, err := boltkv.Open(filepath.Join(dataDir, "topo.db"), boltkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := fileblob.Open(filepath.Join(dataDir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	contents := make([]byte, 300<<10)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(contents)
	enc, err := record.Encode("/vitess/global/big", contents, record.DefaultInlineLimit)
	if err != nil {
		t.Fatal(err)
	}
	for h, data := range enc.Blobs {
		if err := s.Put(ctx, h, data); err != nil {
			t.Fatal(err)
		}
		referenced = append(referenced, h)
	}
	if _, err := b.Update(ctx, "/vitess/global/big", enc.Value, 0); err != nil {
		t.Fatal(err)
	}
	orphan, data := blobtest.Blob(1, 1234)
	if err := s.Put(ctx, orphan, data); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, h := range append(referenced, orphan) {
		if err := os.Chtimes(s.Path(h), old, old); err != nil {
			t.Fatal(err)
		}
	}
	return referenced, orphan
}

func blobExists(t *testing.T, dataDir string, h content.Hash) bool {
	t.Helper()
	name := h.String()
	_, err := os.Stat(filepath.Join(dataDir, "blobs", name[:2], name))
	return err == nil
}

// TestGCCommand: `topod gc --dry-run` prints the blob it would delete and
// deletes nothing; `topod gc` deletes it and keeps the referenced ones.
func TestGCCommand(t *testing.T) {
	dataDir := t.TempDir()
	referenced, orphan := seedDataDir(t, dataDir)
	tests := []struct {
		name        string
		args        []string
		wantLine    string
		wantSummary string
		orphanKept  bool
	}{
		{"dry run", []string{"--dry-run"}, "would delete " + orphan.String() + " 1234 bytes, stored 2h0m", "would delete 1 blobs (1234 bytes)", true},
		{"collect", nil, "deleted " + orphan.String() + " 1234 bytes, stored 2h0m", "deleted 1 blobs (1234 bytes)", false},
		{"nothing left", nil, "", "deleted 0 blobs", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := newRootCommand()
			cmd.SetOut(&out)
			cmd.SetArgs(append([]string{"gc", "--data-dir", dataDir, "--log-level", "warn"}, tt.args...))
			if err := cmd.ExecuteContext(t.Context()); err != nil {
				t.Fatalf("topod gc %v: %v\n%s", tt.args, err, out.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			wantLines := 1
			if tt.wantLine != "" {
				wantLines = 2
				if !strings.HasPrefix(lines[0], tt.wantLine) {
					t.Errorf("first line %q, want it to start with %q", lines[0], tt.wantLine)
				}
			}
			if len(lines) != wantLines || !strings.Contains(lines[len(lines)-1], tt.wantSummary) {
				t.Errorf("output:\n%s\nwant %d lines, the last saying %q", out.String(), wantLines, tt.wantSummary)
			}
			if got := blobExists(t, dataDir, orphan); got != tt.orphanKept {
				t.Errorf("unreferenced blob stored: %v, want %v", got, tt.orphanKept)
			}
			for _, h := range referenced {
				if !blobExists(t, dataDir, h) {
					t.Fatalf("referenced blob %s deleted", h)
				}
			}
		})
	}
}

// TestGCFlagErrors: bad gc flags fail with a message naming them.
func TestGCFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"gc", "--gc-grace", "0s"}, "--gc-grace"},
		{[]string{"gc", "--gc-grace", "1s"}, "want at least 10m0s"},
		{[]string{"gc", "--log-level", "loud"}, "--log-level"},
		{[]string{"gc", "extra"}, "unknown command"},
		{[]string{"--gc-interval", "-1s", "--listen", "127.0.0.1:0"}, "--gc-interval"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := newRootCommand()
			cmd.SetArgs(append(tc.args, "--data-dir", t.TempDir()))
			err := cmd.ExecuteContext(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestServeCollects: with --gc-interval, the server collects by itself.
func TestServeCollects(t *testing.T) {
	dataDir := t.TempDir()
	referenced, orphan := seedDataDir(t, dataDir)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	cmd := newRootCommand()
	cmd.SetArgs([]string{"--listen", freeAddr(t), "--data-dir", dataDir, "--log-level", "warn", "--gc-interval", "100ms"})
	go func() { done <- cmd.ExecuteContext(ctx) }()

	for deadline := time.Now().Add(15 * time.Second); blobExists(t, dataDir, orphan); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the serving topod did not collect the unreferenced blob")
		}
	}
	for _, h := range referenced {
		if !blobExists(t, dataDir, h) {
			t.Fatalf("referenced blob %s deleted", h)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("topod exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("topod did not shut down")
	}
}
