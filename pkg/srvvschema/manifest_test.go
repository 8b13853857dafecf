package srvvschema

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/content"
)

// syntheticManifest builds the manifest of n keyspaces named as the JD
// profile names them, with pieces of pieceSize bytes that are not stored.
func syntheticManifest(n int, pieceSize int64) (*Manifest, map[content.Hash][]byte) {
	entries := make([]Entry, n)
	for i := range entries {
		name := fmt.Sprintf("ks%05d", i+1)
		entries[i] = Entry{Name: name, Hash: content.Sum([]byte(name)), Size: pieceSize}
	}
	return newManifest(entries, nil)
}

// TestBytesPerChange checks the design's bound on what a one-keyspace
// change writes besides the keyspace's piece: one leaf and the root, at
// most 16 KiB, at the JD scale, ten times it and up to the format's limit
// (about 35,000 keyspaces), whichever leaf changes.
func TestBytesPerChange(t *testing.T) {
	for _, n := range []int{1911, 19110, 35000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			m, _ := syntheticManifest(n, 1<<14) // 3-byte piece sizes, larger than JD's, and 35,000 pieces within MaxSize
			enc, err := EncodeIncremental(m, fmt.Sprintf("ks%05d", n/2), &vschemapb.Keyspace{Sharded: true})
			if err != nil {
				t.Fatal(err)
			}
			piece, _ := enc.Manifest.Keyspace(fmt.Sprintf("ks%05d", n/2))
			if len(enc.Blobs) != 3 {
				t.Fatalf("%d new blobs, want 3", len(enc.Blobs))
			}
			moved := 0
			for h, b := range enc.Blobs {
				if h != piece.Hash {
					moved += len(b)
				}
			}
			root, maxLeaf := enc.Manifest.BlobSizes()
			t.Logf("%d keyspaces: root %d bytes, largest leaf %d bytes, a change moves %d bytes besides the piece", n, root, maxLeaf, moved)
			if moved > 16<<10 || root+maxLeaf > 16<<10 {
				t.Errorf("a one-keyspace change moves %d bytes besides the piece, up to %d in the largest leaf; want at most 16 KiB", moved, root+maxLeaf)
			}
		})
	}
}

func TestParseLeafRejects(t *testing.T) {
	a, b := "ks0001", "ks0002"
	for Bucket(b) != Bucket(a) { // find a second name in a's bucket
		b += "x"
	}
	if b < a {
		a, b = b, a
	}
	other := "other"
	for Bucket(other) == Bucket(a) {
		other += "x"
	}
	bucket := Bucket(a)
	e := func(name string) Entry { return Entry{Name: name, Hash: content.Sum([]byte(name)), Size: 10} }
	encode := func(entries ...Entry) []byte { _, blob := newLeaf(entries); return blob }
	good := encode(e(a), e(b))
	if l, err := parseLeaf(good, bucket); err != nil || len(l.entries) != 2 {
		t.Fatalf("parseLeaf of a good leaf: %v", err)
	}
	tests := []struct {
		name string
		blob []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte("TDVR"), good[4:]...)},
		{"bad version", append([]byte("TDVL\x02"), good[5:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(bytes.Clone(good), 0)},
		{"out of order", encode(e(b), e(a))},
		{"duplicate", encode(e(a), e(a))},
		{"wrong bucket", encode(e(other))},
		{"not UTF-8", encode(e(a), Entry{Name: b + "\xff", Size: 1})},
		{"huge count", append([]byte("TDVL\x01"), protowire.AppendVarint(nil, 1<<40)...)},
		// A name length that fits the blob only counting its own byte: it
		// made parseLeaf slice past the end and panic (found by
		// FuzzParseManifest).
		{"name one byte past the end", []byte("TDVL\x01\x01\x080000000")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseLeaf(tt.blob, bucket); !errors.Is(err, errMalformed) {
				t.Errorf("parseLeaf: err = %v, want errMalformed", err)
			}
		})
	}
}

