package vschema

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
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
			m, _ := syntheticManifest(n, 1<<20) // 4-byte piece sizes: larger than JD's
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
