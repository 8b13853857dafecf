package srvvschema_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/srvvschema"
)

// BenchmarkJD encodes and decodes the JD profile's SrvVSchema (1,911
// keyspaces, 552,104 tables) and its 10x scale (19,110 keyspaces), and
// measures a one-keyspace change: what it writes besides the keyspace's
// piece (one leaf and the root, which must stay within 16 KiB) and what a
// watcher fetches. Run it with:
//
//	go test -run '^$' -bench JD -benchtime 3x ./pkg/srvvschema/
func BenchmarkJD(b *testing.B) {
	for _, p := range []jd.Profile{jd.JD(), jd.JD().Scale(10)} {
		b.Run(fmt.Sprintf("keyspaces=%d", p.Keyspaces), func(b *testing.B) {
			benchmarkProfile(b, p)
		})
	}
}

func benchmarkProfile(b *testing.B, p jd.Profile) {
	srv := p.SrvVSchema()
	enc, err := srvvschema.Encode(srv)
	if err != nil {
		b.Fatal(err)
	}
	get := func(_ context.Context, h content.Hash) ([]byte, error) {
		if blob, ok := enc.Blobs[h]; ok {
			return blob, nil
		}
		return nil, fmt.Errorf("blob %s not found", h)
	}
	rootSize, maxLeaf := enc.Manifest.BlobSizes()
	b.Logf("%d keyspaces: SrvVSchema %.1f MiB in %d blobs; root %d bytes, largest leaf %d bytes",
		p.Keyspaces, float64(enc.Size)/(1<<20), len(enc.Blobs), rootSize, maxLeaf)

	b.Run("encode", func(b *testing.B) {
		b.SetBytes(enc.Size)
		for b.Loop() {
			if _, err := srvvschema.Encode(srv); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(enc.Size)
		for b.Loop() {
			if _, err := srvvschema.Decode(context.Background(), enc.Root, get); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode-bytes", func(b *testing.B) {
		b.SetBytes(enc.Size)
		for b.Loop() {
			if _, err := srvvschema.DecodeBytes(context.Background(), enc.Root, get); err != nil {
				b.Fatal(err)
			}
		}
	})

	// A one-keyspace change: a table added to a keyspace in the middle.
	name, ks := p.Keyspace(p.Keyspaces / 2)
	ks = proto.Clone(ks).(*vschemapb.Keyspace)
	ks.Tables["benchmark_added_table"] = &vschemapb.Table{}
	var inc *srvvschema.Encoded
	b.Run("change", func(b *testing.B) {
		for b.Loop() {
			if inc, err = srvvschema.EncodeIncremental(enc.Manifest, name, ks); err != nil {
				b.Fatal(err)
			}
		}
		piece, _ := inc.Manifest.Keyspace(name)
		moved, leaf := 0, 0
		for h, blob := range inc.Blobs {
			if h != piece.Hash {
				moved += len(blob)
			}
			if h != piece.Hash && h != inc.Root {
				leaf = len(blob)
			}
		}
		if len(inc.Blobs) != 3 {
			b.Errorf("a one-keyspace change wrote %d blobs, want 3", len(inc.Blobs))
		}
		if moved > 16<<10 {
			b.Errorf("a one-keyspace change moved %d bytes besides the piece, want at most 16 KiB", moved)
		}
		b.ReportMetric(float64(moved), "bytes-moved")
		b.ReportMetric(float64(piece.Size), "piece-bytes")
		b.ReportMetric(float64(rootSize), "root-bytes")
		b.ReportMetric(float64(leaf), "leaf-bytes")
	})
	if inc == nil {
		return
	}
	b.Run("delta", func(b *testing.B) {
		var fetches, fetched atomic.Int64
		both := func(ctx context.Context, h content.Hash) ([]byte, error) {
			blob, ok := inc.Blobs[h]
			if !ok {
				return get(ctx, h)
			}
			return blob, nil
		}
		counting := func(ctx context.Context, h content.Hash) ([]byte, error) {
			blob, err := both(ctx, h)
			fetches.Add(1)
			fetched.Add(int64(len(blob)))
			return blob, err
		}
		for b.Loop() {
			fetches.Store(0)
			fetched.Store(0)
			d, err := srvvschema.DecodeDelta(context.Background(), enc.Manifest, inc.Root, counting)
			if err != nil {
				b.Fatal(err)
			}
			if len(d.Upserted) != 1 || d.Upserted[0] != name {
				b.Fatalf("delta %+v, want %s upserted", d.Diff, name)
			}
		}
		if n := fetches.Load(); n != 3 {
			b.Errorf("DecodeDelta fetched %d blobs, want 3 (root, leaf, piece)", n)
		}
		b.ReportMetric(float64(fetches.Load()), "fetches")
		b.ReportMetric(float64(fetched.Load()), "bytes-fetched")
	})
}
