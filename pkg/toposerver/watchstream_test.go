package toposerver_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// watchStreamClient is one WatchStream with helpers to create and cancel
// watches and to collect updates by watch id.
type watchStreamClient struct {
	t       *testing.T
	client  topodv1.TopoClient
	stream  grpc.BidiStreamingClient[topodv1.WatchStreamRequest, topodv1.WatchStreamResponse]
	updates chan *topodv1.WatchUpdate
}

func startStreamServer(t *testing.T, cached bool) *watchStreamClient {
	t.Helper()
	b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	srv := harness.StartTopod(t, b, toposerver.Options{DisableMirror: !cached})
	cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := topodv1.NewTopoClient(cc)
	stream, err := client.WatchStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := &watchStreamClient{t: t, client: client, stream: stream, updates: make(chan *topodv1.WatchUpdate, 10000)}
	go func() {
		defer close(c.updates)
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			for _, u := range msg.Updates {
				c.updates <- u
			}
		}
	}()
	return c
}

func (c *watchStreamClient) put(p, v string) int64 {
	c.t.Helper()
	resp, err := c.client.Update(c.t.Context(), &topodv1.UpdateRequest{Path: p, Contents: []byte(v)})
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.Version
}

func (c *watchStreamClient) create(id int64, p string, recursive bool) {
	c.t.Helper()
	if err := c.stream.Send(&topodv1.WatchStreamRequest{Request: &topodv1.WatchStreamRequest_Create{Create: &topodv1.WatchCreate{WatchId: id, Path: p, Recursive: recursive}}}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *watchStreamClient) cancel(id int64) {
	c.t.Helper()
	if err := c.stream.Send(&topodv1.WatchStreamRequest{Request: &topodv1.WatchStreamRequest_Cancel{Cancel: &topodv1.WatchCancel{WatchId: id}}}); err != nil {
		c.t.Fatal(err)
	}
}

// collect gathers updates until done says it has what it waits for, or
// the timeout.
func (c *watchStreamClient) collect(timeout time.Duration, done func(u *topodv1.WatchUpdate) bool) {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case u, ok := <-c.updates:
			if !ok {
				c.t.Fatal("stream ended")
			}
			if done(u) {
				return
			}
		case <-deadline:
			c.t.Fatalf("no wanted update in %v", timeout)
		}
	}
}

// TestWatchStreamBadRequestsEndOnlyTheirWatch: a bad watch id, an id in
// use, a bad path, a missing file, an unknown id to cancel and an empty
// request each get an update ending that id with a clear error; the stream
// and its other watches go on.
func TestWatchStreamBadRequestsEndOnlyTheirWatch(t *testing.T) {
	for _, cached := range []bool{true, false} {
		t.Run(fmt.Sprintf("mirror=%v", cached), func(t *testing.T) {
			c := startStreamServer(t, cached)
			c.put("/v/a", "1")
			c.create(1, "/v/a", false)
			c.collect(10*time.Second, func(u *topodv1.WatchUpdate) bool {
				return u.WatchId == 1 && u.Response.GetInitialComplete()
			})
			tests := []struct {
				name string
				send func()
				id   int64
				code codes.Code
				msg  string
			}{
				{"id 0", func() { c.create(0, "/v/a", false) }, 0, codes.InvalidArgument, "watch id 0"},
				{"id in use", func() { c.create(1, "/v/a", false) }, 1, codes.AlreadyExists, "in use"},
				{"relative path", func() { c.create(2, "v/a", false) }, 2, codes.InvalidArgument, "relative"},
				{"dot segment", func() { c.create(3, "/v/../a", true) }, 3, codes.InvalidArgument, `".."`},
				{"missing file", func() { c.create(4, "/v/missing", false) }, 4, codes.NotFound, "/v/missing"},
				{"cancel unknown id", func() { c.cancel(99) }, 99, codes.NotFound, "no watch id 99"},
				{"empty request", func() {
					if err := c.stream.Send(&topodv1.WatchStreamRequest{}); err != nil {
						t.Fatal(err)
					}
				}, 0, codes.InvalidArgument, "empty request"},
			}
			for _, tt := range tests {
				tt.send()
				c.collect(10*time.Second, func(u *topodv1.WatchUpdate) bool {
					if u.WatchId != tt.id || !u.Ended {
						t.Fatalf("%s: unexpected update %v", tt.name, u)
					}
					if codes.Code(u.Code) != tt.code || !strings.Contains(u.Error, tt.msg) {
						t.Fatalf("%s: ended with %v %q, want %v and %q", tt.name, codes.Code(u.Code), u.Error, tt.code, tt.msg)
					}
					t.Logf("%s: %v: %s", tt.name, codes.Code(u.Code), u.Error)
					return true
				})
			}
			// Watch 1 is still there (the duplicate create did not
			// touch it: it ended only the request).
			rev := c.put("/v/a", "2")
			c.collect(10*time.Second, func(u *topodv1.WatchUpdate) bool {
				if u.WatchId != 1 || u.Ended {
					t.Fatalf("unexpected update %v", u)
				}
				return u.Response.Revision >= rev && len(u.Response.Events) == 1 && string(u.Response.Events[0].Contents) == "2"
			})
		})
	}
}

