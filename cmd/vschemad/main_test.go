package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/internal/vschematest"
)

func TestMain(m *testing.M) {
	vschematest.QuietVitessLogs()
	os.Exit(m.Run())
}

// testServer is a vschemad serving in-process on a loopback port.
type testServer struct {
	URL   string
	Audit string
	TP    *vschematest.Topology
	// recordAccess: the cells are updated through topod's record level.
	recordAccess bool
}

// startServer runs `vschemad serve` on tp until the test ends; mod adjusts
// the configuration.
func startServer(t testing.TB, tp *vschematest.Topology, mod func(*serveConfig)) *testServer {
	t.Helper()
	cfg := &serveConfig{
		listen: "127.0.0.1:0", topoImpl: tp.Impl, topoAddr: tp.Addr, topoRoot: tp.Root,
		auditLog: filepath.Join(t.TempDir(), "audit.log"), maxBodyBytes: 64 << 20,
		logLevel: "warn", shutdownGrace: 5 * time.Second, recordAccess: true,
	}
	if mod != nil {
		mod(cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, cfg, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	scheme := "http"
	if cfg.tlsCert != "" {
		scheme = "https"
	}
	return &testServer{URL: scheme + "://" + addr, Audit: cfg.auditLog, TP: tp, recordAccess: cfg.recordAccess && tp.Impl == "topod"}
}

// call makes one request and returns the status, body and headers. hdr is
// name, value pairs.
func call(t testing.TB, hc *http.Client, method, url string, body []byte, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out, resp.Header
}

// vschemaJSON is ks as vtctldclient's JSON.
func vschemaJSON(t testing.TB, ks proto.Message) []byte {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(ks)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseKeyspace(t testing.TB, b []byte) *vschemapb.Keyspace {
	t.Helper()
	ks := &vschemapb.Keyspace{}
	if err := protojson.Unmarshal(b, ks); err != nil {
		t.Fatalf("parse vschema %q: %v", b, err)
	}
	return ks
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, b, err)
	}
	return v
}

// profileNames creates the keyspaces of p in tp and returns their names.
func profileNames(t testing.TB, tp *vschematest.Topology, p jd.Profile) []string {
	t.Helper()
	names := make([]string, p.Keyspaces)
	for i := range names {
		names[i] = p.KeyspaceName(i)
	}
	tp.CreateKeyspaces(t, names...)
	return names
}

// writeProfileDir writes the vschemas of p as DIR/KS.json (and, for every
// third keyspace, DIR/KS/vschema.json), returning DIR.
func writeProfileDir(t testing.TB, p jd.Profile) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "vschemas")
	for i := range p.Keyspaces {
		name, ks := p.Keyspace(i)
		file := filepath.Join(dir, name+".json")
		if i%3 == 0 {
			file = filepath.Join(dir, name, "vschema.json")
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, vschemaJSON(t, ks), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runCLI runs the vschemad command line in-process.
func runCLI(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// tlsClient trusts the test CA and presents cert, if any.
func tlsClient(ca *certtest.CA, cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: ca.Pool}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
