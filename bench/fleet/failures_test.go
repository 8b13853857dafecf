package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/vterrors"
)

func TestErrClass(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{topo.NewError(topo.Timeout, "/keyspaces/ks1"), "timeout"},
		{fmt.Errorf("GetKeyspace: %w", topo.NewError(topo.Timeout, "/keyspaces/ks1")), "timeout"},
		{topo.NewError(topo.Interrupted, "x"), "interrupted"},
		{topo.NewError(topo.ResourceExhausted, "x"), "resource exhausted"},
		{fmt.Errorf("refresh: %w", context.DeadlineExceeded), "deadline exceeded"},
		{context.Canceled, "canceled"},
		{status.Error(codes.Unavailable, "connection refused"), "grpc Unavailable"},
		{vterrors.Wrapf(topo.NewError(topo.Timeout, "/keyspaces/ks1/shards"), "FindAllShardsInKeyspace(ks1): List"), "timeout"},
		{vterrors.Wrapf(context.DeadlineExceeded, "GetShard(ks1, -80) failed"), "deadline exceeded"},
		{errors.New("boom"), "other"},
	} {
		if got := errClass(tc.err); got != tc.want {
			t.Errorf("errClass(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestCallsFailed(t *testing.T) {
	var c Calls
	c.add(CallGet, nil)
	c.add(CallGet, topo.NewError(topo.NoNode, "a")) // an answer, not a failure
	c.add(CallGet, topo.NewError(topo.Timeout, "a"))
	c.add(CallGet, topo.NewError(topo.Timeout, "b"))
	before := c.Failed()
	c.add(CallList, status.Error(codes.Unavailable, "down"))
	got := c.Snapshot()
	total := int64(0)
	for _, n := range got {
		total += n
	}
	if got[CallGet] != 4 || got[CallList] != 1 || total != 5 {
		t.Errorf("calls %v, want 4 Gets, 1 List and nothing else", got)
	}
	want := map[string]int64{"Get: timeout": 2, "List: grpc Unavailable": 1}
	if got := c.Failed(); !maps.Equal(got, want) {
		t.Errorf("failed %v, want %v", got, want)
	}
	if got, want := since(c.Failed(), before), map[string]int64{"List: grpc Unavailable": 1}; !maps.Equal(got, want) {
		t.Errorf("since %v, want %v", got, want)
	}
	if got := since(before, before); got != nil {
		t.Errorf("since of no change %v, want nil", got)
	}
}
