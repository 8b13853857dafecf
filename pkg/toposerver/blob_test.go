package toposerver_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/blobstore/blobtest"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// startWithBlobs serves a fresh bolt store with a file blob store (and
// gcGrace, 0 for the default), and returns a raw client and the blob store.
func startWithBlobs(t *testing.T, gcGrace time.Duration) (topodv1.TopoClient, *fileblob.Store) {
	t.Helper()
	b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	store, err := fileblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := harness.StartTopod(t, b, toposerver.Options{Blobs: store, GCGrace: gcGrace})
	cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := topodv1.NewTopoClient(cc)
	return client, store
}

// TestBlobRefresh: MissingBlobs and PutBlobs give a stored blob older than
// GCGrace/2 a new stored time (so garbage collection keeps it while the
// writer writes its record), and leave younger blobs alone.
func TestBlobRefresh(t *testing.T) {
	ctx := t.Context()
	client, store := startWithBlobs(t, time.Hour)

	tests := []struct {
		name      string
		age       time.Duration
		refreshed bool
		call      func(h content.Hash, data []byte) error
	}{
		{"MissingBlobs, old", 2 * time.Hour, true, func(h content.Hash, _ []byte) error {
			resp, err := client.MissingBlobs(ctx, &topodv1.MissingBlobsRequest{Hashes: [][]byte{h[:]}})
			if err == nil && len(resp.Missing) != 0 {
				t.Errorf("MissingBlobs reports a stored blob missing")
			}
			return err
		}},
		{"MissingBlobs, older than grace/2", 40 * time.Minute, true, func(h content.Hash, _ []byte) error {
			_, err := client.MissingBlobs(ctx, &topodv1.MissingBlobsRequest{Hashes: [][]byte{h[:]}})
			return err
		}},
		{"MissingBlobs, young", 20 * time.Minute, false, func(h content.Hash, _ []byte) error {
			_, err := client.MissingBlobs(ctx, &topodv1.MissingBlobsRequest{Hashes: [][]byte{h[:]}})
			return err
		}},
		{"PutBlobs of a stored blob, old", 2 * time.Hour, true, func(h content.Hash, data []byte) error {
			_, err := client.PutBlobs(ctx, &topodv1.PutBlobsRequest{Blobs: []*topodv1.Blob{{Hash: h[:], Data: data}}})
			return err
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, data := blobtest.Blob(uint64(i), 100)
			if err := store.Put(ctx, h, data); err != nil {
				t.Fatal(err)
			}
			aged := time.Now().Add(-tt.age)
			if err := os.Chtimes(store.Path(h), aged, aged); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := tt.call(h, data); err != nil {
				t.Fatal(err)
			}
			info, err := os.Stat(store.Path(h))
			if err != nil {
				t.Fatal(err)
			}
			if got := !info.ModTime().Before(start); got != tt.refreshed {
				t.Fatalf("blob stored %v ago: time %v after the call, refreshed %v; want refreshed %v", tt.age, info.ModTime(), got, tt.refreshed)
			}
		})
	}
}

