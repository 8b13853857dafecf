package srvvschema

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/content"
)

// Placeholders stand, in the fuzzed blobs of FuzzDecode, for the hashes of
// the fuzzed leaf and piece: each occurrence is replaced by the real hash.
// The decoders verify every blob against its hash and the fuzzer cannot
// find SHA-256 preimages, so this is how it gets to mutate a leaf or a
// piece and still have it read.
var (
	leafPlaceholder  = content.Hash(bytes.Repeat([]byte{0xa5}, content.Size))
	piecePlaceholder = content.Hash(bytes.Repeat([]byte{0x5a}, content.Size))
)

// errNoBlob is what the fuzz getter returns for a blob it lacks.
var errNoBlob = errors.New("no such blob")

// fuzzSrvVSchema is the SrvVSchema whose encoding seeds the fuzz targets:
// a few keyspaces (two equal, sharing a piece; one empty), every kind of
// rules, and an unknown field.
func fuzzSrvVSchema() *vschemapb.SrvVSchema {
	sharded := func() *vschemapb.Keyspace {
		return &vschemapb.Keyspace{Sharded: true, Vindexes: map[string]*vschemapb.Vindex{"hash": {Type: "hash"}},
			Tables: map[string]*vschemapb.Table{"customer": {ColumnVindexes: []*vschemapb.ColumnVindex{{Column: "id", Name: "hash"}}}}}
	}
	srv := &vschemapb.SrvVSchema{
		Keyspaces: map[string]*vschemapb.Keyspace{
			"commerce":  {Tables: map[string]*vschemapb.Table{"product": {}, "customer_seq": {Type: "sequence"}}},
			"customer":  sharded(),
			"customer2": sharded(),
			"empty":     {},
		},
		RoutingRules:         &vschemapb.RoutingRules{Rules: []*vschemapb.RoutingRule{{FromTable: "product", ToTables: []string{"commerce.product"}}}},
		ShardRoutingRules:    &vschemapb.ShardRoutingRules{Rules: []*vschemapb.ShardRoutingRule{{FromKeyspace: "a", ToKeyspace: "b", Shard: "-80"}}},
		KeyspaceRoutingRules: &vschemapb.KeyspaceRoutingRules{},
		MirrorRules:          &vschemapb.MirrorRules{Rules: []*vschemapb.MirrorRule{{FromTable: "commerce.product", ToTable: "customer.product", Percent: 50}}},
	}
	srv.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), []byte("from a newer Vitess")))
	return srv
}

// fuzzEncoding encodes fuzzSrvVSchema.
func fuzzEncoding(tb testing.TB) (*vschemapb.SrvVSchema, *Encoded) {
	tb.Helper()
	srv := fuzzSrvVSchema()
	enc, err := Encode(srv)
	if err != nil {
		tb.Fatal(err)
	}
	return srv, enc
}

// leafTable returns the 256 leaf hashes that end the root of m.
func leafTable(m *Manifest) []byte {
	b := make([]byte, 0, Buckets*content.Size)
	for _, l := range m.leaves {
		b = append(b, l.hash[:]...)
	}
	return b
}