// TestWatchStreamCancelOneAmongMany: of 100 watches of 100 files and a
// recursive one over them on one stream, canceling one ends it alone (an
// update marked ended, code OK); a change of every file then reaches the
// 99 others and the recursive watch, and nothing reaches the canceled one.
// A delete ends a single-file watch with its last update.
func TestWatchStreamCancelOneAmongMany(t *testing.T) {
	for _, cached := range []bool{true, false} {
		t.Run(fmt.Sprintf("mirror=%v", cached), func(t *testing.T) {
			c := startStreamServer(t, cached)
			const n = 100
			for i := range n {
				c.put(fmt.Sprintf("/v/d/f%03d", i), "old")
			}
			for i := range n {
				c.create(int64(i+1), fmt.Sprintf("/v/d/f%03d", i), false)
			}
			c.create(1000, "/v/d", true)
			opened := map[int64]bool{}
			c.collect(20*time.Second, func(u *topodv1.WatchUpdate) bool {
				if u.Response.GetInitialComplete() {
					opened[u.WatchId] = true
				}
				return len(opened) == n+1
			})
			const canceled = 50
			c.cancel(canceled)
			c.collect(10*time.Second, func(u *topodv1.WatchUpdate) bool {
				if u.WatchId != canceled {
					t.Fatalf("unexpected update %v", u)
				}
				if !u.Ended || u.Code != 0 {
					t.Fatalf("cancel answered %v", u)
				}
				return true
			})
			for i := range n {
				c.put(fmt.Sprintf("/v/d/f%03d", i), "new")
			}
			got := map[int64]int{}
			recursiveSeen := map[string]bool{}
			c.collect(20*time.Second, func(u *topodv1.WatchUpdate) bool {
				if u.WatchId == canceled {
					t.Fatalf("canceled watch got %v", u)
				}
				for _, ev := range u.Response.GetEvents() {
					if string(ev.Contents) == "new" {
						if u.WatchId == 1000 {
							recursiveSeen[ev.Path] = true
						} else {
							got[u.WatchId]++
						}
					}
				}
				return len(got) == n-1 && len(recursiveSeen) == n
			})
			for id, k := range got {
				if k != 1 {
					t.Errorf("watch %d got the change %d times", id, k)
				}
			}
			// A delete ends its single-file watch: the delete, then (in
			// the same update from a mirror) the end.
			if _, err := c.client.Delete(t.Context(), &topodv1.DeleteRequest{Path: "/v/d/f007"}); err != nil {
				t.Fatal(err)
			}
			deleted := false
			c.collect(10*time.Second, func(u *topodv1.WatchUpdate) bool {
				if u.WatchId != 8 {
					return false
				}
				if evs := u.Response.GetEvents(); len(evs) == 1 && evs[0].Deleted {
					deleted = true
				} else if u.Response != nil || !deleted {
					t.Fatalf("delete reached the watch as %v", u)
				}
				if u.Ended && u.Code != 0 {
					t.Fatalf("watch of a deleted file ended with %v", u)
				}
				return u.Ended
			})
		})
	}
}
