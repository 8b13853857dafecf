// Package mirror keeps an in-memory replica of every key under a prefix of a
// kv.Backend, fed by one upstream watch, and fans its changes out to any
// number of subscribers. It is how topod makes N watchers cost its backend
// one watch, and serves reads of watched prefixes from memory.
//
// The data flows one way: Run lists the prefix, then applies the upstream
// watch's events to the replica (a B-tree ordered by key) and hands each
// changed key to every Subscription whose key or prefix covers it. A
// Subscription holds at most one pending event per key, the latest, so a
// slow consumer costs memory bounded by the number of keys it watches, never
// a growing queue; skipping intermediate values is allowed by Vitess's topo
// watch contract. When the upstream watch ends (compaction, backend errors),
// Run lists again and turns the difference into events: subscribers never
// miss a change, they may only see fewer intermediate ones.
//
// Reads are consistent with the revision the replica has reached (Rev). A
// reader that must see a given revision (its own write) asks for it; when
// the replica is not there yet, the caller reads the backend instead.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"

	"github.com/topod-io/topod/pkg/kv"
)

// ErrDisabled ends the subscriptions of a mirror that stopped serving
// because its prefix holds more than its memory bound.
var ErrDisabled = errors.New("mirror disabled: prefix over the memory bound")

// Options configure a Mirror.
type Options struct {
	// MaxBytes bounds the keys and values held; past it the mirror disables
	// itself and the caller reads the backend directly. 0 means no bound.
	MaxBytes int64
	// Observer, if set, is told about upstream events and deliveries.
	Observer Observer
	Logger   *slog.Logger
}

// Observer receives a mirror's counts, e.g. to export them as metrics.
type Observer interface {
	// EventsIn counts events received from the upstream watch.
	EventsIn(n int)
	// Coalesced counts pending events replaced by a newer one for the same
	// key before a slow subscriber took them.
	Coalesced(n int)
	// Relisted counts full re-lists of the prefix.
	Relisted()
}

// Mirror is an in-memory replica of the keys under one prefix.
type Mirror struct {
	backend kv.Backend
	prefix  string
	opts    Options
	log     *slog.Logger

	mu       sync.RWMutex
	tree     *btree.BTreeG[*kv.KV]
	bytes    int64
	rev      int64
	ready    bool
	disabled bool
	// advanced is closed (and replaced) each time rev moves.
	advanced chan struct{}
	subs     map[*Subscription]struct{}
}

// New returns a mirror of the keys under prefix; Run fills and follows it.
func New(backend kv.Backend, prefix string, opts Options) *Mirror {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Mirror{
		backend:  backend,
		prefix:   prefix,
		opts:     opts,
		log:      opts.Logger.With("mirror", prefix),
		tree:     btree.NewG(32, func(a, b *kv.KV) bool { return a.Key < b.Key }),
		advanced: make(chan struct{}),
		subs:     map[*Subscription]struct{}{},
	}
}

// Prefix returns the prefix the mirror holds.
func (m *Mirror) Prefix() string { return m.prefix }

// Covers says whether key (or every key under a prefix) is in the mirror.
func (m *Mirror) Covers(key string) bool { return strings.HasPrefix(key, m.prefix) }

