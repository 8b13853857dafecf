package topoplugin_test

import (
	"context"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/blobstore/s3blob"
	"github.com/topod-io/topod/pkg/cache"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/record"
	"github.com/topod-io/topod/pkg/srvvschema"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/toposerver"
)

// blobStores are the blob stores the storage tests run against: the file
// store and MinIO over S3.
var blobStores = []struct {
	name string
	open func(t *testing.T) blobstore.Store
}{
	{"file", func(t *testing.T) blobstore.Store {
		s, err := fileblob.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"minio", func(t *testing.T) blobstore.Store {
		m := harness.StartMinIO(t)
		s, err := s3blob.Open(t.Context(), s3blob.Config{
			Endpoint: m.Endpoint, Bucket: m.Bucket, Prefix: "topod", Region: harness.MinIORegion,
			Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// TestJDProfileOnEtcd writes the JD profile's SrvVSchema (1,911 keyspaces,
// 552,104 tables, far over etcd's 1.5 MiB request limit) with Vitess's own
// topo.Server through the plugin to topod on a real etcd at its default
// limits, reads it back with GetSrvVSchema and WatchSrvVSchema, and finds it
// proto-equal; no value in etcd is over 64 KiB. Then one keyspace changes:
// a watcher fetches the changed piece, one leaf and the root, nothing else;
// and eight cells holding the same SrvVSchema store each piece once.
func TestJDProfileOnEtcd(t *testing.T) {
	profile := jd.JD()
	want := profile.SrvVSchema()
	for _, bs := range blobStores {
		t.Run(bs.name, func(t *testing.T) {
			ctx := t.Context()
			cluster := harness.StartEtcd(t, 1)
			blobs := bs.open(t)
			srv := harness.StartTopod(t, harness.OpenEtcd(t, cluster.Endpoints()), toposerver.Options{Blobs: blobs})
			ts := harness.OpenTopo(t, "topod", srv.Addr, "/vitess")
			cells := profile.CellNames()
			for _, cell := range cells {
				if err := ts.CreateCellInfo(ctx, cell, &topodatapb.CellInfo{ServerAddress: srv.Addr, Root: "/vitess/" + cell}); err != nil {
					t.Fatal(err)
				}
			}

			start := time.Now()
			if err := ts.UpdateSrvVSchema(ctx, cells[0], want); err != nil {
				t.Fatalf("UpdateSrvVSchema: %v", err)
			}
			t.Logf("wrote the JD SrvVSchema (%d bytes) in %v", proto.Size(want), time.Since(start))
			got, err := ts.GetSrvVSchema(ctx, cells[0])
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Fatal("GetSrvVSchema is not what was written")
			}

			// A watcher with a cache of its own, to count what it fetches.
			watcher, err := topoplugin.NewConnWithCache(srv.Addr, "/vitess/"+cells[0], cache.New(1<<30))
			if err != nil {
				t.Fatal(err)
			}
			defer watcher.Close()
			watchCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			current, changes, err := watcher.Watch(watchCtx, "SrvVSchema")
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(unmarshalSrv(t, current.Contents), want) {
				t.Fatal("watched SrvVSchema is not what was written")
			}
			// Vitess's own watch API sees it too.
			wd, _, err := ts.WatchSrvVSchema(watchCtx, cells[0])
			if err != nil || !proto.Equal(wd.Value, want) {
				t.Fatalf("WatchSrvVSchema = %v", err)
			}

			// One keyspace changes.
			before := watcher.BlobStats()
			name, ks := profile.Keyspace(7)
			ks = proto.Clone(ks).(*vschemapb.Keyspace)
			for _, table := range ks.Tables {
				table.Columns = append(table.Columns, &vschemapb.Column{Name: "added_col"})
				break
			}
			changed := proto.Clone(want).(*vschemapb.SrvVSchema)
			changed.Keyspaces[name] = ks
			if err := ts.UpdateSrvVSchema(ctx, cells[0], changed); err != nil {
				t.Fatal(err)
			}
			select {
			case wd := <-changes:
				if wd.Err != nil || !proto.Equal(unmarshalSrv(t, wd.Contents), changed) {
					t.Fatalf("watcher got %v", wd.Err)
				}
			case <-time.After(time.Minute):
				t.Fatal("watcher saw no change")
			}
			fetched := watcher.BlobStats()
			oldEnc, _ := srvvschema.Encode(want)
			newEnc, _ := srvvschema.Encode(changed)
			var expected int64
			for h, b := range newEnc.Blobs {
				if _, ok := oldEnc.Blobs[h]; !ok {
					expected += int64(len(b))
				}
			}
			piece, _ := newEnc.Manifest.Keyspace(name)
			t.Logf("one-keyspace change: watcher fetched %d blobs, %d bytes (piece %d bytes)",
				fetched.Fetches-before.Fetches, fetched.FetchedBytes-before.FetchedBytes, piece.Size)
			if n := fetched.Fetches - before.Fetches; n != 3 {
				t.Errorf("watcher fetched %d blobs for a one-keyspace change, want 3 (root, leaf, piece)", n)
			}
			if b := fetched.FetchedBytes - before.FetchedBytes; b != expected || b > piece.Size+16<<10 {
				t.Errorf("watcher fetched %d bytes, want %d (piece %d + at most 16 KiB)", b, expected, piece.Size)
			}

			assertEtcdValuesSmall(t, cluster)
			if bs.name != "file" {
				return // the rest is about the codec, not the store
			}

			// Eight cells, one SrvVSchema: each piece stored once.
			for _, cell := range cells[1:] {
				if err := ts.UpdateSrvVSchema(ctx, cell, changed); err != nil {
					t.Fatal(err)
				}
			}
			stored := map[content.Hash]bool{}
			if err := blobs.Walk(ctx, func(h content.Hash, _ int64, _ time.Time) error {
				stored[h] = true
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			union := map[content.Hash]bool{}
			for h := range oldEnc.Blobs {
				union[h] = true
			}
			for h := range newEnc.Blobs {
				union[h] = true
			}
			if len(stored) != len(union) {
				t.Errorf("blob store holds %d blobs for 8 cells, want %d (the two versions' blobs, once each)", len(stored), len(union))
			}
		})
	}
}

// assertEtcdValuesSmall scans every key in etcd: no value is over the
// 64 KiB cap.
func assertEtcdValuesSmall(t *testing.T, cluster *harness.Etcd) {
	t.Helper()
	cli := cluster.Client(t)
	resp, err := cli.Get(t.Context(), "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	largest, key := 0, ""
	for _, kv := range resp.Kvs {
		if len(kv.Value) > largest {
			largest, key = len(kv.Value), string(kv.Key)
		}
	}
	t.Logf("etcd holds %d keys; the largest value is %d bytes (%s)", len(resp.Kvs), largest, key)
	if largest > record.MaxRecordBytes {
		t.Errorf("etcd value %s is %d bytes, over %d", key, largest, record.MaxRecordBytes)
	}
}

func unmarshalSrv(t *testing.T, b []byte) *vschemapb.SrvVSchema {
	t.Helper()
	srv := &vschemapb.SrvVSchema{}
	if err := srv.UnmarshalVT(b); err != nil {
		t.Fatal(err)
	}
	return srv
}

var _ topo.Conn = (*topoplugin.Conn)(nil)
