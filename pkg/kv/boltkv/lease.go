package boltkv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/topod-io/topod/pkg/kv"
)

// Lease IDs are epoch<<32 | sequence: unique across restarts (the epoch is
// persisted, one per Open) without a write per Grant.
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
	secs := (ttl + time.Second - 1) / time.Second
	l := &lease{b: b, ttl: max(secs, 1) * time.Second, done: make(chan struct{})}
	if err := b.leases.add(l); err != nil {
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
// lives has no deadline; once it ends, the deadline is one TTL later.
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

// add gives l its ID and makes it alive.
func (t *leaseTable) add(l *lease) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return kv.ErrClosed
	}
	if t.seq == maxSeq {
		return errors.New("lease IDs of this epoch exhausted: reopen the backend")
	}
	t.seq++
	l.id = kv.LeaseID(t.epoch<<32 | t.seq)
	t.leases[l.id] = &leaseEntry{l: l}
	return nil
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
