package toposerver

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"google.golang.org/grpc"

	"github.com/topod-io/topod/pkg/kv"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// locksDir is the directory, under a locked directory, holding one
// ephemeral file per lock holder or waiter (as in etcd2topo).
const locksDir = "locks"

// revokeTimeout bounds the release of a lease when its stream ends.
const revokeTimeout = 10 * time.Second

// Lock is part of topodv1.TopoServer. The lock is a file under
// <path>/locks/ held by a lease; the oldest file (lowest create revision) owns
// the lock, the others wait for the file just older than theirs to go. The
// lease, and so the lock, lives while the stream does.
func (s *Server) Lock(stream grpc.BidiStreamingServer[topodv1.LockRequest, topodv1.LockResponse]) error {
	ctx, done := s.stream(stream.Context(), "lock")
	defer done()
	return s.streamEnd(s.lock(ctx, stream))
}

func (s *Server) lock(ctx context.Context, stream grpc.BidiStreamingServer[topodv1.LockRequest, topodv1.LockResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	acq := first.GetAcquire()
	if acq == nil {
		return toStatus(invalid(errors.New("lock: the first request must be an acquire")))
	}
	if err := checkPath(acq.Path, false); err != nil {
		return toStatus(err)
	}
	if err := checkWritable(acq.Path); err != nil {
		return err
	}
	// The lock file's contents get a file's checks: size, and a record
	// only if well formed (the blob collector reads every value).
	if err := s.checkContents(ctx, acq.Path, []byte(acq.Contents)); err != nil {
		return toStatus(err)
	}
	if acq.TtlSeconds < 0 {
		return toStatus(invalid(fmt.Errorf("lock %s: negative ttl %d", acq.Path, acq.TtlSeconds)))
	}
	ttl := s.opts.LockTTL
	if acq.TtlSeconds > 0 {
		if err := s.checkLockTTL(acq.Path, acq.TtlSeconds); err != nil {
			return toStatus(err)
		}
		ttl = time.Duration(acq.TtlSeconds) * time.Second
	}
	switch acq.Kind {
	case topodv1.LockKind_LOCK_KIND_BLOCKING, topodv1.LockKind_LOCK_KIND_UNSPECIFIED:
		// The directory must exist.
		if _, err := s.listDir(ctx, acq.Path, false, -1); err != nil {
			return toStatus(fmt.Errorf("lock %s: %w", acq.Path, err))
		}
	case topodv1.LockKind_LOCK_KIND_TRY:
		if err := s.checkUnlocked(ctx, acq.Path); err != nil {
			return toStatus(err)
		}
	case topodv1.LockKind_LOCK_KIND_NAMED:
		ttl = NamedLockTTL
	default:
		return toStatus(invalid(fmt.Errorf("lock %s: unknown kind %v", acq.Path, acq.Kind)))
	}

	lease, err := s.backend.Grant(ctx, ttl)
	if err != nil {
		return toStatus(fmt.Errorf("lock %s: %w", acq.Path, err))
	}
	defer s.revoke(lease)
	lockPath, rev, err := s.acquire(ctx, path.Join(acq.Path, locksDir), acq.Contents, lease)
	if err != nil {
		return toStatus(err)
	}
	acquired := &topodv1.LockAcquired{LockPath: lockPath, Revision: rev}
	if err := stream.Send(&topodv1.LockResponse{Response: &topodv1.LockResponse_Acquired{Acquired: acquired}}); err != nil {
		return err
	}

	requests := receive(stream)
	for {
		select {
		case <-lease.Done():
			return toStatus(fmt.Errorf("lock %s: lease lost: %w", lockPath, kv.ErrLeaseNotFound))
		case r, ok := <-requests:
			if !ok {
				// The client went away: the deferred revoke releases the lock.
				return nil
			}
			switch {
			case r.GetCheck() != nil:
				if err := lease.Alive(ctx); err != nil {
					return toStatus(fmt.Errorf("lock %s: %w", lockPath, err))
				}
				if err := stream.Send(&topodv1.LockResponse{Response: &topodv1.LockResponse_Checked{Checked: &topodv1.LockChecked{}}}); err != nil {
					return err
				}
			case r.GetUnlock() != nil:
				if err := lease.Revoke(ctx); err != nil {
					return toStatus(fmt.Errorf("unlock %s: %w", lockPath, err))
				}
				return stream.Send(&topodv1.LockResponse{Response: &topodv1.LockResponse_Unlocked{Unlocked: &topodv1.LockUnlocked{}}})
			default:
				return toStatus(invalid(fmt.Errorf("lock %s: unexpected request %v", lockPath, r)))
			}
		}
	}
}

// checkUnlocked fails with kv.ErrExists if dir exists and holds an ephemeral
// locks directory, as etcd2topo's TryLock does.
func (s *Server) checkUnlocked(ctx context.Context, dir string) error {
	entries, err := s.listDir(ctx, dir, true, -1)
	if err != nil {
		return fmt.Errorf("trylock %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.Name == locksDir && e.Type == topodv1.DirEntryType_DIR_ENTRY_TYPE_DIRECTORY && e.Ephemeral {
			return fmt.Errorf("trylock %s: lock already held: %w", dir, kv.ErrExists)
		}
	}
	return nil
}

// acquire creates an ephemeral file under dir held by lease and waits until
// every older file under dir is gone. It returns the file's path and the
// revision that created it (the holder's fencing token).
func (s *Server) acquire(ctx context.Context, dir, contents string, lease kv.Lease) (string, int64, error) {
	key := fmt.Sprintf("%s/%d", dir, lease.ID())
	rev, err := s.backend.Create(ctx, key, []byte(contents), lease.ID())
	if err != nil {
		return "", 0, fmt.Errorf("lock %s: %w", dir, err)
	}
	for {
		kvs, listRev, err := s.backend.List(ctx, dir+"/", true)
		if err != nil {
			return "", 0, fmt.Errorf("lock %s: %w", dir, err)
		}
		var blocker string
		var blockerRev int64
		for _, e := range kvs {
			if e.CreateRevision < rev && e.CreateRevision > blockerRev {
				blocker, blockerRev = e.Key, e.CreateRevision
			}
		}
		if blocker == "" {
			return key, rev, nil
		}
		if err := s.waitDeleted(ctx, blocker, listRev, lease); err != nil {
			return "", 0, fmt.Errorf("lock %s: %w", dir, err)
		}
	}
}

// waitDeleted returns once key is deleted after revision rev (or the
// backend asks to look again), or fails when ctx ends or lease is lost.
func (s *Server) waitDeleted(ctx context.Context, key string, rev int64, lease kv.Lease) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes, err := s.backend.Watch(ctx, key, false, rev)
	if err != nil {
		return err
	}
	for {
		select {
		case <-lease.Done():
			return fmt.Errorf("waiting for %s: lease lost: %w", key, kv.ErrLeaseNotFound)
		case resp, ok := <-changes:
			if !ok {
				return ctx.Err()
			}
			if resp.Err != nil {
				// Compacted or fell behind: list again.
				return nil
			}
			for _, ev := range resp.Events {
				if ev.Type == kv.Delete {
					return nil
				}
			}
		}
	}
}

// revoke releases a lease whose stream has ended, with a bounded wait.
func (s *Server) revoke(lease kv.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	if err := lease.Revoke(ctx); err != nil && !errors.Is(err, kv.ErrLeaseNotFound) {
		s.log.Warn("revoke lease", "lease", lease.ID(), "err", err)
	}
}

// receive reads a stream's requests into a channel, closed when the client
// half-closes or the stream breaks.
func receive[Req, Resp any](stream grpc.BidiStreamingServer[Req, Resp]) <-chan *Req {
	ch := make(chan *Req)
	go func() {
		defer close(ch)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case ch <- r:
			case <-stream.Context().Done():
				return
			}
		}
	}()
	return ch
}
