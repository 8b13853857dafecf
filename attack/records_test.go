package attack

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/pkg/blobgc"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/record"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// TestReservedKeys: no client may write, delete, lock or campaign under
// /topod/, topod's own keys, on either API: a permanent /topod/gc/lock
// would stop blob collection for good. Each attempt is refused with
// PermissionDenied and the key never appears.
func TestReservedKeys(t *testing.T) {
	backends(t, toposerver.Options{}, func(t *testing.T, tg *target) {
		ctx := t.Context()
		lock := blobgc.LockKey
		refused := func(what string, err error) {
			t.Helper()
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "/topod/") {
				t.Errorf("%s: %v; want PermissionDenied naming /topod/", what, err)
			}
		}
		_, err := tg.client.Create(ctx, &topodv1.CreateRequest{Path: lock, Contents: []byte("mine")})
		refused("Create "+lock, err)
		_, err = tg.client.Update(ctx, &topodv1.UpdateRequest{Path: lock, Contents: []byte("mine")})
		refused("Update "+lock, err)
		_, err = tg.client.Delete(ctx, &topodv1.DeleteRequest{Path: lock})
		refused("Delete "+lock, err)
		lk, err := tg.client.Lock(ctx)
		if err == nil {
			if err = lk.Send(&topodv1.LockRequest{Request: &topodv1.LockRequest_Acquire{Acquire: &topodv1.LockAcquire{Path: "/topod/gc"}}}); err == nil {
				_, err = lk.Recv()
			}
		}
		refused("Lock /topod/gc", err)
		cp, err := tg.client.Campaign(ctx)
		if err == nil {
			if err = cp.Send(&topodv1.CampaignRequest{Request: &topodv1.CampaignRequest_Start{Start: &topodv1.CampaignStart{Path: "/topod/gc", Id: "me"}}}); err == nil {
				_, err = cp.Recv()
			}
		}
		refused("Campaign /topod/gc", err)

		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{tg.srv.Addr}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		_, err = cli.Put(ctx, lock, "mine")
		refused("etcd Put "+lock, err)
		_, err = cli.Delete(ctx, "/", clientv3.WithFromKey())
		refused("etcd DeleteRange from /", err)
		_, err = cli.Txn(ctx).Then(clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut(lock, "mine")}, nil)).Commit()
		refused("etcd Txn with a nested Put of "+lock, err)
		// Keys beside it are the clients' own.
		if _, err := cli.Put(ctx, "/topodx/k", "v"); err != nil {
			t.Errorf("etcd Put /topodx/k: %v", err)
		}
		if _, err := tg.client.Get(ctx, &topodv1.GetRequest{Path: lock, Linearizable: true}); status.Code(err) != codes.NotFound {
			t.Errorf("%s after the refusals: %v; want NotFound", lock, err)
		}
	})
}

// TestForgedRecords: a file whose value is a record topod cannot read is
// refused: an unknown codec, a root blob that is not a manifest (the blob
// collector's mark phase reads every record, and stopped at the first
// such one); and a lock file's contents over a file's size limit.
func TestForgedRecords(t *testing.T) {
	backends(t, toposerver.Options{}, func(t *testing.T, tg *target) {
		ctx := t.Context()
		tg.populate(t, 1)
		junk := []byte("not a manifest, but stored as a blob")
		h := content.Sum(junk)
		if _, err := tg.client.PutBlobs(ctx, &topodv1.PutBlobsRequest{Blobs: []*topodv1.Blob{{Hash: h[:], Data: junk}}}); err != nil {
			t.Fatal(err)
		}
		unknown, err := record.RefValue(topodv1.Codec(99), h, int64(len(junk)))
		if err != nil {
			t.Fatal(err)
		}
		notManifest, err := record.RefValue(topodv1.Codec_CODEC_CHUNKS, h, int64(len(junk)))
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name  string
			value []byte
		}{
			{"an unknown codec", unknown},
			{"a root that is not a manifest", notManifest},
		} {
			_, err := tg.client.Create(ctx, &topodv1.CreateRequest{Path: "/attack/forged", Contents: tc.value})
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("file with %s: %v; want InvalidArgument", tc.name, err)
			}
		}
		// Lock contents get a file's checks. (A record cannot be sent as
		// lock contents: the field is a string, which gRPC refuses to
		// carry unless it is UTF-8, and a record is binary.)
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		lk, err := tg.client.Lock(lctx)
		if err == nil {
			big := strings.Repeat("x", 2<<20)
			if err = lk.Send(&topodv1.LockRequest{Request: &topodv1.LockRequest_Acquire{Acquire: &topodv1.LockAcquire{Path: "/attack/ks00000", Contents: big}}}); err == nil {
				_, err = lk.Recv()
			}
		}
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "limit") {
			t.Errorf("lock contents of 2 MiB: %v; want InvalidArgument naming the limit", err)
		}
		if _, err := tg.client.Get(ctx, &topodv1.GetRequest{Path: "/attack/forged", Linearizable: true}); status.Code(err) != codes.NotFound {
			t.Errorf("/attack/forged after the refusals: %v; want NotFound", err)
		}
		if _, err := tg.client.ListDir(ctx, &topodv1.ListDirRequest{Path: "/attack/ks00000/locks", Linearizable: true}); status.Code(err) != codes.NotFound {
			t.Errorf("/attack/ks00000/locks after the refusals: %v; want NotFound", err)
		}
	})
}
