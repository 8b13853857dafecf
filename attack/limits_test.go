package attack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/pkg/blobstore/blobtest"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// flood is how many watch creates the never-read stream is sent at most.
const flood = 1_000_000

// heapBound is what a flood on one never-read stream may add to the
// process's live heap (topod, etcd and the test's own client): the
// default limits hold it to 20,000 watches and 100,000 waiting entries.
const heapBound = 128 << 20

// TestNeverReadStream: a client opens one WatchStream, never reads it,
// and sends up to a million watch creates, of one file each or of a whole
// directory. Once what waits to be sent reaches --max-stream-backlog,
// topod stops reading the stream and ends it (the client's next sends
// block for good: its stream is dead), well before a million; its heap
// grows by less than heapBound, and it opens no backend watch for them
// (etcd's watcher count unchanged). Before the limits, 100,000 recursive
// creates took topod from 226 MiB to 17.5 GiB.
func TestNeverReadStream(t *testing.T) {
	for _, tc := range []struct {
		name      string
		recursive bool
	}{
		{"files", false},
		{"directories", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backends(t, toposerver.Options{}, func(t *testing.T, tg *target) {
				const files = 2_000
				tg.populate(t, files)
				upstream := tg.metric(t, "topod_upstream_watches")
				var etcd0 float64
				if tg.etcd {
					etcd0 = etcdWatchers(t)
				}
				before := heap()
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				stream := tg.watchStream(t, ctx)
				var sent atomic.Int64
				var peak atomic.Uint64
				flooded := make(chan struct{})
				go func() {
					defer close(flooded)
					for i := range int64(flood) {
						p := fmt.Sprintf("/attack/ks%05d/Keyspace", i%files)
						if tc.recursive {
							p = "/attack"
						}
						if err := stream.Send(create(i+1, p, tc.recursive, 0)); err != nil {
							return // the stream is gone
						}
						sent.Add(1)
						if i%10_000 == 0 {
							peak.Store(max(peak.Load(), heap()))
						}
					}
				}()
				// The stream ends when topod refuses it.
				ended := func() bool {
					return tg.metric(t, "topod_limit_refusals_total", "limit", "stream_backlog") > 0 &&
						tg.metric(t, "topod_downstream_streams", "kind", "watch_stream") == 0
				}
				for !ended() {
					select {
					case <-flooded:
						t.Fatalf("all %d creates were taken, and the stream was not ended", sent.Load())
					case <-time.After(50 * time.Millisecond):
					}
				}
				peak.Store(max(peak.Load(), heap()))
				n := sent.Load()
				cancel()
				<-flooded
				grew := int64(peak.Load()) - int64(before)
				t.Logf("%s: the stream was ended after %d creates; live heap grew by at most %d MiB (bound %d MiB)",
					tg.name, n, grew>>20, heapBound>>20)
				if n >= flood {
					t.Errorf("%d creates were all taken", n)
				}
				if grew > heapBound {
					t.Errorf("live heap grew by %d MiB, over %d MiB", grew>>20, heapBound>>20)
				}
				if got := tg.metric(t, "topod_upstream_watches"); got != upstream {
					t.Errorf("topod's backend watches: %v, was %v", got, upstream)
				}
				if tg.etcd {
					if got := etcdWatchers(t); got != etcd0 {
						t.Errorf("etcd's watchers: %v, was %v", got, etcd0)
					}
				}
				if got := tg.metric(t, "topod_limit_refusals_total", "limit", "stream_backlog"); got != 1 {
					t.Errorf("stream backlog refusals counted: %v, want 1", got)
				}
				if got := tg.metric(t, "topod_watches"); got != 0 {
					t.Errorf("%v watches still open after the stream ended", got)
				}
			})
		})
	}
}

// updates reads a stream's updates into a channel until it ends.
func updates(stream interface {
	Recv() (*topodv1.WatchStreamResponse, error)
}) <-chan *topodv1.WatchUpdate {
	ch := make(chan *topodv1.WatchUpdate, 1<<16)
	go func() {
		defer close(ch)
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			for _, u := range msg.Updates {
				ch <- u
			}
		}
	}()
	return ch
}

