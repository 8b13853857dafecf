// Package blobgc is mark-and-sweep garbage collection of topod's blobs.
//
// Blobs are immutable and content-addressed, shared by every record (and
// every version of a record) whose contents contain them, so none can be
// deleted when a record changes. Collect deletes, from time to time, the
// blobs nothing refers to any more:
//
//  1. t0 = now. The sweep will delete only blobs whose stored time is before
//     t0 - Grace.
//  2. Mark: every current value under the prefix (List), then every past
//     value GetRevision can still return (kv.Backend.History: Vitess's
//     GetVersion reads those), is parsed (record.Parse); each reference's
//     blobs are listed (record.Blobs, which reads the manifests from the
//     store) and marked.
//  3. Sweep: every stored blob (Walk) that is not marked and was stored
//     before t0 - Grace is a candidate, deleted with
//     blobstore.Store.DeleteIfOlder(t0 - Grace), which checks its time
//     again at the moment of deleting.
//
// # The race with writers, and how it is closed
//
// A writer commits a large file in two steps: it asks topod which of the
// file's blobs are missing (MissingBlobs), uploads those, then writes the
// record. A blob it found present (and so did not upload) may be old and
// referenced by nothing at that moment, for example when a file is
// reverted to an earlier version. A sweep between the two steps would
// delete it, and the record would then refer to a blob that is gone.
//
// MissingBlobs therefore refreshes what it finds (blobstore.Store.Refresh):
// a present blob stored before now - Grace/2 gets its stored time reset to
// now, so after MissingBlobs at time T every blob the writer relies on has
// a stored time of at least T - Grace/2. (PutBlobs refreshes too, for a
// client that uploads without asking.) A writer writes its record within
// Grace/2 of its MissingBlobs call (in practice within milliseconds:
// Grace is an hour by default). Then for any sweep started at t0:
//
//   - if the record was written before the mark's List, the mark sees it
//     (as a current value, or through History once superseded) and marks
//     the blob;
//   - if it was written after, then T > t0 - Grace/2, so the blob's stored
//     time is at least T - Grace/2 > t0 - Grace: it is not a candidate, and
//     if it became one since the sweep looked at it, DeleteIfOlder sees the
//     new time and keeps it.
//
// The writer's side, stated generally: every blob a record refers to must,
// when the record is written, either have been refreshed or uploaded
// within the last Grace/2, or be referred to by the very version the write
// replaces with a compare-and-set (that version was marked by every
// collection that listed after it was written, and its own blobs were fresh
// for those that listed before). A writer that reuses blobs of some other,
// earlier version without asking MissingBlobs is not covered.
//
// List comes before History on purpose: a value current at the List is
// marked there; a value superseded after the List but before History is
// visited by History; values written after the List are covered by the
// refresh rule above.
//
// # Residual window
//
// DeleteIfOlder checks the time and deletes. On the file store (fileblob)
// the two are made atomic with respect to Refresh (the file is renamed
// aside, checked, then removed or put back), so there is no window. On S3
// (s3blob) they are a StatObject and a RemoveObject: a Refresh landing
// between the two (milliseconds apart) of a blob that is a candidate (old,
// unreferenced at the mark) is lost, and the writer's record then refers
// to a deleted blob. The next collection reports such a record among its
// Dangling references; rewriting the file uploads the blob again.
//
// # One backend and one grace per blob store
//
// A collection deletes what its backend's records do not refer to, so a
// blob store shared by two backends (two etcd clusters, a bolt file and an
// etcd) loses each backend's blobs to the other's collections, and a
// collection with a shorter grace than a writer's deletes blobs the writer
// is about to name. The store therefore keeps an owner record
// (blobstore.MetaDir/OwnerName: the backend's id, IDKey, followed by the
// root collections mark from, and the grace), written on first use. Claim
// checks it: Collect claims before anything else (a dry run only reads)
// and checks again before its first delete; topod claims when it starts
// serving. A different owner, root or grace is refused with an error
// naming both; ClaimOptions.Takeover replaces the record explicitly.
//
// # Assumptions
//
//   - Every topod that serves writers refreshes with a Grace/2 no smaller
//     than half the Grace of any collection: run every replica, and
//     `topod gc`, with the same --gc-grace (or the collector with a longer
//     one). The owner record enforces the same grace for every topod that
//     starts, and every collection.
//   - Clocks: the file store's times are topod's clock, S3's are the S3
//     server's; clock skew between the collector and the store eats into
//     the grace period, which must be much longer than the skew.
//   - One collection at a time: Collect takes a lock in the backend (key
//     LockKey, attached to a lease, so a crashed collector's lock goes
//     away) and skips the run if another holds it. Two concurrent
//     collections would still be safe, only wasteful. Dry runs take no lock.
//
// Conservatism: a reference whose blobs are missing or corrupt (the
// store's ErrNotFound or ErrCorrupt) is reported as Dangling and does not
// stop the collection; any other failure while marking (the backend, a
// value that is not a valid record, a codec this build does not know, a
// manifest that does not parse) ends Collect with an error before anything
// is deleted.
package blobgc

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/kv"
)

