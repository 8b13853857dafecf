package monitoring

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/authz"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// exposed is what real servers' /metrics expose: for each series name (a
// histogram's _bucket, _sum and _count each), the label names its series
// carry and, per label, the values seen.
type exposed map[string]map[string]map[string]bool

// add adds a scrape's families under their series names.
func (e exposed) add(m harness.Metrics) {
	for name, mf := range m {
		for _, x := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range x.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				e.series(name+"_sum", labels)
				e.series(name+"_count", labels)
				for _, b := range x.GetHistogram().GetBucket() {
					e.series(name+"_bucket", with(labels, "le", fmt.Sprint(b.GetUpperBound())))
				}
				e.series(name+"_bucket", with(labels, "le", "+Inf"))
			case dto.MetricType_SUMMARY:
				e.series(name+"_sum", labels)
				e.series(name+"_count", labels)
				for _, q := range x.GetSummary().GetQuantile() {
					e.series(name, with(labels, "quantile", fmt.Sprint(q.GetQuantile())))
				}
			default:
				e.series(name, labels)
			}
		}
	}
}

func with(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range labels {
		out[a] = b
	}
	return out
}

func (e exposed) series(name string, labels map[string]string) {
	if e[name] == nil {
		e[name] = map[string]map[string]bool{}
	}
	for k, v := range labels {
		if e[name][k] == nil {
			e[name][k] = map[string]bool{}
		}
		e[name][k][v] = true
	}
}

