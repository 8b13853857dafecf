package mirror

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/topod-io/topod/pkg/kv"
)

// Subscription follows the changes to one key, or to every key under a
// prefix, of a Mirror. It keeps the latest pending event per key.
type Subscription struct {
	m      *Mirror
	key    string
	prefix bool

	mu      sync.Mutex
	pending map[string]kv.Event
	rev     int64
	err     error
	notify  chan struct{} // capacity 1: something is pending
}

// Subscribe returns the current state of key (or of every key under it when
// prefix is true), the revision it reflects, and a subscription delivering
// every later change. ok is false when the mirror cannot serve (not ready
// yet, disabled, or key outside its prefix).
func (m *Mirror) Subscribe(key string, prefix bool) (s *Subscription, snapshot []kv.KV, rev int64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.ready || !m.Covers(key) {
		return nil, nil, 0, false
	}
	s = &Subscription{m: m, key: key, prefix: prefix, pending: map[string]kv.Event{}, rev: m.rev, notify: make(chan struct{}, 1)}
	if prefix {
		m.tree.AscendGreaterOrEqual(&kv.KV{Key: key}, func(e *kv.KV) bool {
			if !strings.HasPrefix(e.Key, key) {
				return false
			}
			snapshot = append(snapshot, *e)
			return true
		})
	} else if e, found := m.tree.Get(&kv.KV{Key: key}); found {
		snapshot = []kv.KV{*e}
	}
	m.subs[s] = struct{}{}
	return s, snapshot, m.rev, true
}

func (s *Subscription) covers(key string) bool {
	if s.prefix {
		return strings.HasPrefix(key, s.key)
	}
	return key == s.key
}

// deliver records, as one step, the events of a batch the subscription
// covers (each the latest pending event of its key) and the revision the
// batch brings the mirror to: Next never returns part of a batch, so the
// revision it returns is one the subscriber has seen every change up to,
// and can resume from.
func (s *Subscription) deliver(events []kv.Event, rev int64, obs Observer) {
	s.mu.Lock()
	added, coalesced := 0, 0
	for _, ev := range events {
		if !s.covers(ev.KV.Key) {
			continue
		}
		if _, ok := s.pending[ev.KV.Key]; ok {
			coalesced++
		}
		s.pending[ev.KV.Key] = ev
		added++
	}
	s.rev = max(s.rev, rev)
	s.mu.Unlock()
	if coalesced > 0 && obs != nil {
		obs.Coalesced(coalesced)
	}
	if added > 0 {
		s.wake()
	}
}

func (s *Subscription) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.wake()
}

func (s *Subscription) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Next returns the pending changes, at most one per key and in revision
// order, and the revision they bring the subscriber to. It blocks until
// there is a change, ctx ends, or the subscription fails (ErrDisabled, or
// the mirror stopped).
func (s *Subscription) Next(ctx context.Context) ([]kv.Event, int64, error) {
	for {
		s.mu.Lock()
		if len(s.pending) > 0 {
			events := make([]kv.Event, 0, len(s.pending))
			for _, ev := range s.pending {
				events = append(events, ev)
			}
			clear(s.pending)
			rev := s.rev
			s.mu.Unlock()
			slices.SortFunc(events, func(a, b kv.Event) int {
				return cmp.Or(cmp.Compare(a.KV.ModRevision, b.KV.ModRevision), strings.Compare(a.KV.Key, b.KV.Key))
			})
			return events, max(rev, events[len(events)-1].KV.ModRevision), nil
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return nil, 0, err
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-s.notify:
		}
	}
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.m.mu.Lock()
	delete(s.m.subs, s)
	s.m.mu.Unlock()
}
