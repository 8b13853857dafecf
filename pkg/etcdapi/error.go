package etcdapi

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/pkg/kv"
)

// toStatus maps an error to the status etcd answers for it, so that
// clients (clientv3's rpctypes) recognise it: the kv errors to etcd's own
// ("etcdserver: mvcc: required revision has been compacted", ...), a
// context's end to Canceled or DeadlineExceeded, and anything else (the
// backend or the blob store failing) to Unavailable with its message,
// which clients retry.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, m := range []struct {
		kv, etcd error
	}{
		{kv.ErrCompacted, rpctypes.ErrGRPCCompacted},
		{kv.ErrFutureRevision, rpctypes.ErrGRPCFutureRev},
		{kv.ErrDuplicateKey, rpctypes.ErrGRPCDuplicateKey},
		{kv.ErrNotFound, rpctypes.ErrGRPCKeyNotFound},
		{kv.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
		{kv.ErrLeaseExists, rpctypes.ErrGRPCLeaseExist},
	} {
		if errors.Is(err, m.kv) {
			return m.etcd
		}
	}
	// etcd's own answer (the etcd backend), with its code.
	if e := (rpctypes.EtcdError{}); errors.As(err, &e) {
		return status.Error(e.Code(), e.Error())
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unavailable, "topod: "+err.Error())
}

// unimplemented answers what topod does not serve of etcd's API.
func unimplemented(what string) error {
	return status.Errorf(codes.Unimplemented, "topod does not serve etcd's %s: use etcd directly (topod keeps its data in the etcd named by its --backend)", what)
}
