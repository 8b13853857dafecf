package toposerver

import (
	"context"
	"errors"
	"fmt"
	"path"

	"google.golang.org/grpc"

	"github.com/topod-io/topod/pkg/kv"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Campaign is part of topodv1.TopoServer. A participant is a lock on the
// election directory whose contents are the participant's id: the lock
// holder leads, as in etcd2topo.
func (s *Server) Campaign(stream grpc.BidiStreamingServer[topodv1.CampaignRequest, topodv1.CampaignResponse]) error {
	ctx, done := s.stream(stream.Context(), "campaign")
	defer done()
	return s.streamEnd(s.campaign(ctx, stream))
}

func (s *Server) campaign(ctx context.Context, stream grpc.BidiStreamingServer[topodv1.CampaignRequest, topodv1.CampaignResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return toStatus(invalid(errors.New("campaign: the first request must be a start")))
	}
	if err := checkPath(start.Path, false); err != nil {
		return toStatus(err)
	}
	if err := checkWritable(start.Path); err != nil {
		return err
	}
	if err := s.checkContents(ctx, start.Path, []byte(start.Id)); err != nil {
		return toStatus(err)
	}
	lease, err := s.backend.Grant(ctx, s.opts.LockTTL)
	if err != nil {
		return toStatus(fmt.Errorf("campaign %s: %w", start.Path, err))
	}
	defer s.revoke(lease)

	// The client may resign while we wait for leadership.
	requests := receive(stream)
	acquireCtx, cancelAcquire := context.WithCancel(ctx)
	defer cancelAcquire()
	elected := make(chan error, 1)
	go func() {
		_, _, err := s.acquire(acquireCtx, path.Join(start.Path, locksDir), start.Id, lease)
		elected <- err
	}()
	resigned := func() error {
		cancelAcquire()
		s.revoke(lease)
		return stream.Send(&topodv1.CampaignResponse{Response: &topodv1.CampaignResponse_Resigned{Resigned: &topodv1.CampaignResigned{}}})
	}

	select {
	case err := <-elected:
		if err != nil {
			return toStatus(err)
		}
	case r, ok := <-requests:
		if !ok || r.GetResign() == nil {
			return nil
		}
		return resigned()
	}
	if err := stream.Send(&topodv1.CampaignResponse{Response: &topodv1.CampaignResponse_Elected{Elected: &topodv1.CampaignElected{}}}); err != nil {
		return err
	}
	select {
	case <-lease.Done():
		return toStatus(fmt.Errorf("campaign %s: leadership lost: %w", start.Path, kv.ErrLeaseNotFound))
	case r, ok := <-requests:
		if !ok || r.GetResign() == nil {
			return nil
		}
		return resigned()
	}
}

// GetLeader is part of topodv1.TopoServer.
func (s *Server) GetLeader(ctx context.Context, req *topodv1.GetLeaderRequest) (*topodv1.GetLeaderResponse, error) {
	if err := checkPath(req.Path, false); err != nil {
		return nil, toStatus(err)
	}
	id, _, err := s.leader(ctx, req.Path)
	if err != nil {
		return nil, toStatus(err)
	}
	return &topodv1.GetLeaderResponse{Id: id}, nil
}

// WatchLeader is part of topodv1.TopoServer.
func (s *Server) WatchLeader(req *topodv1.WatchLeaderRequest, stream grpc.ServerStreamingServer[topodv1.WatchLeaderResponse]) error {
	if err := checkPath(req.Path, false); err != nil {
		return toStatus(err)
	}
	ctx, done := s.stream(stream.Context(), "watch_leader")
	defer done()
	return s.streamEnd(s.watchLeader(ctx, stream, req.Path))
}

// watchLeader sends the current leader first, "" if there is none (so
// the client knows the state its watch starts from), then each new one.
func (s *Server) watchLeader(ctx context.Context, stream grpc.ServerStreamingServer[topodv1.WatchLeaderResponse], p string) error {
	last, first := "", true
	for {
		id, rev, err := s.leader(ctx, p)
		if err != nil {
			return err
		}
		if first || (id != "" && id != last) {
			first = false
			if err := stream.Send(&topodv1.WatchLeaderResponse{Id: id}); err != nil {
				return err
			}
			last = id
		}
		if err := s.waitChange(ctx, dirPrefix(path.Join(p, locksDir)), rev); err != nil {
			return err
		}
	}
}

// leader returns the id of the oldest participant of the election at p, ""
// if none, and the revision read.
func (s *Server) leader(ctx context.Context, p string) (string, int64, error) {
	kvs, rev, err := s.backend.List(ctx, dirPrefix(path.Join(p, locksDir)), false)
	if err != nil {
		return "", 0, fmt.Errorf("get leader %s: %w", p, err)
	}
	var oldest *kv.KV
	for i := range kvs {
		if oldest == nil || kvs[i].CreateRevision < oldest.CreateRevision {
			oldest = &kvs[i]
		}
	}
	if oldest == nil {
		return "", rev, nil
	}
	return string(oldest.Value), rev, nil
}

// waitChange returns after the first change under prefix after rev.
func (s *Server) waitChange(ctx context.Context, prefix string, rev int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes, err := s.backend.Watch(ctx, prefix, true, rev)
	if err != nil {
		return err
	}
	if _, ok := <-changes; !ok {
		return ctx.Err()
	}
	return nil
}