// Run fills the mirror and follows the upstream watch until ctx ends,
// listing again after any break. It returns ctx's error, or ErrDisabled.
func (m *Mirror) Run(ctx context.Context) error {
	defer m.closeSubscriptions(ctx.Err())
	delay := 50 * time.Millisecond
	for {
		err := m.follow(ctx)
		if errors.Is(err, ErrDisabled) {
			m.closeSubscriptions(ErrDisabled)
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m.log.Warn("upstream watch ended, listing again", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// follow lists the prefix, brings the replica to it, and applies the watch
// from there until it breaks.
func (m *Mirror) follow(ctx context.Context) error {
	kvs, rev, err := m.backend.List(ctx, m.prefix, false)
	if err != nil {
		return fmt.Errorf("list %s: %w", m.prefix, err)
	}
	if err := m.reset(kvs, rev); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes, err := m.backend.Watch(ctx, m.prefix, true, rev)
	if err != nil {
		return fmt.Errorf("watch %s: %w", m.prefix, err)
	}
	for resp := range changes {
		if resp.Err != nil {
			return fmt.Errorf("watch %s: %w", m.prefix, resp.Err)
		}
		if err := m.apply(resp.Events, resp.Revision); err != nil {
			return err
		}
	}
	return fmt.Errorf("watch %s: ended", m.prefix)
}

// reset replaces the replica by a fresh listing at rev, handing the
// differences to subscribers as events.
func (m *Mirror) reset(kvs []kv.KV, rev int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.opts.Observer != nil && m.ready {
		m.opts.Observer.Relisted()
	}
	var events []kv.Event
	seen := make(map[string]bool, len(kvs))
	for i := range kvs {
		e := kvs[i]
		seen[e.Key] = true
		if old, ok := m.tree.Get(&kv.KV{Key: e.Key}); !ok || old.ModRevision != e.ModRevision {
			events = append(events, kv.Event{Type: kv.Put, KV: e})
		}
	}
	m.tree.Ascend(func(old *kv.KV) bool {
		if !seen[old.Key] {
			events = append(events, kv.Event{Type: kv.Delete, KV: kv.KV{Key: old.Key, ModRevision: rev}})
		}
		return true
	})
	return m.applyLocked(events, rev)
}

// apply applies upstream events up to rev.
func (m *Mirror) apply(events []kv.Event, rev int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.opts.Observer != nil {
		m.opts.Observer.EventsIn(len(events))
	}
	return m.applyLocked(events, rev)
}

func (m *Mirror) applyLocked(events []kv.Event, rev int64) error {
	for i := range events {
		ev := &events[i]
		if ev.Type == kv.Delete {
			if old, ok := m.tree.Delete(&kv.KV{Key: ev.KV.Key}); ok {
				m.bytes -= size(old)
			}
		} else {
			e := ev.KV
			if old, ok := m.tree.ReplaceOrInsert(&e); ok {
				m.bytes -= size(old)
			}
			m.bytes += size(&e)
		}
	}
	if m.opts.MaxBytes > 0 && m.bytes > m.opts.MaxBytes {
		m.disabled, m.ready = true, false
		m.tree.Clear(false)
		m.log.Error("mirror disabled: over its memory bound; reads and watches go to the backend", "bytes", m.bytes, "max", m.opts.MaxBytes)
		m.bytes = 0
		return ErrDisabled
	}
	rev = max(rev, m.rev)
	for s := range m.subs {
		s.deliver(events, rev, m.opts.Observer)
	}
	if rev > m.rev {
		m.rev = rev
		close(m.advanced)
		m.advanced = make(chan struct{})
	}
	m.ready = true
	return nil
}

func size(e *kv.KV) int64 { return int64(len(e.Key) + len(e.Value) + 64) }

// Stats is a snapshot of a mirror.
type Stats struct {
	Prefix        string
	Ready         bool
	Disabled      bool
	Keys          int
	Bytes         int64
	Revision      int64
	Subscriptions int
}

// Stats returns the mirror's size and state.
func (m *Mirror) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Stats{Prefix: m.prefix, Ready: m.ready, Disabled: m.disabled, Keys: m.tree.Len(), Bytes: m.bytes, Revision: m.rev, Subscriptions: len(m.subs)}
}

// Get returns key's state if the mirror can answer for revision minRev or
// later: ok reports whether it can; found whether the key exists.
func (m *Mirror) Get(key string, minRev int64) (e kv.KV, found, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.ready || m.rev < minRev || !m.Covers(key) {
		return kv.KV{}, false, false
	}
	got, found := m.tree.Get(&kv.KV{Key: key})
	if !found {
		return kv.KV{}, false, true
	}
	return *got, true, true
}

// List returns the keys under prefix, sorted, and the revision they reflect,
// if the mirror can answer for revision minRev or later (ok).
func (m *Mirror) List(prefix string, keysOnly bool, minRev int64) (kvs []kv.KV, rev int64, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.ready || m.rev < minRev || !m.Covers(prefix) {
		return nil, 0, false
	}
	m.tree.AscendGreaterOrEqual(&kv.KV{Key: prefix}, func(e *kv.KV) bool {
		if !strings.HasPrefix(e.Key, prefix) {
			return false
		}
		c := *e
		if keysOnly {
			c.Value = nil
		}
		kvs = append(kvs, c)
		return true
	})
	return kvs, m.rev, true
}

// WaitRev waits until the mirror has reached rev, ctx ends (its error), or
// the mirror is disabled.
func (m *Mirror) WaitRev(ctx context.Context, rev int64) error {
	for {
		m.mu.RLock()
		reached, disabled, advanced := m.rev >= rev, m.disabled, m.advanced
		m.mu.RUnlock()
		if reached {
			return nil
		}
		if disabled {
			return ErrDisabled
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-advanced:
		}
	}
}

func (m *Mirror) closeSubscriptions(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ready = false
	if err == nil {
		err = context.Canceled
	}
	for s := range m.subs {
		s.fail(err)
		delete(m.subs, s)
	}
}

// WaitGone waits until key is no longer in the mirror (a delete reached
// it), ctx ends, or the mirror is disabled.
func (m *Mirror) WaitGone(ctx context.Context, key string) error {
	for {
		m.mu.RLock()
		_, present := m.tree.Get(&kv.KV{Key: key})
		disabled, advanced := m.disabled, m.advanced
		m.mu.RUnlock()
		if !present {
			return nil
		}
		if disabled {
			return ErrDisabled
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-advanced:
		}
	}
}
