package vschematest

import (
	"bytes"
	"context"
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

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/vschemaapi"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// VSchemad is a vschemad server (pkg/vschemaapi) serving in-process on a
// loopback port.
type VSchemad struct {
	URL   string
	Audit string // the audit log file
	TP    *Topology
	// RecordAccess: the cells are updated through topod's record level.
	RecordAccess bool
}

// StartVSchemad serves vschemad on t until the test ends; mod adjusts the
// configuration.
func StartVSchemad(tb testing.TB, t *Topology, mod func(*vschemaapi.Config)) *VSchemad {
	tb.Helper()
	cfg := &vschemaapi.Config{
		Listen: "127.0.0.1:0", TopoImplementation: t.Impl, TopoAddress: t.Addr, TopoRoot: t.Root,
		AuditLog: filepath.Join(tb.TempDir(), "audit.log"), MaxBodyBytes: 64 << 20,
		LogLevel: "warn", ShutdownGrace: 5 * time.Second, RecordAccess: true,
	}
	if mod != nil {
		mod(cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- vschemaapi.Serve(ctx, cfg, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		cancel()
		tb.Fatalf("vschemad: %v", err)
	}
	tb.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			tb.Errorf("vschemad: %v", err)
		}
	})
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	return &VSchemad{URL: scheme + "://" + addr, Audit: cfg.AuditLog, TP: t,
		RecordAccess: cfg.RecordAccess && t.Impl == topoplugin.Name}
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
