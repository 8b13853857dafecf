package etcdkv

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/topod-io/topod/pkg/kv"
)

// revokeTimeout bounds the revoke sent when a lease's Grant context ends.
const revokeTimeout = 5 * time.Second

// Grant creates an etcd lease of ttl rounded up to whole seconds and keeps
// it alive with a concurrency.Session until Revoke is called or ctx ends. If
// ctx ends, the lease is revoked at once, deleting its keys, rather than left
// to expire. etcd may grant more than asked (it has a minimum TTL, 2 s with
// the default election timeout); TTL reports what it granted.
func (b *Backend) Grant(ctx context.Context, ttl time.Duration) (kv.Lease, error) {
	op := "grant lease"
	secs := int64((ttl + time.Second - 1) / time.Second)
	secs = max(secs, 1)
	key := fmt.Sprintf("of %ds", secs)
	if err := b.checkOpen(op, key); err != nil {
		return nil, err
	}
	resp, err := b.cli.Grant(ctx, secs)
	if err != nil {
		return nil, b.wrap(op, key, err)
	}
	s, err := concurrency.NewSession(b.cli,
		concurrency.WithLease(resp.ID),
		concurrency.WithTTL(int(resp.TTL)),
		concurrency.WithContext(ctx))
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
		_, _ = b.cli.Revoke(rctx, resp.ID)
		cancel()
		return nil, b.wrap(op, key, err)
	}
	l := &lease{
		b:       b,
		session: s,
		ttl:     time.Duration(resp.TTL) * time.Second,
		done:    make(chan struct{}),
	}
	go l.watch(ctx)
	return l, nil
}

// lease is a kv.Lease on an etcd lease kept alive by a session.
type lease struct {
	b       *Backend
	session *concurrency.Session
	ttl     time.Duration

	done chan struct{} // closed by watch once the lease is gone
}

var _ kv.Lease = (*lease)(nil)

func (l *lease) ID() kv.LeaseID        { return kv.LeaseID(l.session.Lease()) }
func (l *lease) TTL() time.Duration    { return l.ttl }
func (l *lease) Done() <-chan struct{} { return l.done }

// name is how errors name the lease.
func (l *lease) name() string { return fmt.Sprintf("%x", int64(l.session.Lease())) }

// watch closes l.done once the lease is gone: its keep-alive ended (Revoke,
// expiry, etcd unreachable for longer than the TTL, backend closed) or ctx
// ended, in which case it revokes the lease first so that its keys go now.
func (l *lease) watch(ctx context.Context) {
	defer close(l.done)
	select {
	case <-l.session.Done():
	case <-ctx.Done():
	}
	// The keep-alive runs under ctx too, so both may be done: check ctx.
	if ctx.Err() != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
		defer cancel()
		_ = l.revoke(rctx)
	}
}

// Alive returns nil while etcd holds the lease, kv.ErrLeaseNotFound once it
// has expired or was revoked.
func (l *lease) Alive(ctx context.Context) error {
	const op = "lease"
	if err := l.b.checkOpen(op, l.name()); err != nil {
		return err
	}
	resp, err := l.b.cli.TimeToLive(ctx, l.session.Lease())
	if err != nil {
		return l.b.wrap(op, l.name(), err)
	}
	// etcd answers TTL -1 for a lease it does not hold. 0 is a lease with
	// less than a second left (the TTL is whole seconds, rounded down),
	// which a keep-alive with a short TTL routinely lets it reach.
	if resp.TTL < 0 {
		return fail(op, l.name(), kv.ErrLeaseNotFound)
	}
	return nil
}

// Revoke stops the keep-alive and revokes the lease, which deletes its keys.
// It returns once Done is closed. A lease already gone is
// kv.ErrLeaseNotFound.
func (l *lease) Revoke(ctx context.Context) error {
	if err := l.b.checkOpen("revoke lease", l.name()); err != nil {
		return err
	}
	if err := l.revoke(ctx); err != nil {
		return err
	}
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("revoke lease %s: %w", l.name(), ctx.Err())
	}
}

// revoke orphans the session (ending its keep-alive) and revokes the lease.
func (l *lease) revoke(ctx context.Context) error {
	l.session.Orphan()
	_, err := l.b.cli.Revoke(ctx, clientv3.LeaseID(l.session.Lease()))
	return l.b.wrap("revoke lease", l.name(), err)
}
