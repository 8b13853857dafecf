package topoplugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"vitess.io/vitess/go/vt/topo"
)

func TestConvertError(t *testing.T) {
	for _, tc := range []struct {
		in   error
		want topo.ErrorCode
	}{
		{status.Error(codes.NotFound, "x"), topo.NoNode},
		{status.Error(codes.AlreadyExists, "x"), topo.NodeExists},
		{status.Error(codes.Aborted, "x"), topo.BadVersion},
		{status.Error(codes.FailedPrecondition, "x"), topo.NodeNotEmpty},
		{status.Error(codes.Canceled, "x"), topo.Interrupted},
		{status.Error(codes.DeadlineExceeded, "x"), topo.Timeout},
		{status.Error(codes.Unavailable, "x"), topo.Timeout},
		{status.Error(codes.Unimplemented, "x"), topo.NoImplementation},
		{status.Error(codes.ResourceExhausted, "x"), topo.ResourceExhausted},
		{context.Canceled, topo.Interrupted},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), topo.Timeout},
	} {
		if got := convertError(tc.in, "/p"); !topo.IsErrType(got, tc.want) {
			t.Errorf("convertError(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	// Anything else keeps topod's message and names the path.
	got := convertError(status.Error(codes.InvalidArgument, "value for /p is 2 bytes, over the 1-byte limit"), "/p")
	var te topo.Error
	if errors.As(got, &te) || !strings.Contains(got.Error(), "over the 1-byte limit") || !strings.Contains(got.Error(), "/p") {
		t.Errorf("InvalidArgument became %v", got)
	}
}

// TestPathsStayUnderRoot: a ".." segment is refused before any request, so a
// Vitess path can never reach outside the connection's root.
func TestPathsStayUnderRoot(t *testing.T) {
	// No server at this address: a request would time out, not fail fast.
	c, err := NewConn("127.0.0.1:1", "/vitess/global")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	for _, p := range []string{"../x", "keyspaces/../../cell1/SrvVSchema", ".."} {
		if _, _, err := c.Get(ctx, p); err == nil || !strings.Contains(err.Error(), `".." segment`) {
			t.Errorf("Get(%q) = %v", p, err)
		}
		if _, err := c.Create(ctx, p, nil); err == nil {
			t.Errorf("Create(%q) worked", p)
		}
		if _, err := c.Lock(ctx, p, ""); err == nil {
			t.Errorf("Lock(%q) worked", p)
		}
	}
	if got, err := c.fullPath("/keyspaces/ks/"); err != nil || got != "/vitess/global/keyspaces/ks" {
		t.Errorf("fullPath = %q, %v", got, err)
	}
	for _, bad := range []struct{ addr, root string }{{"", "/r"}, {" , ", "/r"}, {"127.0.0.1:1", "relative"}} {
		if _, err := NewConn(bad.addr, bad.root); err == nil {
			t.Errorf("NewConn(%q, %q) worked", bad.addr, bad.root)
		}
	}
}