// ended waits for the end of watch id on ch and returns its status.
func ended(t *testing.T, ch <-chan *topodv1.WatchUpdate, id int64) *status.Status {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case u, ok := <-ch:
			if !ok {
				t.Fatalf("the stream ended before watch %d did", id)
			}
			if u.WatchId == id && u.Ended {
				return status.New(codes.Code(u.Code), u.Error)
			}
		case <-timeout:
			t.Fatalf("watch %d did not end within 30 s", id)
		}
	}
}

// TestWatchLimits: with at most 3 watches per stream and 5 per server, a
// fourth watch on a stream and a sixth on the server are refused with
// ResourceExhausted naming the flag, and counted; a canceled watch gives
// its place back; the etcd endpoint holds its streams to the same limits.
func TestWatchLimits(t *testing.T) {
	backends(t, toposerver.Options{MaxWatchesPerStream: 3, MaxWatches: 5}, func(t *testing.T, tg *target) {
		tg.populate(t, 1)
		const file = "/attack/ks00000/Keyspace"
		a := tg.watchStream(t, t.Context())
		aUpdates := updates(a)
		createWatches(t, a, 1, 4, file, false, 0)
		if st := ended(t, aUpdates, 4); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "--max-watches-per-stream") {
			t.Errorf("4th watch on a stream of 3: %v; want ResourceExhausted naming --max-watches-per-stream", st)
		}
		b := tg.watchStream(t, t.Context())
		bUpdates := updates(b)
		createWatches(t, b, 1, 3, file, false, 0)
		if st := ended(t, bUpdates, 3); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "--max-watches") {
			t.Errorf("6th watch on the server: %v; want ResourceExhausted naming --max-watches", st)
		}
		// A cancel gives the place back.
		if err := a.Send(&topodv1.WatchStreamRequest{Request: &topodv1.WatchStreamRequest_Cancel{Cancel: &topodv1.WatchCancel{WatchId: 1}}}); err != nil {
			t.Fatal(err)
		}
		if st := ended(t, aUpdates, 1); st.Code() != codes.OK {
			t.Fatalf("cancel: %v", st)
		}
		if err := b.Send(create(4, file, false, 0)); err != nil {
			t.Fatal(err)
		}
		for u := range bUpdates {
			if u.WatchId == 4 {
				if u.Ended {
					t.Fatalf("a watch after a cancel freed a place: ended with %v %s", codes.Code(u.Code), u.Error)
				}
				break // its initial state
			}
		}
		if got := tg.metric(t, "topod_limit_refusals_total"); got != 2 {
			t.Errorf("refusals counted: %v, want 2", got)
		}

		// The etcd endpoint: the server is full (5 watches), and a stream
		// of its own may hold 3.
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{tg.srv.Addr}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		if resp := <-cli.Watch(t.Context(), file); resp.Err() == nil || !strings.Contains(resp.Err().Error(), "--max-watches") {
			t.Errorf("etcd watch on a full server: %v; want refused naming --max-watches", resp.Err())
		}
		a.CloseSend()
		b.CloseSend()
		for range aUpdates {
		}
		for range bUpdates {
		}
		for i := range 4 {
			wch := cli.Watch(clientv3.WithRequireLeader(t.Context()), file, clientv3.WithCreatedNotify())
			resp := <-wch
			switch {
			case i < 3 && (resp.Err() != nil || !resp.Created):
				t.Fatalf("etcd watch %d of 3 on a stream: %+v, %v", i+1, resp, resp.Err())
			case i == 3 && (resp.Err() == nil || !strings.Contains(resp.Err().Error(), "--max-watches-per-stream")):
				t.Errorf("4th etcd watch on a stream of 3: %v; want refused naming --max-watches-per-stream", resp.Err())
			}
		}
	})
}

