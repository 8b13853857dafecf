package boltkv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/topod-io/topod/pkg/kv"
)

// Lease IDs are epoch<<32 | sequence: unique across restarts (the epoch is
// persisted, one per Open) without a write per Grant. GrantLease may ask
// for any other ID; the sequence skips the IDs so taken.
const (
	maxEpoch = 1<<31 - 1 // keeps IDs positive int64s
	maxSeq   = 1<<32 - 1
)

// Grant creates a lease whose TTL is ttl rounded up to whole seconds (at
// least one). The backend keeps it alive while ctx lives; once ctx ends, the
// lease expires one TTL later unless revoked first, deleting its keys.
func (b *Backend) Grant(ctx context.Context, ttl time.Duration) (kv.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("grant lease: %w", err)
	}
	if b.closed.Load() {
		return nil, fmt.Errorf("grant lease: %w", kv.ErrClosed)
	}
	l := &lease{b: b, ttl: roundTTL(ttl), done: make(chan struct{})}
	if err := b.leases.add(l, 0, time.Time{}); err != nil {
		return nil, fmt.Errorf("grant lease: %w", err)
	}
	// From the moment ctx ends, nothing keeps the lease alive: it has one
	// TTL left, as an etcd lease whose keep-alives stop.
	l.watchContext(context.AfterFunc(ctx, func() {
		b.leases.release(l.id, time.Now().Add(l.ttl))
		b.expiry.kick()
	}))
	return l, nil
}

// roundTTL rounds ttl up to whole seconds, at least one.
func roundTTL(ttl time.Duration) time.Duration {
	secs := (ttl + time.Second - 1) / time.Second
	return max(secs, 1) * time.Second
}

// lease is a kv.Lease of a Backend.
type lease struct {
	b    *Backend
	id   kv.LeaseID
	ttl  time.Duration
	done chan struct{}

	mu        sync.Mutex
	ended     bool
	stopWatch func() bool // stops watching the Grant context
}

func (l *lease) ID() kv.LeaseID        { return l.id }
func (l *lease) TTL() time.Duration    { return l.ttl }
func (l *lease) Done() <-chan struct{} { return l.done }
func (l *lease) String() string        { return fmt.Sprintf("lease %d", l.id) }

// Alive returns nil while the lease holds, kv.ErrLeaseNotFound after.
func (l *lease) Alive(ctx context.Context) error {
	if l.b.leases.alive(l.id) {
		return nil
	}
	return leaseError("check", l.id, l.b.goneError())
}

// Revoke ends the lease now, deleting its keys in one write.
func (l *lease) Revoke(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return leaseError("revoke", l.id, err)
	}
	return leaseError("revoke", l.id, l.b.endLease(l.id))
}

// watchContext keeps stop, which stops watching the Grant context, for
// when the lease ends (at once if it already has).
func (l *lease) watchContext(stop func() bool) {
	l.mu.Lock()
	ended := l.ended
	if !ended {
		l.stopWatch = stop
	}
	l.mu.Unlock()
	if ended {
		stop()
	}
}

// end closes Done, once the lease's keys are gone.
func (l *lease) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	l.ended = true
	if l.stopWatch != nil {
		l.stopWatch()
	}
	close(l.done)
}

// goneError is the error for a lease that has ended: kv.ErrLeaseNotFound,
// and kv.ErrClosed too once the backend is closed.
func (b *Backend) goneError() error {
	if b.closed.Load() {
		return fmt.Errorf("%w (%w)", kv.ErrLeaseNotFound, kv.ErrClosed)
	}
	return kv.ErrLeaseNotFound
}

// endLease takes lease id out of the table and deletes its keys, in one
// write at one revision.
func (b *Backend) endLease(id kv.LeaseID) error {
	b.mu.Lock()
	l := b.leases.take(id)
	if l == nil {
		b.mu.Unlock()
		return b.goneError()
	}
	err := b.deleteLeaseKeysLocked(l)
	b.mu.Unlock()
	l.end()
	return err
}

// expireLease is the expiry loop's endLease.
func (b *Backend) expireLease(id kv.LeaseID) {
	_ = b.endLease(id) // already gone, or the file failed: nothing to do
}

// deleteLeaseKeysLocked deletes the keys of leases in one write. b.mu is
// held.
func (b *Backend) deleteLeaseKeysLocked(leases ...*lease) error {
	if len(leases) == 0 || b.closed.Load() {
		return nil
	}
	ids := make([]kv.LeaseID, len(leases))
	for i, l := range leases {
		ids[i] = l.id
	}
	_, err := b.writeLocked(func(w *writeTx) error { return w.deleteLeased(ids) })
	return err
}

// leaseTable holds the leases of this process. A lease whose Grant context
// lives has no deadline; once it ends, the deadline is one TTL later. A
// lease granted by ID (GrantLease) has a deadline from the start, which
// RenewLease moves.
type leaseTable struct {
	mu     sync.Mutex
	epoch  int64
	seq    int64
	leases map[kv.LeaseID]*leaseEntry
	closed bool
}

