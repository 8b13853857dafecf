package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaapi/wire"
)

// TestCLI runs the client subcommands against a server: apply, dry run,
// diff, get, history, rollback, delete, audit, and their failures.
func TestCLI(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	srv := vschematest.StartVSchemad(t, tp, nil)
	tp.CreateKeyspaces(t, "commerce", "customer")
	dir := t.TempDir()
	write := func(name, content string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	v1 := write("v1.json", `{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
		"tables": {"customer": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]}}}`)
	v2 := write("v2.json", `{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
		"tables": {"customer": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]},
		           "corder": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]}}}`)
	bad := write("bad.json", `{"sharded": true, "tables": {"corder": {"column_vindexes": [{"column": "id", "name": "nosuch"}]}}}`)
	cli := func(args ...string) (int, string, string) {
		return runCLI(t, append(args, "--server", srv.URL)...)
	}
	versionRE := regexp.MustCompile(`version none -> (\d+)`)

	code, out, errOut := cli("apply", "-k", "customer", "-f", v1)
	m := versionRE.FindStringSubmatch(out)
	if code != 0 || m == nil || !strings.Contains(out, "1 table added") || !strings.Contains(out, "cell zone1: create") {
		t.Fatalf("apply: %d %q %q", code, out, errOut)
	}
	first := m[1]

	code, out, _ = cli("apply", "-k", "customer", "-f", v2, "--dry-run")
	if code != 0 || !vschematest.ContainsAll(out, "dry run: keyspace customer (version "+first+"): 1 table added", "+ tables.corder:") {
		t.Fatalf("dry run: %d %q", code, out)
	}
	code, out, _ = cli("diff", "-k", "customer", "-f", v2)
	if code != 0 || !strings.Contains(out, "+ tables.corder: {\"column_vindexes\":[{\"column\":\"customer_id\",\"name\":\"hash\"}]}") {
		t.Fatalf("diff: %d %q", code, out)
	}
	code, out, errOut = cli("apply", "-k", "customer", "-f", bad)
	if code != 1 || !vschematest.ContainsAll(errOut, "keyspace customer, table corder, field tables.corder.column_vindexes[0].name", "(HTTP 400)") {
		t.Fatalf("invalid apply: %d %q %q", code, out, errOut)
	}
	code, out, _ = cli("apply", "-k", "customer", "-f", v2, "--if-match", first)
	if code != 0 || !strings.Contains(out, "version "+first+" -> ") {
		t.Fatalf("apply v2: %d %q", code, out)
	}
	code, _, errOut = cli("apply", "-k", "customer", "-f", v1, "--if-match", first)
	if code != 1 || !strings.Contains(errOut, "version mismatch") || !strings.Contains(errOut, "HTTP 412") {
		t.Fatalf("stale --if-match: %d %q", code, errOut)
	}

	code, out, _ = cli("get", "-k", "customer")
	got := &vschemapb.Keyspace{}
	if code != 0 || json.Unmarshal([]byte(out), &map[string]any{}) != nil {
		t.Fatalf("get: %d %q", code, out)
	}
	got = vschematest.ParseKeyspace(t, []byte(out))
	if len(got.Tables) != 2 {
		t.Fatalf("get: %v", got)
	}
	code, out, _ = cli("get", "-k", "customer", "--version", first)
	if code != 0 || !proto.Equal(vschematest.ParseKeyspace(t, []byte(out)), vschematest.ParseKeyspace(t, mustRead(t, v1))) {
		t.Fatalf("get --version: %d %q", code, out)
	}

	code, out, _ = cli("history", "-k", "customer")
	if code != 0 || !vschematest.ContainsAll(out, "keyspace customer, current version", "anonymous", "apply", "1 table added") || strings.Count(out, "\n") != 4 {
		t.Fatalf("history: %d %q", code, out)
	}
	code, out, _ = cli("rollback", "-k", "customer", "--to-version", first)
	if code != 0 || !strings.Contains(out, "1 table removed") {
		t.Fatalf("rollback: %d %q", code, out)
	}
	// --to-previous undoes the last write, the rollback: v2 again.
	code, out, errOut = cli("rollback", "-k", "customer", "--to-previous")
	if code != 0 || !strings.Contains(out, "1 table added") || !strings.Contains(errOut, "rolling keyspace customer back to version ") {
		t.Fatalf("rollback --to-previous: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := cli("rollback", "-k", "customer", "--to-previous", "--to-version", first); code != 2 || !strings.Contains(errOut, "exclude each other") {
		t.Fatalf("rollback with both --to-previous and --to-version: %d %q", code, errOut)
	}
	if code, _, errOut := cli("rollback", "-k", "commerce", "--to-previous"); code != 1 || !strings.Contains(errOut, "no write of it") {
		t.Fatalf("rollback --to-previous of a keyspace vschemad never wrote: %d %q", code, errOut)
	}
	code, out, _ = cli("delete", "-k", "customer")
	if code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %d %q", code, out)
	}
	code, _, errOut = cli("get", "-k", "customer")
	if code != 1 || !strings.Contains(errOut, "HTTP 404") {
		t.Fatalf("get after delete: %d %q", code, errOut)
	}
	code, out, _ = cli("audit")
	if code != 0 || !vschematest.ContainsAll(out, "rollback to "+first, "delete", "customer") {
		t.Fatalf("audit: %d %q", code, out)
	}
	code, out, _ = cli("history", "-k", "customer", "-o", "json")
	if code != 0 || vschematest.Decode[wire.HistoryResponse](t, []byte(out)).Keyspace != "customer" {
		t.Fatalf("history -o json: %d %q", code, out)
	}

	// Usage errors exit 2; a server that is not there, 1.
	if code, _, errOut := cli("apply", "-f", v1); code == 0 || !strings.Contains(errOut, "keyspace") {
		t.Fatalf("apply without -k: %d %q", code, errOut)
	}
	if code, _, _ := cli("get", "-k", "customer", "--nosuchflag"); code != 2 {
		t.Fatalf("unknown flag: %d", code)
	}
	if code, _, errOut := runCLI(t, "get", "-k", "x", "--server", "http://127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "connection refused") {
		t.Fatalf("no server: %d %q", code, errOut)
	}
}

func mustRead(t testing.TB, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCLINoCells: on a topology with keyspaces but no cell registered, the
// writes succeed and each says that no cell was updated, in text and JSON.
func TestCLINoCells(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{NoCells: true})
	srv := vschematest.StartVSchemad(t, tp, nil)
	tp.CreateKeyspaces(t, "commerce", "customer")
	dir := t.TempDir()
	write := func(name, content string) string {
		f := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	v1 := write("v1.json", `{"tables": {"product": {}}}`)
	v2 := write("v2.json", `{"tables": {"product": {}, "corder": {}}}`)
	imports := filepath.Join(dir, "import")
	write("import/commerce.json", `{"tables": {"product": {}, "corder": {}, "customer": {}}}`)
	write("import/customer.json", `{"tables": {"customer": {}}}`)
	cli := func(args ...string) (int, string, string) {
		return runCLI(t, append(args, "--server", srv.URL)...)
	}
	const note = "no cell is registered in the topology: no cell's SrvVSchema was updated"
	first := ""
	cases := []struct {
		name string
		args func() []string
		want []string // in stdout
	}{
		{"apply", func() []string { return []string{"apply", "-k", "commerce", "-f", v1} }, []string{"keyspace commerce: version none -> ", "1 table added", note}},
		{"apply again", func() []string { return []string{"apply", "-k", "commerce", "-f", v2} }, []string{"1 table added", note}},
		{"rollback", func() []string { return []string{"rollback", "-k", "commerce", "--to-version", first} }, []string{"1 table removed", note}},
		{"delete", func() []string { return []string{"delete", "-k", "commerce"} }, []string{"deleted", note}},
		{"import", func() []string { return []string{"import", imports, "--progress", "none"} }, []string{"2 written", note}},
		{"apply -o json", func() []string { return []string{"apply", "-k", "customer", "-f", v2, "-o", "json"} }, []string{`"cells": []`, `"no_cells": true`, `"cells_note": "` + note}},
	}
	versionRE := regexp.MustCompile(`version none -> (\d+)`)
	for _, c := range cases {
		code, out, errOut := cli(c.args()...)
		if code != 0 || !vschematest.ContainsAll(out, c.want...) {
			t.Fatalf("%s: %d %q %q, want %q", c.name, code, out, errOut, c.want)
		}
		if m := versionRE.FindStringSubmatch(out); first == "" && m != nil {
			first = m[1]
		}
	}
}

// TestServeHelp: serve's --help documents the security flags and the
// timeouts with their defaults.
func TestServeHelp(t *testing.T) {
	code, out, _ := runCLI(t, "serve", "--help")
	if code != 0 {
		t.Fatalf("serve --help: %d", code)
	}
	out = strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		"--read-timeout duration the longest a request may take to arrive, body included (headers: 30s at most); 0 for the default (default 5m0s)",
		"--write-timeout duration the longest from a request's headers to the end of its answer",
		"0 for the default (default 10m0s)",
		"--idle-timeout duration how long an idle keep-alive connection is kept open; 0 for the default (default 2m0s)",
		"--allow-insecure-tokens accept bearer tokens over plain HTTP on an address that is not loopback",
		"requires Content-Type: application/json of every method but GET, HEAD and OPTIONS",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help does not say %q:\n%s", want, out)
		}
	}
}
