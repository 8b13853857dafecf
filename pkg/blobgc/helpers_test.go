package blobgc_test

import (
	"context"
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/kv/etcdkv"
	"github.com/topod-io/topod/pkg/record"
)

// backends are the kv backends every test runs on: a real bbolt file and
// a real (embedded) etcd.
var backends = []struct {
	name string
	open func(t *testing.T) kv.Backend
}{
	{"bolt", openBolt},
	{"etcd", openEtcd},
}

func openBolt(t *testing.T) kv.Backend {
	t.Helper()
	b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func openEtcd(t *testing.T) kv.Backend {
	t.Helper()
	c := harness.StartEtcd(t, 1)
	b, err := etcdkv.Open(context.Background(), c.Endpoints(), etcdkv.Options{Logger: c.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func openStore(t *testing.T) *fileblob.Store {
	t.Helper()
	s, err := fileblob.Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writer commits files the way topod's clients do: encode, refresh the
// blobs (MissingBlobs), upload the missing ones (PutBlobs), write the
// record.
type writer struct {
	t       testing.TB
	backend kv.Backend
	store   blobstore.Store
	grace   time.Duration
}

// encode returns the backend value of contents at key and its blobs.
func encode(t testing.TB, key string, contents []byte) *record.Encoded {
	t.Helper()
	enc, err := record.Encode(key, contents, record.DefaultInlineLimit)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// upload refreshes and uploads enc's blobs.
func (w *writer) upload(ctx context.Context, enc *record.Encoded) error {
	hashes := slices.Collect(maps.Keys(enc.Blobs))
	missing, err := w.store.Refresh(ctx, hashes, time.Now().Add(-w.grace/2))
	if err != nil {
		return err
	}
	for _, h := range missing {
		if err := w.store.Put(ctx, h, enc.Blobs[h]); err != nil {
			return err
		}
	}
	return nil
}

// write commits contents at key unconditionally and returns its blobs.
func (w *writer) write(key string, contents []byte) []content.Hash {
	w.t.Helper()
	ctx := context.Background()
	enc := encode(w.t, key, contents)
	if err := w.upload(ctx, enc); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.backend.Update(ctx, key, enc.Value, 0); err != nil {
		w.t.Fatal(err)
	}
	return slices.Collect(maps.Keys(enc.Blobs))
}

// randomBytes returns n random bytes.
func randomBytes(rng *rand.Rand, n int) []byte {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], rng.Uint64())
	binary.LittleEndian.PutUint64(seed[8:], rng.Uint64())
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(seed).Read(b)
	return b
}

// age sets the stored time of the blobs to at.
func age(t testing.TB, s *fileblob.Store, at time.Time, hashes ...content.Hash) {
	t.Helper()
	for _, h := range hashes {
		if err := os.Chtimes(s.Path(h), at, at); err != nil {
			t.Fatal(err)
		}
	}
}

// ageAll sets the stored time of every blob to at.
func ageAll(t testing.TB, s *fileblob.Store, at time.Time) {
	t.Helper()
	var all []content.Hash
	if err := s.Walk(context.Background(), func(h content.Hash, _ int64, _ time.Time) error {
		all = append(all, h)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	age(t, s, at, all...)
}

// stored returns the set of blobs the store holds.
func stored(t testing.TB, s blobstore.Store) map[content.Hash]bool {
	t.Helper()
	got := map[content.Hash]bool{}
	if err := s.Walk(context.Background(), func(h content.Hash, _ int64, _ time.Time) error {
		got[h] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}
