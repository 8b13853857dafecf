package topoplugin_test

import (
	"context"
	"expvar"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/util/wait"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/blobstore/s3blob"
	"github.com/topod-io/topod/pkg/cache"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/srvvschema"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/toposerver"
)

// smallSrvVSchema is a SrvVSchema well over the inline limit, so it is
// stored as blobs, and its variant with keyspace i changed.
func smallSrvVSchema(t *testing.T) (*vschemapb.SrvVSchema, func(i int, col string) (*vschemapb.SrvVSchema, string)) {
	t.Helper()
	p := jd.JD().Sized(20)
	srv := p.SrvVSchema()
	if n := proto.Size(srv); n < 64<<10 {
		t.Fatalf("test SrvVSchema is only %d bytes", n)
	}
	return srv, func(i int, col string) (*vschemapb.SrvVSchema, string) {
		name, ks := p.Keyspace(i)
		ks = proto.Clone(ks).(*vschemapb.Keyspace)
		for _, table := range ks.Tables {
			table.Columns = append(table.Columns, &vschemapb.Column{Name: col})
			break
		}
		changed := proto.Clone(srv).(*vschemapb.SrvVSchema)
		changed.Keyspaces[name] = ks
		return changed, name
	}
}

// damagedChange is a SrvVSchema watched on a connection with a cache of
// its own, then changed to a version whose new piece is stored damaged
// (the writer's MissingBlobs finds it and does not upload it again).
type damagedChange struct {
	srv     *harness.Topod
	blobs   *fileblob.Store
	writer  *topoplugin.Conn
	changes <-chan *topo.WatchData
	edit    func(i int, col string) (*vschemapb.SrvVSchema, string)
	v2      *vschemapb.SrvVSchema
	piece   content.Hash // v2's damaged piece
	good    []byte       // its good bytes
	// unreadable is TopodWatchUnreadableChanges before v2 was written.
	unreadable int64
}

func writeDamagedChange(t *testing.T) *damagedChange {
	t.Helper()
	ctx := t.Context()
	blobs, err := fileblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := &damagedChange{blobs: blobs}
	d.srv = harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{Blobs: blobs})
	d.writer = newConn(t, d.srv.Addr, "/vitess/cell1")
	var v1 *vschemapb.SrvVSchema
	v1, d.edit = smallSrvVSchema(t)
	if _, err := d.writer.Update(ctx, "SrvVSchema", marshal(t, v1), nil); err != nil {
		t.Fatal(err)
	}
	watcher, err := topoplugin.NewConnWithCache(d.srv.Addr, "/vitess/cell1", cache.New(1<<30))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(watcher.Close)
	if _, d.changes, err = watcher.Watch(ctx, "SrvVSchema"); err != nil {
		t.Fatal(err)
	}
	var name string
	d.v2, name = d.edit(3, "damaged")
	enc, err := srvvschema.Encode(d.v2)
	if err != nil {
		t.Fatal(err)
	}
	piece, _ := enc.Manifest.Keyspace(name)
	d.piece, d.good = piece.Hash, enc.Blobs[piece.Hash]
	writeBlobFile(t, blobs.Path(d.piece), append([]byte("X"), d.good[1:]...))
	d.unreadable = stat(t, "TopodWatchUnreadableChanges")
	if _, err := d.writer.Update(ctx, "SrvVSchema", marshal(t, d.v2), nil); err != nil {
		t.Fatal(err)
	}
	return d
}

// refusedTwice waits until the watcher has tried twice to deliver the
// damaged change (TopodWatchUnreadableChanges), and fails if it delivered
// anything: the change was seen and kept back, not merely not reached yet.
func (d *damagedChange) refusedTwice(t *testing.T) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		select {
		case wd := <-d.changes:
			return false, fmt.Errorf("watcher got a change from a damaged version: %v", wd.Err)
		default:
		}
		return stat(t, "TopodWatchUnreadableChanges")-d.unreadable >= 2, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// stat is the process's Vitess stats variable name (what a vtgate shows
// in /debug/vars), which must exist and be a number.
func stat(t *testing.T, name string) int64 {
	t.Helper()
	v := expvar.Get(name)
	if v == nil {
		t.Fatalf("no stats variable %s", name)
	}
	n, err := strconv.ParseInt(v.String(), 10, 64)
	if err != nil {
		t.Fatalf("%s = %s: %v", name, v, err)
	}
	return n
}

