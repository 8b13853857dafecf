package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{rpctypes.ErrNoLeader, false},
		{rpctypes.ErrGRPCNoLeader, false},
		{status.Error(codes.Unavailable, "connection refused"), false},
		{status.Error(codes.Canceled, "context canceled"), false},
		{status.Error(codes.Internal, "transport closed"), false},
		{context.Canceled, false},
		{errors.New("something else"), false},
		{rpctypes.ErrPermissionDenied, true},
		{rpctypes.ErrInvalidAuthToken, false},
		{status.Error(codes.InvalidArgument, "bad"), true},
		{fmt.Errorf("wrapped: %w", rpctypes.ErrPermissionDenied), true},
	}
	for _, tt := range tests {
		if got := permanent(tt.err); got != tt.want {
			t.Errorf("permanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