// FuzzParseManifest feeds arbitrary bytes to the root and leaf parsers:
// as a leaf of the given bucket, as a root, and as the head of a root (what
// precedes the 8 KiB of leaf hashes, which the target appends, so that the
// fuzzer's inputs and their minimization stay small). It checks that the
// parsers never panic; that LeafHashes accepts exactly what parseRoot does
// and lists each leaf hash once; that a root they accept has its parts
// sorted by field, without the keyspaces field, and a leaf its entries
// sorted, unique, valid UTF-8 and in its bucket; and that what they accept
// re-encodes to a blob that parses the same (and re-encodes to the same
// bytes).
func FuzzParseManifest(f *testing.F) {
	_, enc := fuzzEncoding(f)
	table := leafTable(enc.Manifest)
	root := enc.Blobs[enc.Root]
	head := root[:len(root)-len(table)]
	f.Add(head, byte(0))
	f.Add(head[:len(head)-1], byte(0))
	f.Add(append(bytes.Clone(head), 0), byte(0))
	for _, e := range enc.Manifest.Keyspaces() {
		b := Bucket(e.Name)
		blob := enc.Blobs[enc.Manifest.leaves[b].hash]
		f.Add(blob, byte(b))
		f.Add(blob[:len(blob)-1], byte(b))
	}
	f.Add([]byte(leafMagic+"\x01\xff\xff\xff\xff\x0f"), byte(0))
	f.Add([]byte(rootMagic+"\x01\x00\x00\x41"), byte(0))
	f.Fuzz(func(t *testing.T, b []byte, bucket byte) {
		for _, r := range [][]byte{b, append(bytes.Clone(b), table...)} {
			m, leaves, err := parseRoot(r)
			hashes, lerr := LeafHashes(r)
			if (err == nil) != (lerr == nil) {
				t.Fatalf("parseRoot: %v, but LeafHashes: %v", err, lerr)
			}
			if err == nil {
				checkRoot(t, m, leaves, hashes)
			}
		}
		if l, err := parseLeaf(b, int(bucket)); err == nil {
			checkLeaf(t, l, int(bucket))
		}
	})
}

func checkRoot(t *testing.T, m *Manifest, leaves [Buckets]content.Hash, hashes []content.Hash) {
	t.Helper()
	for i, p := range m.parts {
		if p.Field == keyspacesField || (i > 0 && m.parts[i-1].Field >= p.Field) {
			t.Fatalf("accepted parts %v", m.parts)
		}
	}
	seen := map[content.Hash]bool{}
	for _, h := range hashes {
		if seen[h] || !slices.Contains(leaves[:], h) {
			t.Fatalf("LeafHashes lists %s twice or not a leaf", h)
		}
		seen[h] = true
	}
	for _, h := range leaves {
		if !seen[h] {
			t.Fatalf("LeafHashes misses leaf %s", h)
		}
	}
	c := &Manifest{keyspaces: m.keyspaces, size: m.size, parts: m.parts}
	for i, h := range leaves {
		c.leaves[i] = &leaf{hash: h}
	}
	enc := c.encodeRoot()
	m2, leaves2, err := parseRoot(enc)
	if err != nil {
		t.Fatalf("re-encoded root does not parse: %v", err)
	}
	if m2.keyspaces != m.keyspaces || m2.size != m.size || !slices.Equal(m2.parts, m.parts) || leaves2 != leaves {
		t.Fatal("re-encoded root parses differently")
	}
	c.parts = m2.parts
	if !bytes.Equal(c.encodeRoot(), enc) {
		t.Fatal("encoding a parsed root is not stable")
	}
}

func checkLeaf(t *testing.T, l *leaf, bucket int) {
	t.Helper()
	for i, e := range l.entries {
		if Bucket(e.Name) != bucket || (i > 0 && l.entries[i-1].Name >= e.Name) || e.Size < 0 || e.Size > maxPieceSize {
			t.Fatalf("accepted leaf entries %v in bucket %d", l.entries, bucket)
		}
	}
	_, enc := newLeaf(l.entries)
	l2, err := parseLeaf(enc, bucket)
	if err != nil {
		t.Fatalf("re-encoded leaf does not parse: %v", err)
	}
	if !slices.Equal(l2.entries, l.entries) {
		t.Fatal("re-encoded leaf parses differently")
	}
	if _, again := newLeaf(l2.entries); !bytes.Equal(again, enc) {
		t.Fatal("encoding a parsed leaf is not stable")
	}
}

// fuzzSeed is an input of FuzzDecode.
type fuzzSeed struct {
	head   []byte // the root without its leaf hashes
	bucket byte   // whose leaf the fuzzed leaf is, if not empty
	leaf   []byte
	piece  []byte
}