type leaseEntry struct {
	l        *lease
	deadline time.Time // zero while kept alive
}

func newLeaseTable(epoch int64) *leaseTable {
	return &leaseTable{epoch: epoch, leases: map[kv.LeaseID]*leaseEntry{}}
}

// add makes l alive under id, or under the next ID of the table's sequence
// that no lease holds when id is 0 (kv.ErrLeaseExists if a lease holds id),
// until deadline (zero: until released).
func (t *leaseTable) add(l *lease, id kv.LeaseID, deadline time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return kv.ErrClosed
	}
	if id != 0 {
		if _, taken := t.leases[id]; taken {
			return kv.ErrLeaseExists
		}
	}
	for id == 0 {
		if t.seq == maxSeq {
			return errors.New("lease IDs of this epoch exhausted: reopen the backend")
		}
		t.seq++
		id = kv.LeaseID(t.epoch<<32 | t.seq)
		if _, taken := t.leases[id]; taken {
			id = 0 // granted by ID: skip it
		}
	}
	l.id = id
	t.leases[id] = &leaseEntry{l: l, deadline: deadline}
	return nil
}

// renew moves lease id's deadline to one TTL after now, unless nothing
// ends it (no deadline), and returns its TTL. ok is false if the table
// does not hold it, expired true if its deadline had already passed (its
// end is due: it is not renewed).
func (t *leaseTable) renew(id kv.LeaseID, now time.Time) (ttl time.Duration, ok, expired bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.leases[id]
	switch {
	case !ok:
		return 0, false, false
	case e.deadline.IsZero():
	case !e.deadline.After(now):
		return 0, true, true
	default:
		e.deadline = now.Add(e.l.ttl)
	}
	return e.l.ttl, true, false
}

// status returns what is left of lease id's TTL at now (all of it when
// nothing ends it, none once its deadline has passed) and its TTL; ok
// false if the table does not hold it.
func (t *leaseTable) status(id kv.LeaseID, now time.Time) (left, ttl time.Duration, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.leases[id]
	switch {
	case !ok:
		return 0, 0, false
	case e.deadline.IsZero():
		return e.l.ttl, e.l.ttl, true
	}
	return max(e.deadline.Sub(now), 0), e.l.ttl, true
}

// ids returns the IDs of the leases held, sorted.
func (t *leaseTable) ids() []kv.LeaseID {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := make([]kv.LeaseID, 0, len(t.leases))
	for id := range t.leases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (t *leaseTable) alive(id kv.LeaseID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.leases[id]
	return ok
}

// release stops keeping lease id alive: it expires at deadline.
func (t *leaseTable) release(id kv.LeaseID, deadline time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.leases[id]; ok && e.deadline.IsZero() {
		e.deadline = deadline
	}
}

// take removes lease id from the table, returning nil if it is not there.
func (t *leaseTable) take(id kv.LeaseID) *lease {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.leases[id]
	if !ok {
		return nil
	}
	delete(t.leases, id)
	return e.l
}

// due returns the leases whose deadline has passed at now, and the next
// deadline after now (zero if none).
func (t *leaseTable) due(now time.Time) (ids []kv.LeaseID, next time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, e := range t.leases {
		switch {
		case e.deadline.IsZero():
		case !e.deadline.After(now):
			ids = append(ids, id)
		case next.IsZero() || e.deadline.Before(next):
			next = e.deadline
		}
	}
	return ids, next
}

// close empties the table for good and returns the leases it held.
func (t *leaseTable) close() []*lease {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	var all []*lease
	for _, e := range t.leases {
		all = append(all, e.l)
	}
	t.leases = map[kv.LeaseID]*leaseEntry{}
	return all
}

// expiryLoop ends leases at their deadlines.
type expiryLoop struct {
	table   *leaseTable
	expire  func(kv.LeaseID)
	kickCh  chan struct{}
	stopCh  chan struct{}
	stopped sync.WaitGroup
}

func startExpiryLoop(table *leaseTable, expire func(kv.LeaseID)) *expiryLoop {
	e := &expiryLoop{
		table:  table,
		expire: expire,
		kickCh: make(chan struct{}, 1),
		stopCh: make(chan struct{}),
	}
	e.stopped.Add(1)
	go e.run()
	return e
}

// kick makes the loop look at the deadlines again.
func (e *expiryLoop) kick() {
	select {
	case e.kickCh <- struct{}{}:
	default:
	}
}

func (e *expiryLoop) stop() {
	close(e.stopCh)
	e.stopped.Wait()
}

func (e *expiryLoop) run() {
	defer e.stopped.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		ids, next := e.table.due(time.Now())
		for _, id := range ids {
			e.expire(id)
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-e.kickCh:
		case <-e.stopCh:
			return
		}
	}
}
