package kv

import (
	"context"
	"errors"
	"time"
)

// This file holds the general transaction and the lease-by-ID API: what
// topod's etcd-compatible endpoint (pkg/etcdapi) serves from a backend.
// Their semantics are etcd v3's (go.etcd.io/etcd/api/v3/etcdserverpb), so
// that the etcd backend passes them through as one request and the bolt
// backend evaluates them in one write transaction.

// More errors of Txn and Leases, wrapped as the others are.
var (
	// ErrFutureRevision: a read asked for a revision the backend has not
	// reached.
	ErrFutureRevision = errors.New("required revision is a future revision")
	// ErrDuplicateKey: a transaction puts one key twice, or puts a key
	// it deletes (etcd's check; deletes may overlap).
	ErrDuplicateKey = errors.New("duplicate key given in txn request")
	// ErrLeaseExists: GrantLease asked for an ID already in use.
	ErrLeaseExists = errors.New("lease already exists")
)

// CompareTarget is what a Compare looks at.
type CompareTarget int

// The targets of a Compare, as etcd's.
const (
	// CompareVersion: the number of writes since the key was created; 0
	// for a missing key.
	CompareVersion CompareTarget = iota
	// CompareCreate: CreateRevision; 0 for a missing key.
	CompareCreate
	// CompareMod: ModRevision; 0 for a missing key.
	CompareMod
	// CompareValue: the value; a missing key fails every value compare.
	CompareValue
	// CompareLease: the lease; 0 for none or a missing key.
	CompareLease
)

// CompareResult is the relation a Compare asks for.
type CompareResult int

// The relations of a Compare.
const (
	Equal CompareResult = iota
	Greater
	Less
	NotEqual
)

// Compare is one condition of a Txn, on a key or on every key of a range
// (End set, etcd's range_end: "\x00" is every key from Key on). The
// condition holds if it holds for every key of the range; a missing key,
// or a range with no key in it, compares as 0 (Value: fails), as etcd's
// applyCompare.
type Compare struct {
	Key, End string
	Target   CompareTarget
	Result   CompareResult
	// Int is the operand of a Version, Create, Mod or Lease compare.
	Int int64
	// Value is the operand of a Value compare.
	Value []byte
}

// OpType says what an Op does.
type OpType int

// The kinds of Op.
const (
	OpRange OpType = iota
	OpPut
	OpDelete
	OpTxn
)

// Op is one operation of a Txn.
type Op struct {
	Type OpType
	// Key and End: the key, or the range [Key, End) (etcd's range_end:
	// "\x00" is every key from Key on) of a Range or Delete.
	Key, End string

	// Range: Rev reads the range as it was at that revision (0: current;
	// ErrCompacted, ErrFutureRevision); KeysOnly leaves values nil.
	// Sorting, limits and filters are the caller's: a Range returns every
	// key of the range, sorted by key.
	Rev      int64
	KeysOnly bool

	// Put: Value, attached to Lease (0: none); IgnoreValue keeps the
	// current value and IgnoreLease the current lease (both fail on a
	// missing key with ErrNotFound).
	Value       []byte
	Lease       LeaseID
	IgnoreValue bool
	IgnoreLease bool

	// Put and Delete: PrevKV returns the keys' states before the write.
	PrevKV bool

	// Txn: a nested transaction.
	Txn *Txn
}

// Txn is a transaction, as etcd's: if every Compare holds, Success runs,
// else Failure, all at one revision. A Txn that writes nothing does not
// move the revision.
type Txn struct {
	Compare []Compare
	Success []Op
	Failure []Op
}

// TxnResult is what a Txn did.
type TxnResult struct {
	Succeeded bool
	// Revision is the backend's revision after the transaction: the
	// revision of its writes, or the revision its reads reflect.
	Revision  int64
	Responses []OpResult
}

// OpResult is what one Op did; the field of its type is set.
type OpResult struct {
	// Range: the keys, sorted by key.
	Range []KV
	// Put: the key's state before, if asked for (nil if it was missing).
	PrevKV *KV
	// Delete: how many keys, and their states before if asked for.
	Deleted int64
	PrevKVs []KV
	Txn     *TxnResult
	Type    OpType
}

// Name names t in errors: its first key.
func (t *Txn) Name() string {
	switch {
	case len(t.Compare) > 0:
		return t.Compare[0].Key
	case len(t.Success) > 0:
		return t.Success[0].Key
	case len(t.Failure) > 0:
		return t.Failure[0].Key
	}
	return "(empty)"
}

// Writes reports whether t may write (has a Put or Delete in any branch).
func (t *Txn) Writes() bool {
	for _, ops := range [][]Op{t.Success, t.Failure} {
		for _, op := range ops {
			if op.Type == OpPut || op.Type == OpDelete || (op.Type == OpTxn && op.Txn.Writes()) {
				return true
			}
		}
	}
	return false
}

// LeaseStatus is what TimeToLive tells of a lease.
type LeaseStatus struct {
	ID LeaseID
	// TTL is the time left, Granted the TTL it was granted with, both in
	// whole seconds as etcd reports them.
	TTL, Granted int64
	Keys         []string
}

// Leases is the lease API by ID: leases granted, renewed and revoked by
// whoever holds their ID, as etcd's. A lease granted here lives TTL from
// its grant or last renewal, then ends, deleting its keys.
type Leases interface {
	// GrantLease grants a lease of ttl (rounded up to whole seconds);
	// id 0 lets the backend choose the ID (ErrLeaseExists if id is taken).
	GrantLease(ctx context.Context, id LeaseID, ttl time.Duration) (LeaseID, time.Duration, error)
	// RenewLease renews a lease for its TTL from now, and returns that
	// TTL (ErrLeaseNotFound).
	RenewLease(ctx context.Context, id LeaseID) (time.Duration, error)
	// RevokeLease ends a lease now, deleting its keys (ErrLeaseNotFound).
	RevokeLease(ctx context.Context, id LeaseID) error
	// LeaseTimeToLive describes a lease, with its keys if asked for
	// (ErrLeaseNotFound).
	LeaseTimeToLive(ctx context.Context, id LeaseID, keys bool) (LeaseStatus, error)
	// ListLeases returns the IDs of the leases alive.
	ListLeases(ctx context.Context) ([]LeaseID, error)
}