// names lists the series names, sorted.
func (e exposed) names() []string {
	var out []string
	for n := range e {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// scrapeRealServers starts a real topod (in-process, on bolt, as
// `topod serve` runs it: toposerver with its gRPC server) and a real
// vschemad (its API, vschemaapi.NewHandler, with its metrics) on it, makes each
// metric the rules and the dashboard read appear (metrics with labels
// show no series until used), and returns what their /metrics expose:
//
//   - through Vitess's own topo.Server and the plugin: keyspaces created,
//     a keyspace locked and unlocked, the SrvVSchema vschemad wrote
//     watched;
//   - through topod.v1: a file over the inline limit written and read
//     (kept as a blob, read through the blob cache), a Watch and a
//     WatchStream that see it change, a lock asked for with a TTL over
//     --max-lock-ttl (a limit refusal);
//   - through the etcd endpoint (clientv3): a put, a linearizable and a
//     serializable get, a watch that receives an event;
//   - through vschemad (with a bearer token): an apply (which rewrites the
//     cells' SrvVSchema through topod's record level), a dry run, an apply
//     refused for an unknown vindex type, and one without a token (401);
//   - a second topod, with mutual TLS and an authorization policy, refusing
//     a write (topod_authz_denied_total) and reporting its policy loads.
//
// Blob garbage collection exports no metric (cmd/topod logs each run), so
// nothing here runs it.
func scrapeRealServers(t *testing.T) exposed {
	t.Helper()
	ctx := t.Context()
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	topodMetrics := httptest.NewServer(tp.Topod.Topo.DebugHandler())
	t.Cleanup(topodMetrics.Close)
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("tokens:\n  - {name: ops, token: s3cret, keyspaces: ['*'], verbs: [admin]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vs := vschematest.StartVSchemad(t, tp, &vschematest.VSchemadOptions{Tokens: tokens})

	// Vitess through the plugin.
	tp.CreateKeyspaces(t, "commerce", "customer")
	_, unlock, err := tp.TS.LockKeyspace(ctx, "commerce", "monitoring test")
	if err != nil {
		t.Fatal(err)
	}
	var lockErr error
	unlock(&lockErr)
	if lockErr != nil {
		t.Fatal(lockErr)
	}
	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()

	// vschemad: an apply, a dry run, a refusal, a request without a token.
	url := vs.URL + "/api/v1/keyspaces/commerce/vschema"
	auth := []string{"Authorization", "Bearer s3cret"}
	for _, c := range []struct {
		url, body string
		hdr       []string
		want      int
	}{
		{url, `{"tables": {"orders": {}}}`, auth, http.StatusOK},
		{url + "?dry_run=true", `{"tables": {"items": {}}}`, auth, http.StatusOK},
		{url, `{"sharded": true, "vindexes": {"v": {"type": "no_such_vindex"}}, "tables": {"t": {"column_vindexes": [{"column": "id", "name": "v"}]}}}`, auth, http.StatusBadRequest},
		{url, `{"tables": {"orders": {}}}`, nil, http.StatusUnauthorized},
	} {
		if code, body, _ := vschematest.Call(t, nil, http.MethodPut, c.url, []byte(c.body), c.hdr...); code != c.want {
			t.Fatalf("PUT %s: %d %s, want %d", c.url, code, body, c.want)
		}
	}
	// The cells' SrvVSchema, which the apply wrote, watched through the
	// plugin.
	if _, changes, err := tp.TS.WatchSrvVSchema(wctx, "zone1"); err != nil {
		t.Fatalf("WatchSrvVSchema: %v", err)
	} else if changes == nil {
		t.Fatal("WatchSrvVSchema: no change channel")
	}

	// topod.v1.
	cc, err := grpc.NewClient(tp.Topod.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := topodv1.NewTopoClient(cc)
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<10) // 48 KiB: over the inline limit (32 KiB), kept as a blob
	if _, err := client.Create(ctx, &topodv1.CreateRequest{Path: "/monitoring/big", Contents: big}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := client.Get(ctx, &topodv1.GetRequest{Path: "/monitoring/big"})
		if err != nil || !bytes.Equal(got.Contents, big) {
			t.Fatalf("Get /monitoring/big: %v", err)
		}
	}
	if _, err := client.Get(ctx, &topodv1.GetRequest{Path: "/monitoring/big", Linearizable: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.List(ctx, &topodv1.ListRequest{Prefix: "/monitoring"}); err != nil {
		t.Fatal(err)
	}
	ws, err := client.WatchStream(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Send(&topodv1.WatchStreamRequest{Request: &topodv1.WatchStreamRequest_Create{Create: &topodv1.WatchCreate{WatchId: 1, Path: "/monitoring", Recursive: true}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Recv(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Update(ctx, &topodv1.UpdateRequest{Path: "/monitoring/big", Contents: []byte("small now")}); err != nil {
		t.Fatal(err)
	}
	lock, err := client.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := lock.Send(&topodv1.LockRequest{Request: &topodv1.LockRequest_Acquire{Acquire: &topodv1.LockAcquire{Path: "/monitoring", Contents: "test", TtlSeconds: 1 << 40}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("lock with a TTL over --max-lock-ttl: %v, want InvalidArgument", err)
	}

	// The etcd endpoint.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{tp.Topod.Addr}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	etcdWatch := cli.Watch(wctx, "/monitoring/etcd")
	if _, err := cli.Put(ctx, "/monitoring/etcd", "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "/monitoring/etcd"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "/monitoring/etcd", clientv3.WithSerializable()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-etcdWatch:
	case <-time.After(10 * time.Second):
		t.Fatal("the etcd watch saw no event within 10 s")
	}

	e := exposed{}
	for _, u := range []string{topodMetrics.URL + "/metrics", vs.MetricsURL} {
		m, err := harness.Scrape(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		e.add(m)
	}
	e.add(authzDenial(t))
	return e
}

// authzDenial runs a topod with mutual TLS and an authorization policy,
// has it refuse a write, and returns its scrape.
func authzDenial(t *testing.T) harness.Metrics {
	t.Helper()
	ca := certtest.New(t, "monitoring test CA")
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("principals:\n  - name: reader\n    identities: [\"cn:reader\"]\n    grants:\n      - {role: read, paths: [\"/\"]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := authz.Open(policy, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	server, err := tls.LoadX509KeyPair(ca.ServerCert, ca.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{
		TLS:   &tls.Config{Certificates: []tls.Certificate{server}, ClientCAs: ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert},
		Authz: src,
	})
	cert := ca.Issue(t, "reader")
	cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: ca.Pool, Certificates: []tls.Certificate{cert.Pair}, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	_, err = topodv1.NewTopoClient(cc).Create(t.Context(), &topodv1.CreateRequest{Path: "/vitess/x", Contents: []byte("x")})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a reader's Create: %v, want PermissionDenied", err)
	}
	web := httptest.NewServer(srv.Topo.DebugHandler())
	defer web.Close()
	m, err := harness.Scrape(t.Context(), web.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if m.Sum("topod_authz_denied_total") == 0 {
		t.Fatal("the denial was not counted in topod_authz_denied_total")
	}
	return m
}

// TestListMetrics logs every series name real servers expose (go test -v
// -run TestListMetrics ./deploy/monitoring/), with its labels.
func TestListMetrics(t *testing.T) {
	e := scrapeRealServers(t)
	for _, n := range e.names() {
		var ls []string
		for l := range e[n] {
			ls = append(ls, l)
		}
		sort.Strings(ls)
		t.Logf("%s{%s}", n, strings.Join(ls, ","))
	}
}
