package blobgc_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/blobgc"
	"github.com/topod-io/topod/pkg/blobstore/blobtest"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/record"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// srvVSchema returns a small JD-profile SrvVSchema, serialized.
func srvVSchema(t testing.TB) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(jd.JD().Sized(30).SrvVSchema())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCollect: referenced blobs are kept, whether the reference is a
// current value, a past one (History) or the last value of a deleted key;
// unreferenced blobs are kept while young or refreshed and deleted when
// old; a dry run deletes nothing.
func TestCollect(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := t.Context()
			b, s := be.open(t), openStore(t)
			w := &writer{t: t, backend: b, store: s, grace: time.Hour}
			rng := rand.New(rand.NewPCG(1, 2))

			current := w.write("/files/current", randomBytes(rng, 200<<10))
			srv := w.write("/cells/c1/SrvVSchema", srvVSchema(t))
			v1 := w.write("/files/versioned", randomBytes(rng, 200<<10))
			v2 := w.write("/files/versioned", randomBytes(rng, 200<<10))
			deleted := w.write("/files/deleted", randomBytes(rng, 100<<10))
			if _, err := b.Delete(ctx, "/files/deleted", 0); err != nil {
				t.Fatal(err)
			}
			w.write("/files/small", []byte("inline contents"))
			orphan := func(seed uint64) []content.Hash {
				h, data := blobtest.Blob(seed, 1000)
				if err := s.Put(ctx, h, data); err != nil {
					t.Fatal(err)
				}
				return []content.Hash{h}
			}
			old, young, refreshed := orphan(1), orphan(2), orphan(3)

			now := time.Now()
			ageAll(t, s, now.Add(-2*time.Hour))
			age(t, s, now.Add(-10*time.Minute), young...)
			// What MissingBlobs does for a writer about to refer to it.
			if missing, err := s.Refresh(ctx, refreshed, now.Add(-30*time.Minute)); err != nil || len(missing) != 0 {
				t.Fatalf("Refresh = %v, %v", missing, err)
			}
			before := stored(t, s)

			groups := []struct {
				name   string
				hashes []content.Hash
				kept   bool
			}{
				{"current value's", current, true},
				{"SrvVSchema's", srv, true},
				{"superseded version's (History)", v1, true},
				{"current version's", v2, true},
				{"deleted key's last value's (History)", deleted, true},
				{"unreferenced young", young, true},
				{"unreferenced refreshed", refreshed, true},
				{"unreferenced old", old, false},
			}
			check := func(t *testing.T, wantDeleted bool) {
				t.Helper()
				after := stored(t, s)
				for _, g := range groups {
					for _, h := range g.hashes {
						if want := g.kept || !wantDeleted; after[h] != want {
							t.Errorf("%s blob %s stored: %v, want %v", g.name, h, after[h], want)
						}
					}
				}
			}

			t.Run("dry run", func(t *testing.T) {
				r, err := blobgc.Collect(ctx, b, s, blobgc.Options{DryRun: true})
				if err != nil {
					t.Fatal(err)
				}
				if got := hashesOf(r.Candidates); !slices.Equal(got, old) || len(r.Deleted) != 0 {
					t.Errorf("dry run: candidates %v, deleted %d; want candidates %v, none deleted", got, len(r.Deleted), old)
				}
				if len(stored(t, s)) != len(before) {
					t.Errorf("dry run changed the store")
				}
				check(t, false)
				if !strings.Contains(r.Summary(), "would delete 1 blobs") {
					t.Errorf("summary %q", r.Summary())
				}
			})
			t.Run("collect", func(t *testing.T) {
				r, err := blobgc.Collect(ctx, b, s, blobgc.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if got := hashesOf(r.Deleted); !slices.Equal(got, old) || r.DeletedBytes != 1000 {
					t.Errorf("deleted %v (%d bytes), want %v (1000 bytes)", got, r.DeletedBytes, old)
				}
				wantMarked := len(unique(current, srv, v1, v2, deleted))
				if r.Marked != wantMarked || r.Young != 2 || r.Kept != 0 || len(r.Dangling) != 0 {
					t.Errorf("report %+v: want %d marked, 2 young, none kept or dangling", r, wantMarked)
				}
				check(t, true)
				if _, err := b.Get(ctx, blobgc.LockKey); !errors.Is(err, kv.ErrNotFound) {
					t.Errorf("lock key after the collection: %v, want it gone", err)
				}
			})
			t.Run("again", func(t *testing.T) {
				r, err := blobgc.Collect(ctx, b, s, blobgc.Options{})
				if err != nil || len(r.Deleted) != 0 || len(r.Candidates) != 0 {
					t.Fatalf("second collection: %v, %d candidates, %d deleted; want nothing to do", err, len(r.Candidates), len(r.Deleted))
				}
				check(t, true)
			})
		})
	}
}

