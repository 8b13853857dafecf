package toposerver_test

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// start serves a fresh bolt store with a 1 KiB value limit and returns a raw
// client and the store.
func start(t *testing.T) (topodv1.TopoClient, kv.Backend) {
	t.Helper()
	b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	srv := harness.StartTopod(t, b, toposerver.Options{MaxValueBytes: 1024})
	cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return topodv1.NewTopoClient(cc), b
}

// TestBadInputChangesNothing: every malformed request gets InvalidArgument
// with a message naming the problem, and the store is left as it was.
func TestBadInputChangesNothing(t *testing.T) {
	ctx := t.Context()
	client, store := start(t)
	if _, err := client.Create(ctx, &topodv1.CreateRequest{Path: "/vitess/global/keyspaces/ks/Keyspace", Contents: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	before := dump(t, store)
	big := make([]byte, 1025)

	for _, tc := range []struct {
		name string
		call func() error
		want string // in the message
	}{
		{"empty path", func() error { _, err := client.Get(ctx, &topodv1.GetRequest{}); return err }, "empty"},
		{"relative path", func() error {
			_, err := client.Create(ctx, &topodv1.CreateRequest{Path: "vitess/x", Contents: []byte("x")})
			return err
		}, "relative"},
		{"dot-dot", func() error {
			_, err := client.Update(ctx, &topodv1.UpdateRequest{Path: "/vitess/global/../x", Contents: []byte("x")})
			return err
		}, `".."`},
		{"dot", func() error {
			_, err := client.Update(ctx, &topodv1.UpdateRequest{Path: "/vitess/./x", Contents: []byte("x")})
			return err
		}, `"."`},
		{"empty segment", func() error {
			_, err := client.Create(ctx, &topodv1.CreateRequest{Path: "/vitess//x", Contents: []byte("x")})
			return err
		}, "empty segment"},
		{"trailing slash", func() error {
			_, err := client.Create(ctx, &topodv1.CreateRequest{Path: "/vitess/x/", Contents: []byte("x")})
			return err
		}, "ends with /"},
		{"root as a file", func() error {
			_, err := client.Create(ctx, &topodv1.CreateRequest{Path: "/", Contents: []byte("x")})
			return err
		}, "not a file"},
		{"NUL byte", func() error {
			_, err := client.Create(ctx, &topodv1.CreateRequest{Path: "/vitess/a\x00b", Contents: []byte("x")})
			return err
		}, "NUL"},
		{"value over the limit on create", func() error {
			_, err := client.Create(ctx, &topodv1.CreateRequest{Path: "/vitess/big", Contents: big})
			return err
		}, "over the 1024-byte limit"},
		{"value over the limit on update", func() error {
			_, err := client.Update(ctx, &topodv1.UpdateRequest{Path: "/vitess/global/keyspaces/ks/Keyspace", Contents: big})
			return err
		}, "over the 1024-byte limit"},
		{"negative version", func() error {
			_, err := client.Delete(ctx, &topodv1.DeleteRequest{Path: "/vitess/global/keyspaces/ks/Keyspace", Version: -1})
			return err
		}, "negative version"},
		{"version zero in GetVersion", func() error {
			_, err := client.GetVersion(ctx, &topodv1.GetVersionRequest{Path: "/vitess/global/keyspaces/ks/Keyspace"})
			return err
		}, "versions start at 1"},
		{"relative ListDir", func() error { _, err := client.ListDir(ctx, &topodv1.ListDirRequest{Path: "keyspaces"}); return err }, "relative"},
		{"lock without acquire", func() error {
			stream, err := client.Lock(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&topodv1.LockRequest{Request: &topodv1.LockRequest_Check{Check: &topodv1.LockCheck{}}}); err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}, "first request must be an acquire"},
		{"lock on a dot-dot path", func() error {
			stream, err := client.Lock(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&topodv1.LockRequest{Request: &topodv1.LockRequest_Acquire{Acquire: &topodv1.LockAcquire{Path: "/vitess/../etc"}}}); err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}, `".."`},
		{"watch of a relative path", func() error {
			recv, err := watchOne(ctx, client, "x", false, 0)
			if err != nil {
				return err
			}
			_, err = recv()
			return err
		}, "relative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			if !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Errorf("message %q does not say %q", status.Convert(err).Message(), tc.want)
			}
		})
	}
	if after := dump(t, store); after != before {
		t.Errorf("store changed by rejected requests:\nbefore %s\nafter  %s", before, after)
	}
}

func dump(t *testing.T, store kv.Backend) string {
	t.Helper()
	kvs, _, err := store.List(t.Context(), "/", false)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range kvs {
		b.WriteString(e.Key + "=" + string(e.Value) + ";")
	}
	return b.String()
}
