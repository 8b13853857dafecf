package topoplugin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/topoerr"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Lock is part of topo.Conn.
func (c *Conn) Lock(ctx context.Context, dirPath, contents string) (topo.LockDescriptor, error) {
	return c.lock(ctx, dirPath, contents, topodv1.LockKind_LOCK_KIND_BLOCKING, lockTTL)
}

// LockWithTTL is part of topo.Conn.
func (c *Conn) LockWithTTL(ctx context.Context, dirPath, contents string, ttl time.Duration) (topo.LockDescriptor, error) {
	return c.lock(ctx, dirPath, contents, topodv1.LockKind_LOCK_KIND_BLOCKING, ttl)
}

// LockName is part of topo.Conn. The server gives it the 24 h TTL of
// topo.NamedLockTTL.
func (c *Conn) LockName(ctx context.Context, dirPath, contents string) (topo.LockDescriptor, error) {
	return c.lock(ctx, dirPath, contents, topodv1.LockKind_LOCK_KIND_NAMED, 0)
}

// TryLock is part of topo.Conn.
func (c *Conn) TryLock(ctx context.Context, dirPath, contents string) (topo.LockDescriptor, error) {
	return c.lock(ctx, dirPath, contents, topodv1.LockKind_LOCK_KIND_TRY, lockTTL)
}

// lock opens a Lock stream and waits, bounded by ctx, until topod says the
// lock is held. The stream itself outlives ctx: the lock lives as long as it
// does, until Unlock or Close.
func (c *Conn) lock(ctx context.Context, dirPath, contents string, kind topodv1.LockKind, ttl time.Duration) (topo.LockDescriptor, error) {
	p, err := c.fullPath(dirPath)
	if err != nil {
		return nil, err
	}
	streamCtx, cancel := context.WithCancel(c.ctx)
	stream, err := c.client.Lock(streamCtx, grpc.WaitForReady(true))
	if err != nil {
		cancel()
		return nil, topoerr.FromError(err, p)
	}
	ld := &lockDescriptor{path: p, stream: stream, cancel: cancel}
	resp, err := ld.roundTrip(ctx, &topodv1.LockRequest{Request: &topodv1.LockRequest_Acquire{Acquire: &topodv1.LockAcquire{
		Path:       p,
		Contents:   contents,
		Kind:       kind,
		TtlSeconds: int64((ttl + time.Second - 1) / time.Second),
	}}})
	if err != nil {
		cancel()
		return nil, err
	}
	ld.revision = resp.GetAcquired().GetRevision()
	return ld, nil
}

// lockDescriptor is a held lock: the open Lock stream.
type lockDescriptor struct {
	path     string
	revision int64 // the fencing token: see Revision

	mu       sync.Mutex // serializes round trips on the stream
	stream   grpc.BidiStreamingClient[topodv1.LockRequest, topodv1.LockResponse]
	cancel   context.CancelFunc
	released bool
}

// Revision is the backend revision that created the lock's file. It grows
// with every acquisition of any lock of the topology: a holder passes it as
// a fencing token to what it acts on, which refuses a token smaller than
// one it has seen (a holder whose lease expired while it was stalled has a
// smaller token than the holder after it). Vitess's topo.LockDescriptor does
// not have it: reach it by a type assertion to interface{ Revision() int64 }.
func (ld *lockDescriptor) Revision() int64 { return ld.revision }

// roundTrip sends one request and waits for its answer, or for ctx. A
// failure breaks the stream, which releases the lock on the server.
func (ld *lockDescriptor) roundTrip(ctx context.Context, req *topodv1.LockRequest) (*topodv1.LockResponse, error) {
	type answer struct {
		resp *topodv1.LockResponse
		err  error
	}
	result := make(chan answer, 1)
	go func() {
		if err := ld.stream.Send(req); err != nil {
			// The real error is the stream's status, read by Recv.
			_, err = ld.stream.Recv()
			result <- answer{err: err}
			return
		}
		resp, err := ld.stream.Recv()
		result <- answer{resp, err}
	}()
	select {
	case a := <-result:
		if a.err != nil {
			ld.cancel()
			return nil, topoerr.FromError(a.err, ld.path)
		}
		return a.resp, nil
	case <-ctx.Done():
		ld.cancel()
		return nil, topoerr.FromError(ctx.Err(), ld.path)
	}
}

// Check is part of topo.LockDescriptor: the lease behind the lock still
// holds.
func (ld *lockDescriptor) Check(ctx context.Context) error {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if ld.released {
		return fmt.Errorf("topod: lock %s was released", ld.path)
	}
	_, err := ld.roundTrip(ctx, &topodv1.LockRequest{Request: &topodv1.LockRequest_Check{Check: &topodv1.LockCheck{}}})
	if err != nil {
		ld.released = true
	}
	return err
}

// Unlock is part of topo.LockDescriptor. The lock is released even if the
// answer does not come back: the stream is closed either way.
func (ld *lockDescriptor) Unlock(ctx context.Context) error {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if ld.released {
		return errors.New("topod: unlock " + ld.path + ": lock already released")
	}
	ld.released = true
	_, err := ld.roundTrip(ctx, &topodv1.LockRequest{Request: &topodv1.LockRequest_Unlock{Unlock: &topodv1.LockUnlock{}}})
	ld.cancel()
	return err
}