// fuzzDecodeSeeds returns seeds for FuzzDecode from enc: the real root;
// each keyspace's leaf as the fuzzed leaf, and with the keyspace's piece as
// the fuzzed piece; each part's piece as the fuzzed piece; and broken
// roots.
func fuzzDecodeSeeds(enc *Encoded) []fuzzSeed {
	root := enc.Blobs[enc.Root]
	head := root[:len(root)-Buckets*content.Size]
	seeds := []fuzzSeed{{head: head}, {head: head[:len(head)-1]}, {head: append(bytes.Clone(head), 0)}}
	for _, e := range enc.Manifest.Keyspaces() {
		b := Bucket(e.Name)
		leafBlob := enc.Blobs[enc.Manifest.leaves[b].hash]
		seeds = append(seeds,
			fuzzSeed{head, byte(b), leafBlob, nil},
			fuzzSeed{head, byte(b), bytes.Replace(leafBlob, e.Hash[:], piecePlaceholder[:], 1), enc.Blobs[e.Hash]},
			fuzzSeed{head, byte(b + 1), leafBlob, nil}) // in the wrong bucket
	}
	for _, p := range enc.Manifest.parts {
		seeds = append(seeds, fuzzSeed{head: bytes.Replace(head, p.Hash[:], piecePlaceholder[:], 1), piece: enc.Blobs[p.Hash]})
	}
	return seeds
}

