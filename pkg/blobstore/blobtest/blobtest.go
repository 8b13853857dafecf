// Package blobtest is the conformance suite of blobstore.Store: every
// implementation runs it from its tests,
//
//	func TestConformance(t *testing.T) {
//		blobtest.Run(t, func(t *testing.T) blobtest.Fixture {
//			s := open a fresh, empty store
//			return blobtest.Fixture{Store: s, Overwrite: ...}
//		})
//	}
//
// The Fixture's Overwrite hook writes raw bytes under a hash, bypassing the
// store's checks, so the suite can damage a stored blob and check that Get
// reports ErrCorrupt instead of returning it. Bench measures a store the
// same way for every implementation.
package blobtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/content"
)

// Fixture is a fresh, empty store for one subtest, and a way to damage it.
type Fixture struct {
	// Store is the store under test. Run closes it at the end of the
	// subtest and fails the test if Close fails; anything else the fixture
	// created is for newFixture to clean up (with t.Cleanup).
	Store blobstore.Store

	// Overwrite stores data under h as is, bypassing every check Put
	// makes, the way a failing disk or a foreign writer would: the suite
	// uses it to damage stored blobs.
	Overwrite func(ctx context.Context, h content.Hash, data []byte) error
}

// Run runs the conformance suite against the stores newFixture returns,
// one fresh store per subtest.
func Run(t *testing.T, newFixture func(t *testing.T) Fixture) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f Fixture)
	}{
		{"PutGet", testPutGet},
		{"Missing", testMissing},
		{"IdempotentPut", testIdempotentPut},
		{"HashMismatch", testHashMismatch},
		{"GetNotFound", testGetNotFound},
		{"Corrupt", testCorrupt},
		{"RepairBySize", testRepairBySize},
		{"Delete", testDelete},
		{"Walk", testWalk},
		{"WalkStops", testWalkStops},
		{"ConcurrentPut", testConcurrentPut},
		{"CanceledContext", testCanceledContext},
		{"RefreshAndDeleteIfOlder", testRefreshAndDeleteIfOlder},
		{"Meta", testMeta},
		{"MetaConcurrent", testMetaConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if f.Store == nil || f.Overwrite == nil {
				t.Fatal("blobtest: newFixture returned a Fixture without Store or Overwrite")
			}
			t.Cleanup(func() {
				if err := f.Store.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, f)
		})
	}
}

// Blob returns n pseudo-random bytes determined by seed, and their hash.
func Blob(seed uint64, n int) (content.Hash, []byte) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	r := rand.NewChaCha8(key)
	r.Read(b)
	return content.Sum(b), b
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(t *testing.T, s blobstore.Store, h content.Hash, data []byte) {
	t.Helper()
	if err := s.Put(ctxFor(t), h, data); err != nil {
		t.Fatalf("Put(%s, %d bytes): %v", h, len(data), err)
	}
}

func mustGet(t *testing.T, s blobstore.Store, h content.Hash, want []byte) {
	t.Helper()
	got, err := s.Get(ctxFor(t), h)
	if err != nil {
		t.Fatalf("Get(%s): %v", h, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s) = %d bytes, want the %d bytes put", h, len(got), len(want))
	}
}

// wantErr checks that err wraps target and names h.
func wantErr(t *testing.T, op string, err, target error, h content.Hash) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: err = %v, want one wrapping %q", op, err, target)
	}
	if !strings.Contains(err.Error(), h.String()) {
		t.Fatalf("%s: error %q does not name the blob %s", op, err, h)
	}
}

type walked struct {
	size    int64
	modTime time.Time
}

func walkAll(t *testing.T, s blobstore.Store) map[content.Hash]walked {
	t.Helper()
	got := map[content.Hash]walked{}
	err := s.Walk(ctxFor(t), func(h content.Hash, size int64, modTime time.Time) error {
		if _, dup := got[h]; dup {
			t.Errorf("Walk: blob %s seen twice", h)
		}
		got[h] = walked{size, modTime}
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return got
}

func testPutGet(t *testing.T, f Fixture) {
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"1 KiB", 1 << 10},
		{"64 KiB", 64 << 10},
		{"4 MiB", 4 << 20},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, data := Blob(uint64(i), tt.size)
			orig := bytes.Clone(data)
			mustPut(t, f.Store, h, data)
			// Put must not keep the caller's slice.
			for j := range data {
				data[j] ^= 0xff
			}
			mustGet(t, f.Store, h, orig)
			// The caller owns what Get returns.
			got, _ := f.Store.Get(ctxFor(t), h)
			for j := range got {
				got[j] ^= 0xff
			}
			mustGet(t, f.Store, h, orig)
			m, err := f.Store.Missing(ctxFor(t), []content.Hash{h})
			if err != nil || len(m) != 0 {
				t.Fatalf("Missing([stored]) = %v, %v; want none", m, err)
			}
			if w, ok := walkAll(t, f.Store)[h]; !ok || w.size != int64(tt.size) {
				t.Fatalf("Walk: blob %s seen %v with size %d, want size %d", h, ok, w.size, tt.size)
			}
		})
	}
}

