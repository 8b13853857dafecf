package topoplugin

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"vitess.io/vitess/go/vt/topo"
)

// convertError maps topod's gRPC statuses (and context errors) to Vitess's
// topo errors, so Vitess behaves as it does with etcd2.
func convertError(err error, nodePath string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return topo.NewError(topo.Interrupted, nodePath)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return topo.NewError(topo.Timeout, nodePath)
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.NotFound:
		return topo.NewError(topo.NoNode, nodePath)
	case codes.AlreadyExists:
		return topo.NewError(topo.NodeExists, nodePath)
	case codes.Aborted:
		return topo.NewError(topo.BadVersion, nodePath)
	case codes.FailedPrecondition:
		return topo.NewError(topo.NodeNotEmpty, nodePath)
	case codes.Canceled:
		return topo.NewError(topo.Interrupted, nodePath)
	case codes.DeadlineExceeded, codes.Unavailable:
		// As etcd2topo: an unreachable store is a timeout to Vitess.
		return topo.NewError(topo.Timeout, nodePath)
	case codes.Unimplemented:
		return topo.NewError(topo.NoImplementation, nodePath)
	case codes.ResourceExhausted:
		return topo.NewError(topo.ResourceExhausted, nodePath)
	default:
		return fmt.Errorf("topod %s: %s", nodePath, st.Message())
	}
}
