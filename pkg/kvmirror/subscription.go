package kvmirror

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/google/btree"

	"github.com/topod-io/topod/pkg/kv"
)

// Subscription follows the changes to one key, or to every key under a
// prefix, of a Mirror. It is a small struct with no goroutine of its own:
// the mirror marks the keys that changed and calls the subscriber's notify
// function; the subscriber takes the changes when it is ready to send them
// (Take), reading each changed key's state as it is then. So a slow or
// stalled subscriber costs at most one pending key per watched key, never
// a queue of values, and skips the values it was too slow for, as Vitess's
// topo watch contract allows.
type Subscription struct {
	m      *Mirror
	key    string
	prefix bool
	notify func()

	mu sync.Mutex
	// changed: an exact-key subscription's key changed; dirty: the keys
	// of a prefix subscription that changed (nil when none).
	changed bool
	dirty   map[string]struct{}
	err     error
}

// Subscribe returns the current state of key (or of every key under it when
// prefix is true), the revision it reflects, and a subscription to every
// later change. notify is called when the subscription goes from nothing
// pending to something pending, and when it fails; it is called with the
// mirror's lock held, so it must return at once and not call the mirror
// (it typically queues the subscription for a sender goroutine). ok is
// false when the mirror cannot serve (not ready yet, stopped, or key
// outside its prefix).
func (m *Mirror) Subscribe(ctx context.Context, key string, prefix bool, notify func()) (s *Subscription, snapshot []kv.KV, rev int64, ok bool, err error) {
	m.mu.Lock()
	if !m.ready || m.stopped != nil || !m.Covers(key) {
		m.mu.Unlock()
		return nil, nil, 0, false, nil
	}
	s = &Subscription{m: m, key: key, prefix: prefix, notify: notify}
	// A prefix is copied from a copy-on-write clone of the tree, once the
	// lock is released: the clone costs O(1) under it, however large the
	// prefix (a recursive watch of "/" copies the whole store).
	var view *btree.BTreeG[*item]
	var single *item
	if prefix {
		view = m.tree.Clone()
	} else if it, found := m.tree.Get(&item{KV: kv.KV{Key: key}}); found {
		single = it
	}
	m.watchers.add(s)
	rev = m.rev
	m.mu.Unlock()
	var evicted []int
	collect := func(it *item) {
		if it.evicted {
			evicted = append(evicted, len(snapshot))
		}
		snapshot = append(snapshot, it.KV)
	}
	if view != nil {
		view.AscendGreaterOrEqual(&item{KV: kv.KV{Key: key}}, func(it *item) bool {
			if !strings.HasPrefix(it.Key, key) {
				return false
			}
			collect(it)
			return true
		})
	} else if single != nil {
		collect(single)
	}
	if snapshot, err = m.load(ctx, snapshot, evicted); err != nil {
		s.Close()
		return nil, nil, 0, false, err
	}
	return s, snapshot, rev, true, nil
}

// mark records that key changed. It runs under the mirror's write lock.
func (s *Subscription) mark(key string, obs Observer) {
	s.mu.Lock()
	was := s.changed || len(s.dirty) > 0
	if s.prefix {
		if _, ok := s.dirty[key]; ok {
			if obs != nil {
				obs.Coalesced(1)
			}
		} else {
			if s.dirty == nil {
				s.dirty = map[string]struct{}{}
			}
			s.dirty[key] = struct{}{}
		}
	} else {
		if s.changed && obs != nil {
			obs.Coalesced(1)
		}
		s.changed = true
	}
	s.mu.Unlock()
	if !was {
		s.notify()
	}
}

func (s *Subscription) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.notify()
}

// Take returns the pending changes, at most one per key and in revision
// order: each changed key's current state (a Put), or its deletion (a
// Delete at the mirror's revision), and the revision they bring the
// subscriber to: it has then seen every change of its keys up to it, and
// can resume from it. With nothing pending it returns no events and the
// subscription's error, if it failed (the mirror stopped). ctx bounds the
// reads of values the mirror does not hold (over its memory bound).
func (s *Subscription) Take(ctx context.Context) ([]kv.Event, int64, error) {
	m := s.m
	m.mu.RLock()
	s.mu.Lock()
	changed, dirty, err := s.changed, s.dirty, s.err
	s.changed, s.dirty = false, nil
	s.mu.Unlock()
	if !changed && len(dirty) == 0 {
		m.mu.RUnlock()
		return nil, 0, err
	}
	var events []kv.Event
	var evicted []int
	state := func(key string) {
		it, found := m.tree.Get(&item{KV: kv.KV{Key: key}})
		if !found {
			events = append(events, kv.Event{Type: kv.Delete, KV: kv.KV{Key: key, ModRevision: m.rev}})
			return
		}
		if it.evicted {
			evicted = append(evicted, len(events))
		}
		events = append(events, kv.Event{Type: kv.Put, KV: it.KV})
	}
	if changed {
		state(s.key)
	}
	for key := range dirty {
		state(key)
	}
	rev := m.rev
	m.mu.RUnlock()
	for _, i := range evicted {
		e, found, err := m.loadOne(ctx, events[i].KV)
		if err != nil {
			s.requeue(events)
			return nil, 0, err
		}
		if !found {
			events[i] = kv.Event{Type: kv.Delete, KV: kv.KV{Key: e.Key, ModRevision: rev}}
			continue
		}
		events[i].KV = e
	}
	slices.SortFunc(events, func(a, b kv.Event) int {
		return cmp.Or(cmp.Compare(a.KV.ModRevision, b.KV.ModRevision), strings.Compare(a.KV.Key, b.KV.Key))
	})
	return events, rev, nil
}

// requeue marks the keys of events changed again, after a Take that could
// not complete.
func (s *Subscription) requeue(events []kv.Event) {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	for _, ev := range events {
		s.mark(ev.KV.Key, nil)
	}
}

// Close ends the subscription. It may be called more than once.
func (s *Subscription) Close() {
	s.m.mu.Lock()
	s.m.watchers.remove(s)
	s.m.mu.Unlock()
}

// Signal returns a notify function for Subscribe and the channel it
// signals (capacity 1), for a consumer that follows one subscription with
// Next.
func Signal() (notify func(), signaled <-chan struct{}) {
	c := make(chan struct{}, 1)
	return func() {
		select {
		case c <- struct{}{}:
		default:
		}
	}, c
}

// Next blocks until the subscription has changes (signaled by the channel
// Signal returned with its notify function), ctx ends, or the subscription
// fails, and returns them as Take does.
func (s *Subscription) Next(ctx context.Context, signaled <-chan struct{}) ([]kv.Event, int64, error) {
	for {
		events, rev, err := s.Take(ctx)
		if len(events) > 0 || err != nil {
			return events, rev, err
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-signaled:
		}
	}
}
