package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/topod-io/topod/pkg/kv"
)

// This file is kv.Leases on etcd: etcd's own leases, by ID. Renewals of
// every lease share one keep-alive stream to etcd (renewer), however many
// leases and clients there are.

var _ kv.Leases = (*Backend)(nil)

// GrantLease grants an etcd lease; id 0 lets etcd choose the ID.
func (b *Backend) GrantLease(ctx context.Context, id kv.LeaseID, ttl time.Duration) (kv.LeaseID, time.Duration, error) {
	secs := max(int64((ttl+time.Second-1)/time.Second), 1)
	op := fmt.Sprintf("grant lease of %ds", secs)
	name := fmt.Sprintf("%x", int64(id))
	if err := b.checkOpen(op, name); err != nil {
		return 0, 0, err
	}
	resp, err := pb.NewLeaseClient(b.cli.ActiveConnection()).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: int64(id), TTL: secs})
	if err != nil {
		err = rpctypes.Error(err)
		if errors.Is(err, rpctypes.ErrLeaseExist) {
			err = fmt.Errorf("%w (%w)", kv.ErrLeaseExists, err)
		}
		return 0, 0, b.wrap(op, name, err)
	}
	if resp.Error != "" {
		return 0, 0, fail(op, name, errors.New(resp.Error))
	}
	return kv.LeaseID(resp.ID), time.Duration(resp.TTL) * time.Second, nil
}

// RenewLease renews a lease once, through the backend's one keep-alive
// stream.
func (b *Backend) RenewLease(ctx context.Context, id kv.LeaseID) (time.Duration, error) {
	const op = "renew lease"
	name := fmt.Sprintf("%x", int64(id))
	if err := b.checkOpen(op, name); err != nil {
		return 0, err
	}
	ttl, err := b.renewer.renew(ctx, b.cli, id)
	if err != nil {
		return 0, b.wrap(op, name, rpctypes.Error(err))
	}
	if ttl <= 0 {
		return 0, fail(op, name, kv.ErrLeaseNotFound)
	}
	return time.Duration(ttl) * time.Second, nil
}

// RevokeLease revokes a lease, deleting its keys.
func (b *Backend) RevokeLease(ctx context.Context, id kv.LeaseID) error {
	const op = "revoke lease"
	name := fmt.Sprintf("%x", int64(id))
	if err := b.checkOpen(op, name); err != nil {
		return err
	}
	_, err := b.cli.Revoke(ctx, clientv3.LeaseID(id))
	return b.wrap(op, name, err)
}

// LeaseTimeToLive asks etcd about a lease.
func (b *Backend) LeaseTimeToLive(ctx context.Context, id kv.LeaseID, keys bool) (kv.LeaseStatus, error) {
	const op = "lease time to live"
	name := fmt.Sprintf("%x", int64(id))
	if err := b.checkOpen(op, name); err != nil {
		return kv.LeaseStatus{}, err
	}
	var opts []clientv3.LeaseOption
	if keys {
		opts = append(opts, clientv3.WithAttachedKeys())
	}
	resp, err := b.cli.TimeToLive(ctx, clientv3.LeaseID(id), opts...)
	if err != nil {
		return kv.LeaseStatus{}, b.wrap(op, name, err)
	}
	if resp.TTL < 0 {
		return kv.LeaseStatus{}, fail(op, name, kv.ErrLeaseNotFound)
	}
	st := kv.LeaseStatus{ID: id, TTL: resp.TTL, Granted: resp.GrantedTTL}
	for _, k := range resp.Keys {
		st.Keys = append(st.Keys, string(k))
	}
	return st, nil
}

// ListLeases lists etcd's leases.
func (b *Backend) ListLeases(ctx context.Context) ([]kv.LeaseID, error) {
	const op, name = "list leases", "*"
	if err := b.checkOpen(op, name); err != nil {
		return nil, err
	}
	resp, err := b.cli.Leases(ctx)
	if err != nil {
		return nil, b.wrap(op, name, err)
	}
	ids := make([]kv.LeaseID, len(resp.Leases))
	for i, l := range resp.Leases {
		ids[i] = kv.LeaseID(l.ID)
	}
	return ids, nil
}

// renewer sends every renewal on one LeaseKeepAlive stream, opened on the
// first renewal and again after it breaks, and hands each answer to the
// renewals of its lease waiting for it.
type renewer struct {
	mu      sync.Mutex
	stream  pb.Lease_LeaseKeepAliveClient
	cancel  context.CancelFunc
	waiting map[kv.LeaseID][]chan renewal
}

type renewal struct {
	ttl int64
	err error
}

// renew sends one renewal of id and waits for etcd's answer: the TTL, or
// 0 or less for a lease etcd does not hold.
func (r *renewer) renew(ctx context.Context, cli *clientv3.Client, id kv.LeaseID) (int64, error) {
	ch := make(chan renewal, 1)
	r.mu.Lock()
	if r.stream == nil {
		sctx, cancel := context.WithCancel(context.Background())
		stream, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(sctx)
		if err != nil {
			cancel()
			r.mu.Unlock()
			return 0, err
		}
		r.stream, r.cancel = stream, cancel
		if r.waiting == nil {
			r.waiting = map[kv.LeaseID][]chan renewal{}
		}
		go r.receive(stream)
	}
	r.waiting[id] = append(r.waiting[id], ch)
	err := r.stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(id)})
	r.mu.Unlock()
	if err != nil {
		r.broken(r.stream, err)
	}
	select {
	case got := <-ch:
		return got.ttl, got.err
	case <-ctx.Done():
		r.forget(id, ch)
		return 0, ctx.Err()
	}
}

// receive hands out stream's answers until it breaks.
func (r *renewer) receive(stream pb.Lease_LeaseKeepAliveClient) {
	for {
		resp, err := stream.Recv()
		if err != nil {
			if err == io.EOF {
				err = errors.New("keep-alive stream closed by etcd")
			}
			r.broken(stream, err)
			return
		}
		r.mu.Lock()
		chs := r.waiting[kv.LeaseID(resp.ID)]
		delete(r.waiting, kv.LeaseID(resp.ID))
		r.mu.Unlock()
		for _, ch := range chs {
			ch <- renewal{ttl: resp.TTL}
		}
	}
}

// broken fails every renewal waiting on stream, if it is still the
// current one, so the next renewal opens another.
func (r *renewer) broken(stream pb.Lease_LeaseKeepAliveClient, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream != stream {
		return
	}
	r.cancel()
	r.stream, r.cancel = nil, nil
	for id, chs := range r.waiting {
		for _, ch := range chs {
			ch <- renewal{err: err}
		}
		delete(r.waiting, id)
	}
}

func (r *renewer) forget(id kv.LeaseID, ch chan renewal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	chs := r.waiting[id]
	for i, c := range chs {
		if c == ch {
			r.waiting[id] = append(chs[:i], chs[i+1:]...)
			break
		}
	}
	if len(r.waiting[id]) == 0 {
		delete(r.waiting, id)
	}
}

// close ends the stream.
func (r *renewer) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		r.cancel()
	}
}