// TestCollectGraceFromOptions: the grace period and the clock come from
// the options.
func TestCollectGraceFromOptions(t *testing.T) {
	ctx := t.Context()
	now := time.Now()
	tests := []struct {
		name    string
		opts    blobgc.Options
		deleted bool
	}{
		{"default grace (1h)", blobgc.Options{}, false},
		{"grace 30m", blobgc.Options{Grace: 30 * time.Minute}, false},
		{"grace 30m, an hour later", blobgc.Options{Grace: 30 * time.Minute, Now: func() time.Time { return now.Add(time.Hour) }}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A store each: a store's collections all have its grace.
			b, s := openBolt(t), openStore(t)
			h, data := blobtest.Blob(1, 10)
			if err := s.Put(ctx, h, data); err != nil {
				t.Fatal(err)
			}
			age(t, s, now.Add(-20*time.Minute), h)
			r, err := blobgc.Collect(ctx, b, s, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(r.Deleted) == 1; got != tt.deleted {
				t.Fatalf("deleted %d blobs, want deleted %v", len(r.Deleted), tt.deleted)
			}
		})
	}
}

// TestCollectDangling: references to missing blobs (a missing chunk, a
// missing root manifest) are reported with their keys, and do not stop the
// collection of other blobs.
func TestCollectDangling(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := t.Context()
			b, s := be.open(t), openStore(t)
			w := &writer{t: t, backend: b, store: s, grace: time.Hour}
			rng := rand.New(rand.NewPCG(3, 4))

			lostChunk := encode(t, "/files/lost-chunk", randomBytes(rng, 300<<10))
			lostRoot := encode(t, "/files/lost-root", randomBytes(rng, 300<<10))
			for key, enc := range map[string]*record.Encoded{"/files/lost-chunk": lostChunk, "/files/lost-root": lostRoot} {
				if err := w.upload(ctx, enc); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Update(ctx, key, enc.Value, 0); err != nil {
					t.Fatal(err)
				}
			}
			fine := w.write("/files/fine", randomBytes(rng, 100<<10))
			var chunk content.Hash
			for h := range lostChunk.Blobs {
				if h != content.Hash(lostChunk.Ref.Root) {
					chunk = h
					break
				}
			}
			root := content.Hash(lostRoot.Ref.Root)
			for _, h := range []content.Hash{chunk, root} {
				if err := s.Delete(ctx, h); err != nil {
					t.Fatal(err)
				}
			}
			orphan, data := blobtest.Blob(9, 100)
			if err := s.Put(ctx, orphan, data); err != nil {
				t.Fatal(err)
			}
			ageAll(t, s, time.Now().Add(-2*time.Hour))

			r, err := blobgc.Collect(ctx, b, s, blobgc.Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]content.Hash{}
			for _, d := range r.Dangling {
				got[d.Key] = d.Hash
			}
			want := map[string]content.Hash{"/files/lost-chunk": chunk, "/files/lost-root": root}
			if len(got) != len(want) || got["/files/lost-chunk"] != chunk || got["/files/lost-root"] != root {
				t.Errorf("dangling %+v, want %v", r.Dangling, want)
			}
			if ds := hashesOf(r.Deleted); !slices.Contains(ds, orphan) {
				t.Errorf("deleted %v, want the old orphan %s among them", ds, orphan)
			}
			after := stored(t, s)
			for _, h := range fine {
				if !after[h] {
					t.Errorf("blob %s of a readable record deleted", h)
				}
			}
		})
	}
}