// FuzzDecode decodes a root made of a fuzzed head and the leaf hashes of
// fuzzSrvVSchema's encoding, with a fuzzed leaf (if not empty) in place of
// one bucket's leaf, against a store holding that encoding's blobs; the
// leaf, or the head as a part, may name a fuzzed piece through
// piecePlaceholder. It runs Decode, DecodeBytes, LoadManifest, DecodeDelta
// (from nothing and from the real encoding's manifest) and FetchKeyspace
// (for each keyspace the manifest lists), and checks that none panics;
// that each returns a value or an error, never both, and every error is
// ErrCorrupt or a blob the store lacks; that a decoded SrvVSchema is at
// most MaxSize, is fuzzSrvVSchema when the root is the real one,
// round-trips through Encode and Decode, and agrees with DecodeBytes (its
// marshalling, of the size the manifest gives, read alike by
// proto.Unmarshal and by UnmarshalVT as Vitess's topo client reads it),
// with both deltas applied
// and with FetchKeyspace.
func FuzzDecode(f *testing.F) {
	srv, enc := fuzzEncoding(f)
	for _, s := range fuzzDecodeSeeds(enc) {
		f.Add(s.head, s.bucket, s.leaf, s.piece)
	}
	table := leafTable(enc.Manifest)
	f.Fuzz(func(t *testing.T, head []byte, bucket byte, leafBlob, piece []byte) {
		pieceHash := content.Sum(piece)
		leafBlob = bytes.ReplaceAll(leafBlob, piecePlaceholder[:], pieceHash[:])
		leafHash := content.Sum(leafBlob)
		rootBlob := append(bytes.ReplaceAll(head, piecePlaceholder[:], pieceHash[:]), table...)
		if len(leafBlob) > 0 {
			copy(rootBlob[len(rootBlob)-(Buckets-int(bucket))*content.Size:], leafHash[:])
		}
		root := content.Sum(rootBlob)
		get := func(_ context.Context, h content.Hash) ([]byte, error) {
			switch {
			case h == root:
				return rootBlob, nil
			case h == leafHash && len(leafBlob) > 0:
				return leafBlob, nil
			case h == pieceHash:
				return piece, nil
			}
			if b, ok := enc.Blobs[h]; ok {
				return b, nil
			}
			return nil, fmt.Errorf("blob %s: %w", h, errNoBlob)
		}
		checkErr := func(what string, ok bool, err error) {
			t.Helper()
			if err != nil && ok {
				t.Fatalf("%s returned a value and error %v", what, err)
			}
			if err == nil && !ok {
				t.Fatalf("%s returned neither a value nor an error", what)
			}
			if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, errNoBlob) {
				t.Fatalf("%s error %v is neither ErrCorrupt nor a missing blob", what, err)
			}
		}

		got, err := Decode(t.Context(), root, get)
		checkErr("Decode", got != nil, err)
		data, err := DecodeBytes(t.Context(), root, get)
		checkErr("DecodeBytes", data != nil, err)
		m, err := LoadManifest(t.Context(), root, get)
		checkErr("LoadManifest", m != nil, err)
		fromNothing, err := DecodeDelta(t.Context(), nil, root, get)
		checkErr("DecodeDelta from nothing", fromNothing != nil, err)
		fromReal, err := DecodeDelta(t.Context(), enc.Manifest, root, get)
		checkErr("DecodeDelta from the real manifest", fromReal != nil, err)
		fetched := map[string]*vschemapb.Keyspace{}
		if m != nil {
			for _, e := range m.Keyspaces() {
				ks, found, err := FetchKeyspace(t.Context(), get, m, e.Name)
				checkErr("FetchKeyspace", found && ks != nil, err)
				fetched[e.Name] = ks
			}
			if _, found, err := FetchKeyspace(t.Context(), get, m, "no such keyspace"); found || err != nil {
				t.Fatalf("FetchKeyspace of a keyspace the manifest lacks: found %v, %v", found, err)
			}
		}
		if got == nil {
			return
		}
		for name, ks := range fetched {
			if !proto.Equal(ks, got.Keyspaces[name]) {
				t.Fatalf("FetchKeyspace and Decode disagree on keyspace %q", name)
			}
		}

		if m == nil || data == nil || fromNothing == nil || fromReal == nil {
			t.Fatalf("Decode succeeds, but LoadManifest %v, DecodeBytes %v, DecodeDelta %v and %v", m != nil, data != nil, fromNothing != nil, fromReal != nil)
		}
		if int64(len(data)) != m.Size() || m.Size() > MaxSize || m.Len() != len(got.Keyspaces) {
			t.Fatalf("DecodeBytes gave %d bytes and Decode %d keyspaces; the manifest says %d bytes and %d keyspaces", len(data), len(got.Keyspaces), m.Size(), m.Len())
		}
		if root == enc.Root && !proto.Equal(got, srv) {
			t.Fatal("the real encoding decodes to another SrvVSchema")
		}
		fromVT := &vschemapb.SrvVSchema{} // as Vitess's topo.GetSrvVSchema reads it
		if err := fromVT.UnmarshalVT(data); err != nil {
			t.Fatalf("DecodeBytes gave bytes that vtprotobuf does not unmarshal: %v", err)
		}
		fromBytes := &vschemapb.SrvVSchema{}
		if err := proto.Unmarshal(data, fromBytes); err != nil {
			t.Fatalf("DecodeBytes gave bytes that do not unmarshal: %v", err)
		}
		if !proto.Equal(fromBytes, got) || !proto.Equal(fromVT, got) {
			t.Fatal("DecodeBytes and Decode disagree")
		}
		if !proto.Equal(fromNothing.Apply(&vschemapb.SrvVSchema{}), got) {
			t.Fatal("the delta from nothing, applied, differs from Decode")
		}
		if !proto.Equal(fromReal.Apply(srv), got) {
			t.Fatal("the delta from the real encoding, applied to it, differs from Decode")
		}
		again, err := Encode(got)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := Decode(t.Context(), again.Root, func(_ context.Context, h content.Hash) ([]byte, error) {
			if b, ok := again.Blobs[h]; ok {
				return b, nil
			}
			return nil, errNoBlob
		})
		if err != nil || !proto.Equal(back, got) {
			t.Fatalf("round trip of the decoded SrvVSchema: %v", err)
		}
	})
}