// TestWatchAfterRevisionAhead: 10,000 watches resuming after a revision
// far ahead of the store's are each refused with OutOfRange, at once,
// with no backend watch (etcd's watcher count unchanged). They used to
// wait 5 s each and then open a backend watch of their own.
func TestWatchAfterRevisionAhead(t *testing.T) {
	backends(t, toposerver.Options{}, func(t *testing.T, tg *target) {
		tg.populate(t, 1)
		upstream := tg.metric(t, "topod_upstream_watches")
		var etcd0 float64
		if tg.etcd {
			etcd0 = etcdWatchers(t)
		}
		stream := tg.watchStream(t, t.Context())
		ch := updates(stream)
		const n = 10_000
		createWatches(t, stream, 1, n, "/attack", true, 1<<40)
		for id := int64(1); id <= n; id++ {
			st := ended(t, ch, id)
			if st.Code() != codes.OutOfRange || !strings.Contains(st.Message(), "ahead of the store's revision") {
				t.Fatalf("watch %d after revision 2^40: %v; want OutOfRange", id, st)
			}
		}
		if got := tg.metric(t, "topod_upstream_watches"); got != upstream {
			t.Errorf("topod's backend watches: %v, was %v", got, upstream)
		}
		if tg.etcd {
			if got := etcdWatchers(t); got != etcd0 {
				t.Errorf("etcd's watchers: %v, was %v", got, etcd0)
			}
		}
		if got := tg.metric(t, "topod_limit_refusals_total", "limit", "after_revision"); got != n {
			t.Errorf("after_revision refusals counted: %v, want %d", got, n)
		}
	})
}

// TestLockTTL: a lock asking for a lease of 2^40 s (which overflowed the
// Duration and was clamped to 1 s) or of a day is refused with
// InvalidArgument naming --max-lock-ttl, and no lock file is written; an
// hour is granted.
func TestLockTTL(t *testing.T) {
	backends(t, toposerver.Options{}, func(t *testing.T, tg *target) {
		tg.populate(t, 1)
		dir := "/attack/ks00000"
		for _, tc := range []struct {
			ttl  int64
			want codes.Code
		}{
			{1 << 40, codes.InvalidArgument},
			{86_400, codes.InvalidArgument},
			{3_600, codes.OK},
		} {
			ctx, cancel := context.WithCancel(t.Context())
			stream, err := tg.client.Lock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&topodv1.LockRequest{Request: &topodv1.LockRequest_Acquire{Acquire: &topodv1.LockAcquire{Path: dir, TtlSeconds: tc.ttl}}}); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			if status.Code(err) != tc.want || (tc.want != codes.OK && !strings.Contains(err.Error(), "--max-lock-ttl")) {
				t.Errorf("lock with a ttl of %d s: %v; want %v", tc.ttl, err, tc.want)
			}
			if tc.want != codes.OK {
				if _, err := tg.client.ListDir(t.Context(), &topodv1.ListDirRequest{Path: dir + "/locks"}); status.Code(err) != codes.NotFound {
					t.Errorf("after a refused lock, %s/locks: %v; want NotFound", dir, err)
				}
			}
			cancel()
		}
	})
}

// TestBlobRequestBounds: at the default limits, a PutBlobs of 4,097 blobs
// (empty ones by the million fit gRPC's 49 MiB request limit, each a blob
// store request or two), a GetBlobs of 65,537 hashes and a MissingBlobs of
// 16,385 (each may be a blob store request) are refused with
// InvalidArgument naming the limit and its flag, store nothing, and are
// counted; one fewer is served.
func TestBlobRequestBounds(t *testing.T) {
	backends(t, toposerver.Options{}, func(t *testing.T, tg *target) {
		blobs := make([]*topodv1.Blob, toposerver.DefaultMaxPutBlobs+1)
		for i := range blobs {
			h, data := blobtest.Blob(uint64(i), 16)
			blobs[i] = &topodv1.Blob{Hash: h[:], Data: data}
		}
		// hashes are those of the first n blobs, over again past the
		// first DefaultMaxPutBlobs (which the test stores).
		hashes := func(n int) [][]byte {
			out := make([][]byte, n)
			for i := range out {
				out[i] = blobs[i%toposerver.DefaultMaxPutBlobs].Hash
			}
			return out
		}
		getBlobs := func(hashes [][]byte) error {
			stream, err := tg.client.GetBlobs(t.Context(), &topodv1.GetBlobsRequest{Hashes: hashes})
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
		stored := func() int {
			t.Helper()
			resp, err := tg.client.MissingBlobs(t.Context(), &topodv1.MissingBlobsRequest{Hashes: hashes(toposerver.DefaultMaxPutBlobs)})
			if err != nil {
				t.Fatal(err)
			}
			return toposerver.DefaultMaxPutBlobs - len(resp.Missing)
		}
		for _, tc := range []struct {
			name, limit, flag string
			max               int
			call              func(n int) error
		}{
			{"PutBlobs", "put_blobs", "--max-put-blobs", toposerver.DefaultMaxPutBlobs, func(n int) error {
				_, err := tg.client.PutBlobs(t.Context(), &topodv1.PutBlobsRequest{Blobs: blobs[:n]})
				return err
			}},
			{"GetBlobs", "get_blobs", "--max-get-blobs", toposerver.DefaultMaxGetBlobs, func(n int) error { return getBlobs(hashes(n)) }},
			{"MissingBlobs", "missing_blobs", "--max-missing-blobs", toposerver.DefaultMaxMissingBlobs, func(n int) error {
				_, err := tg.client.MissingBlobs(t.Context(), &topodv1.MissingBlobsRequest{Hashes: hashes(n)})
				return err
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := tc.call(tc.max + 1)
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), fmt.Sprintf("over the %d limit (%s)", tc.max, tc.flag)) {
					t.Errorf("%s of %d: %v; want InvalidArgument naming the limit and %s", tc.name, tc.max+1, err, tc.flag)
				}
				if got := tg.metric(t, "topod_limit_refusals_total", "limit", tc.limit); got != 1 {
					t.Errorf("%s refusals counted: %v, want 1", tc.limit, got)
				}
				if tc.name == "PutBlobs" {
					if n := stored(); n != 0 {
						t.Fatalf("a refused PutBlobs stored %d blobs", n)
					}
				}
				if err := tc.call(tc.max); err != nil {
					t.Errorf("%s of %d: %v", tc.name, tc.max, err)
				}
			})
		}
	})
}

