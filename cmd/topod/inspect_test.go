package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/blobstore/blobtest"
	"github.com/topod-io/topod/pkg/inspect"
	_ "github.com/topod-io/topod/pkg/topoplugin" // the topod implementation
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// runTopod runs the topod command with args and returns its output.
func runTopod(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCommand()
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

// serveTopod runs `topod` with args until stop is called.
func serveTopod(t *testing.T, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	cmd := newRootCommand()
	cmd.SetArgs(append(args, "--log-level", "warn"))
	go func() { done <- cmd.ExecuteContext(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("topod exited with %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// writeTopology writes, through the plugin, a keyspace and zone1's
// SrvVSchema of 20 JD keyspaces twice (ks0004 changed the second time),
// uploads a blob nothing refers to, and returns both versions and the
// blob's hash.
func writeTopology(t *testing.T, addr string) (v1, v2 int64, orphan string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ts, err := topo.OpenServer("topod", addr, "/vitess/global")
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	if err := ts.CreateCellInfo(ctx, "zone1", &topodatapb.CellInfo{ServerAddress: addr, Root: "/vitess/zone1"}); err != nil {
		t.Fatal(err)
	}
	if err := ts.CreateKeyspace(ctx, "commerce", &topodatapb.Keyspace{DurabilityPolicy: "none"}); err != nil {
		t.Fatal(err)
	}
	srv := jd.JD().Sized(20).SrvVSchema()
	version := func() int64 {
		if err := ts.UpdateSrvVSchema(ctx, "zone1", srv); err != nil {
			t.Fatal(err)
		}
		conn, err := ts.ConnForCell(ctx, "zone1")
		if err != nil {
			t.Fatal(err)
		}
		_, v, err := conn.Get(ctx, "SrvVSchema")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseInt(v.String(), 10, 64)
		return n
	}
	v1 = version()
	srv = proto.Clone(srv).(*vschemapb.SrvVSchema)
	srv.Keyspaces["ks0004"].Tables["added_by_test"] = &vschemapb.Table{}
	v2 = version()

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h, data := blobtest.Blob(7, 3000)
	if _, err := topodv1.NewTopoClient(cc).PutBlobs(ctx, &topodv1.PutBlobsRequest{Blobs: []*topodv1.Blob{{Hash: h[:], Data: data}}}); err != nil {
		t.Fatal(err)
	}
	return v1, v2, h.String()
}

// inspectCase is one `topod inspect` command and what its output shows.
type inspectCase struct {
	name string
	args []string
	want []string // substrings of the output
}

func inspectCases(v1 int64) []inspectCase {
	return []inspectCase{
		{"ls", []string{"ls", "/vitess"}, []string{"NAME", "global/", "zone1/", "directory"}},
		{"ls recursive", []string{"ls", "-r", "/vitess/zone1"}, []string{"SrvVSchema", "vschema.SrvVSchema", "blobs (srvvschema)"}},
		{"ls json", []string{"ls", "--json", "/vitess/global"}, []string{`"name": "keyspaces/"`, `"name": "cells/"`}},
		{"get", []string{"get", "keyspaces/commerce/Keyspace"}, []string{"type:     topodata.Keyspace", `"durability_policy": "none"`}},
		{"get json", []string{"get", "--json", "/vitess/zone1/SrvVSchema"}, []string{`"type": "vschema.SrvVSchema"`, `"ks0004"`, `"added_by_test"`}},
		{"get version", []string{"get", "--json", "/vitess/zone1/SrvVSchema", "--version", strconv.FormatInt(v1, 10)}, []string{`"ks0004"`}},
		{"manifest", []string{"manifest", "/vitess/zone1/SrvVSchema"}, []string{"keyspaces:  20", "KEYSPACE", "PIECE BYTES", "ks0020", "routing_rules"}},
		{"manifest json", []string{"manifest", "--json", "/vitess/zone1/SrvVSchema"}, []string{`"codec": "srvvschema"`, `"name": "ks0001"`}},
		{"diff", []string{"diff", "/vitess/zone1/SrvVSchema", "--from-version", strconv.FormatInt(v1, 10)}, []string{"differ: 1 keyspace (19 the same), 0 other parts", "ks0004", "changed"}},
		{"diff json", []string{"diff", "--json", "/vitess/zone1/SrvVSchema", "--from-version", strconv.FormatInt(v1, 10)}, []string{`"name": "ks0004"`, `"unchanged_keyspaces": 19`}},
		{"diff two paths", []string{"diff", "/vitess/zone1/SrvVSchema", "/vitess/zone1/SrvVSchema"}, []string{"no difference: 20 keyspaces the same"}},
	}
}

// runCases runs every case with the source flags and returns each one's
// output, by name.
func runCases(t *testing.T, mode string, cases []inspectCase, source ...string) map[string]string {
	t.Helper()
	outs := map[string]string{}
	t.Run(mode, func(t *testing.T) { runEach(t, outs, cases, source...) })
	return outs
}

func runEach(t *testing.T, outs map[string]string, cases []inspectCase, source ...string) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runTopod(t, append(append([]string{"inspect", "--progress", "none"}, tc.args...), source...)...)
			if err != nil {
				t.Fatalf("topod inspect %v: %v\n%s", tc.args, err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not show %q:\n%.3000s", w, out)
				}
			}
			if strings.Contains(strings.Join(tc.args, " "), "--json") && !json.Valid([]byte(out)) {
				t.Errorf("--json output is not JSON:\n%.3000s", out)
			}
			outs[tc.name] = out
		})
	}
}

// sameOutputs checks that reading through topod and directly print the
// same (the one difference: how the source is named).
func sameOutputs(t *testing.T, viaTopod, direct map[string]string) {
	t.Helper()
	for name, a := range viaTopod {
		if b, ok := direct[name]; ok && a != b && !strings.HasPrefix(name, "ls") {
			t.Errorf("%s: through topod and directly differ:\n%.2000s\n---\n%.2000s", name, a, b)
		}
	}
}

// checkBlobs runs `topod inspect blobs` with the source flags: the
// uploaded orphan is the one unreferenced blob, within the grace period.
func checkBlobs(t *testing.T, orphan, grace string, source ...string) {
	t.Helper()
	out, err := runTopod(t, append([]string{"inspect", "blobs", "--json", "--progress", "none"}, source...)...)
	if err != nil {
		t.Fatalf("inspect blobs: %v\n%s", err, out)
	}
	var u inspect.Usage
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(u.Unreferenced) != 1 || u.Unreferenced[0].Hash != orphan || u.Unreferenced[0].Collectable || u.Referenced != u.Blobs-1 || u.Referenced == 0 {
		t.Fatalf("usage %+v, want the orphan %s as the one unreferenced blob", u, orphan)
	}
	// Judged by the grace the store's owner record names, which topod
	// wrote when it started.
	if u.GraceText != grace || u.Owner == nil || u.Owner.Grace != grace {
		t.Errorf("grace %s, owner record %+v; want %s", u.GraceText, u.Owner, grace)
	}
	out, err = runTopod(t, append([]string{"inspect", "blobs", "--progress", "none"}, source...)...)
	if err != nil || !strings.Contains(out, "UNREFERENCED BLOB") || !strings.Contains(out, orphan) || !strings.Contains(out, "kept (within grace)") {
		t.Fatalf("inspect blobs: %v\n%s", err, out)
	}
}

// TestInspectCommandBolt: `topod inspect` on topod over bolt: through the
// running topod, then, with it stopped, on its data directory; both print
// the same. While it runs, the data directory is refused (held).
func TestInspectCommandBolt(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	addr := freeAddr(t)
	stop := serveTopod(t, "--listen", addr, "--data-dir", dataDir)
	v1, v2, orphan := writeTopology(t, addr)
	cases := inspectCases(v1)
	viaTopod := runCases(t, "through topod", cases, "--address", addr)

	t.Run("blobs through topod", func(t *testing.T) {
		_, err := runTopod(t, "inspect", "blobs", "--address", addr)
		if err == nil || !strings.Contains(err.Error(), "--backend and --blobs") {
			t.Fatalf("got %v, want an error asking for the store", err)
		}
	})
	t.Run("versions through topod", func(t *testing.T) {
		_, err := runTopod(t, "inspect", "versions", "/vitess/zone1/SrvVSchema", "--address", addr)
		if err == nil || !strings.Contains(err.Error(), "--backend") {
			t.Fatalf("got %v, want an error asking for the backend", err)
		}
	})
	t.Run("held by topod", func(t *testing.T) {
		_, err := runTopod(t, "inspect", "ls", "--data-dir", dataDir)
		if err == nil || !strings.Contains(err.Error(), "held by another process") || !strings.Contains(err.Error(), "topo.db") {
			t.Fatalf("got %v, want an error saying topod holds the file", err)
		}
	})

	stop()
	dbBefore, err := os.ReadFile(filepath.Join(dataDir, "topo.db"))
	if err != nil {
		t.Fatal(err)
	}
	direct := runCases(t, "data dir", cases, "--data-dir", dataDir)
	sameOutputs(t, viaTopod, direct)
	t.Run("versions", func(t *testing.T) {
		out, err := runTopod(t, "inspect", "versions", "/vitess/zone1/SrvVSchema", "--data-dir", dataDir)
		if err != nil || !strings.Contains(out, strconv.FormatInt(v1, 10)) || !strings.Contains(out, strconv.FormatInt(v2, 10)+"  ") || !strings.Contains(out, "current") {
			t.Fatalf("versions: %v\n%s", err, out)
		}
	})
	t.Run("blobs", func(t *testing.T) { checkBlobs(t, orphan, "1h0m0s", "--data-dir", dataDir) })
	t.Run("blobs by URL", func(t *testing.T) {
		checkBlobs(t, orphan, "1h0m0s", "--backend", "bolt://"+filepath.Join(dataDir, "topo.db"), "--blobs", "file://"+filepath.Join(dataDir, "blobs"))
	})
	// Read-only: the bolt file is as topod left it.
	if dbAfter, err := os.ReadFile(filepath.Join(dataDir, "topo.db")); err != nil || !bytes.Equal(dbBefore, dbAfter) {
		t.Errorf("inspect changed topo.db (%v)", err)
	}
}

// TestInspectCommandEtcd: `topod inspect` on topod over a real etcd,
// through topod and directly on etcd and the blob store beside it.
func TestInspectCommandEtcd(t *testing.T) {
	cluster := harness.StartEtcd(t, 1)
	blobs := "file://" + filepath.Join(t.TempDir(), "blobs")
	backend := "etcd://" + strings.Join(cluster.Endpoints(), ",")
	addr := freeAddr(t)
	serveTopod(t, "--listen", addr, "--backend", backend, "--blobs", blobs, "--data-dir", t.TempDir(), "--gc-grace", "2h")
	v1, _, orphan := writeTopology(t, addr)
	cases := inspectCases(v1)
	viaTopod := runCases(t, "through topod", cases, "--address", addr)
	direct := runCases(t, "etcd and blobs", cases, "--backend", backend, "--blobs", blobs)
	sameOutputs(t, viaTopod, direct)
	t.Run("blobs", func(t *testing.T) { checkBlobs(t, orphan, "2h0m0s", "--backend", backend, "--blobs", blobs) })
	t.Run("blobs by another grace", func(t *testing.T) {
		out, err := runTopod(t, "inspect", "blobs", "--json", "--progress", "none", "--gc-grace", "1s", "--backend", backend, "--blobs", blobs)
		var u inspect.Usage
		if err != nil || json.Unmarshal([]byte(out), &u) != nil || u.GraceText != "1s" || len(u.Unreferenced) != 1 {
			t.Fatalf("inspect blobs --gc-grace 1s: %v\n%s", err, out)
		}
	})
}

// TestInspectCommandErrors: what is missing or unreachable is named.
func TestInspectCommandErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nothing-here")
	dataDir := filepath.Join(t.TempDir(), "data")
	addr := freeAddr(t)
	stop := serveTopod(t, "--listen", addr, "--data-dir", dataDir)
	writeTopology(t, addr)
	nobody := freeAddr(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no such file", []string{"get", "/vitess/global/keyspaces/nosuch/Keyspace", "--address", addr}, []string{"/vitess/global/keyspaces/nosuch/Keyspace", "not found", "topod at " + addr}},
		{"no such directory", []string{"ls", "/vitess/nowhere", "--address", addr}, []string{"/vitess/nowhere", "not found"}},
		{"no such version", []string{"get", "/vitess/zone1/SrvVSchema", "--version", "1", "--address", addr}, []string{"/vitess/zone1/SrvVSchema at version 1", "not found"}},
		{"not a SrvVSchema", []string{"manifest", "/vitess/global/keyspaces/commerce/Keyspace", "--address", addr}, []string{"not a SrvVSchema"}},
		{"diff of one path without a version", []string{"diff", "/vitess/zone1/SrvVSchema", "--address", addr}, []string{"--from-version"}},
		{"topod unreachable", []string{"ls", "--address", nobody}, []string{"topod at " + nobody, "unreachable"}},
		{"etcd unreachable", []string{"ls", "--backend", "etcd://" + nobody, "--blobs", "file://" + t.TempDir()}, []string{nobody}},
		{"no bolt file", []string{"ls", "--data-dir", missing}, []string{filepath.Join(missing, "topo.db")}},
		{"both sources", []string{"ls", "--data-dir", dataDir, "--address", addr}, []string{"not both"}},
		{"bad progress", []string{"ls", "--address", addr, "--progress", "loud"}, []string{"--progress"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			cmd := newRootCommand()
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(append([]string{"inspect"}, tc.args...))
			err := cmd.ExecuteContext(ctx)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	stop()
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("inspect created %s: %v", missing, err)
	}
}
