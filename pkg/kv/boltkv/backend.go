// Package boltkv is topod's embedded, single-node kv.Backend, stored in one
// go.etcd.io/bbolt file.
//
// Layout of the file, one bucket per concern:
//
//   - "meta": the revision counter (persisted with every write, so revisions
//     keep increasing across restarts), the lease epoch and the revision up
//     to which deleted keys' history was dropped.
//   - "kv": key → record (value, ModRevision, CreateRevision, Version,
//     lease).
//   - "history": superseded records and delete tombstones, keyed by key and
//     ModRevision, pruned per key; they answer GetRevision.
//   - "leased": lease ID + key for every key attached to a lease, so a
//     revoke (or Open, for the leases of a previous process) finds them.
//   - "deleted": delete revision + key, so the history of keys that stay
//     deleted is dropped after a while, and a Range at a past revision
//     finds the keys deleted since.
//
// Writes are serialized by one mutex that also assigns revisions, so
// revision order is commit order; after each commit the write's events go
// to an in-process notifier (a replay ring plus one buffered queue per
// watcher). Leases live in an in-process table with an expiry loop.
// etcd's transactions (kv.Backend.Txn) run in one write transaction
// at one revision, and the table serves etcd's lease API (kv.Leases).
package boltkv

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/topod-io/topod/pkg/kv"
)

// Options tune a Backend. The zero value gives the defaults.
type Options struct {
	// HistoryPerKey is how many superseded versions (delete tombstones
	// included) of each key GetRevision can still read. Default 20.
	HistoryPerKey int
	// DeletedRetention is how many revisions the history of a deleted key
	// (and its tombstone) is kept before it is dropped, so that keys created
	// and deleted by the thousand (locks, tablets) do not accumulate
	// history forever. Default 10000.
	DeletedRetention int64
	// WatchRingEvents is how many recent events are kept in memory for
	// watches from a past revision. Default 10000.
	WatchRingEvents int
	// WatchRingBytes bounds the memory of the replay ring (keys and values).
	// Default 64 MiB.
	WatchRingBytes int
	// WatcherBacklog is how many undelivered events one watcher may hold
	// before it is ended with kv.ErrCompacted (its consumer then re-lists).
	// Default 10000.
	WatcherBacklog int
	// NoSync skips the fsync after each write: faster, but a crash may lose
	// the last writes. Default false (durable).
	NoSync bool
	// OpenTimeout is how long Open waits for the file lock another process
	// holds. Default 5 s.
	OpenTimeout time.Duration
	// ReadOnly opens an existing file for reading only (topod inspect):
	// Open writes nothing (not the new lease epoch, nor the deletion of the
	// keys of the previous process's leases that a normal Open makes), and
	// every write fails. Other processes may read the file meanwhile; one
	// that writes it (topod) cannot open it.
	ReadOnly bool
}

func (o Options) withDefaults() Options {
	if o.HistoryPerKey <= 0 {
		o.HistoryPerKey = 20
	}
	if o.DeletedRetention <= 0 {
		o.DeletedRetention = 10000
	}
	if o.WatchRingEvents <= 0 {
		o.WatchRingEvents = 10000
	}
	if o.WatchRingBytes <= 0 {
		o.WatchRingBytes = 64 << 20
	}
	if o.WatcherBacklog <= 0 {
		o.WatcherBacklog = 10000
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = 5 * time.Second
	}
	return o
}

// Backend is a kv.Backend on a bbolt file.
type Backend struct {
	db   *bolt.DB
	opts Options

	// mu orders writes: it is held from assigning a revision to publishing
	// the write's events, so revisions, commits and events share one order.
	mu  sync.Mutex
	rev int64 // last committed revision; guarded by mu

	// closed is set (under mu) when Close starts; reads check it under
	// life, which Close takes exclusively before closing the file.
	closed atomic.Bool
	life   sync.RWMutex

	notifier *notifier
	leases   *leaseTable
	expiry   *expiryLoop
}

var _ kv.Backend = (*Backend)(nil)