func testMissing(t *testing.T, f Fixture) {
	a, da := Blob(1, 100)
	b, db := Blob(2, 0)
	c, _ := Blob(3, 100)
	d, _ := Blob(4, 5000)
	mustPut(t, f.Store, a, da)
	mustPut(t, f.Store, b, db)
	tests := []struct {
		name string
		in   []content.Hash
		want []content.Hash
	}{
		{"nil", nil, nil},
		{"all stored", []content.Hash{a, b}, nil},
		{"none stored", []content.Hash{c, d}, []content.Hash{c, d}},
		{"mix keeps order", []content.Hash{d, a, c, b}, []content.Hash{d, c}},
		{"duplicates reported once", []content.Hash{c, a, c, d, a, d}, []content.Hash{c, d}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.Store.Missing(ctxFor(t), tt.in)
			if err != nil {
				t.Fatalf("Missing: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Missing = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("many", func(t *testing.T) {
		var in, want []content.Hash
		for i := range 200 {
			h, data := Blob(uint64(100+i), 10)
			if i%3 == 0 {
				mustPut(t, f.Store, h, data)
			} else {
				want = append(want, h)
			}
			in = append(in, h)
		}
		got, err := f.Store.Missing(ctxFor(t), in)
		if err != nil {
			t.Fatalf("Missing: %v", err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Missing of 200 = %d hashes, want %d", len(got), len(want))
		}
	})
}

func testIdempotentPut(t *testing.T, f Fixture) {
	h, data := Blob(1, 3000)
	mustPut(t, f.Store, h, data)
	before := walkAll(t, f.Store)
	for range 3 {
		mustPut(t, f.Store, h, bytes.Clone(data))
	}
	after := walkAll(t, f.Store)
	if len(after) != 1 {
		t.Fatalf("after 4 Puts of one blob, Walk sees %d blobs, want 1", len(after))
	}
	if !after[h].modTime.Equal(before[h].modTime) {
		t.Errorf("a repeated Put rewrote the blob: modTime %v, then %v", before[h].modTime, after[h].modTime)
	}
	mustGet(t, f.Store, h, data)
}

func testHashMismatch(t *testing.T, f Fixture) {
	h, _ := Blob(1, 1000)
	_, other := Blob(2, 1000)
	tests := []struct {
		name string
		data []byte
	}{
		{"other content", other},
		{"empty", nil},
		{"prefix", other[:10]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := f.Store.Put(ctxFor(t), h, tt.data)
			wantErr(t, "Put of data not matching the hash", err, blobstore.ErrHashMismatch, h)
			m, err := f.Store.Missing(ctxFor(t), []content.Hash{h})
			if err != nil || len(m) != 1 {
				t.Fatalf("after a rejected Put, Missing = %v, %v; want the blob missing", m, err)
			}
			_, err = f.Store.Get(ctxFor(t), h)
			wantErr(t, "Get after a rejected Put", err, blobstore.ErrNotFound, h)
		})
	}
	if got := walkAll(t, f.Store); len(got) != 0 {
		t.Fatalf("after rejected Puts, Walk sees %d blobs, want 0", len(got))
	}
}

func testGetNotFound(t *testing.T, f Fixture) {
	stored, data := Blob(1, 10)
	mustPut(t, f.Store, stored, data)
	h, _ := Blob(2, 10)
	got, err := f.Store.Get(ctxFor(t), h)
	wantErr(t, "Get of a blob never stored", err, blobstore.ErrNotFound, h)
	if got != nil {
		t.Fatalf("Get of a missing blob returned %d bytes", len(got))
	}
}

func testCorrupt(t *testing.T, f Fixture) {
	tests := []struct {
		name    string
		size    int
		corrupt func(b []byte) []byte
	}{
		{"flipped bit", 1000, func(b []byte) []byte { b[500] ^= 1; return b }},
		{"truncated", 1000, func(b []byte) []byte { return b[:999] }},
		{"extended", 1000, func(b []byte) []byte { return append(b, 0) }},
		{"emptied", 1000, func(b []byte) []byte { return nil }},
		{"empty blob given content", 0, func(b []byte) []byte { return []byte("x") }},
		{"large, last byte", 4 << 20, func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, data := Blob(uint64(i), tt.size)
			mustPut(t, f.Store, h, data)
			if err := f.Overwrite(ctxFor(t), h, tt.corrupt(bytes.Clone(data))); err != nil {
				t.Fatalf("Overwrite: %v", err)
			}
			got, err := f.Store.Get(ctxFor(t), h)
			wantErr(t, "Get of a damaged blob", err, blobstore.ErrCorrupt, h)
			if got != nil {
				t.Fatalf("Get of a damaged blob returned %d bytes with the error", len(got))
			}
			// Delete then Put repairs any damage.
			if err := f.Store.Delete(ctxFor(t), h); err != nil {
				t.Fatalf("Delete of a damaged blob: %v", err)
			}
			mustPut(t, f.Store, h, data)
			mustGet(t, f.Store, h, data)
		})
	}
}

func testRepairBySize(t *testing.T, f Fixture) {
	h, data := Blob(1, 1000)
	mustPut(t, f.Store, h, data)
	if err := f.Overwrite(ctxFor(t), h, data[:10]); err != nil {
		t.Fatalf("Overwrite: %v", err)
	}
	// A stored blob of the wrong size is damaged: Put replaces it.
	mustPut(t, f.Store, h, data)
	mustGet(t, f.Store, h, data)
}

func testDelete(t *testing.T, f Fixture) {
	a, da := Blob(1, 100)
	b, db := Blob(2, 100)
	never, _ := Blob(3, 100)
	mustPut(t, f.Store, a, da)
	mustPut(t, f.Store, b, db)
	if err := f.Store.Delete(ctxFor(t), a); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := f.Store.Get(ctxFor(t), a)
	wantErr(t, "Get after Delete", err, blobstore.ErrNotFound, a)
	m, err := f.Store.Missing(ctxFor(t), []content.Hash{a, b})
	if err != nil || !slices.Equal(m, []content.Hash{a}) {
		t.Fatalf("Missing after Delete = %v, %v; want [%s]", m, err, a)
	}
	mustGet(t, f.Store, b, db) // others untouched
	if got := walkAll(t, f.Store); len(got) != 1 {
		t.Fatalf("Walk after Delete sees %d blobs, want 1", len(got))
	}
	for _, h := range []content.Hash{a, never} {
		if err := f.Store.Delete(ctxFor(t), h); err != nil {
			t.Fatalf("Delete of a blob not stored: %v, want nil", err)
		}
	}
	mustPut(t, f.Store, a, da) // can be stored again
	mustGet(t, f.Store, a, da)
}

func testWalk(t *testing.T, f Fixture) {
	if got := walkAll(t, f.Store); len(got) != 0 {
		t.Fatalf("Walk of an empty store sees %d blobs", len(got))
	}
	// Stores may keep times at a one-second resolution (S3).
	start := time.Now().Add(-2 * time.Second)
	want := map[content.Hash]int64{}
	for i := range 40 {
		size := i * 37
		h, data := Blob(uint64(i), size)
		mustPut(t, f.Store, h, data)
		want[h] = int64(size)
	}
	end := time.Now().Add(2 * time.Second)
	got := walkAll(t, f.Store)
	if len(got) != len(want) {
		t.Errorf("Walk sees %d blobs, want %d", len(got), len(want))
	}
	for h, size := range want {
		w, ok := got[h]
		switch {
		case !ok:
			t.Errorf("Walk did not see blob %s", h)
		case w.size != size:
			t.Errorf("Walk: blob %s has size %d, want %d", h, w.size, size)
		case w.modTime.Before(start) || w.modTime.After(end):
			t.Errorf("Walk: blob %s has modTime %v, want within [%v, %v]", h, w.modTime, start, end)
		}
	}
}

func testWalkStops(t *testing.T, f Fixture) {
	for i := range 5 {
		h, data := Blob(uint64(i), 10)
		mustPut(t, f.Store, h, data)
	}
	stop := errors.New("stop here")
	calls := 0
	err := f.Store.Walk(ctxFor(t), func(content.Hash, int64, time.Time) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Walk with fn failing: err %v after %d calls, want %v after 1", err, calls, stop)
	}
	ctx, cancel := context.WithCancel(ctxFor(t))
	calls = 0
	err = f.Store.Walk(ctx, func(content.Hash, int64, time.Time) error {
		calls++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Walk canceled during the walk: err %v after %d calls, want context.Canceled", err, calls)
	}
}

// testConcurrentPut puts the same blob from many goroutines while others
// read it: every Put succeeds, and a reader sees the whole blob or
// ErrNotFound, never part of it.
func testConcurrentPut(t *testing.T, f Fixture) {
	const writers, readers = 8, 4
	for _, size := range []int{0, 1 << 10, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			h, data := Blob(uint64(size), size)
			ctx := ctxFor(t)
			var wg sync.WaitGroup
			done := make(chan struct{})
			errs := make(chan error, writers+readers)
			for range writers {
				wg.Go(func() {
					if err := f.Store.Put(ctx, h, bytes.Clone(data)); err != nil {
						errs <- fmt.Errorf("concurrent Put: %w", err)
					}
				})
			}
			var rg sync.WaitGroup
			for range readers {
				rg.Go(func() {
					for {
						got, err := f.Store.Get(ctx, h)
						switch {
						case errors.Is(err, blobstore.ErrNotFound):
						case err != nil:
							errs <- fmt.Errorf("Get during concurrent Puts: %w", err)
							return
						case !bytes.Equal(got, data):
							errs <- fmt.Errorf("Get during concurrent Puts returned %d wrong bytes", len(got))
							return
						}
						select {
						case <-done:
							return
						default:
						}
					}
				})
			}
			wg.Wait()
			close(done)
			rg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			mustGet(t, f.Store, h, data)
			if got := walkAll(t, f.Store); got[h].size != int64(size) {
				t.Fatalf("Walk after concurrent Puts: size %d, want %d", got[h].size, size)
			}
		})
	}
	if got := walkAll(t, f.Store); len(got) != 3 {
		t.Fatalf("Walk after concurrent Puts of 3 blobs sees %d", len(got))
	}
}