// TestGetBlobs: the blobs come back in the order asked, spread over several
// messages when large; bad hashes, too many hashes and a missing blob get
// a clear status.
func TestGetBlobs(t *testing.T) {
	ctx := t.Context()
	client, store := startWithBlobs(t, 0)

	// 600 blobs of 8 KiB: 4.7 MiB, more than one window and one message.
	var hashes [][]byte
	want := map[content.Hash][]byte{}
	for i := range 600 {
		h, data := blobtest.Blob(uint64(i), 8<<10)
		if err := store.Put(ctx, h, data); err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h[:])
		want[h] = data
	}
	missing, _ := blobtest.Blob(9999, 10)

	get := func(hashes [][]byte) (blobs []*topodv1.Blob, messages int, err error) {
		stream, err := client.GetBlobs(ctx, &topodv1.GetBlobsRequest{Hashes: hashes})
		if err != nil {
			return nil, 0, err
		}
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return blobs, messages, nil
			}
			if err != nil {
				return blobs, messages, err
			}
			blobs = append(blobs, msg.Blobs...)
			messages++
		}
	}
	blobs, messages, err := get(hashes)
	if err != nil {
		t.Fatal(err)
	}
	if len(blobs) != len(hashes) || messages < 5 {
		t.Fatalf("%d blobs in %d messages, want %d in at least 5", len(blobs), messages, len(hashes))
	}
	for i, blob := range blobs {
		if !bytes.Equal(blob.Hash, hashes[i]) || !bytes.Equal(blob.Data, want[content.Hash(blob.Hash)]) {
			t.Fatalf("blob %d is not the one asked for", i)
		}
	}

	for _, tc := range []struct {
		name   string
		hashes [][]byte
		code   codes.Code
		want   string
	}{
		{"short hash", [][]byte{hashes[0], []byte("short")}, codes.InvalidArgument, "blob hash of 5 bytes"},
		{"too many", make([][]byte, 1<<16+1), codes.InvalidArgument, "over the 65536 limit"},
		{"missing", [][]byte{hashes[0], missing[:]}, codes.NotFound, missing.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := get(tc.hashes)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %v with %q", err, tc.code, tc.want)
			}
		})
	}
}

// TestBlobRequestLimits: a PutBlobs of more blobs, a GetBlobs or a
// MissingBlobs of more hashes than its configured limit is refused with
// InvalidArgument naming the limit and its flag, stores nothing, and is
// counted; at the limit each is served.
func TestBlobRequestLimits(t *testing.T) {
	ctx := t.Context()
	b := harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db"))
	store, err := fileblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := harness.StartTopod(t, b, toposerver.Options{Blobs: store, MaxPutBlobs: 2, MaxGetBlobs: 2, MaxMissingBlobs: 2})
	cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := topodv1.NewTopoClient(cc)
	var blobs []*topodv1.Blob
	var hashes [][]byte
	for i := range 3 {
		h, data := blobtest.Blob(uint64(i), 100)
		blobs = append(blobs, &topodv1.Blob{Hash: h[:], Data: data})
		hashes = append(hashes, h[:])
	}
	getBlobs := func(hashes [][]byte) error {
		stream, err := client.GetBlobs(ctx, &topodv1.GetBlobsRequest{Hashes: hashes})
		if err != nil {
			return err
		}
		for {
			if _, err := stream.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	}
	for _, tc := range []struct {
		name, limit, flag string
		call              func(n int) error
	}{
		{"put blobs", "put_blobs", "--max-put-blobs", func(n int) error {
			_, err := client.PutBlobs(ctx, &topodv1.PutBlobsRequest{Blobs: blobs[:n]})
			return err
		}},
		{"get blobs", "get_blobs", "--max-get-blobs", func(n int) error { return getBlobs(hashes[:n]) }},
		{"missing blobs", "missing_blobs", "--max-missing-blobs", func(n int) error {
			_, err := client.MissingBlobs(ctx, &topodv1.MissingBlobsRequest{Hashes: hashes[:n]})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(3)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "3 ") || !strings.Contains(err.Error(), "over the 2 limit ("+tc.flag+")") {
				t.Errorf("3 at a limit of 2: %v; want InvalidArgument naming %s", err, tc.flag)
			}
			if got := metricValue(t, srv, "topod_limit_refusals_total", "limit", tc.limit); got != 1 {
				t.Errorf("%v refusals counted: %v, want 1", tc.limit, got)
			}
			if missing, err := store.Missing(ctx, []content.Hash{content.Hash(hashes[2])}); err != nil || len(missing) != 1 {
				t.Errorf("after a refusal, the third blob: missing %d, %v; want not stored", len(missing), err)
			}
			if err := tc.call(2); err != nil {
				t.Errorf("2 at a limit of 2: %v", err)
			}
		})
	}
}