// DefaultGrace is how long an unreferenced blob is kept by default.
const DefaultGrace = time.Hour

// MinGrace is the shortest grace topod's flags accept: a writer uploads a
// file's blobs, then publishes the record referring to them (a SrvVSchema
// rebuild, a vschemad import); a grace shorter than that window lets a
// collection delete blobs a record is about to name.
const MinGrace = 10 * time.Minute

// LockKey is the backend key a collection holds (attached to a lease)
// while it runs.
const LockKey = "/topod/gc/lock"

// lockTTL is the TTL of the lock's lease: how long a crashed collector
// keeps others from running.
const lockTTL = 30 * time.Second

// errLockLost ends a collection whose lock lease ended.
var errLockLost = errors.New("lost the collection lock")

// Options configure Collect. The zero value collects everything with the
// default grace period.
type Options struct {
	// Grace is how long a blob stays after it was stored (or last
	// refreshed) even if nothing refers to it. Default DefaultGrace. It
	// must be at least the grace period of every topod serving writers
	// (see the package documentation).
	Grace time.Duration
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
	// Prefix is the backend key prefix whose records are marked. Default
	// "/", every key. Blobs referred to only from outside it are deleted:
	// narrow it only if nothing outside it refers to blobs.
	Prefix string
	// Logger receives a line per deleted blob (at debug level). Default:
	// discard.
	Logger *slog.Logger
	// Now is the clock; default time.Now. For tests.
	Now func() time.Time
	// Backend describes the backend in the blob store's owner record, if
	// this collection is the first to claim the store (see Claim).
	Backend string
}

func (o Options) withDefaults() Options {
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.Prefix == "" {
		o.Prefix = "/"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Blob is a blob the sweep deleted (or, in a dry run, would delete).
type Blob struct {
	Hash content.Hash
	Size int64
	// Age is how long before the collection started it was stored.
	Age time.Duration
}

// Dangling is a reference to a blob that is not stored (or is corrupt):
// the record at Key cannot be read.
type Dangling struct {
	Key string
	// ModRevision is the version of the value holding the reference.
	ModRevision int64
	// Hash is the missing blob, when known.
	Hash content.Hash
	Err  string
}

// Report is what a collection did.
type Report struct {
	Start    time.Time
	Duration time.Duration
	DryRun   bool
	Grace    time.Duration
	// Skipped: another collection held the lock (Holder says which); the
	// run did nothing.
	Skipped bool
	Holder  string

	// Values is how many backend values (current and past) were marked
	// from; Refs how many of them refer to blobs.
	Values, Refs int
	// Marked is the number of distinct blobs referred to.
	Marked int
	// Stored is the number of blobs the store holds, StoredBytes their
	// size; LiveBytes the size of the marked ones.
	Stored                 int
	StoredBytes, LiveBytes int64
	// Young is the number of unreferenced blobs kept because they are
	// younger than the grace period.
	Young int
	// Candidates are the unreferenced blobs older than the grace period.
	Candidates []Blob
	// Deleted are the candidates deleted (none in a dry run), DeletedBytes
	// their size; Kept is the number of candidates refreshed by a writer
	// since the sweep saw them, and so kept.
	Deleted      []Blob
	DeletedBytes int64
	Kept         int
	// Dangling are the references to blobs that are missing or corrupt.
	Dangling []Dangling
}

// Summary is the report in one line.
func (r *Report) Summary() string {
	if r.Skipped {
		return fmt.Sprintf("blob gc skipped: another collection holds the lock (%s)", r.Holder)
	}
	verb := "deleted"
	n, bytes := len(r.Deleted), r.DeletedBytes
	if r.DryRun {
		verb = "would delete"
		n, bytes = len(r.Candidates), 0
		for _, b := range r.Candidates {
			bytes += b.Size
		}
	}
	return fmt.Sprintf("blob gc: %s %d blobs (%d bytes) of %d stored (%d bytes); %d referenced by %d records of %d values (%d bytes live); %d unreferenced within the %v grace period; %d refreshed meanwhile and kept; %d dangling references; took %v",
		verb, n, bytes, r.Stored, r.StoredBytes, r.Marked, r.Refs, r.Values, r.LiveBytes,
		r.Young, r.Grace, r.Kept, len(r.Dangling), r.Duration.Round(time.Millisecond))
}

// Collect runs one mark-and-sweep collection of store's blobs against the
// records of backend (see the package documentation). It returns the
// report even with an error, saying what was done before it.
func Collect(ctx context.Context, backend kv.Backend, store blobstore.Store, opts Options) (*Report, error) {
	opts = opts.withDefaults()
	r := &Report{Start: opts.Now(), DryRun: opts.DryRun, Grace: opts.Grace}
	defer func() { r.Duration = opts.Now().Sub(r.Start) }()

	// The store must be this backend's, under this prefix, with this
	// grace (its owner record: see Claim), before anything else; and still
	// be right before the sweep deletes (a takeover meanwhile).
	claim := ClaimOptions{Root: opts.Prefix, Grace: opts.Grace, Backend: opts.Backend, ReadOnly: opts.DryRun, Now: opts.Now}
	if _, err := Claim(ctx, backend, store, claim); err != nil {
		return r, fmt.Errorf("blob gc: %w", err)
	}
	claim.ReadOnly = true
	verify := func() error {
		_, err := Claim(ctx, backend, store, claim)
		return err
	}

	if !opts.DryRun {
		lockCtx, unlock, holder, err := lock(ctx, backend)
		if err != nil {
			return r, err
		}
		if holder != "" {
			r.Skipped, r.Holder = true, holder
			return r, nil
		}
		defer unlock()
		ctx = lockCtx
	}

	cutoff := r.Start.Add(-opts.Grace)
	m := newMarker(store)
	if err := m.markAll(ctx, backend, opts.Prefix, r); err != nil {
		return r, fmt.Errorf("blob gc: mark: %w", withCause(ctx, err))
	}
	if err := sweep(ctx, store, m, cutoff, opts, r, verify); err != nil {
		return r, fmt.Errorf("blob gc: sweep: %w", withCause(ctx, err))
	}
	return r, nil
}

// withCause adds to err why ctx ended, if it ended for a reason of its own
// (the lock lost).
func withCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// lock takes the collection lock. It returns a context that ends if the
// lock is lost and the function that releases it; or, if another
// collection holds it, that collection's description.
func lock(ctx context.Context, backend kv.Backend) (context.Context, func(), string, error) {
	leaseCtx, endLease := context.WithCancel(context.WithoutCancel(ctx))
	lease, err := backend.Grant(leaseCtx, lockTTL)
	if err != nil {
		endLease()
		return nil, nil, "", fmt.Errorf("blob gc: lock: %w", err)
	}
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = lease.Revoke(rctx) // deletes the lock key; if it fails, the lease expires
		endLease()
	}
	host, _ := os.Hostname()
	me := fmt.Sprintf("host %s pid %d since %s", host, os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	if _, err := backend.Create(ctx, LockKey, []byte(me), lease.ID()); err != nil {
		release()
		if errors.Is(err, kv.ErrExists) {
			holder := "unknown holder"
			if got, gerr := backend.Get(ctx, LockKey); gerr == nil {
				holder = string(got.Value)
			}
			return nil, nil, holder, nil
		}
		return nil, nil, "", fmt.Errorf("blob gc: lock: %w", err)
	}
	held, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-lease.Done():
			cancel(errLockLost)
		case <-held.Done():
		}
	}()
	return held, func() { cancel(nil); release() }, "", nil
}

