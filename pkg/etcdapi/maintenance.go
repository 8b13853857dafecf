package etcdapi

import (
	"context"
	"net/url"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// This file answers what etcdctl's endpoint commands and clientv3's
// endpoint sync ask of Maintenance and Cluster, describing topod as the
// one member of its cluster. The rest (defragment, snapshots, alarms,
// member changes, moving the leader, hashes) is etcd's own business and
// answers Unimplemented, saying so.

// Status is part of pb.MaintenanceServer.
func (s *Server) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	rev := s.rev()
	// The data held in memory; at least 1: etcdctl's endpoint status
	// table divides by it.
	size := int64(1)
	for i := range s.opts.Mirrors {
		size += s.opts.Mirrors[i].Stats().Bytes
	}
	return &pb.StatusResponse{
		Header:    s.header(rev),
		Version:   s.opts.Version,
		Leader:    s.memberID,
		RaftIndex: uint64(rev), RaftAppliedIndex: uint64(rev), RaftTerm: 1,
		DbSize: size, DbSizeInUse: size,
		StorageVersion: "3.6.0",
	}, nil
}

// MemberList is part of pb.ClusterServer.
func (s *Server) MemberList(ctx context.Context, _ *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	return &pb.MemberListResponse{
		Header:  s.header(0), // no revision, as etcd's
		Members: []*pb.Member{{ID: s.memberID, Name: s.opts.Name, ClientURLs: []string{s.clientURL()}}},
	}, nil
}

// clientURL is topod's address as a URL, as etcd lists its members'.
func (s *Server) clientURL() string {
	u := url.URL{Scheme: "http", Host: s.opts.Address}
	if s.opts.TLS {
		u.Scheme = "https"
	}
	return u.String()
}

// Alarm is part of pb.MaintenanceServer: topod raises none.
func (s *Server) Alarm(ctx context.Context, req *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if req.Action != pb.AlarmRequest_GET {
		return nil, unimplemented("Alarm " + req.Action.String())
	}
	return &pb.AlarmResponse{Header: s.header(s.rev())}, nil
}

func (s *Server) Defragment(context.Context, *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	return nil, unimplemented("Defragment")
}

func (s *Server) Hash(context.Context, *pb.HashRequest) (*pb.HashResponse, error) {
	return nil, unimplemented("Hash")
}

func (s *Server) HashKV(context.Context, *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	return nil, unimplemented("HashKV")
}

func (s *Server) Snapshot(*pb.SnapshotRequest, pb.Maintenance_SnapshotServer) error {
	return unimplemented("Snapshot")
}

func (s *Server) MoveLeader(context.Context, *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	return nil, unimplemented("MoveLeader")
}

func (s *Server) Downgrade(context.Context, *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	return nil, unimplemented("Downgrade")
}

func (s *Server) MemberAdd(context.Context, *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	return nil, unimplemented("MemberAdd")
}

func (s *Server) MemberRemove(context.Context, *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	return nil, unimplemented("MemberRemove")
}

func (s *Server) MemberUpdate(context.Context, *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	return nil, unimplemented("MemberUpdate")
}

func (s *Server) MemberPromote(context.Context, *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return nil, unimplemented("MemberPromote")
}