func testCanceledContext(t *testing.T, f Fixture) {
	h, data := Blob(1, 100)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Store.Put(ctx, h, data); err == nil {
		t.Fatal("Put with a canceled context succeeded")
	}
	m, err := f.Store.Missing(ctxFor(t), []content.Hash{h})
	if err != nil || len(m) != 1 {
		t.Fatalf("after a canceled Put, Missing = %v, %v; want the blob missing", m, err)
	}
	mustPut(t, f.Store, h, data)
	if _, err := f.Store.Get(ctx, h); err == nil {
		t.Fatal("Get with a canceled context succeeded")
	}
	if _, err := f.Store.Missing(ctx, []content.Hash{h}); err == nil {
		t.Fatal("Missing with a canceled context succeeded")
	}
}

// storeTimeResolution is how coarse a store's times may be: S3 reports
// LastModified to the second.
const storeTimeResolution = time.Second

// testRefreshAndDeleteIfOlder checks the two operations garbage collection
// relies on: Refresh reports what Missing does and resets the time of the
// blobs stored before olderThan only; DeleteIfOlder deletes a blob stored
// before its limit and keeps a younger (or refreshed) one.
func testRefreshAndDeleteIfOlder(t *testing.T, f Fixture) {
	a, da := Blob(1, 100)
	b, db := Blob(2, 0)
	d, dd := Blob(3, 3000)
	never, _ := Blob(4, 100)
	for h, data := range map[content.Hash][]byte{a: da, b: db, d: dd} {
		mustPut(t, f.Store, h, data)
	}
	put := walkAll(t, f.Store)
	// Let the clock move past the stores' resolution.
	time.Sleep(2*storeTimeResolution + 200*time.Millisecond)
	now := time.Now()

	t.Run("refresh nothing old enough", func(t *testing.T) {
		missing, err := f.Store.Refresh(ctxFor(t), []content.Hash{a, never, b, never, a}, now.Add(-time.Hour))
		if err != nil || !slices.Equal(missing, []content.Hash{never}) {
			t.Fatalf("Refresh = %v, %v; want [%s]", missing, err, never)
		}
		if missing, err := f.Store.Refresh(ctxFor(t), nil, now); err != nil || len(missing) != 0 {
			t.Fatalf("Refresh(nil) = %v, %v", missing, err)
		}
		got := walkAll(t, f.Store)
		for _, h := range []content.Hash{a, b, d} {
			if !got[h].modTime.Equal(put[h].modTime) {
				t.Errorf("blob %s stored at %v; after a Refresh with nothing older than an hour ago: %v", h, put[h].modTime, got[h].modTime)
			}
		}
	})
	t.Run("refresh resets the time", func(t *testing.T) {
		missing, err := f.Store.Refresh(ctxFor(t), []content.Hash{a}, now)
		if err != nil || len(missing) != 0 {
			t.Fatalf("Refresh([stored]) = %v, %v; want none missing", missing, err)
		}
		got := walkAll(t, f.Store)
		if w := got[a]; !w.modTime.After(put[a].modTime) || w.modTime.Before(now.Add(-storeTimeResolution)) || w.size != 100 {
			t.Errorf("refreshed blob: time %v size %d; want a time after %v and no earlier than %v, size 100",
				w.modTime, w.size, put[a].modTime, now.Add(-storeTimeResolution))
		}
		for _, h := range []content.Hash{b, d} {
			if !got[h].modTime.Equal(put[h].modTime) {
				t.Errorf("blob %s not asked about changed time: %v, then %v", h, put[h].modTime, got[h].modTime)
			}
		}
		mustGet(t, f.Store, a, da)
	})
	t.Run("delete if older", func(t *testing.T) {
		limit := now.Add(-500 * time.Millisecond) // after b and d were put, before a was refreshed
		tests := []struct {
			name    string
			h       content.Hash
			before  time.Time
			deleted bool
		}{
			{"refreshed since", a, limit, false},
			{"stored after the limit", d, put[d].modTime.Add(-time.Hour), false},
			{"stored before the limit", b, limit, true},
			{"already deleted", b, limit, false},
			{"never stored", never, now.Add(time.Hour), false},
		}
		for _, tt := range tests {
			deleted, err := f.Store.DeleteIfOlder(ctxFor(t), tt.h, tt.before)
			if err != nil || deleted != tt.deleted {
				t.Errorf("%s: DeleteIfOlder = %v, %v; want %v", tt.name, deleted, err, tt.deleted)
			}
		}
		mustGet(t, f.Store, a, da)
		mustGet(t, f.Store, d, dd)
		_, err := f.Store.Get(ctxFor(t), b)
		wantErr(t, "Get after DeleteIfOlder", err, blobstore.ErrNotFound, b)
		if got := walkAll(t, f.Store); len(got) != 2 {
			t.Errorf("Walk after DeleteIfOlder sees %d blobs, want 2", len(got))
		}
		mustPut(t, f.Store, b, db) // can be stored again
		mustGet(t, f.Store, b, db)
	})
	t.Run("canceled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := f.Store.Refresh(ctx, []content.Hash{a}, now.Add(time.Hour)); err == nil {
			t.Error("Refresh with a canceled context succeeded")
		}
		if _, err := f.Store.DeleteIfOlder(ctx, d, now.Add(time.Hour)); err == nil {
			t.Error("DeleteIfOlder with a canceled context succeeded")
		}
		mustGet(t, f.Store, d, dd)
	})
}

