package toposerver

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/pkg/kv"
)

// invalidArgument marks request validation errors.
type invalidArgument struct{ err error }

func (e invalidArgument) Error() string { return e.err.Error() }
func (e invalidArgument) Unwrap() error { return e.err }

func invalid(err error) error { return invalidArgument{err} }

// toStatus maps an error to the gRPC status the plugin turns back into a
// Vitess topo error: NotFound is topo.NoNode, AlreadyExists topo.NodeExists,
// Aborted topo.BadVersion, Canceled topo.Interrupted, DeadlineExceeded
// topo.Timeout. The message keeps the operation and path.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		// Already a status, or wrapping one (the etcd client's, e.g.
		// Unavailable when etcd is unreachable): keep its code.
		return err
	}
	code := codes.Unknown
	var inv invalidArgument
	switch {
	case errors.As(err, &inv):
		code = codes.InvalidArgument
	case errors.Is(err, kv.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, kv.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, kv.ErrBadVersion), errors.Is(err, kv.ErrLeaseNotFound):
		code = codes.Aborted
	case errors.Is(err, kv.ErrCompacted):
		code = codes.OutOfRange
	case errors.Is(err, kv.ErrClosed):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}
