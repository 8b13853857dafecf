package etcdapi

import (
	"context"
	"errors"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/topod-io/topod/pkg/kv"
)

// This file serves etcd's Lease service from the backend's leases by ID:
// on etcd, etcd's own leases (any topod replica can renew any of them, and
// topod's renewals share one keep-alive stream to etcd); on bolt, topod's
// in-process lease table.

// maxLeaseTTL is etcd's largest lease TTL, in seconds (lease.MaxLeaseTTL).
const maxLeaseTTL = 9_000_000_000

// LeaseGrant is part of pb.LeaseServer.
func (s *Server) LeaseGrant(ctx context.Context, req *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if req.TTL > maxLeaseTTL {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	id, ttl, err := s.opts.Backend.GrantLease(ctx, kv.LeaseID(req.ID), time.Duration(req.TTL)*time.Second)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.LeaseGrantResponse{Header: s.header(s.rev()), ID: int64(id), TTL: int64(ttl / time.Second)}, nil
}

// LeaseRevoke is part of pb.LeaseServer.
func (s *Server) LeaseRevoke(ctx context.Context, req *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	if err := s.opts.Backend.RevokeLease(ctx, kv.LeaseID(req.ID)); err != nil {
		return nil, toStatus(err)
	}
	// The revision of the deletes of its keys, as etcd answers, once the
	// mirrors have them.
	rev, err := s.opts.Backend.CurrentRevision(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	s.awaitWrite(ctx, rev, nil)
	return &pb.LeaseRevokeResponse{Header: s.header(rev)}, nil
}

// LeaseKeepAlive is part of pb.LeaseServer: each request renews its lease
// once; a lease that is gone is answered with TTL 0, as etcd answers.
func (s *Server) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &pb.LeaseKeepAliveResponse{ID: req.ID}
		ttl, err := s.opts.Backend.RenewLease(stream.Context(), kv.LeaseID(req.ID))
		switch {
		case err == nil:
			resp.TTL = int64(ttl / time.Second)
		case !errors.Is(err, kv.ErrLeaseNotFound):
			return toStatus(err)
		}
		resp.Header = s.header(s.rev())
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// LeaseTimeToLive is part of pb.LeaseServer: TTL -1 for a lease that is
// gone, as etcd answers.
func (s *Server) LeaseTimeToLive(ctx context.Context, req *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	st, err := s.opts.Backend.LeaseTimeToLive(ctx, kv.LeaseID(req.ID), req.Keys)
	if errors.Is(err, kv.ErrLeaseNotFound) {
		return &pb.LeaseTimeToLiveResponse{Header: s.header(s.rev()), ID: req.ID, TTL: -1}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.LeaseTimeToLiveResponse{Header: s.header(s.rev()), ID: req.ID, TTL: st.TTL, GrantedTTL: st.Granted}
	for _, k := range st.Keys {
		resp.Keys = append(resp.Keys, []byte(k))
	}
	return resp, nil
}

// LeaseLeases is part of pb.LeaseServer.
func (s *Server) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	ids, err := s.opts.Backend.ListLeases(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.LeaseLeasesResponse{Header: s.header(s.rev())}
	for _, id := range ids {
		resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: int64(id)})
	}
	return resp, nil
}

// rev is the revision headers report where there is no read: the newest a
// mirror has reached.
func (s *Server) rev() int64 {
	var rev int64
	for i := range s.opts.Mirrors {
		rev = max(rev, s.opts.Mirrors[i].Rev())
	}
	return rev
}
