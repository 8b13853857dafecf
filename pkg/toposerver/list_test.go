package toposerver_test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// listTopod is a topod for the List tests: its client and server, and a
// function that makes its backend forget the history before rev.
type listTopod struct {
	mirror bool
	client topodv1.TopoClient
	srv    *harness.Topod
	forget func(t *testing.T, rev int64)
}

// onBackends runs fn against a topod with opts on bolt and on a real etcd
// (one cluster for every call of the test), with its mirror and without.
func onBackends(t *testing.T, opts toposerver.Options, fn func(t *testing.T, td *listTopod)) {
	cluster := harness.StartEtcd(t, 1)
	for _, backend := range []string{"bolt", "etcd"} {
		for _, mirror := range []bool{true, false} {
			name := backend + "/mirror"
			if !mirror {
				name = backend + "/no mirror"
			}
			t.Run(name, func(t *testing.T) {
				var b kv.Backend
				td := &listTopod{mirror: mirror}
				if backend == "bolt" {
					b = harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db"))
					td.forget = func(t *testing.T, rev int64) {
						// bolt keeps 20 versions of each key: write the
						// second file, the first of the second page of a
						// listing of one file a page, 25 times.
						t.Helper()
						for i := range 25 {
							if _, err := b.Update(t.Context(), "/v/f001", fmt.Appendf(nil, "rewritten %d", i), 0); err != nil {
								t.Fatal(err)
							}
						}
					}
				} else {
					b = harness.OpenEtcd(t, cluster.Endpoints())
					td.forget = func(t *testing.T, rev int64) {
						t.Helper()
						cur, err := b.Update(t.Context(), "/other", []byte("moves the revision on"), 0)
						if err != nil {
							t.Fatal(err)
						}
						if err := cluster.Compact(t.Context(), cur); err != nil {
							t.Fatal(err)
						}
					}
					// Each subtest its own keys: clear the last one's.
					if _, err := b.Txn(t.Context(), kv.Txn{Success: []kv.Op{{Type: kv.OpDelete, Key: "/", End: "\x00"}}}); err != nil {
						t.Fatal(err)
					}
				}
				o := opts
				o.DisableMirror = !mirror
				td.srv = harness.StartTopod(t, b, o)
				cc, err := grpc.NewClient(td.srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cc.Close() })
				td.client = topodv1.NewTopoClient(cc)
				fn(t, td)
			})
		}
	}
}

// file is a file as List reports it.
type file struct {
	contents string
	version  int64
}

// fill writes n files /v/f000... of about size bytes each, and files
// around them that no listing of /v/f may return, and returns the files
// of /v/f.
func fill(t *testing.T, client topodv1.TopoClient, n, size int) map[string]file {
	t.Helper()
	for _, p := range []string{"/u/a", "/v/e", "/v/g", "/w"} {
		if _, err := client.Update(t.Context(), &topodv1.UpdateRequest{Path: p, Contents: []byte("outside")}); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]file{}
	for i := range n {
		p := fmt.Sprintf("/v/f%03d", i)
		contents := fmt.Sprintf("%0*d", size-len(p), i)
		resp, err := client.Update(t.Context(), &topodv1.UpdateRequest{Path: p, Contents: []byte(contents)})
		if err != nil {
			t.Fatal(err)
		}
		files[p] = file{contents, resp.Version}
	}
	return files
}

// listPages lists prefix a page at a time with req's options, calling
// between (if set) after each page but the last, and returns the files in
// order, the number of pages and the listing's revision. Every page must
// be at the first one's revision, and within maxBytes unless it holds one
// file.
func listPages(t *testing.T, client topodv1.TopoClient, req *topodv1.ListRequest, maxBytes int, between func(last string)) (paths []string, got map[string]file, pages int, rev int64) {
	t.Helper()
	got = map[string]file{}
	req = proto.Clone(req).(*topodv1.ListRequest)
	req.Paged = true
	for pages = 1; ; pages++ {
		if pages > 10_000 {
			t.Fatal("over 10,000 pages")
		}
		resp, err := client.List(t.Context(), req)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if pages == 1 {
			rev = resp.Revision
		} else if resp.Revision != rev {
			t.Fatalf("page %d at revision %d, the first at %d", pages, resp.Revision, rev)
		}
		size := 0
		for _, e := range resp.Kvs {
			size += len(e.Path) + len(e.Contents)
			paths = append(paths, e.Path)
			got[e.Path] = file{string(e.Contents), e.Version}
		}
		if len(resp.Kvs) > 1 && size > maxBytes {
			t.Fatalf("page %d: %d files, %d bytes, over the %d-byte page", pages, len(resp.Kvs), size, maxBytes)
		}
		if len(resp.NextPageToken) == 0 {
			return paths, got, pages, rev
		}
		if between != nil {
			between(paths[len(paths)-1])
		}
		req.PageToken = resp.NextPageToken
		req.MinRevision, req.Linearizable = 0, false
	}
}