// sweep walks the store, deletes the unmarked blobs stored before cutoff
// and fills in r. verify, called before the first delete, checks that the
// store is still the collection's to delete from.
func sweep(ctx context.Context, store blobstore.Store, m *marker, cutoff time.Time, opts Options, r *Report, verify func() error) error {
	seen := make(map[content.Hash]bool, len(m.marked))
	err := store.Walk(ctx, func(h content.Hash, size int64, modTime time.Time) error {
		r.Stored++
		r.StoredBytes += size
		if _, ok := m.marked[h]; ok {
			seen[h] = true
			r.LiveBytes += size
			return nil
		}
		if !modTime.Before(cutoff) {
			r.Young++
			return nil
		}
		r.Candidates = append(r.Candidates, Blob{Hash: h, Size: size, Age: r.Start.Sub(modTime)})
		return nil
	})
	if err != nil {
		return err
	}
	// A marked blob the store does not hold: its record cannot be read.
	for h, key := range m.marked {
		if !seen[h] {
			r.Dangling = append(r.Dangling, Dangling{Key: key.key, ModRevision: key.rev, Hash: h, Err: "blob not stored"})
		}
	}
	slices.SortFunc(r.Dangling, func(a, b Dangling) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.ModRevision, b.ModRevision), bytes.Compare(a.Hash[:], b.Hash[:]))
	})
	if opts.DryRun || len(r.Candidates) == 0 {
		return nil
	}
	if err := verify(); err != nil {
		return err
	}
	for _, b := range r.Candidates {
		deleted, err := store.DeleteIfOlder(ctx, b.Hash, cutoff)
		if err != nil {
			return err
		}
		if !deleted {
			r.Kept++
			continue
		}
		r.Deleted = append(r.Deleted, b)
		r.DeletedBytes += b.Size
		opts.Logger.Debug("blob gc: deleted", "hash", b.Hash.String(), "size", b.Size, "age", b.Age)
	}
	return nil
}
