package etcdapi

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/topod-io/topod/pkg/authz"
	"github.com/topod-io/topod/pkg/kvmirror"
)

// Accesses is what an etcd request needs from the authorization policy,
// and whether req is one of the etcd API's requests at all. Reads of a
// range need read over it; a Put or single-key delete needs write on its
// key; a delete of a range (a directory) needs admin over it; a Txn needs
// read for its compares and what its operations need; leases, which have
// no path, need write anywhere; compaction, snapshots and membership
// changes need admin over everything.
func Accesses(req any) ([]authz.Access, bool) {
	switch r := req.(type) {
	case *pb.RangeRequest:
		return []authz.Access{rangeAccess(authz.Read, r.Key, r.RangeEnd)}, true
	case *pb.PutRequest:
		return []authz.Access{{Role: authz.Write, Key: string(r.Key)}}, true
	case *pb.DeleteRangeRequest:
		if len(r.RangeEnd) == 0 {
			return []authz.Access{{Role: authz.Write, Key: string(r.Key)}}, true
		}
		return []authz.Access{rangeAccess(authz.Admin, r.Key, r.RangeEnd)}, true
	case *pb.TxnRequest:
		return txnAccesses(r), true
	case *pb.WatchRequest:
		if c := r.GetCreateRequest(); c != nil {
			return []authz.Access{rangeAccess(authz.Read, c.Key, c.RangeEnd)}, true
		}
		return nil, true // cancel, progress
	case *pb.LeaseGrantRequest, *pb.LeaseRevokeRequest, *pb.LeaseKeepAliveRequest:
		return []authz.Access{{Role: authz.Write, Anywhere: true}}, true
	case *pb.LeaseTimeToLiveRequest, *pb.LeaseLeasesRequest, *pb.StatusRequest, *pb.MemberListRequest:
		return []authz.Access{{Role: authz.Read, Anywhere: true}}, true
	case *pb.AlarmRequest:
		if r.Action == pb.AlarmRequest_GET {
			return []authz.Access{{Role: authz.Read, Anywhere: true}}, true
		}
		return []authz.Access{everything(authz.Admin)}, true
	case *pb.CompactionRequest, *pb.DefragmentRequest, *pb.HashRequest, *pb.HashKVRequest,
		*pb.SnapshotRequest, *pb.MoveLeaderRequest, *pb.DowngradeRequest,
		*pb.MemberAddRequest, *pb.MemberRemoveRequest, *pb.MemberUpdateRequest, *pb.MemberPromoteRequest:
		return []authz.Access{everything(authz.Admin)}, true
	}
	return nil, false
}

// txnAccesses: read for every compare's range, and what each operation of
// both branches needs (either may run).
func txnAccesses(t *pb.TxnRequest) []authz.Access {
	var acc []authz.Access
	for _, c := range t.Compare {
		acc = append(acc, rangeAccess(authz.Read, c.Key, c.RangeEnd))
	}
	for _, op := range append(append([]*pb.RequestOp(nil), t.Success...), t.Failure...) {
		var r any
		switch o := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			r = o.RequestRange
		case *pb.RequestOp_RequestPut:
			r = o.RequestPut
		case *pb.RequestOp_RequestDeleteRange:
			r = o.RequestDeleteRange
		case *pb.RequestOp_RequestTxn:
			r = o.RequestTxn
		default:
			acc = append(acc, everything(authz.Admin))
			continue
		}
		a, _ := Accesses(r)
		acc = append(acc, a...)
	}
	return acc
}

// rangeAccess is role over etcd's range [key, end): one key when end is
// empty, a prefix when end is the prefix's end, and otherwise (a range no
// path prefix describes, or every key from key on) everything.
func rangeAccess(role authz.Role, key, end []byte) authz.Access {
	switch {
	case len(end) == 0:
		return authz.Access{Role: role, Key: string(key)}
	case len(key) > 0 && string(end) == kvmirror.PrefixEnd(string(key)):
		return authz.Access{Role: role, Key: string(key), Prefix: true}
	}
	return everything(role)
}

// everything is role over every key.
func everything(role authz.Role) authz.Access {
	return authz.Access{Role: role, Key: "/", Prefix: true}
}
