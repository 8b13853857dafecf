package toposerver

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/topoerr"
)

// invalidArgument marks request validation errors.
type invalidArgument struct{ err error }

func (e invalidArgument) Error() string { return e.err.Error() }
func (e invalidArgument) Unwrap() error { return e.err }

func invalid(err error) error { return invalidArgument{err} }

// toStatus maps an error to the status topod answers. Backend errors that
// are Vitess topo errors travel as the code package topoerr gives their
// kind (kv.ErrNotFound is topo.NoNode, kv.ErrExists topo.NodeExists,
// kv.ErrBadVersion and kv.ErrLeaseNotFound topo.BadVersion, context errors
// topo.Interrupted and topo.Timeout); the others as InvalidArgument
// (request validation), OutOfRange (a compacted revision), Unavailable (a
// closed backend) or Unknown. The message keeps the operation and path.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		// Already a status, or wrapping one (the etcd client's, e.g.
		// Unavailable when etcd is unreachable): keep its code.
		return err
	}
	var inv invalidArgument
	switch {
	case errors.As(err, &inv):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, kv.ErrNotFound):
		return topoerr.Status(topo.NoNode, err)
	case errors.Is(err, kv.ErrExists):
		return topoerr.Status(topo.NodeExists, err)
	case errors.Is(err, kv.ErrBadVersion), errors.Is(err, kv.ErrLeaseNotFound):
		return topoerr.Status(topo.BadVersion, err)
	case errors.Is(err, context.Canceled):
		return topoerr.Status(topo.Interrupted, err)
	case errors.Is(err, context.DeadlineExceeded):
		return topoerr.Status(topo.Timeout, err)
	case errors.Is(err, kv.ErrCompacted):
		return status.Error(codes.OutOfRange, err.Error())
	case errors.Is(err, kv.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}