func TestParseRootRejects(t *testing.T) {
	m, _ := syntheticManifest(10, 100)
	m.parts = []Part{{Field: 2, Hash: content.Sum(nil)}, {Field: 5, Hash: content.Sum(nil)}}
	good := m.encodeRoot()
	if _, _, err := parseRoot(good); err != nil {
		t.Fatalf("parseRoot of a good root: %v", err)
	}
	withParts := func(parts ...Part) []byte {
		c := *m
		c.parts = parts
		return c.encodeRoot()
	}
	tests := []struct {
		name string
		blob []byte
	}{
		{"empty", nil},
		{"leaf magic", append([]byte("TDVL"), good[4:]...)},
		{"bad version", append([]byte("TDVR\x00"), good[5:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(bytes.Clone(good), 0)},
		{"parts out of order", withParts(Part{Field: 5}, Part{Field: 2})},
		{"keyspaces as a part", withParts(Part{Field: keyspacesField})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := parseRoot(tt.blob); !errors.Is(err, errMalformed) {
				t.Errorf("parseRoot: err = %v, want errMalformed", err)
			}
		})
	}

	// Totals that disagree with the leaves are caught by check.
	c := *m
	c.keyspaces++
	if err := c.check(); !errors.Is(err, errMalformed) {
		t.Errorf("check with a wrong keyspace count: %v", err)
	}
}

// TestLeafHashes: the leaves a root names, each once (empty buckets share
// one leaf), and a clear error for a blob that is not a root.
func TestLeafHashes(t *testing.T) {
	m, blobs := syntheticManifest(20, 100)
	got, err := LeafHashes(blobs[m.Root()])
	if err != nil {
		t.Fatal(err)
	}
	want := map[content.Hash]bool{}
	for _, l := range m.leaves {
		want[l.hash] = true
	}
	if len(got) != len(want) {
		t.Fatalf("%d leaf hashes, want the %d distinct leaves", len(got), len(want))
	}
	for _, h := range got {
		if !want[h] {
			t.Fatalf("leaf hash %s is not one of the manifest's", h)
		}
	}
	if _, err := LeafHashes([]byte("not a root")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("LeafHashes of garbage: %v, want ErrCorrupt", err)
	}
}

// TestDecodeAmplification: keyspaces sharing one piece (equal keyspaces are
// stored once) make an encoding whose blobs are small next to the
// SrvVSchema they describe; a leaf entry of some 40 bytes can stand for a
// piece of up to 48 MiB, the most topod stores in a blob. The decoders
// refuse an encoding over MaxSize once they have the manifest, before
// fetching or allocating for the pieces. Before, DecodeBytes allocated the
// whole size the root gave and Decode unmarshalled the shared piece once
// per keyspace: here over 1 GiB each from a 1 MiB piece and some 50 KB of
// root and leaves, and without bound from larger leaves or pieces.
func TestDecodeAmplification(t *testing.T) {
	piece, err := marshalOpts.Marshal(&vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{
		"t": {Type: "reference", Source: string(bytes.Repeat([]byte("x"), 1<<20))}}})
	if err != nil {
		t.Fatal(err)
	}
	n := MaxSize/len(piece) + 20
	entries := make([]Entry, n)
	for i := range entries {
		entries[i] = Entry{Name: fmt.Sprintf("ks%05d", i), Hash: content.Sum(piece), Size: int64(len(piece))}
	}
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	m, blobs := newManifest(entries, nil)
	blobs[content.Sum(piece)] = piece
	if m.Size() <= MaxSize {
		t.Fatalf("the manifest describes %d bytes, want more than MaxSize", m.Size())
	}
	get := func(_ context.Context, h content.Hash) ([]byte, error) {
		if b, ok := blobs[h]; ok {
			return b, nil
		}
		return nil, fmt.Errorf("no blob %s", h)
	}
	allocated := func(f func() error) (uint64, error) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc, err
	}
	for name, decode := range map[string]func() error{
		"Decode":      func() error { _, err := Decode(t.Context(), m.Root(), get); return err },
		"DecodeBytes": func() error { _, err := DecodeBytes(t.Context(), m.Root(), get); return err },
		"DecodeDelta": func() error { _, err := DecodeDelta(t.Context(), nil, m.Root(), get); return err },
	} {
		t.Run(name, func(t *testing.T) {
			n, err := allocated(decode)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "limit") {
				t.Errorf("err = %v, want ErrCorrupt over the size limit", err)
			}
			if n > 16<<20 {
				t.Errorf("allocated %d MiB to fail", n>>20)
			}
		})
	}
	// The manifest itself loads (a garbage collector lists its blobs), but
	// no edit of it encodes.
	if _, err := LoadManifest(t.Context(), m.Root(), get); err != nil {
		t.Errorf("LoadManifest: %v", err)
	}
	if _, err := EncodeIncremental(m, "ks00000", nil); err == nil {
		t.Error("EncodeIncremental of an encoding over MaxSize succeeded")
	}
}

