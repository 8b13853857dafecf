package boltkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/kvtest"
)

// openTest opens a backend on a new file in t's temporary directory and
// closes it when t ends.
func openTest(t testing.TB, opts Options) (*Backend, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "topod.db")
	return openAt(t, path, opts), path
}

// openAt opens the backend at path, closing it when t ends.
func openAt(t testing.TB, path string, opts Options) *Backend {
	t.Helper()
	b, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// crashCopy copies b's file as a crash would leave it: everything
// committed, and none of what Close does (such as revoking leases).
func crashCopy(t *testing.T, b *Backend) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "crashed.db")
	if err := b.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(path, 0o600) }); err != nil {
		t.Fatalf("copy: %v", err)
	}
	return path
}

func TestConformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Backend {
		b, _ := openTest(t, Options{})
		return b
	})
}

func TestConformanceSmallHistory(t *testing.T) {
	// The suite must not depend on generous defaults.
	kvtest.Run(t, func(t *testing.T) kv.Backend {
		b, _ := openTest(t, Options{HistoryPerKey: 3, DeletedRetention: 50, NoSync: true})
		return b
	})
}

func TestReopenKeepsDataAndRevisions(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "topod.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r1, err := b.Create(ctx, "/a", []byte("a1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.Update(ctx, "/a", []byte("a2"), r1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/gone", []byte("g"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Delete(ctx, "/gone", 0); err != nil {
		t.Fatal(err)
	}
	_, last, err := b.List(ctx, "/", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	b = openAt(t, path, Options{})
	got, err := b.Get(ctx, "/a")
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if string(got.Value) != "a2" || got.ModRevision != r2 || got.CreateRevision != r1 {
		t.Fatalf("Get after reopen = %q at %d (created %d), want a2 at %d (created %d)",
			got.Value, got.ModRevision, got.CreateRevision, r2, r1)
	}
	if _, err := b.Get(ctx, "/gone"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("Get(deleted key) after reopen: %v, want ErrNotFound", err)
	}
	if old, err := b.GetRevision(ctx, "/a", r1); err != nil || string(old) != "a1" {
		t.Fatalf("GetRevision after reopen = %q, %v; want a1", old, err)
	}
	_, rev, err := b.List(ctx, "/", true)
	if err != nil || rev != last {
		t.Fatalf("List after reopen at revision %d (%v), want %d", rev, err, last)
	}
	r3, err := b.Update(ctx, "/a", []byte("a3"), r2)
	if err != nil {
		t.Fatal(err)
	}
	if r3 != last+1 {
		t.Fatalf("first write after reopen at revision %d, want %d", r3, last+1)
	}
}

func TestReopenDeletesEphemeralKeys(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{})
	l, err := b.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rLeased, err := b.Create(ctx, "/leased/1", []byte("l1"), l.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/leased/2", []byte("l2"), l.ID()); err != nil {
		t.Fatal(err)
	}
	// Updating a leased key keeps it leased.
	if _, err := b.Update(ctx, "/leased/2", []byte("l2b"), 0); err != nil {
		t.Fatal(err)
	}
	last, err := b.Create(ctx, "/plain", []byte("p"), 0)
	if err != nil {
		t.Fatal(err)
	}

	// The process dies holding the lease.
	crashed := openAt(t, crashCopy(t, b), Options{})
	for _, key := range []string{"/leased/1", "/leased/2"} {
		if _, err := crashed.Get(ctx, key); !errors.Is(err, kv.ErrNotFound) {
			t.Errorf("Get(%s) after reopen: %v, want ErrNotFound", key, err)
		}
	}
	if _, err := crashed.Get(ctx, "/plain"); err != nil {
		t.Errorf("Get(/plain) after reopen: %v", err)
	}
	_, rev, err := crashed.List(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if rev != last+1 {
		t.Errorf("revision after the cleanup = %d, want %d (one revision for all of it)", rev, last+1)
	}
	if old, err := crashed.GetRevision(ctx, "/leased/1", rLeased); err != nil || string(old) != "l1" {
		t.Errorf("GetRevision(/leased/1, %d) = %q, %v; want l1", rLeased, old, err)
	}
	// The old lease means nothing to the new process.
	if _, err := crashed.Create(ctx, "/x", nil, l.ID()); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Errorf("Create with the old process's lease: %v, want ErrLeaseNotFound", err)
	}
	nl, err := crashed.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if nl.ID() == l.ID() {
		t.Errorf("the reopened backend granted lease ID %d again", l.ID())
	}
}