// TestWholeStoreList: a store of 64.5 MiB (1,100 files of 60 KiB) listed
// whole by a client that does not page (a plugin of an earlier release)
// is refused with ResourceExhausted naming --max-send-msg-bytes, and
// counted, rather than sent as one message (up to 1 GiB before); listed
// in pages, at the default limits, it comes in pages of at most 4 MiB and
// one file, every file once, at one revision.
func TestWholeStoreList(t *testing.T) {
	backends(t, toposerver.Options{}, func(t *testing.T, tg *target) {
		const files, size = 1_100, 60 << 10
		g, ctx := errgroup.WithContext(t.Context())
		g.SetLimit(8)
		for i := range files {
			g.Go(func() error {
				_, err := tg.client.Create(ctx, &topodv1.CreateRequest{Path: fmt.Sprintf("/attack/f%05d", i), Contents: bytes.Repeat([]byte{'a' + byte(i%26)}, size)})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		_, err := tg.client.List(t.Context(), &topodv1.ListRequest{Prefix: "/"})
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-send-msg-bytes") {
			t.Errorf("an unpaged List of %d MiB: %v; want ResourceExhausted naming --max-send-msg-bytes", files*size>>20, err)
		}
		if got := tg.metric(t, "topod_limit_refusals_total", "limit", "list_bytes"); got != 1 {
			t.Errorf("list_bytes refusals counted: %v, want 1", got)
		}
		req := &topodv1.ListRequest{Prefix: "/", Paged: true}
		seen := map[string]bool{}
		var rev int64
		pages := 0
		for {
			pages++
			resp, err := tg.client.List(t.Context(), req)
			if err != nil {
				t.Fatalf("page %d: %v", pages, err)
			}
			if rev == 0 {
				rev = resp.Revision
			}
			bytes := 0
			for _, e := range resp.Kvs {
				if seen[e.Path] {
					t.Fatalf("%s listed twice", e.Path)
				}
				seen[e.Path] = true
				bytes += len(e.Path) + len(e.Contents)
			}
			if resp.Revision != rev || bytes > toposerver.DefaultMaxListPageBytes+size+64 {
				t.Fatalf("page %d: %d bytes at revision %d; want at most a page and a file, at %d", pages, bytes, resp.Revision, rev)
			}
			if len(resp.NextPageToken) == 0 {
				break
			}
			req.PageToken = resp.NextPageToken
		}
		if len(seen) != files || pages < files*size/toposerver.DefaultMaxListPageBytes {
			t.Errorf("%d files in %d pages, want %d in %d or more", len(seen), pages, files, files*size/toposerver.DefaultMaxListPageBytes)
		}
	})
}
