package topoerr

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

// local are the kinds Vitess uses only inside a process: topod never sends
// them.
var local = map[topo.ErrorCode]bool{
	topo.PartialResult:            true,
	topo.NoUpdateNeeded:           true,
	topo.NoReadOnlyImplementation: true,
}

// TestKindsAreVitess: Kinds is every kind of the Vitess built with, so a
// kind a Vitess upgrade adds fails here until the table says how it
// travels.
func TestKindsAreVitess(t *testing.T) {
	for i, kind := range Kinds {
		if int(kind) != i {
			t.Errorf("Kinds[%d] = %d", i, kind)
		}
		if strings.HasPrefix(topo.NewError(kind, "/p").Error(), "unknown code") {
			t.Errorf("Kinds[%d] is unknown to Vitess", i)
		}
	}
	next := topo.ErrorCode(len(Kinds))
	if msg := topo.NewError(next, "/p").Error(); !strings.HasPrefix(msg, "unknown code") {
		t.Errorf("Vitess has a kind Kinds lacks: %d (%q): add it to Kinds and say in wire how it travels", next, msg)
	}
}

// TestRoundTrip walks every kind through the table: a kind topod sends
// comes back as itself, with its code kept; one it never sends has no code.
func TestRoundTrip(t *testing.T) {
	codesSeen := map[codes.Code]topo.ErrorCode{}
	for _, kind := range Kinds {
		name := topo.NewError(kind, "").Error()
		t.Run(name, func(t *testing.T) {
			code, ok := Code(kind)
			if local[kind] {
				if ok {
					t.Fatalf("Code(%d) = %v, but topod never sends it", kind, code)
				}
				return
			}
			if !ok {
				t.Fatalf("Code(%d): no code", kind)
			}
			if other, dup := codesSeen[code]; dup {
				t.Fatalf("kinds %d and %d share %v", other, kind, code)
			}
			codesSeen[code] = kind
			if back, ok := Kind(code); !ok || back != kind {
				t.Fatalf("Kind(Code(%d) = %v) = %d, %v", kind, code, back, ok)
			}
			sent := Errorf(kind, "get %s: cause", "/p")
			got := FromError(sent, "/p")
			if !topo.IsErrType(got, kind) {
				t.Errorf("FromError(%v) = %v, not that kind", sent, got)
			}
			if status.Code(got) != code {
				t.Errorf("status.Code(FromError(%v)) = %v, want %v", sent, status.Code(got), code)
			}
			if !strings.Contains(got.Error(), "get /p: cause") {
				t.Errorf("FromError(%v) = %q: lost topod's message", sent, got)
			}
		})
	}
}

// TestFromError: what the plugin makes of statuses that are no kind of the
// table, of context errors, and of other errors.
func TestFromError(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       error
		kind     topo.ErrorCode
		isKind   bool
		code     codes.Code
		contains string
	}{
		{"unavailable is a timeout", status.Error(codes.Unavailable, "no topod"), topo.Timeout, true, codes.Unavailable, "no topod"},
		{"invalid argument keeps its code", status.Error(codes.InvalidArgument, "value over the 1-byte limit"), 0, false, codes.InvalidArgument, "over the 1-byte limit"},
		{"permission denied keeps its code", status.Error(codes.PermissionDenied, "denied"), 0, false, codes.PermissionDenied, "denied"},
		{"blob not stored is no NodeNotEmpty", BlobNotStored("write %s: blob x is not stored", "/p"), 0, false, codes.FailedPrecondition, "blob x is not stored"},
		{"wrapped status", fmt.Errorf("list: %w", status.Error(codes.NotFound, "gone")), topo.NoNode, true, codes.NotFound, "gone"},
		{"canceled context", fmt.Errorf("wait: %w", context.Canceled), topo.Interrupted, true, codes.Canceled, "context canceled"},
		{"expired context", context.DeadlineExceeded, topo.Timeout, true, codes.DeadlineExceeded, "deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FromError(tc.in, "/p")
			var te topo.Error
			if isTopo := errors.As(got, &te); isTopo != tc.isKind || (tc.isKind && !topo.IsErrType(got, tc.kind)) {
				t.Errorf("FromError(%v) = %v: topo error %v, want kind %d: %v", tc.in, got, isTopo, tc.kind, tc.isKind)
			}
			if status.Code(got) != tc.code {
				t.Errorf("status.Code(%v) = %v, want %v", got, status.Code(got), tc.code)
			}
			if !errors.Is(got, tc.in) {
				t.Errorf("FromError(%v) = %v does not wrap it", tc.in, got)
			}
			if !strings.Contains(got.Error(), tc.contains) || !strings.Contains(got.Error(), "/p") {
				t.Errorf("FromError(%v) = %q, want the path and %q", tc.in, got, tc.contains)
			}
		})
	}
	if got := FromError(context.Canceled, "/p"); !errors.Is(got, context.Canceled) {
		t.Errorf("FromError(context.Canceled) = %v, not context.Canceled", got)
	}
	plain := errors.New("not a status")
	if got := FromError(plain, "/p"); got != plain {
		t.Errorf("FromError(%v) = %v, want it as is", plain, got)
	}
	if FromError(nil, "/p") != nil {
		t.Error("FromError(nil) != nil")
	}
	if !IsBlobNotStored(BlobNotStored("x")) || IsBlobNotStored(status.Error(codes.FailedPrecondition, "x")) {
		t.Error("IsBlobNotStored does not tell the blob status from a bare FAILED_PRECONDITION")
	}
}