// testMeta checks meta objects: absent until created, created once,
// replaced only from the version read, never seen by Walk.
func testMeta(t *testing.T, f Fixture) {
	ctx := ctxFor(t)
	s := f.Store
	const name = "owner.json"
	mustMeta := func(want []byte) string {
		t.Helper()
		got, v, err := s.GetMeta(ctx, name)
		if err != nil || !bytes.Equal(got, want) || v == "" {
			t.Fatalf("GetMeta = %q, version %q, %v; want %q and a version", got, v, err, want)
		}
		return v
	}
	if _, _, err := s.GetMeta(ctx, name); !errors.Is(err, blobstore.ErrNotFound) || !strings.Contains(err.Error(), name) {
		t.Fatalf("GetMeta of a meta object never written: %v, want ErrNotFound naming it", err)
	}
	if err := s.PutMeta(ctx, name, []byte(`{"v":1}`), "no-such-version"); !errors.Is(err, blobstore.ErrMetaConflict) {
		t.Fatalf("PutMeta replacing a meta object never written: %v, want ErrMetaConflict", err)
	}
	if err := s.PutMeta(ctx, name, []byte(`{"v":1}`), ""); err != nil {
		t.Fatalf("PutMeta create: %v", err)
	}
	v1 := mustMeta([]byte(`{"v":1}`))
	err := s.PutMeta(ctx, name, []byte(`{"v":2}`), "")
	if !errors.Is(err, blobstore.ErrMetaConflict) || !strings.Contains(err.Error(), name) {
		t.Fatalf("PutMeta create over an existing one: %v, want ErrMetaConflict naming it", err)
	}
	mustMeta([]byte(`{"v":1}`))
	if err := s.PutMeta(ctx, name, []byte(`{"v":2}`), v1+"x"); !errors.Is(err, blobstore.ErrMetaConflict) {
		t.Fatalf("PutMeta replace from a wrong version: %v, want ErrMetaConflict", err)
	}
	if err := s.PutMeta(ctx, name, []byte(`{"v":2}`), v1); err != nil {
		t.Fatalf("PutMeta replace from the current version: %v", err)
	}
	if v2 := mustMeta([]byte(`{"v":2}`)); v2 == v1 {
		t.Fatalf("version %q unchanged by a replace", v2)
	}
	if err := s.PutMeta(ctx, name, []byte(`{"v":3}`), v1); !errors.Is(err, blobstore.ErrMetaConflict) {
		t.Fatalf("PutMeta replace from a superseded version: %v, want ErrMetaConflict", err)
	}
	mustMeta([]byte(`{"v":2}`))

	// Meta objects are not blobs.
	if got := walkAll(t, s); len(got) != 0 {
		t.Fatalf("Walk of a store holding only a meta object sees %d blobs", len(got))
	}
	h, data := Blob(1, 100)
	mustPut(t, s, h, data)
	if got := walkAll(t, s); len(got) != 1 {
		t.Fatalf("Walk sees %d blobs, want 1", len(got))
	}
	mustMeta([]byte(`{"v":2}`))

	for _, bad := range []string{"", "../x", "a/b", ".lock", "Owner.json", strings.Repeat("a", 65)} {
		if err := s.PutMeta(ctx, bad, []byte("x"), ""); err == nil {
			t.Errorf("PutMeta(%q) succeeded, want the name refused", bad)
		}
		if _, _, err := s.GetMeta(ctx, bad); err == nil || errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("GetMeta(%q) = %v, want the name refused", bad, err)
		}
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.PutMeta(canceled, "other.json", []byte("x"), ""); err == nil {
		t.Error("PutMeta with a canceled context succeeded")
	}
	if _, _, err := s.GetMeta(canceled, name); err == nil {
		t.Error("GetMeta with a canceled context succeeded")
	}
}

