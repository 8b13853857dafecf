package kvmirror

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/topod-io/topod/pkg/kv"
)

// This file holds linearizable reads from memory (as the Kubernetes
// apiserver's consistent reads from its watch cache, KEP-2340): a read asks
// the backend for its current revision, then is answered from the replica
// once it has reached that revision. The revision requests are batched: a
// read joins the next request to start, never one already in flight (which
// may predate the read's own start, and miss a write acknowledged before
// it), so concurrent reads cost the backend one small request per batch.

// ErrNoRevision: the backend cannot report its current revision.
var ErrNoRevision = errors.New("backend does not report its current revision")

// revisioner is a backend that reports its current revision linearizably
// (every kv.Backend; an Observer-wrapped one may hide it).
type revisioner interface {
	CurrentRevision(ctx context.Context) (int64, error)
}

// confirmTimeout bounds one shared revision request: it serves many reads,
// so no one read's context bounds it.
const confirmTimeout = 10 * time.Second

// confirmer batches revision requests.
type confirmer struct {
	mu      sync.Mutex
	running bool
	next    *round
	// requests counts the revision requests sent, reads the reads that
	// asked (for the ratio in metrics).
	requests, reads int64
}

// round is one revision request and the reads waiting for it.
type round struct {
	done    chan struct{}
	rev     int64
	err     error
	started time.Time
}

// join returns the round a read starting now waits for: the next one to
// start, started at once when none is in flight.
func (c *confirmer) join(ask func(context.Context) (int64, error)) *round {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	if c.next == nil {
		c.next = &round{done: make(chan struct{})}
	}
	r := c.next
	if !c.running {
		c.start(ask)
	}
	return r
}

// start runs c.next; c.mu is held. When it is done, the round that
// gathered meanwhile (if any) starts.
func (c *confirmer) start(ask func(context.Context) (int64, error)) {
	r := c.next
	c.next = nil
	c.running = true
	c.requests++
	r.started = time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), confirmTimeout)
		r.rev, r.err = ask(ctx)
		cancel()
		close(r.done)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.running = false
		if c.next != nil {
			c.start(ask)
		}
	}()
}

// Counts returns how many revision requests the mirror sent to the
// backend for how many linearizable reads.
func (m *Mirror) Counts() (requests, reads int64) {
	m.confirm.mu.Lock()
	defer m.confirm.mu.Unlock()
	return m.confirm.requests, m.confirm.reads
}

// Sync waits until the mirror has reached the backend's current revision
// as of the call (every write acknowledged before Sync started), and
// returns that revision. It fails with the backend's error, ctx's, or
// ErrStopped; the caller then reads the backend itself.
func (m *Mirror) Sync(ctx context.Context) (int64, error) {
	rb, ok := m.backend.(revisioner)
	if !ok {
		return 0, ErrNoRevision
	}
	r := m.confirm.join(rb.CurrentRevision)
	select {
	case <-r.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if r.err != nil {
		return 0, fmt.Errorf("current revision: %w", r.err)
	}
	if err := m.WaitRev(ctx, r.rev); err != nil {
		return 0, err
	}
	// The backend was at r.rev when the round started: the replica was
	// current then, which is what MaxStaleness asks of it.
	m.mu.Lock()
	if r.started.After(m.confirmed) {
		m.confirmed = r.started
	}
	m.mu.Unlock()
	return r.rev, nil
}

// CoversRange says whether every key of [key, end) is in the mirror (end
// "" is key alone, "\x00" every key from key on, as etcd's range_end).
func (m *Mirror) CoversRange(key, end string) bool {
	if !m.Covers(key) {
		return false
	}
	switch {
	case end == "":
		return true
	case m.prefix == "":
		return true
	case end == "\x00":
		return false
	}
	limit := PrefixEnd(m.prefix)
	return limit == "" || end <= limit
}

// PrefixEnd returns the first key after every key starting with prefix
// (etcd's range_end of a prefix), "" when there is none.
func PrefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

// Range returns the keys of [key, end), sorted, and the revision they
// reflect, if the mirror can answer for revision minRev or later (ok);
// ok is false too when the range is not all in the mirror.
func (m *Mirror) Range(ctx context.Context, key, end string, keysOnly bool, minRev int64) (kvs []kv.KV, rev int64, ok bool, err error) {
	m.mu.RLock()
	if !m.servesLocked(minRev) || !m.CoversRange(key, end) {
		m.mu.RUnlock()
		return nil, 0, false, nil
	}
	rev = m.rev
	var evicted []int
	add := func(it *item) {
		c := it.KV
		if keysOnly {
			c.Value = nil
		} else if it.evicted {
			evicted = append(evicted, len(kvs))
		}
		kvs = append(kvs, c)
	}
	if end == "" {
		if it, found := m.tree.Get(&item{KV: kv.KV{Key: key}}); found {
			add(it)
		}
	} else {
		m.tree.AscendGreaterOrEqual(&item{KV: kv.KV{Key: key}}, func(it *item) bool {
			if end != "\x00" && strings.Compare(it.Key, end) >= 0 {
				return false
			}
			add(it)
			return true
		})
	}
	m.mu.RUnlock()
	if kvs, err = m.load(ctx, kvs, evicted); err != nil {
		return nil, 0, false, err
	}
	return kvs, rev, true, nil
}