func TestCloseRevokesLeases(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "topod.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := b.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/leased", []byte("l"), l.ID()); err != nil {
		t.Fatal(err)
	}
	w, err := b.Watch(ctx, "/", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-l.Done():
	default:
		t.Fatalf("lease Done not closed by Close")
	}
	if err := l.Alive(ctx); !errors.Is(err, kv.ErrLeaseNotFound) || !errors.Is(err, kv.ErrClosed) {
		t.Errorf("Alive after Close: %v, want ErrLeaseNotFound and ErrClosed", err)
	}
	if err := l.Revoke(ctx); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Errorf("Revoke after Close: %v, want ErrLeaseNotFound", err)
	}
	// The watcher saw the delete (or, if it was not read in time, the end).
	var last kv.WatchResponse
	for resp := range w {
		last = resp
	}
	if !errors.Is(last.Err, kv.ErrClosed) {
		t.Errorf("last watch response: %+v, want ErrClosed", last)
	}

	b = openAt(t, path, Options{})
	if _, err := b.Get(ctx, "/leased"); !errors.Is(err, kv.ErrNotFound) {
		t.Errorf("Get(leased key) after Close and Open: %v, want ErrNotFound", err)
	}
}

func TestClosed(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{})
	rev, err := b.Create(ctx, "/k", []byte("v"), 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := b.Watch(ctx, "/k", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	resp, ok := <-w
	if !ok || !errors.Is(resp.Err, kv.ErrClosed) {
		t.Fatalf("watch after Close: got %+v (open %v), want a response with ErrClosed", resp, ok)
	}
	if _, ok := <-w; ok {
		t.Fatalf("watch channel still open after its last response")
	}

	calls := map[string]error{}
	_, calls["Get"] = b.Get(ctx, "/k")
	_, calls["GetRevision"] = b.GetRevision(ctx, "/k", rev)
	_, _, calls["List"] = b.List(ctx, "/", false)
	_, calls["Create"] = b.Create(ctx, "/new", nil, 0)
	_, calls["Update"] = b.Update(ctx, "/k", nil, 0)
	_, calls["Delete"] = b.Delete(ctx, "/k", 0)
	_, calls["Watch"] = b.Watch(ctx, "/k", false, 0)
	_, calls["Grant"] = b.Grant(ctx, time.Second)
	_, calls["Txn"] = b.Txn(ctx, kv.Txn{Success: []kv.Op{{Type: kv.OpRange, Key: "/k"}}})
	_, calls["Txn (writes)"] = b.Txn(ctx, kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "/k"}}})
	_, calls["CurrentRevision"] = b.CurrentRevision(ctx)
	_, _, calls["GrantLease"] = b.GrantLease(ctx, 0, time.Second)
	_, calls["RenewLease"] = b.RenewLease(ctx, 1)
	calls["RevokeLease"] = b.RevokeLease(ctx, 1)
	_, calls["LeaseTimeToLive"] = b.LeaseTimeToLive(ctx, 1, true)
	_, calls["ListLeases"] = b.ListLeases(ctx)
	calls["Close"] = b.Close()
	for name, err := range calls {
		if !errors.Is(err, kv.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestOpenLockedFile(t *testing.T) {
	_, path := openTest(t, Options{})
	if b, err := Open(path, Options{OpenTimeout: 100 * time.Millisecond}); err == nil {
		_ = b.Close()
		t.Fatalf("second Open of a file in use succeeded")
	}
}

func TestCanceledContext(t *testing.T) {
	b, _ := openTest(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Create(ctx, "/k", nil, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Create with a canceled context: %v", err)
	}
	if _, err := b.Get(ctx, "/k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context: %v", err)
	}
	if _, err := b.Watch(ctx, "/k", false, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch with a canceled context: %v", err)
	}
	if _, err := b.Grant(ctx, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Grant with a canceled context: %v", err)
	}
}

func TestEmptyKey(t *testing.T) {
	b, _ := openTest(t, Options{})
	if _, err := b.Update(t.Context(), "", []byte("v"), 0); err == nil {
		t.Errorf("Update of the empty key succeeded")
	}
}

// TestCloseLeavesNoGoroutines: Close ends the expiry loop and every watcher
// goroutine, even those whose consumer stopped reading.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	ctx := t.Context()
	before := goleak.IgnoreCurrent()
	b, err := Open(filepath.Join(t.TempDir(), "topod.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := b.Watch(ctx, "/", true, 0); err != nil { // never read
			t.Fatal(err)
		}
		if _, err := b.Update(ctx, "/k", fmt.Appendf(nil, "%d", i), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Grant(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// goleak retries until the goroutines started since before have ended,
	// and names those that do not.
	goleak.VerifyNone(t, before)
}

// TestReadOnly: a file opened read-only reads as it is, leased keys of the
// process that wrote it included, and is left byte for byte as it was;
// writes fail; a missing file is not created; a file in use is refused.
func TestReadOnly(t *testing.T) {
	ctx := t.Context()
	b, _ := openTest(t, Options{})
	l, err := b.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "/leased", []byte("l"), l.ID()); err != nil {
		t.Fatal(err)
	}
	v1, err := b.Create(ctx, "/plain", []byte("p1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	last, err := b.Update(ctx, "/plain", []byte("p2"), 0)
	if err != nil {
		t.Fatal(err)
	}
	path := crashCopy(t, b)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	ro := openAt(t, path, Options{ReadOnly: true})
	if e, err := ro.Get(ctx, "/leased"); err != nil || string(e.Value) != "l" {
		t.Errorf("Get(/leased) = %q, %v", e.Value, err)
	}
	if old, err := ro.GetRevision(ctx, "/plain", v1); err != nil || string(old) != "p1" {
		t.Errorf("GetRevision(/plain, %d) = %q, %v", v1, old, err)
	}
	if kvs, rev, err := ro.List(ctx, "/", false); err != nil || len(kvs) != 2 || rev != last {
		t.Errorf("List = %d keys at revision %d, %v; want 2 at %d", len(kvs), rev, err, last)
	}
	if _, err := ro.Update(ctx, "/plain", []byte("p3"), 0); !errors.Is(err, bolt.ErrDatabaseReadOnly) {
		t.Errorf("Update of a read-only file: %v, want ErrDatabaseReadOnly", err)
	}
	// Another reader may open it meanwhile.
	ro2 := openAt(t, path, Options{ReadOnly: true, OpenTimeout: time.Second})
	if _, err := ro2.Get(ctx, "/plain"); err != nil {
		t.Error(err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ro2.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("the file changed under a read-only open")
	}

	missing := filepath.Join(t.TempDir(), "missing.db")
	if _, err := Open(missing, Options{ReadOnly: true}); err == nil {
		t.Errorf("read-only Open of a missing file succeeded")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("read-only Open created %s: %v", missing, err)
	}
	_, inUse := openTest(t, Options{})
	if _, err := Open(inUse, Options{ReadOnly: true, OpenTimeout: 100 * time.Millisecond}); !errors.Is(err, bolt.ErrTimeout) {
		t.Errorf("read-only Open of a file in use: %v, want a timeout", err)
	}
}
