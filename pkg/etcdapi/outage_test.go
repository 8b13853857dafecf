package etcdapi_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/toposerver"
)

// unreachable is a real file blob store whose Get fails while down, as
// an S3 endpoint that stopped answering would; it says on failed when a
// Get has failed.
type unreachable struct {
	blobstore.Store
	mu     sync.Mutex
	down   bool
	failed chan struct{}
}

func (u *unreachable) Get(ctx context.Context, h content.Hash) ([]byte, error) {
	u.mu.Lock()
	down := u.down
	u.mu.Unlock()
	if down {
		select {
		case u.failed <- struct{}{}:
		default:
		}
		return nil, errors.New("blob store unreachable")
	}
	return u.Store.Get(ctx, h)
}

func (u *unreachable) setDown(down bool) {
	u.mu.Lock()
	u.down = down
	u.mu.Unlock()
}

// TestWatchWaitsForUnreadableValue: a watch whose next event is a value
// kept as blobs that cannot be read (the blob store down) is held, not
// canceled: etcd never cancels a watch for a read, and a cancel without a
// compact revision, followed by the answer to a progress request, makes
// clientv3 (up to 3.7) panic (etcd-io/etcd#21969, found by the fault
// suite's blob store restart). Once the blobs can be read the event comes,
// whole, and no progress answer claimed the watch had seen past it before.
func TestWatchWaitsForUnreadableValue(t *testing.T) {
	backend := harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db"))
	files, err := fileblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The writer uploads the blobs; the watched topod, with caches of its
	// own, must read them from the store.
	writer := newClient(t, harness.StartTopod(t, backend, toposerver.Options{Blobs: files}).Addr)
	blobs := &unreachable{Store: files, down: true, failed: make(chan struct{}, 1)}
	cli := newClient(t, harness.StartTopod(t, backend, toposerver.Options{Blobs: blobs}).Addr)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := "/outage/large"
	wch := cli.Watch(ctx, key, clientv3.WithCreatedNotify())
	if resp := <-wch; !resp.Created {
		t.Fatalf("first watch response %+v, want created", resp)
	}
	large := bytes.Repeat([]byte("0123456789abcdef"), 20_000) // 320 KB: blobs
	put, err := writer.Put(ctx, key, string(large))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-blobs.failed:
	case <-ctx.Done():
		t.Fatal("the watched topod never tried to read the value's blobs")
	}
	// Asked while the event is held: answered only once it has been sent.
	if err := cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	// Held through a few more failed reads.
	for range 2 {
		select {
		case <-blobs.failed:
		case resp := <-wch:
			t.Fatalf("while the blobs cannot be read: %+v (canceled %v, err %v)", resp, resp.Canceled, resp.Err())
		case <-ctx.Done():
			t.Fatal("the watch's read was not retried")
		}
	}
	blobs.setDown(false)
	var resp clientv3.WatchResponse
	select {
	case resp = <-wch:
	case <-ctx.Done():
		t.Fatal("the event never came once the blobs could be read")
	}
	if err := resp.Err(); err != nil || resp.Canceled {
		t.Fatalf("watch ended: canceled %v, err %v", resp.Canceled, err)
	}
	if resp.IsProgressNotify() {
		t.Fatalf("progress at revision %d before the event at %d", resp.Header.Revision, put.Header.Revision)
	}
	if len(resp.Events) != 1 || resp.Events[0].Kv.ModRevision != put.Header.Revision || !bytes.Equal(resp.Events[0].Kv.Value, large) {
		t.Fatalf("got %d events, want the put at %d whole", len(resp.Events), put.Header.Revision)
	}
}