// TestCorruptOrMissingBlob: a blob whose bytes do not match its hash, or that
// is gone, gives readers a clear error naming it, never wrong content, and a
// watcher keeps serving the last good value until a good one comes.
func TestCorruptOrMissingBlob(t *testing.T) {
	ctx := t.Context()
	d := writeDamagedChange(t)
	srv, blobs, writer, changes, edit, piece := d.srv, d.blobs, d.writer, d.changes, d.edit, d.piece
	reader, err := topoplugin.NewConnWithCache(srv.Addr, "/vitess/cell1", cache.New(1<<30))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	_, _, err = reader.Get(ctx, "SrvVSchema")
	if err == nil || !strings.Contains(err.Error(), piece.String()) {
		t.Fatalf("Get of a SrvVSchema with a corrupt piece = %v, want an error naming %s", err, piece)
	}
	t.Logf("corrupt piece: %v", err)
	d.refusedTwice(t)

	// A missing blob, the same.
	if err := os.Remove(blobs.Path(piece)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reader.Get(ctx, "SrvVSchema"); err == nil || !strings.Contains(err.Error(), piece.String()) {
		t.Fatalf("Get of a SrvVSchema with a missing piece = %v", err)
	}

	// A good version comes: the watcher moves on to it.
	v3, _ := edit(4, "fine")
	if _, err := writer.Update(ctx, "SrvVSchema", marshal(t, v3), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case wd := <-changes:
		if wd.Err != nil || !proto.Equal(unmarshalSrv(t, wd.Contents), v3) {
			t.Fatalf("watcher after repair: %v", wd.Err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("watcher did not converge on the good version")
	}
}

// TestUnreadableChangeDeliveredOnceReadable: a change whose blob cannot be
// read (damaged in the store) is not lost: the watcher keeps its last good
// value while it cannot be read, and gets the change as soon as the blob is
// repaired, with no further write.
func TestUnreadableChangeDeliveredOnceReadable(t *testing.T) {
	d := writeDamagedChange(t)
	changes := d.changes
	d.refusedTwice(t)
	writeBlobFile(t, d.blobs.Path(d.piece), d.good)
	select {
	case wd := <-changes:
		if wd.Err != nil || !proto.Equal(unmarshalSrv(t, wd.Contents), d.v2) {
			t.Fatalf("watcher after repair: %v", wd.Err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the change was never delivered once its blob was repaired")
	}
}

// TestBlobStoreDownOnWrite: with the blob store unreachable, a write fails
// with an error saying so and leaves the previous value in place.
func TestBlobStoreDownOnWrite(t *testing.T) {
	ctx := t.Context()
	m := harness.StartMinIO(t)
	blobs, err := s3blob.Open(ctx, s3blob.Config{
		Endpoint: m.Endpoint, Bucket: m.Bucket, Region: harness.MinIORegion, MaxRetries: 1,
		Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer blobs.Close()
	srv := harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{Blobs: blobs})
	c := newConn(t, srv.Addr, "/vitess/cell1")
	v1, edit := smallSrvVSchema(t)
	if _, err := c.Update(ctx, "SrvVSchema", marshal(t, v1), nil); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	v2, _ := edit(1, "lost")
	short, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = c.Update(short, "SrvVSchema", marshal(t, v2), nil)
	if err == nil || !strings.Contains(err.Error(), m.Endpoint) {
		t.Fatalf("Update with MinIO down = %v, want an error naming %s", err, m.Endpoint)
	}
	t.Logf("write with the blob store down: %v", err)
	m.Restart(t)
	got, _, err := newConn(t, srv.Addr, "/vitess/cell1").Get(ctx, "SrvVSchema")
	if err != nil || !proto.Equal(unmarshalSrv(t, got), v1) {
		t.Fatalf("after the failed write, Get = %v; want the previous value", err)
	}
}

func writeBlobFile(t *testing.T, file string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o444); err != nil {
		t.Fatal(err)
	}
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestColdReadBatchesBlobs: a reader with an empty cache fetches a
// 300-keyspace SrvVSchema's root, then its leaves and its pieces in GetBlobs
// batches, not with a request per blob, and reads it back equal.
func TestColdReadBatchesBlobs(t *testing.T) {
	ctx := t.Context()
	srv := harness.StartTopod(t, harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db")), toposerver.Options{})
	writer := newConn(t, srv.Addr, "/vitess/cell1")
	srvVSchema := jd.JD().Sized(300).SrvVSchema()
	data := marshal(t, srvVSchema)
	if _, err := writer.Update(ctx, "SrvVSchema", data, nil); err != nil {
		t.Fatal(err)
	}
	enc, err := srvvschema.Encode(srvVSchema)
	if err != nil {
		t.Fatal(err)
	}
	unaryGets := func() float64 {
		return metric(t, srv, "grpc_server_handled_total", "grpc_code", "OK", "grpc_method", "GetBlob", "grpc_service", "topod.v1.Topo", "grpc_type", "unary")
	}
	before := unaryGets()
	reader, err := topoplugin.NewConnWithCache(srv.Addr, "/vitess/cell1", cache.New(1<<30))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	got, _, err := reader.Get(ctx, "SrvVSchema")
	if err != nil || !proto.Equal(unmarshalSrv(t, got), srvVSchema) {
		t.Fatalf("cold Get: %v", err)
	}
	unary, fetched := unaryGets()-before, reader.BlobStats().Fetches
	t.Logf("%d blobs fetched, %.0f of them with GetBlob", fetched, unary)
	if fetched != int64(len(enc.Blobs)) {
		t.Errorf("fetched %d blobs, want each of the %d once", fetched, len(enc.Blobs))
	}
	if unary != 1 {
		t.Errorf("%.0f GetBlob requests, want 1 (the root)", unary)
	}
}
