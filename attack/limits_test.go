package attack

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// TestMissingBlobsBound: a MissingBlobs of more hashes than one request
// may carry (each may cost a blob store request) is refused.
func TestMissingBlobsBound(t *testing.T) {
	backends(t, toposerver.Options{}, func(t *testing.T, tg *target) {
		hashes := make([][]byte, 1<<14+1)
		for i := range hashes {
			hashes[i] = make([]byte, 32)
		}
		_, err := tg.client.MissingBlobs(t.Context(), &topodv1.MissingBlobsRequest{Hashes: hashes})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "over the 16384 limit") {
			t.Errorf("MissingBlobs of %d hashes: %v; want InvalidArgument naming the limit", len(hashes), err)
		}
	})
}