// Open opens (creating it if needed) the bbolt file at path. Keys attached
// to leases of a previous process are deleted: their holders are gone.
func Open(path string, opts Options) (*Backend, error) {
	opts = opts.withDefaults()
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        opts.OpenTimeout,
		NoSync:         opts.NoSync,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		ReadOnly:       opts.ReadOnly,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	b := &Backend{db: db, opts: opts}
	var epoch int64
	prepare := func(tx *bolt.Tx) error {
		var err error
		epoch, err = b.prepare(tx)
		return err
	}
	if opts.ReadOnly {
		err = db.View(b.load)
	} else {
		err = db.Update(prepare)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	b.notifier = newNotifier(b.rev, opts)
	b.leases = newLeaseTable(epoch)
	b.expiry = startExpiryLoop(b.leases, b.expireLease)
	return b, nil
}

// prepare readies the file for this process: it creates the buckets,
// loads the revision, starts a new lease epoch and deletes the keys of the
// previous process's leases, in one new revision. It returns the epoch.
func (b *Backend) prepare(tx *bolt.Tx) (int64, error) {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return 0, fmt.Errorf("bucket %s: %w", name, err)
		}
	}
	m := metaOf(tx)
	b.rev = m.get(metaRev)
	if b.rev == 0 {
		// A new store starts at revision 1, so that no revision a read
		// reports is 0, which Watch takes for "from now": a List of the
		// empty store then a Watch from its revision sees the first write.
		b.rev = 1
		if err := m.put(metaRev, b.rev); err != nil {
			return 0, err
		}
	}
	epoch := m.get(metaEpoch) + 1
	if epoch > maxEpoch {
		return 0, errors.New("lease epochs exhausted")
	}
	if err := m.put(metaEpoch, epoch); err != nil {
		return 0, err
	}
	w := b.newWriteTx(tx, b.rev+1)
	if err := w.deleteLeased(nil); err != nil {
		return 0, err
	}
	if len(w.events) > 0 {
		if err := w.finish(); err != nil {
			return 0, err
		}
		b.rev = w.rev
	}
	return epoch, nil
}

// load readies a file opened read-only: it checks that it is one a Backend
// wrote and loads the revision.
func (b *Backend) load(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("not a topod bolt file: no %s bucket", name)
		}
	}
	b.rev = max(metaOf(tx).get(metaRev), 1)
	return nil
}

// Close revokes the leases granted through b (deleting their keys), ends
// every watch (a last response carries kv.ErrClosed) and closes the file.
// Later calls return kv.ErrClosed.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return fmt.Errorf("close: %w", kv.ErrClosed)
	}
	ended := b.leases.close()
	revokeErr := b.deleteLeaseKeysLocked(ended...)
	b.closed.Store(true)
	b.mu.Unlock()
	for _, l := range ended {
		l.end()
	}

	b.expiry.stop()
	b.notifier.close()

	b.life.Lock()
	defer b.life.Unlock()
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if revokeErr != nil {
		return fmt.Errorf("close: revoke leases: %w", revokeErr)
	}
	return nil
}

// read runs fn in a read transaction unless b is closed.
func (b *Backend) read(fn func(tx *bolt.Tx) error) error {
	b.life.RLock()
	defer b.life.RUnlock()
	if b.closed.Load() {
		return kv.ErrClosed
	}
	return b.db.View(fn)
}

// errNoChange rolls back a write transaction that changed nothing.
var errNoChange = errors.New("no change")

// write runs fn in a write transaction at the next revision. If fn queued
// events, the transaction commits, the revision becomes current and the
// events are published; if not, it is rolled back and the revision stays.
// It returns the revision of the write (the current one if nothing changed).
func (b *Backend) write(fn func(w *writeTx) error) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return 0, kv.ErrClosed
	}
	return b.writeLocked(fn)
}

// writeLocked is write with b.mu held.
func (b *Backend) writeLocked(fn func(w *writeTx) error) (int64, error) {
	var w *writeTx
	err := b.db.Update(func(tx *bolt.Tx) error {
		w = b.newWriteTx(tx, b.rev+1)
		if err := fn(w); err != nil {
			return err
		}
		if len(w.events) == 0 {
			return errNoChange
		}
		return w.finish()
	})
	if errors.Is(err, errNoChange) {
		return b.rev, nil
	}
	if err != nil {
		return 0, err
	}
	b.rev = w.rev
	b.notifier.publish(w.rev, w.events)
	return w.rev, nil
}
