// Package cache is a byte-bounded LRU of immutable blobs keyed by their
// content hash, with single-flight loading on misses.
//
// Blobs are content-addressed: a key is the content.Hash of the value (its
// SHA-256 digest, see content.Sum), so a key names exactly one value and an
// entry never needs to be updated or invalidated, only evicted. The cache is
// bounded by the total length of the cached values in bytes, not by the
// number of entries: when an addition takes the total over the bound,
// least-recently-used entries are evicted until it fits again. Per-entry bookkeeping (key, list element, map
// slot; roughly 100 bytes) is not counted.
//
// The LRU order itself is github.com/hashicorp/golang-lru/v2/simplelru, used
// with an effectively unlimited entry count; this package adds the byte
// accounting, a mutex, golang.org/x/sync/singleflight for concurrent misses
// and atomic counters.
//
// Values are shared, not copied: a slice passed to Add or returned by a
// loader belongs to the cache afterwards, and the slices returned by Get and
// GetOrLoad must not be modified by the caller.
package cache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/singleflight"

	"github.com/topod-io/topod/pkg/content"
)

// ErrCorrupt is returned (wrapped) by GetOrLoad when a loader returns a value
// whose SHA-256 digest is not the requested key. Such a value is not cached.
var ErrCorrupt = errors.New("value does not match its content hash")

// Stats is a snapshot of a cache's counters. The counters only grow; Entries
// and Bytes are the current contents.
type Stats struct {
	Hits       uint64 // Get and GetOrLoad calls that found the key cached
	Misses     uint64 // Get and GetOrLoad calls that did not
	Loads      uint64 // loader calls made by GetOrLoad (at most one per key at a time)
	LoadErrors uint64 // loader calls that failed, or returned a value not matching its key
	Evictions  uint64 // entries evicted to keep Bytes within the bound
	Entries    int    // entries cached now
	Bytes      int64  // total length of the cached values now
}

// Cache is a byte-bounded LRU of immutable, content-addressed blobs. It is
// safe for concurrent use. The zero value is not usable; call New.
type Cache struct {
	maxBytes int64
	group    singleflight.Group

	mu    sync.Mutex
	lru   *simplelru.LRU[content.Hash, []byte] // guarded by mu
	bytes int64                                // guarded by mu: sum of len(value) over lru

	hits, misses, loads, loadErrors, evictions atomic.Uint64
}

// New returns a cache holding at most maxBytes bytes of values. A value
// longer than maxBytes is never cached (so with maxBytes <= 0 nothing is).
func New(maxBytes int64) *Cache {
	// The entry count is not a bound here; the byte accounting in Add is.
	l, err := simplelru.NewLRU[content.Hash, []byte](math.MaxInt, nil)
	if err != nil {
		panic(fmt.Sprintf("cache: simplelru.NewLRU: %v", err)) // only fails for a size <= 0
	}
	return &Cache{maxBytes: maxBytes, lru: l}
}

// Get returns the value cached under key and marks it most recently used.
func (c *Cache) Get(key content.Hash) ([]byte, bool) {
	c.mu.Lock()
	v, ok := c.lru.Get(key)
	c.mu.Unlock()
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return v, ok
}

// Add caches value under key, evicting least-recently-used entries until the
// total size is within the bound. The caller asserts that key is
// content.Sum(value) (Add does not hash the value; GetOrLoad does) and must
// not modify value afterwards. A value longer than the bound is not cached.
// Adding a key that is already cached only marks it most recently used: its
// value cannot differ.
func (c *Cache) Add(key content.Hash, value []byte) {
	size := int64(len(value))
	if size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.lru.Get(key); ok {
		return
	}
	c.lru.Add(key, value)
	c.bytes += size
	for c.bytes > c.maxBytes {
		_, old, ok := c.lru.RemoveOldest()
		if !ok {
			break // unreachable: bytes > 0 implies an entry
		}
		c.bytes -= int64(len(old))
		c.evictions.Add(1)
	}
}

// GetOrLoad returns the value cached under key or, on a miss, loads it with
// load, checks that its SHA-256 digest is key, caches it and returns it.
//
// Concurrent callers missing the same key share one call of load: it runs
// with a context that carries ctx's values but not its cancellation or
// deadline, so one caller giving up does not fail the others; load should
// bound its own running time. Each caller stops waiting and returns ctx's
// error when its own ctx is done. A load error or a corrupt value is
// returned to every waiting caller and not cached: the next call loads again.
// A value longer than the bound is returned but not cached.
func (c *Cache) GetOrLoad(ctx context.Context, key content.Hash, load func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	if v, ok := c.Get(key); ok {
		return v, nil
	}
	return c.loadShared(ctx, key, load)
}

// loadShared is the miss path of GetOrLoad, kept apart so that the hit path
// does not allocate (the closure below moves key to the heap).
func (c *Cache) loadShared(ctx context.Context, key content.Hash, load func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	loadCtx := context.WithoutCancel(ctx)
	ch := c.group.DoChan(string(key[:]), func() (any, error) {
		// A load for this key that finished between our miss and this
		// flight has already cached the value.
		c.mu.Lock()
		v, ok := c.lru.Get(key)
		c.mu.Unlock()
		if ok {
			return v, nil
		}
		c.loads.Add(1)
		v, err := load(loadCtx)
		if err != nil {
			c.loadErrors.Add(1)
			return nil, fmt.Errorf("cache: load %s: %w", key, err)
		}
		if got := content.Sum(v); got != key {
			c.loadErrors.Add(1)
			return nil, fmt.Errorf("cache: load %s: got %d bytes hashing to %s: %w", key, len(v), got, ErrCorrupt)
		}
		c.Add(key, v)
		return v, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]byte), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("cache: wait for load %s: %w", key, context.Cause(ctx))
	}
}

// Len returns the number of cached entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Bytes returns the total length of the cached values.
func (c *Cache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// MaxBytes returns the bound given to New.
func (c *Cache) MaxBytes() int64 {
	return c.maxBytes
}

// Stats returns a snapshot of the counters and the current contents.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	entries, bytes := c.lru.Len(), c.bytes
	c.mu.Unlock()
	return Stats{
		Hits:       c.hits.Load(),
		Misses:     c.misses.Load(),
		Loads:      c.loads.Load(),
		LoadErrors: c.loadErrors.Load(),
		Evictions:  c.evictions.Load(),
		Entries:    entries,
		Bytes:      bytes,
	}
}
