package blobgc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/record"
)

// maxMemoBytes bounds the manifests the marker keeps in memory: versions
// of a record share most of their manifests.
const maxMemoBytes = 64 << 20

// referrer is the first value found referring to a blob.
type referrer struct {
	key string
	rev int64
}

// marker marks the blobs the backend's values refer to.
type marker struct {
	store  blobstore.Store
	marked map[content.Hash]referrer
	// roots are the references already marked (the same root hash always
	// reaches the same blobs), with whether they were dangling.
	roots map[content.Hash]bool

	mu        sync.Mutex // guards memo, memoBytes, asked (the getter runs concurrently)
	memo      map[content.Hash][]byte
	memoBytes int
	asked     map[content.Hash]error // the blobs asked for while listing the current reference, and how that went
}

func newMarker(store blobstore.Store) *marker {
	return &marker{
		store:  store,
		marked: map[content.Hash]referrer{},
		roots:  map[content.Hash]bool{},
		memo:   map[content.Hash][]byte{},
	}
}

// markAll marks from every current value under prefix, then every past one.
func (m *marker) markAll(ctx context.Context, backend kv.Backend, prefix string, r *Report) error {
	kvs, _, err := backend.List(ctx, prefix, false)
	if err != nil {
		return err
	}
	for _, e := range kvs {
		if err := m.value(ctx, e, r); err != nil {
			return err
		}
	}
	kvs = nil
	if err := backend.History(ctx, prefix, func(e kv.KV) error { return m.value(ctx, e, r) }); err != nil {
		return err
	}
	r.Marked = len(m.marked)
	return nil
}

// value marks the blobs e's value refers to. A reference to missing or
// corrupt blobs is recorded in r.Dangling; any other failure is returned.
func (m *marker) value(ctx context.Context, e kv.KV, r *Report) error {
	r.Values++
	ref, err := record.Parse(e.Value)
	if err != nil {
		return fmt.Errorf("%s at version %d: %w", e.Key, e.ModRevision, err)
	}
	if ref == nil {
		return nil
	}
	r.Refs++
	root := content.Hash(ref.Root)
	if dangling, done := m.roots[root]; done {
		if dangling {
			r.Dangling = append(r.Dangling, Dangling{Key: e.Key, ModRevision: e.ModRevision, Hash: root, Err: "same reference as an earlier dangling one"})
		}
		return nil
	}
	from := referrer{e.Key, e.ModRevision}
	m.asked = map[content.Hash]error{}
	hashes, err := record.Blobs(ctx, ref, m.get)
	if err == nil {
		for _, h := range hashes {
			m.mark(h, from)
		}
		m.roots[root] = false
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	// Dangling only if the store's answers are the whole cause: any other
	// failure (the store unreachable, a manifest this build cannot parse)
	// might hide references, and stops the collection.
	if !storeBroken(err) {
		return fmt.Errorf("%s at version %d: %w", e.Key, e.ModRevision, err)
	}
	var broken []content.Hash
	for h, aerr := range m.asked {
		switch {
		case aerr == nil:
			m.mark(h, from) // a manifest reached
		case !storeBroken(aerr):
			return fmt.Errorf("%s at version %d: %w", e.Key, e.ModRevision, aerr)
		case errors.Is(aerr, blobstore.ErrCorrupt):
			m.mark(h, from) // stored but damaged: kept for the operator
			broken = append(broken, h)
		default:
			broken = append(broken, h)
		}
	}
	// The tree is broken where the store lacks a blob: what lies below it
	// cannot be known, and no reader can reach it either.
	d := Dangling{Key: e.Key, ModRevision: e.ModRevision, Err: err.Error()}
	if len(broken) > 0 {
		d.Hash = slices.MinFunc(broken, func(a, b content.Hash) int { return bytes.Compare(a[:], b[:]) })
	}
	m.roots[root] = true
	r.Dangling = append(r.Dangling, d)
	return nil
}

// storeBroken says whether err is the store's answer that a blob is
// missing or corrupt.
func storeBroken(err error) bool {
	return errors.Is(err, blobstore.ErrNotFound) || errors.Is(err, blobstore.ErrCorrupt)
}

func (m *marker) mark(h content.Hash, from referrer) {
	if _, ok := m.marked[h]; !ok {
		m.marked[h] = from
	}
}

// get is the record.Getter the mark reads manifests with: from the store,
// through a bounded memo, noting the blobs the store lacks or holds
// corrupt.
func (m *marker) get(ctx context.Context, h content.Hash) ([]byte, error) {
	m.mu.Lock()
	data, ok := m.memo[h]
	if ok {
		m.asked[h] = nil
	}
	m.mu.Unlock()
	if ok {
		return data, nil
	}
	data, err := m.store.Get(ctx, h)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked[h] = err
	if err != nil {
		return nil, err
	}
	if m.memoBytes+len(data) <= maxMemoBytes {
		m.memo[h] = data
		m.memoBytes += len(data)
	}
	return data, nil
}
