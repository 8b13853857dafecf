// Package kv holds the key-value model topod stores topology in: versioned
// keys with compare-and-set, leases that make keys ephemeral, and watches from
// a revision. The Backend interface is the contract between the topod server
// (pkg/toposerver) and its backends (boltkv, the embedded default, and etcdkv,
// the distributed store); kvtest is the conformance suite every backend passes.
//
// Revisions: every write (put or delete, including a lease's expiry deleting
// its keys) moves the backend to a new, strictly greater revision. A key's
// ModRevision is the revision of its last write and is the Version Vitess
// sees; CreateRevision is the revision that created it and orders lock
// waiters.
package kv

import (
	"context"
	"errors"
	"time"
)

// Errors every backend returns, wrapped with the operation and key
// (fmt.Errorf("update %s: %w", key, kv.ErrBadVersion)); test with errors.Is.
var (
	// ErrNotFound: the key does not exist (or did not exist at the revision
	// asked for).
	ErrNotFound = errors.New("key not found")
	// ErrExists: Create found the key already there.
	ErrExists = errors.New("key already exists")
	// ErrBadVersion: a conditional write found the key at another version, or
	// missing.
	ErrBadVersion = errors.New("version mismatch")
	// ErrCompacted: the revision asked for (GetRevision, Watch) is older than
	// the history the backend still holds.
	ErrCompacted = errors.New("revision compacted")
	// ErrLeaseNotFound: the lease has expired or was revoked.
	ErrLeaseNotFound = errors.New("lease not found")
	// ErrClosed: the backend was closed.
	ErrClosed = errors.New("backend closed")
)

// LeaseID identifies a lease. 0 means no lease.
type LeaseID int64

// KV is one key's current state.
type KV struct {
	Key            string
	Value          []byte // nil when listed keys-only
	ModRevision    int64
	CreateRevision int64
	// Version is the number of writes since the key was created (1 for
	// a new key), as etcd's.
	Version int64
	Lease   LeaseID
}

// EventType says what happened to a key.
type EventType int

const (
	// Put is a create or an update.
	Put EventType = iota
	// Delete is a delete, by a client or by a lease ending.
	Delete
)

func (t EventType) String() string {
	if t == Delete {
		return "DELETE"
	}
	return "PUT"
}

// Event is one change to one key. For a Put, KV is the key's new state; for a
// Delete, KV.Key is the key and KV.ModRevision the revision of the delete.
type Event struct {
	Type EventType
	KV   KV
}

// WatchResponse is one batch of events delivered to a watcher, all at
// revisions at most Revision. A response with Err set is the last one on its
// channel.
type WatchResponse struct {
	Events   []Event
	Revision int64
	Err      error
}

// Lease keeps keys alive: keys created with a lease are deleted when the
// lease ends. A backend keeps the lease alive until Revoke is called, the
// context given to Grant ends, or the backend loses it (etcd unreachable for
// longer than the TTL).
type Lease interface {
	ID() LeaseID
	TTL() time.Duration
	// Done is closed once the lease is gone, for whatever reason.
	Done() <-chan struct{}
	// Alive returns nil if the lease still holds, ErrLeaseNotFound if not.
	Alive(ctx context.Context) error
	// Revoke ends the lease now, deleting its keys. Revoking a lease that has
	// already ended returns ErrLeaseNotFound.
	Revoke(ctx context.Context) error
}

// Backend is a versioned key-value store. Keys are strings ordered
// byte-wise. All methods are safe for concurrent use.
type Backend interface {
	// Get returns key's current state, or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// GetRevision returns key's value as it was at revision rev: ErrNotFound
	// if it did not exist then, ErrCompacted if the backend no longer holds
	// that history.
	GetRevision(ctx context.Context, key string, rev int64) ([]byte, error)
	// List returns every key starting with prefix, sorted by key, and the
	// revision the listing reflects. keysOnly leaves Value nil.
	List(ctx context.Context, prefix string, keysOnly bool) ([]KV, int64, error)
	// History calls fn with every past value under prefix that GetRevision
	// can still return: each superseded (or deleted) version of each key
	// starting with prefix, as it was written (Key, Value, ModRevision,
	// CreateRevision), but not the keys' current values. Order is
	// unspecified. It stops at fn's first error and returns it. Values
	// superseded while History runs may or may not be visited; a caller that
	// must see every value (garbage collection) Lists first, then calls
	// History. It can be expensive: it reads the whole retained history
	// under prefix (see each backend's documentation).
	History(ctx context.Context, prefix string, fn func(KV) error) error
	// Create writes key if it does not exist (ErrExists otherwise), attached
	// to lease if lease is not 0. It returns the new revision.
	Create(ctx context.Context, key string, value []byte, lease LeaseID) (int64, error)
	// Update writes key. With version 0 the write is unconditional and creates
	// a missing key; otherwise the key must exist at ModRevision == version
	// (ErrBadVersion). It returns the new revision.
	Update(ctx context.Context, key string, value []byte, version int64) (int64, error)
	// Delete removes key: ErrNotFound if missing; with version != 0,
	// ErrBadVersion if the key is at another version. It returns the
	// revision of the delete.
	Delete(ctx context.Context, key string, version int64) (int64, error)
	// Watch delivers the changes to key (or to every key under it when prefix
	// is true) made at revisions greater than afterRev, in revision order;
	// afterRev 0 means from the current revision on (so no revision a read
	// reports is ever 0, even on a store never written: a Watch from a
	// List's revision sees every later write). The channel is closed
	// after ctx ends or after a response carrying Err (ErrCompacted when
	// afterRev is older than the history held).
	Watch(ctx context.Context, key string, prefix bool, afterRev int64) (<-chan WatchResponse, error)
	// Grant creates a lease with the given TTL (rounded up to whole seconds)
	// and keeps it alive until it is revoked or ctx ends.
	Grant(ctx context.Context, ttl time.Duration) (Lease, error)
	// Txn runs t atomically (txn.go: etcd's transactions).
	Txn(ctx context.Context, t Txn) (TxnResult, error)
	// CurrentRevision returns the backend's revision, read linearizably:
	// every write acknowledged before the call is at or below it.
	CurrentRevision(ctx context.Context) (int64, error)
	// Leases by ID, as etcd's (txn.go).
	Leases
	// Close releases the backend. Leases granted through it are revoked where
	// possible (bolt) or left to expire (etcd).
	Close() error
}
