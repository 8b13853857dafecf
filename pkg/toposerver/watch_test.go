package toposerver_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/kv/etcdkv"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// TestWatchResume: a watch opened with the revision a client had reached
// gets, as its initial state, the contents of only the files changed since
// and the names of the others; files gone are in neither. It holds from the
// mirror and from a backend watch, on bolt and on an etcd compacted past
// that revision.
func TestWatchResume(t *testing.T) {
	var cluster *harness.Etcd
	backends := []struct {
		name    string
		open    func(t *testing.T) kv.Backend
		compact func(ctx context.Context, rev int64) error // nil: no compaction
	}{
		{"bolt", func(t *testing.T) kv.Backend {
			b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		}, nil},
		{"etcd compacted", func(t *testing.T) kv.Backend {
			cluster = harness.StartEtcd(t, 1)
			b, err := etcdkv.Open(t.Context(), cluster.Endpoints(), etcdkv.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		}, func(ctx context.Context, rev int64) error { return cluster.Compact(ctx, rev) }},
	}
	for _, be := range backends {
		for _, cached := range []bool{true, false} {
			name := be.name + "/backend watch"
			if cached {
				name = be.name + "/mirror"
			}
			t.Run(name, func(t *testing.T) {
				ctx := t.Context()
				srv := harness.StartTopod(t, be.open(t), toposerver.Options{DisableMirror: !cached})
				cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					t.Fatal(err)
				}
				defer cc.Close()
				client := topodv1.NewTopoClient(cc)
				put := func(p, v string) int64 {
					t.Helper()
					resp, err := client.Update(ctx, &topodv1.UpdateRequest{Path: p, Contents: []byte(v)})
					if err != nil {
						t.Fatal(err)
					}
					return resp.Version
				}
				for _, p := range []string{"/v/c/a", "/v/c/b", "/v/c/d", "/v/f"} {
					put(p, "old")
				}
				_, rev := initialState(t, client, "/v/c", 0, true)
				put("/v/c/a", "new")
				if _, err := client.Delete(ctx, &topodv1.DeleteRequest{Path: "/v/c/b"}); err != nil {
					t.Fatal(err)
				}
				last := put("/v/c/e", "new")
				if be.compact != nil {
					if err := be.compact(ctx, last); err != nil {
						t.Fatal(err)
					}
				}
				resumes := metricValue(t, srv, "topod_watch_opens_total", "start", "resume")

				for _, tc := range []struct {
					name          string
					path          string
					recursive     bool
					after         int64
					changed, same []string
				}{
					{"resume dir", "/v/c", true, rev, []string{"/v/c/a", "/v/c/e"}, []string{"/v/c/d"}},
					{"full dir", "/v/c", true, 0, []string{"/v/c/a", "/v/c/d", "/v/c/e"}, nil},
					{"resume unchanged file", "/v/f", false, rev, nil, []string{"/v/f"}},
					{"resume changed file", "/v/c/a", false, rev, []string{"/v/c/a"}, nil},
				} {
					t.Run(tc.name, func(t *testing.T) {
						st, _ := initialState(t, client, tc.path, tc.after, tc.recursive)
						var changed []string
						for _, ev := range st.Events {
							changed = append(changed, ev.Path)
							if string(ev.Contents) != "new" && tc.after > 0 {
								t.Errorf("%s: contents %q, want the new value", ev.Path, ev.Contents)
							}
						}
						if !slices.Equal(changed, tc.changed) || !slices.Equal(st.Unchanged, tc.same) {
							t.Errorf("changed %q, unchanged %q; want %q, %q", changed, st.Unchanged, tc.changed, tc.same)
						}
					})
				}
				// A revision the store has not reached (it was restored
				// from an older backup): refused, so that the client
				// watches from the start rather than keep files whose
				// versions the store no longer has.
				for _, recursive := range []bool{false, true} {
					p := "/v/c"
					if !recursive {
						p = "/v/f"
					}
					recv, err := watchOne(ctx, client, p, recursive, last+1000)
					if err == nil {
						_, err = recv()
					}
					if status.Code(err) != codes.OutOfRange {
						t.Errorf("watch %s from the future: %v; want OutOfRange", p, err)
					}
				}
				if got := metricValue(t, srv, "topod_watch_opens_total", "start", "resume"); got == resumes {
					t.Errorf("topod_watch_opens_total{start=\"resume\"} still %v", got)
				}
			})
		}
	}
}

// initialState opens a watch, reads its initial state (every message of
// it, merged) and closes the stream.
func initialState(t *testing.T, client topodv1.TopoClient, p string, after int64, recursive bool) (*topodv1.WatchResponse, int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	recv, err := watchOne(ctx, client, p, recursive, after)
	if err != nil {
		t.Fatal(err)
	}
	all := &topodv1.WatchResponse{}
	for {
		msg, err := recv()
		if err != nil {
			t.Fatalf("watch %s: %v", p, err)
		}
		if !msg.Initial {
			t.Fatalf("watch %s: message before the end of the initial state: %v", p, msg)
		}
		all.Events = append(all.Events, msg.Events...)
		all.Unchanged = append(all.Unchanged, msg.Unchanged...)
		if msg.InitialComplete {
			return all, msg.Revision
		}
	}
}
