package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/blobgc"
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

// TestBlobStoreOwner: two backends (two bolt files) pointed at one blob
// store, and topods with another grace. The first `topod gc` claims the
// store; serving or collecting it from the other backend, or with another
// --gc-grace, is refused with both sides named, and changes nothing; a
// takeover naming the owner moves the store, after which the first
// backend is refused.
func TestBlobStoreOwner(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	seedDataDir(t, dirA)
	blobs := "file://" + filepath.Join(dirA, "blobs")
	onA := []string{"--data-dir", dirA}
	onB := []string{"--data-dir", dirB, "--blobs", blobs}
	ownerOf := func(dataDir string) string {
		t.Helper()
		b, err := boltkv.Open(filepath.Join(dataDir, "topo.db"), boltkv.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		id, err := blobgc.BackendID(t.Context(), b, false)
		if err != nil {
			t.Fatal(err)
		}
		return id + "/"
	}
	serve := func(args ...string) []string {
		return append([]string{"--listen", "127.0.0.1:0", "--log-level", "warn"}, args...)
	}
	gc := func(args ...string) []string { return append([]string{"gc", "--log-level", "warn"}, args...) }
	steps := []struct {
		name string
		args []string
		// want: "" succeeds; otherwise the error says each of want, where
		// OWNER-A and OWNER-B stand for the backends' owners.
		want []string
	}{
		{"a dry run on A writes no record", gc(append(onA, "--dry-run")...), nil},
		{"gc on A claims the store", gc(onA...), nil},
		{"gc on A again", gc(onA...), nil},
		{"serving B is refused", serve(onB...), []string{"blob store " + blobs, "owned by another backend", "OWNER-A", "OWNER-B", "bolt://" + filepath.Join(dirB, "topo.db"), "--blob-owner-takeover=OWNER-A"}},
		{"gc on B is refused", gc(onB...), []string{"owned by another backend", "OWNER-A", "OWNER-B"}},
		{"a dry run on B is refused", gc(append(onB, "--dry-run")...), []string{"owned by another backend", "OWNER-A"}},
		{"gc on A with another grace is refused", gc(append(onA, "--gc-grace", "2h")...), []string{"another gc grace", "grace 1h0m0s", "--gc-grace is 2h0m0s"}},
		{"serving A with another grace is refused", serve(append(onA, "--gc-grace", "30m")...), []string{"another gc grace", "grace 1h0m0s", "--gc-grace is 30m0s"}},
		{"gc on A with another prefix is refused", gc(append(onA, "--prefix", "/vitess/")...), []string{"root is \"/vitess/\"", "OWNER-A"}},
		{"a takeover naming another owner is refused", gc(append(onB, "--blob-owner-takeover", "0123456789abcdef0123456789abcdef/")...), []string{"owned by another backend", "OWNER-A"}},
		{"a takeover by B naming A", gc(append(onB, "--blob-owner-takeover", "OWNER-A")...), nil},
		{"gc on A is now refused", gc(onA...), []string{"owned by another backend", "OWNER-B", "OWNER-A"}},
		{"gc on B, with the flag left in", gc(append(onB, "--blob-owner-takeover", "OWNER-A")...), nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			replace := func(s string) string {
				if strings.Contains(s, "OWNER-A") {
					s = strings.ReplaceAll(s, "OWNER-A", ownerOf(dirA))
				}
				if strings.Contains(s, "OWNER-B") {
					s = strings.ReplaceAll(s, "OWNER-B", ownerOf(dirB))
				}
				return s
			}
			args := make([]string, len(st.args))
			for i, a := range st.args {
				args[i] = replace(a)
			}
			var out bytes.Buffer
			cmd := newRootCommand()
			cmd.SetOut(&out)
			cmd.SetArgs(args)
			// A refused topod returns at once; one that was not refused
			// would serve until this bound ends it (and then fails below).
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			err := cmd.ExecuteContext(ctx)
			if st.want == nil {
				if err != nil {
					t.Fatalf("topod %v: %v\n%s", args, err, out.String())
				}
				return
			}
			if err == nil {
				t.Fatalf("topod %v succeeded, want it refused", args)
			}
			for _, w := range st.want {
				if w = replace(w); !strings.Contains(err.Error(), w) {
					t.Errorf("topod %v: error %q does not say %q", args, err, w)
				}
			}
			if out.Len() != 0 {
				t.Errorf("a refused topod %v printed %q", args, out.String())
			}
		})
	}
	// The record's grace and backend, as written by the takeover.
	data, err := os.ReadFile(filepath.Join(dirA, "blobs", "_topod", "owner.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec blobgc.Owner
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Owner != ownerOf(dirB) || rec.Grace != "1h0m0s" || rec.Backend != "bolt://"+filepath.Join(dirB, "topo.db") || !strings.Contains(rec.Previous, ownerOf(dirA)) {
		t.Errorf("owner record %+v: want B's, naming A's as the previous one", rec)
	}
}
