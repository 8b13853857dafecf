package record

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"testing"

	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/content"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// fuzzEncoding is a file encoded for the fuzz corpus.
type fuzzEncoding struct {
	contents []byte
	enc      *Encoded
}

// fuzzEncodings encodes files of every kind Encode produces: contents as
// they are, an inline record (contents starting with the magic), and
// references to blobs of both codecs. The inline limits are small so that
// the referenced files, and the fuzzing, stay small.
func fuzzEncodings(tb testing.TB) []fuzzEncoding {
	tb.Helper()
	srv, err := proto.MarshalOptions{Deterministic: true}.Marshal(&vschemapb.SrvVSchema{
		Keyspaces: map[string]*vschemapb.Keyspace{
			"commerce": {Tables: map[string]*vschemapb.Table{"product": {}}},
			"customer": {Sharded: true, Vindexes: map[string]*vschemapb.Vindex{"hash": {Type: "hash"}},
				Tables: map[string]*vschemapb.Table{"customer": {ColumnVindexes: []*vschemapb.ColumnVindex{{Column: "id", Name: "hash"}}}}},
			"empty": {},
		},
		RoutingRules: &vschemapb.RoutingRules{Rules: []*vschemapb.RoutingRule{{FromTable: "t", ToTables: []string{"commerce.t"}}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	files := []struct {
		path     string
		contents []byte
		limit    int
	}{
		{"/a/Keyspace", nil, DefaultInlineLimit},
		{"/a/Keyspace", []byte("keyspace"), DefaultInlineLimit},
		{"/a/Keyspace", []byte(Magic + "rest"), DefaultInlineLimit},
		{"/a/Keyspace", []byte(Magic), DefaultInlineLimit},
		{"/a/Tablets", bytes.Repeat([]byte("tablet "), 300), 16},
		{"/cells/c/SrvVSchema", srv, 16},
		{"/cells/c/SrvVSchema", []byte("not a SrvVSchema, so chunked"), 0},
	}
	var out []fuzzEncoding
	for _, f := range files {
		enc, err := Encode(f.path, f.contents, f.limit)
		if err != nil {
			tb.Fatalf("encode %s: %v", f.path, err)
		}
		out = append(out, fuzzEncoding{f.contents, enc})
	}
	return out
}

// fuzzValues returns the encodings' values and broken variants of them:
// truncated, with a byte flipped, and references with a short root, an
// unknown codec, a wrong or negative size, or a root the store lacks.
func fuzzValues(tb testing.TB, encodings []fuzzEncoding) [][]byte {
	tb.Helper()
	var values [][]byte
	for _, e := range encodings {
		v := e.enc.Value
		values = append(values, v)
		if len(v) > 0 {
			values = append(values, v[:len(v)-1], v[:len(v)/2])
			flipped := bytes.Clone(v)
			flipped[len(v)-1] ^= 0x40
			values = append(values, flipped)
		}
		if ref := e.enc.Ref; ref != nil {
			for _, bad := range []*topodv1.BlobRef{
				{Codec: ref.Codec, Root: ref.Root[:31], Size: ref.Size},
				{Codec: 7, Root: ref.Root, Size: ref.Size},
				{Codec: ref.Codec, Root: ref.Root, Size: ref.Size + 1},
				{Codec: ref.Codec, Root: ref.Root, Size: -1},
				{Codec: ref.Codec, Root: make([]byte, content.Size), Size: ref.Size},
			} {
				b, err := marshal(&topodv1.Record{Body: &topodv1.Record_Ref{Ref: bad}})
				if err != nil {
					tb.Fatal(err)
				}
				values = append(values, b)
			}
		}
	}
	return append(values, nil, []byte(Magic[:3]), []byte(Magic+"\x0a\x00\x12\x00"), []byte(Magic+"\x12\x00"))
}

// FuzzParse feeds arbitrary backend values to Parse. It checks that Parse
// never panics and returns a reference or an error, never both; that a
// value without the magic is contents (no reference, no error); that a
// reference it returns has a root hash of content.Size bytes; and that
// RefValue of that reference parses back to the same codec, root and size.
func FuzzParse(f *testing.F) {
	for _, v := range fuzzValues(f, fuzzEncodings(f)) {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		ref, err := Parse(value)
		if err != nil {
			if ref != nil {
				t.Fatalf("Parse returned a reference and error %v", err)
			}
			return
		}
		if !bytes.HasPrefix(value, []byte(Magic)) && ref != nil {
			t.Fatalf("Parse found a reference in a value without the magic: %v", ref)
		}
		if ref == nil {
			return
		}
		if len(ref.Root) != content.Size {
			t.Fatalf("Parse accepted a root hash of %d bytes", len(ref.Root))
		}
		again, err := RefValue(ref.Codec, content.Hash(ref.Root), ref.Size)
		if err != nil {
			t.Fatal(err)
		}
		ref2, err := Parse(again)
		if err != nil || ref2 == nil || ref2.Codec != ref.Codec || !bytes.Equal(ref2.Root, ref.Root) || ref2.Size != ref.Size {
			t.Fatalf("RefValue of %v parses to %v, %v", ref, ref2, err)
		}
	})
}

// FuzzDecode decodes arbitrary backend values against a store holding the
// blobs of fuzzEncodings. It checks that Decode never panics and returns
// contents or an error, never both; that it fails wherever Parse does;
// that a value without the magic decodes to itself; that contents decoded
// from a reference have the size the reference gives; that a value Encode
// produced decodes to the contents encoded; and that both the value and
// what it decodes to, taken as the contents of a file, round-trip through
// Encode and Decode (checkRoundTrip).
func FuzzDecode(f *testing.F) {
	encodings := fuzzEncodings(f)
	store := map[content.Hash][]byte{}
	original := map[string][]byte{}
	for _, e := range encodings {
		maps.Copy(store, e.enc.Blobs)
		original[string(e.enc.Value)] = e.contents
	}
	for _, v := range fuzzValues(f, encodings) {
		f.Add(v)
	}
	get := func(_ context.Context, h content.Hash) ([]byte, error) {
		if b, ok := store[h]; ok {
			return b, nil
		}
		return nil, fmt.Errorf("no blob %s", h)
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		checkRoundTrip(t, value)
		ref, parseErr := Parse(value)
		data, err := Decode(t.Context(), value, get)
		if err != nil {
			if data != nil {
				t.Fatalf("Decode returned %d bytes and error %v", len(data), err)
			}
			return
		}
		if parseErr != nil {
			t.Fatalf("Decode succeeds where Parse fails: %v", parseErr)
		}
		if !bytes.HasPrefix(value, []byte(Magic)) && !bytes.Equal(data, value) {
			t.Fatal("a value without the magic did not decode to itself")
		}
		if ref != nil && int64(len(data)) != ref.Size {
			t.Fatalf("decoded %d bytes, the reference says %d", len(data), ref.Size)
		}
		if want, ok := original[string(value)]; ok && !bytes.Equal(data, want) {
			t.Fatalf("the value Encode made decodes to %q, want %q", data, want)
		}
		checkRoundTrip(t, data)
	})
}

// checkRoundTrip checks that contents written as a SrvVSchema file, inline
// or as blobs, read back: the same bytes, or, when Encode split them as a
// SrvVSchema, a proto-equal SrvVSchema of the same size.
func checkRoundTrip(t *testing.T, contents []byte) {
	t.Helper()
	for _, limit := range []int{DefaultInlineLimit, 0} {
		enc, err := Encode("/cells/c/SrvVSchema", contents, limit)
		if err != nil {
			t.Fatalf("encode with inline limit %d: %v", limit, err)
		}
		got, err := Decode(t.Context(), enc.Value, func(_ context.Context, h content.Hash) ([]byte, error) {
			if b, ok := enc.Blobs[h]; ok {
				return b, nil
			}
			return nil, fmt.Errorf("no blob %s", h)
		})
		if err != nil {
			t.Fatalf("round trip with inline limit %d: %v", limit, err)
		}
		if enc.Ref.GetCodec() == topodv1.Codec_CODEC_SRVVSCHEMA {
			// The codec gives back the SrvVSchema, deterministically
			// marshalled: proto-equal contents of the same size.
			if !equalSrvVSchemas(t, got, contents) {
				t.Fatalf("round trip as a SrvVSchema: %q, want a SrvVSchema equal to %q", got, contents)
			}
		} else if !bytes.Equal(got, contents) {
			t.Fatalf("round trip with inline limit %d: %q, want %q", limit, got, contents)
		}
	}
}

// equalSrvVSchemas reports whether a and b are marshalled SrvVSchemas of
// the same size that unmarshal to equal messages.
func equalSrvVSchemas(t *testing.T, a, b []byte) bool {
	t.Helper()
	x, y := &vschemapb.SrvVSchema{}, &vschemapb.SrvVSchema{}
	if err := x.UnmarshalVT(a); err != nil {
		t.Fatal(err)
	}
	if err := y.UnmarshalVT(b); err != nil {
		t.Fatal(err)
	}
	return len(a) == len(b) && proto.Equal(x, y)
}