// testMetaConcurrent: of concurrent creates, and of concurrent replaces of
// one version, exactly one succeeds, and the object holds its contents.
func testMetaConcurrent(t *testing.T, f Fixture) {
	ctx := ctxFor(t)
	s := f.Store
	const name, n = "race.json", 8
	race := func(version string) []byte {
		t.Helper()
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners [][]byte
			start   = make(chan struct{})
		)
		for i := range n {
			data := []byte(fmt.Sprintf(`{"writer":%d,"from":%q}`, i, version))
			wg.Go(func() {
				<-start
				err := s.PutMeta(ctx, name, data, version)
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, data)
					mu.Unlock()
				case !errors.Is(err, blobstore.ErrMetaConflict):
					t.Errorf("PutMeta: %v, want success or ErrMetaConflict", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("%d of %d concurrent PutMetas from version %q succeeded, want exactly 1", len(winners), n, version)
		}
		return winners[0]
	}
	won := race("")
	got, v, err := s.GetMeta(ctx, name)
	if err != nil || !bytes.Equal(got, won) {
		t.Fatalf("after concurrent creates, GetMeta = %q, %v; want the winner's %q", got, err, won)
	}
	won = race(v)
	if got, _, err := s.GetMeta(ctx, name); err != nil || !bytes.Equal(got, won) {
		t.Fatalf("after concurrent replaces, GetMeta = %q, %v; want the winner's %q", got, err, won)
	}
}
