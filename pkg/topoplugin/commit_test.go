package topoplugin

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/record"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// TestWriterStoppedAfterUpload: a writer that dies after uploading a new
// version's blobs but before setting the record leaves the old version fully
// readable; and topod refuses a record whose blobs were never uploaded.
func TestWriterStoppedAfterUpload(t *testing.T) {
	ctx := t.Context()
	b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srv := harness.StartTopod(t, b, toposerver.Options{})
	c, err := NewConn(srv.Addr, "/vitess/global")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for _, tc := range []struct {
		file      string
		old, next []byte
	}{
		{"SrvVSchema", srvVSchema(t, 0), srvVSchema(t, 1)},
		{"big", bytes.Repeat([]byte("old tablet list "), 8<<10), bytes.Repeat([]byte("new tablet list "), 8<<10)}, // chunked
	} {
		v1, err := c.Update(ctx, tc.file, tc.old, nil)
		if err != nil {
			t.Fatal(err)
		}
		// The first half of a write: blobs uploaded, record not set.
		value, err := c.encode(ctx, "/vitess/global/"+tc.file, tc.next)
		if err != nil {
			t.Fatal(err)
		}
		got, v, err := c.Get(ctx, tc.file)
		if err != nil || !bytes.Equal(got, tc.old) || v.String() != v1.String() {
			t.Fatalf("%s after an interrupted write: Get = %d bytes, %v, %v; want the old value", tc.file, len(got), v, err)
		}
		// The second half, later, still works: the blobs are there.
		if _, err := c.client.Update(ctx, &topodv1.UpdateRequest{Path: "/vitess/global/" + tc.file, Contents: value}); err != nil {
			t.Fatal(err)
		}
		if got, _, err := c.Get(ctx, tc.file); err != nil || !bytes.Equal(got, tc.next) {
			t.Fatalf("%s: Get = %v", tc.file, err)
		}
	}
	next := bytes.Repeat([]byte("new tablet list "), 8<<10)

	// A record referring to blobs nobody uploaded is refused.
	other, err := NewConn(srv.Addr, "/vitess/global")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	unseen := bytes.Repeat([]byte("never uploaded "), 8<<10)
	enc := mustEncode(t, "/vitess/global/big", unseen)
	_, err = c.client.Update(context.Background(), &topodv1.UpdateRequest{Path: "/vitess/global/big", Contents: enc})
	if err == nil {
		t.Fatal("topod accepted a record whose blobs are not stored")
	}
	if got, _, err := other.Get(ctx, "big"); err != nil || !bytes.Equal(got, next) {
		t.Fatalf("after the refused record Get = %v", err)
	}
}

// srvVSchema is the JD profile's first 20 keyspaces, with the table list of
// keyspace 0 cut to variant tables (so variants differ), marshalled as the
// SrvVSchema codec reassembles it.
func srvVSchema(t *testing.T, variant int) []byte {
	t.Helper()
	p := jd.JD().Sized(20)
	srv := p.SrvVSchema()
	name, _ := p.Keyspace(0)
	srv.Keyspaces[name].Tables = map[string]*vschemapb.Table{fmt.Sprintf("t%d", variant): {}}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(srv)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustEncode(t *testing.T, p string, contents []byte) []byte {
	t.Helper()
	enc, err := record.Encode(p, contents, record.DefaultInlineLimit)
	if err != nil {
		t.Fatal(err)
	}
	return enc.Value
}