// TestUnknownPartChecked: the part of unknown fields is appended to the
// SrvVSchema as it is, so one holding a keyspaces entry, or malformed
// wire bytes, made Decode (which takes the keyspaces from the leaves, and
// unmarshals the parts) and DecodeBytes (which does neither) disagree on
// the same encoding. Both refuse it now, and so does DecodeDelta; and
// EncodeBytes refuses to make one (vtprotobuf's lenient unmarshalling keeps
// such bytes as unknown fields), so that a file written reads back.
func TestUnknownPartChecked(t *testing.T) {
	for _, tc := range []struct {
		name    string
		piece   []byte
		ok      bool
		encodes bool // EncodeBytes of the piece as a SrvVSchema succeeds
	}{
		{"an unknown field", protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), []byte("new")), true, true},
		{"an unknown group", []byte("\x43\x0a\x00\x44"), true, true},
		{"a keyspaces entry", []byte("\x0a\x05\x0a\x01x\x12\x00"), false, true}, // a keyspace, as a SrvVSchema
		{"a keyspaces field of the wrong wire type", []byte("\x08\x01"), false, false},
		{"truncated", []byte("\xca\x06\x05new"), false, false},
		// Found by pkg/record's FuzzDecode: group 8 ended by field 4's
		// end marker.
		{"a group ended by another field's marker", []byte("C$"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := EncodeBytes(tc.piece); (err == nil) != tc.encodes {
				t.Errorf("EncodeBytes: %v, want ok %v", err, tc.encodes)
			}
			// Unmarshalled by the Go protobuf runtime, a field of the
			// wrong wire type becomes an unknown field.
			srv := &vschemapb.SrvVSchema{}
			if err := proto.Unmarshal(tc.piece, srv); err == nil {
				if _, err := Encode(srv); (err == nil) != tc.encodes {
					t.Errorf("Encode: %v, want ok %v", err, tc.encodes)
				}
			}
			empty := content.Sum(nil)
			m, blobs := newManifest([]Entry{{Name: "a", Hash: empty}},
				[]Part{{Field: UnknownFields, Hash: content.Sum(tc.piece), Size: int64(len(tc.piece))}})
			blobs[empty], blobs[content.Sum(tc.piece)] = []byte{}, tc.piece
			get := func(_ context.Context, h content.Hash) ([]byte, error) { return blobs[h], nil }
			srv, err := Decode(t.Context(), m.Root(), get)
			_, bytesErr := DecodeBytes(t.Context(), m.Root(), get)
			_, deltaErr := DecodeDelta(t.Context(), nil, m.Root(), get)
			for what, err := range map[string]error{"Decode": err, "DecodeBytes": bytesErr, "DecodeDelta": deltaErr} {
				if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s: %v, want ok %v", what, err, tc.ok)
				}
			}
			if tc.ok && len(srv.Keyspaces) != 1 {
				t.Errorf("Decode gave keyspaces %v", srv.Keyspaces)
			}
		})
	}
}