// TestCollectAborts: a value that cannot be understood (not a valid
// record, a codec this build does not know) stops the collection before
// anything is deleted.
func TestCollectAborts(t *testing.T) {
	root := content.Sum([]byte("root"))
	unknownCodec, err := proto.Marshal(&topodv1.Record{Body: &topodv1.Record_Ref{Ref: &topodv1.BlobRef{Codec: 99, Root: root[:], Size: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		value []byte
		want  string
	}{
		{"garbage record", []byte(record.Magic + "\xff\xff\xff"), "/files/bad"},
		{"unknown codec", append([]byte(record.Magic), unknownCodec...), "unknown codec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			b, s := openBolt(t), openStore(t)
			h, data := blobtest.Blob(1, 10)
			if err := s.Put(ctx, h, data); err != nil {
				t.Fatal(err)
			}
			if err := s.Put(ctx, root, []byte("root")); err != nil {
				t.Fatal(err)
			}
			ageAll(t, s, time.Now().Add(-2*time.Hour))
			if _, err := b.Update(ctx, "/files/bad", tt.value, 0); err != nil {
				t.Fatal(err)
			}
			r, err := blobgc.Collect(ctx, b, s, blobgc.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Collect = %v, want an error saying %q", err, tt.want)
			}
			if len(r.Deleted) != 0 || len(stored(t, s)) != 2 {
				t.Fatalf("an aborted collection deleted %d blobs", len(r.Deleted))
			}
		})
	}
}

// TestCollectLocked: a collection finding another one's lock does
// nothing; a dry run needs no lock.
func TestCollectLocked(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := t.Context()
			b, s := be.open(t), openStore(t)
			h, data := blobtest.Blob(1, 10)
			if err := s.Put(ctx, h, data); err != nil {
				t.Fatal(err)
			}
			ageAll(t, s, time.Now().Add(-2*time.Hour))
			if _, err := b.Create(ctx, blobgc.LockKey, []byte("the other one"), 0); err != nil {
				t.Fatal(err)
			}
			r, err := blobgc.Collect(ctx, b, s, blobgc.Options{})
			if err != nil || !r.Skipped || r.Holder != "the other one" || len(r.Deleted) != 0 {
				t.Fatalf("Collect with the lock held: %+v, %v; want skipped, naming the holder", r, err)
			}
			if !strings.Contains(r.Summary(), "the other one") {
				t.Errorf("summary %q does not name the holder", r.Summary())
			}
			r, err = blobgc.Collect(ctx, b, s, blobgc.Options{DryRun: true})
			if err != nil || r.Skipped || len(r.Candidates) != 1 {
				t.Fatalf("dry run with the lock held: %+v, %v; want it to run", r, err)
			}
			if _, err := b.Delete(ctx, blobgc.LockKey, 0); err != nil {
				t.Fatal(err)
			}
			r, err = blobgc.Collect(ctx, b, s, blobgc.Options{})
			if err != nil || r.Skipped || len(r.Deleted) != 1 {
				t.Fatalf("Collect after the lock was released: %+v, %v", r, err)
			}
		})
	}
}

func hashesOf(bs []blobgc.Blob) []content.Hash {
	out := make([]content.Hash, len(bs))
	for i, b := range bs {
		out[i] = b.Hash
	}
	return out
}

func unique(groups ...[]content.Hash) map[content.Hash]bool {
	out := map[content.Hash]bool{}
	for _, g := range groups {
		for _, h := range g {
			out[h] = true
		}
	}
	return out
}
