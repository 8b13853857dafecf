package vschematest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/vschemaapi"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// VSchemad is vschemad's API (vschemaapi.NewHandler) served in-process
// on a loopback port (httptest), over a store of its own on a topology,
// with an audit log in a temporary file: what `vschemad serve` wires,
// without its flags.
type VSchemad struct {
	URL   string
	Audit string // the audit log file
	TP    *Topology
	// RecordAccess: the cells are updated through topod's record level.
	RecordAccess bool
	// MetricsURL serves the handler's /metrics.
	MetricsURL string
}

// VSchemadOptions adjust StartVSchemad's server; nil is the defaults.
type VSchemadOptions struct {
	// Tokens is a tokens file (vschemaapi.LoadTokens); "" serves without
	// authentication, guarded as on loopback (vschemaapi.GuardLoopback).
	Tokens string
	// ClientCerts, without Tokens, guards as a server authenticating by
	// client certificates alone (vschemaapi.GuardBrowser); the test server
	// itself is plain HTTP.
	ClientCerts bool
	// MaxBodyBytes is the body limit; 0 for vschemad's default, 64 MiB.
	MaxBodyBytes int64
	// Portable updates the cells through topo.Conn alone, not topod's
	// record level (vschemad serve --topod-record-access=false).
	Portable bool
}

// StartVSchemad serves vschemad's API on t until the test ends.
func StartVSchemad(tb testing.TB, t *Topology, opts *VSchemadOptions) *VSchemad {
	tb.Helper()
	if opts == nil {
		opts = &VSchemadOptions{}
	}
	ts := t.Open(tb) // a client of its own, as a vschemad process has
	sopts := vschemastore.StoreOptions{}
	recordAccess := t.Impl == topoplugin.Name && !opts.Portable
	if recordAccess {
		conns := topoplugin.NewCellConns(ts, nil)
		tb.Cleanup(conns.Close)
		sopts.RecordConn = func(ctx context.Context, cell string) (vschemastore.RecordConn, error) {
			c, err := conns.Get(ctx, cell)
			if err != nil {
				return nil, err
			}
			return c, nil
		}
	}
	store, err := vschemastore.NewStore(ts, sopts)
	if err != nil {
		tb.Fatal(err)
	}
	auth := vschemaapi.Anyone
	if opts.Tokens != "" {
		tokens, err := vschemaapi.LoadTokens(opts.Tokens)
		if err != nil {
			tb.Fatal(err)
		}
		auth = tokens
	}
	auditPath := filepath.Join(tb.TempDir(), "audit.log")
	audit, err := vschemaapi.OpenAudit(auditPath, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { audit.Close() })
	hopts := vschemaapi.Options{MaxBodyBytes: cmp.Or(opts.MaxBodyBytes, 64<<20), Guard: vschemaapi.GuardFor(opts.Tokens != "", opts.ClientCerts), Metrics: vschemaapi.NewMetrics()}
	srv := httptest.NewServer(vschemaapi.NewHandler(store, auth, audit, hopts))
	tb.Cleanup(srv.Close)
	metrics := httptest.NewServer(hopts.Metrics.Handler())
	tb.Cleanup(metrics.Close)
	return &VSchemad{URL: srv.URL, Audit: auditPath, TP: t, RecordAccess: recordAccess, MetricsURL: metrics.URL + "/metrics"}
}

// Call makes one request and returns the status, body and headers; hc nil
// is http.DefaultClient, hdr is name, value pairs. A request other than GET
// and HEAD says Content-Type: application/json, as vschemaclient's do,
// unless hdr sets another; a "Host" in hdr is sent as the Host.
func Call(tb testing.TB, hc *http.Client, method, url string, body []byte, hdr ...string) (int, []byte, http.Header) {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if method != http.MethodGet && method != http.MethodHead {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if http.CanonicalHeaderKey(hdr[i]) == "Host" {
			req.Host = hdr[i+1] // what the client sends as Host
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, out, resp.Header
}

// VSchemaJSON is ks as vtctldclient's JSON.
func VSchemaJSON(tb testing.TB, ks proto.Message) []byte {
	tb.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(ks)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// ParseKeyspace parses a keyspace vschema from vtctldclient's JSON.
func ParseKeyspace(tb testing.TB, b []byte) *vschemapb.Keyspace {
	tb.Helper()
	ks := &vschemapb.Keyspace{}
	if err := protojson.Unmarshal(b, ks); err != nil {
		tb.Fatalf("parse vschema %q: %v", b, err)
	}
	return ks
}

// Decode decodes JSON into a T.
func Decode[T any](tb testing.TB, b []byte) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatalf("decode %T from %q: %v", v, b, err)
	}
	return v
}

// CreateProfileKeyspaces creates the keyspaces of p and returns their names.
func (t *Topology) CreateProfileKeyspaces(tb testing.TB, p jd.Profile) []string {
	tb.Helper()
	names := make([]string, p.Keyspaces)
	for i := range names {
		names[i] = p.KeyspaceName(i)
	}
	t.CreateKeyspaces(tb, names...)
	return names
}

// ProfileLevels orders the profile's keyspaces, by index, so that each
// comes after those it refers to: those that refer to no other keyspace,
// then the rest.
func ProfileLevels(p jd.Profile) [][]int {
	var first, rest []int
	for i := range p.Keyspaces {
		name, ks := p.Keyspace(i)
		if len(vschemastore.References(name, ks)) == 0 {
			first = append(first, i)
		} else {
			rest = append(rest, i)
		}
	}
	return [][]int{first, rest}
}

// WriteProfileDir writes the vschemas of p as DIR/KS.json (and, for every
// third keyspace, DIR/KS/vschema.json), returning DIR: the input of
// `vschemad import`.
func WriteProfileDir(tb testing.TB, p jd.Profile) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "vschemas")
	for i := range p.Keyspaces {
		name, ks := p.Keyspace(i)
		file := filepath.Join(dir, name+".json")
		if i%3 == 0 {
			file = filepath.Join(dir, name, "vschema.json")
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(file, VSchemaJSON(tb, ks), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// ContainsAll says whether s contains every one of subs.
func ContainsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