// checkListing fails unless paths, in order, and got are exactly want.
func checkListing(t *testing.T, paths []string, got, want map[string]file) {
	t.Helper()
	if len(paths) != len(want) || len(got) != len(want) {
		t.Errorf("%d files listed (%d distinct), want %d", len(paths), len(got), len(want))
	}
	for i, p := range paths {
		if i > 0 && p <= paths[i-1] {
			t.Errorf("%s listed after %s", p, paths[i-1])
		}
	}
	for p, f := range want {
		if g, ok := got[p]; !ok || g != f {
			t.Errorf("%s: listed %v (%v), want %v", p, g, ok, f)
		}
	}
}

// TestListPages: a List of more than one page returns every file once, in
// order, each page within the page bound, every page at the first one's
// revision: with writes between the pages (files after the last one
// listed updated, deleted, created; files before it updated), the pages
// together are the store as it was at the first page, read from the
// mirror while it is still there, else from the backend's history.
func TestListPages(t *testing.T) {
	const pageBytes = 1000
	onBackends(t, toposerver.Options{MaxListPageBytes: pageBytes}, func(t *testing.T, td *listTopod) {
		want := fill(t, td.client, 100, 90)
		t.Run("quiet", func(t *testing.T) {
			misses := metricValue(t, td.srv, "topod_mirror_reads_total", "op", "list", "result", "miss")
			paths, got, pages, _ := listPages(t, td.client, &topodv1.ListRequest{Prefix: "/v/f"}, pageBytes, nil)
			checkListing(t, paths, got, want)
			if pages < 10 {
				t.Errorf("%d pages of %d bytes at most, want 10 or more", pages, pageBytes)
			}
			if after := metricValue(t, td.srv, "topod_mirror_reads_total", "op", "list", "result", "miss"); after != misses {
				t.Errorf("a listing with no write between its pages left the mirror: misses %v -> %v", misses, after)
			}
		})
		t.Run("writes between pages", func(t *testing.T) {
			write := func(p, contents string) {
				if _, err := td.client.Update(t.Context(), &topodv1.UpdateRequest{Path: p, Contents: []byte(contents)}); err != nil {
					t.Fatal(err)
				}
			}
			misses := metricValue(t, td.srv, "topod_mirror_reads_total", "op", "list", "result", "miss")
			paths, got, pages, _ := listPages(t, td.client, &topodv1.ListRequest{Prefix: "/v/f"}, pageBytes, func(last string) {
				i, err := strconv.Atoi(strings.TrimPrefix(last, "/v/f"))
				if err != nil {
					return // a file the test wrote: the listing is broken, as checkListing says
				}
				write(last, "changed after it was listed")
				write(last+"-new", "created after the listing's revision, after its last file")
				write("/v/f-new", "created after the listing's revision, before its last file")
				if next := fmt.Sprintf("/v/f%03d", i+1); want[next] != (file{}) {
					write(next, "changed after the listing's revision")
				}
				if gone := fmt.Sprintf("/v/f%03d", i+2); want[gone] != (file{}) {
					if _, err := td.client.Delete(t.Context(), &topodv1.DeleteRequest{Path: gone}); err != nil && status.Code(err) != codes.NotFound {
						t.Fatal(err)
					}
				}
			})
			checkListing(t, paths, got, want)
			if pages < 10 {
				t.Errorf("%d pages, want 10 or more", pages)
			}
			if after := metricValue(t, td.srv, "topod_mirror_reads_total", "op", "list", "result", "miss"); td.mirror && after == misses {
				t.Errorf("no page read from the backend's history, though the mirror moved on")
			}
		})
	})
}

