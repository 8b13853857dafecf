package boltkv

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/topod-io/topod/pkg/kv"
)

// This file is kv.Leases on bolt: the leases of the in-process table, by
// ID, as etcd's lease API has them. Leases granted here have a deadline
// from the start; nothing renews them but RenewLease. Like every lease of
// a Backend they end with the process (Open deletes their keys).

var _ kv.Leases = (*Backend)(nil)

// GrantLease grants a lease of ttl rounded up to whole seconds (at least
// one) under id, or under the next free ID of this process's sequence for
// id 0 (kv.ErrLeaseExists if a lease holds id). It ends one TTL after its
// grant or its last renewal, deleting its keys.
func (b *Backend) GrantLease(ctx context.Context, id kv.LeaseID, ttl time.Duration) (kv.LeaseID, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, leaseError("grant", id, err)
	}
	if b.closed.Load() {
		return 0, 0, leaseError("grant", id, kv.ErrClosed)
	}
	l := &lease{b: b, ttl: roundTTL(ttl), done: make(chan struct{})}
	if err := b.leases.add(l, id, time.Now().Add(l.ttl)); err != nil {
		return 0, 0, leaseError("grant", id, err)
	}
	b.expiry.kick()
	return l.id, l.ttl, nil
}

// RenewLease gives lease id one TTL from now, and returns the TTL. A
// lease whose deadline has passed is not renewed: it ends now, if the
// expiry loop has not ended it yet, and the answer is kv.ErrLeaseNotFound
// once its keys are gone, as etcd's. A lease kept alive by its Grant
// context has no deadline to move.
func (b *Backend) RenewLease(ctx context.Context, id kv.LeaseID) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, leaseError("renew", id, err)
	}
	ttl, ok, expired := b.leases.renew(id, time.Now())
	if !ok || expired {
		// Ends it, or waits (on b.mu) for the end in progress to have
		// deleted its keys; it is gone either way.
		_ = b.endLease(id)
		return 0, leaseError("renew", id, b.goneError())
	}
	return ttl, nil
}

// RevokeLease ends lease id now, deleting its keys in one write.
func (b *Backend) RevokeLease(ctx context.Context, id kv.LeaseID) error {
	if err := ctx.Err(); err != nil {
		return leaseError("revoke", id, err)
	}
	return leaseError("revoke", id, b.endLease(id))
}

// LeaseTimeToLive returns what is left of lease id's TTL, floored to whole
// seconds as etcd's (the whole TTL for a lease its Grant context keeps
// alive), its TTL, and with keys the keys attached to it, sorted.
func (b *Backend) LeaseTimeToLive(ctx context.Context, id kv.LeaseID, keys bool) (kv.LeaseStatus, error) {
	if err := ctx.Err(); err != nil {
		return kv.LeaseStatus{}, leaseError("time to live of", id, err)
	}
	left, ttl, ok := b.leases.status(id, time.Now())
	if !ok {
		return kv.LeaseStatus{}, leaseError("time to live of", id, b.goneError())
	}
	st := kv.LeaseStatus{ID: id, TTL: int64(left / time.Second), Granted: int64(ttl / time.Second)}
	if !keys {
		return st, nil
	}
	err := b.read(func(tx *bolt.Tx) error {
		prefix := leasedPrefix(id)
		c := tx.Bucket(bucketLeased).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			st.Keys = append(st.Keys, string(k[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		return kv.LeaseStatus{}, leaseError("time to live of", id, err)
	}
	return st, nil
}

// ListLeases returns the IDs of the leases alive, sorted.
func (b *Backend) ListLeases(ctx context.Context) ([]kv.LeaseID, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	if b.closed.Load() {
		return nil, fmt.Errorf("list leases: %w", kv.ErrClosed)
	}
	return b.leases.ids(), nil
}