// TestListPageBounds: limit makes pages of that many files; a file larger
// than a page is a page of its own; a List that is not paged (a plugin of
// an earlier release) gets every file in one answer with no page token;
// malformed requests are refused with InvalidArgument.
func TestListPageBounds(t *testing.T) {
	const pageBytes = 1000
	onBackends(t, toposerver.Options{MaxListPageBytes: pageBytes}, func(t *testing.T, td *listTopod) {
		want := fill(t, td.client, 20, 90)
		big := strings.Repeat("x", 3*pageBytes)
		resp, err := td.client.Update(t.Context(), &topodv1.UpdateRequest{Path: "/v/f005", Contents: []byte(big)})
		if err != nil {
			t.Fatal(err)
		}
		want["/v/f005"] = file{big, resp.Version}

		paths, got, pages, _ := listPages(t, td.client, &topodv1.ListRequest{Prefix: "/v/f", Limit: 3}, pageBytes, nil)
		checkListing(t, paths, got, want)
		// f000-f002, f003-f004 (f005 does not fit beside them), f005
		// alone, then threes and f018-f019.
		if pages != 8 {
			t.Errorf("20 files in pages of 3, one over the page's bytes: %d pages, want 8", pages)
		}
		paths, got, pages, _ = listPages(t, td.client, &topodv1.ListRequest{Prefix: "/v/f"}, pageBytes, nil)
		checkListing(t, paths, got, want)
		if pages < 4 {
			t.Errorf("%d pages, want 4 or more", pages)
		}

		whole, err := td.client.List(t.Context(), &topodv1.ListRequest{Prefix: "/v/f"})
		if err != nil {
			t.Fatal(err)
		}
		if len(whole.Kvs) != len(want) || len(whole.NextPageToken) != 0 || whole.Revision == 0 {
			t.Errorf("unpaged List: %d files, next_page_token %q, revision %d; want %d files, no token, the revision", len(whole.Kvs), whole.NextPageToken, whole.Revision, len(want))
		}

		first, err := td.client.List(t.Context(), &topodv1.ListRequest{Prefix: "/v/f", Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		var tok topodv1.ListPageToken
		if err := proto.Unmarshal(first.NextPageToken, &tok); err != nil {
			t.Fatal(err)
		}
		forged := func(prefix, after string, rev int64) []byte {
			b, _ := proto.Marshal(&topodv1.ListPageToken{Prefix: prefix, After: after, Revision: rev})
			return b
		}
		for _, tc := range []struct {
			name string
			req  *topodv1.ListRequest
		}{
			{"negative limit", &topodv1.ListRequest{Prefix: "/v/f", Limit: -1}},
			{"garbage token", &topodv1.ListRequest{Prefix: "/v/f", PageToken: []byte("\xff\xff garbage")}},
			{"another listing's token", &topodv1.ListRequest{Prefix: "/v/g", PageToken: first.NextPageToken}},
			{"a token after a key outside the prefix", &topodv1.ListRequest{Prefix: "/v/f", PageToken: forged("/v/f", "/v/e", tok.Revision)}},
			{"a token of no revision", &topodv1.ListRequest{Prefix: "/v/f", PageToken: forged("/v/f", tok.After, 0)}},
		} {
			if _, err := td.client.List(t.Context(), tc.req); status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s: %v; want InvalidArgument", tc.name, err)
			}
		}
	})
}

// TestListPageRevisionGone: a page whose revision the backend no longer
// holds (etcd compacted; bolt's history of a key rewritten 25 times) is
// refused with OutOfRange, saying to list again; listing again works.
func TestListPageRevisionGone(t *testing.T) {
	onBackends(t, toposerver.Options{MaxListPageBytes: 1000}, func(t *testing.T, td *listTopod) {
		fill(t, td.client, 30, 90)
		first, err := td.client.List(t.Context(), &topodv1.ListRequest{Prefix: "/v/f", Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		td.forget(t, first.Revision)
		_, err = td.client.List(t.Context(), &topodv1.ListRequest{Prefix: "/v/f", Limit: 1, PageToken: first.NextPageToken})
		if status.Code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "list again from the first page") {
			t.Fatalf("a page at a revision the store no longer holds: %v; want OutOfRange, to list again", err)
		}
		paths, _, _, _ := listPages(t, td.client, &topodv1.ListRequest{Prefix: "/v/f"}, 1000, nil)
		if len(paths) != 30 {
			t.Errorf("listed again: %d files, want 30", len(paths))
		}
	})
}

// TestListOverMessageLimit: a List that is not paged (a plugin of an
// earlier release) whose answer would be over --max-send-msg-bytes is
// refused with ResourceExhausted naming the flag, and counted; paged, the
// same listing is answered.
func TestListOverMessageLimit(t *testing.T) {
	srv := harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{MaxSendMsgBytes: 8 << 10, MaxListPageBytes: 4 << 10})
	cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := topodv1.NewTopoClient(cc)
	want := fill(t, client, 100, 200)
	_, err = client.List(t.Context(), &topodv1.ListRequest{Prefix: "/v/f"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-send-msg-bytes") {
		t.Errorf("an unpaged List of 20 KB with 8 KiB messages: %v; want ResourceExhausted naming --max-send-msg-bytes", err)
	}
	if got := metricValue(t, srv, "topod_limit_refusals_total", "limit", "list_bytes"); got != 1 {
		t.Errorf("list_bytes refusals counted: %v, want 1", got)
	}
	paths, got, _, _ := listPages(t, client, &topodv1.ListRequest{Prefix: "/v/f"}, 4<<10, nil)
	checkListing(t, paths, got, want)
}
