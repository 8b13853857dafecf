package chunk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"

	"github.com/topod-io/topod/pkg/content"
)

// fuzzPlaceholder stands, in a fuzzed root manifest, for the hash of the
// fuzzed child blob: FuzzDecode replaces each occurrence by the child's
// real hash. Decode verifies every blob against its hash, and the fuzzer
// cannot find SHA-256 preimages, so this is how it gets to mutate a blob
// below the root (a sub-manifest or a chunk) and still have it read.
var fuzzPlaceholder = content.Hash(bytes.Repeat([]byte{0xa5}, content.Size))

// errNoBlob is what the fuzz getter returns for a blob it lacks.
var errNoBlob = errors.New("no such blob")

// fuzzFile is a file encoded for the fuzz corpus.
type fuzzFile struct {
	name  string
	data  []byte
	root  content.Hash
	blobs map[content.Hash][]byte
}

// fuzzFiles encodes the files whose blobs the fuzz targets read: empty, one
// chunk, several chunks with a repeated one, and a file large enough (with
// tiny chunks) for a two-level manifest tree; and, with small manifests
// that suit the fuzzer better than that tree's 17 KB ones, the file of
// several chunks as a tree of two and of three levels, built by hand.
func fuzzFiles(tb testing.TB) []fuzzFile {
	tb.Helper()
	small := Options{MinSize: 16, AvgSize: 64, MaxSize: 256}
	tiny := Options{MinSize: 8, AvgSize: 8, MaxSize: 8}
	files := []struct {
		name string
		data []byte
		opts Options
	}{
		{"empty", nil, Options{}},
		{"one chunk", []byte("keyspace ks0001"), Options{}},
		{"several chunks", append(append(randomBytes(21, 2000), randomBytes(22, 300)...), randomBytes(21, 2000)...), small},
		{"tree", randomBytes(23, 8*(maxEntries+200)), tiny},
	}
	var out []fuzzFile
	for _, f := range files {
		root, blobs, err := Encode(f.data, f.opts)
		if err != nil {
			tb.Fatalf("encode %s: %v", f.name, err)
		}
		out = append(out, fuzzFile{f.name, f.data, root, blobs})
	}
	if m, err := parseManifest(out[len(out)-1].blobs[out[len(out)-1].root]); err != nil || m.level != 1 {
		tb.Fatalf("the tree file's root: level %v, err %v; want a level-1 manifest", m, err)
	}
	several := out[2]
	m, err := parseManifest(several.blobs[several.root])
	if err != nil || m.level != 0 || len(m.entries) < 6 {
		tb.Fatalf("the several-chunk file's root: %v, err %v; want a level-0 manifest of 6 chunks or more", m, err)
	}
	// group returns a manifest of level over entries, cut into n groups of
	// sub-manifests one level down, and adds them to blobs.
	var group func(blobs map[content.Hash][]byte, level int, entries []entry, n int) entry
	group = func(blobs map[content.Hash][]byte, level int, entries []entry, n int) entry {
		parent := &manifest{level: level}
		for i := range n {
			part := entries[i*len(entries)/n : (i+1)*len(entries)/n]
			var e entry
			if level == 1 {
				child := &manifest{entries: part}
				for _, c := range part {
					child.size += c.size
				}
				e = entry{put(blobs, child.encode()), child.size}
			} else {
				e = group(blobs, level-1, part, 2)
			}
			parent.entries = append(parent.entries, e)
			parent.size += e.size
		}
		return entry{put(blobs, parent.encode()), parent.size}
	}
	for _, level := range []int{1, 2} {
		blobs := maps.Clone(several.blobs)
		root := group(blobs, level, m.entries, 3)
		out = append(out, fuzzFile{fmt.Sprintf("several chunks, level-%d tree", level), several.data, root.hash, blobs})
	}
	return out
}

// FuzzParseManifest feeds arbitrary bytes to the manifest parser. It
// checks that parsing never panics, that a manifest it accepts is within
// the format's bounds (at most maxEntries entries, level at most maxLevel,
// entry sizes adding up to the total), and that it re-encodes to a blob
// that parses to the same manifest (and re-encodes to the same bytes).
func FuzzParseManifest(f *testing.F) {
	for _, file := range fuzzFiles(f) {
		for _, b := range file.blobs {
			if bytes.HasPrefix(b, []byte(manifestMagic)) {
				f.Add(b)
				f.Add(b[:len(b)/2])
			}
		}
	}
	f.Add([]byte(nil))
	f.Add([]byte(manifestMagic + "\x01\x00\x00\x00"))
	f.Add([]byte(manifestMagic + "\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00"))
	f.Add([]byte(manifestMagic + "\x01\x03\x00\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseManifest(b)
		if err != nil {
			if m != nil || !errors.Is(err, errMalformed) {
				t.Fatalf("parseManifest = %v, %v: want nil and errMalformed", m, err)
			}
			return
		}
		if len(m.entries) > maxEntries || m.level > maxLevel || m.level < 0 {
			t.Fatalf("accepted a manifest of level %d with %d entries", m.level, len(m.entries))
		}
		var sum int64
		for _, e := range m.entries {
			if e.size <= 0 {
				t.Fatalf("accepted an entry of %d bytes", e.size)
			}
			sum += e.size
		}
		if sum != m.size {
			t.Fatalf("accepted entries adding up to %d bytes, header says %d", sum, m.size)
		}
		enc := m.encode()
		m2, err := parseManifest(enc)
		if err != nil {
			t.Fatalf("re-encoded manifest does not parse: %v", err)
		}
		if m2.level != m.level || m2.size != m.size || !equalEntries(m2.entries, m.entries) {
			t.Fatalf("re-encoded manifest parses to %+v, want %+v", m2, m)
		}
		if !bytes.Equal(m2.encode(), enc) {
			t.Fatal("encoding a parsed manifest is not stable")
		}
	})
}

func equalEntries(a, b []entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzDecode decodes a fuzzed root manifest against a store holding the
// blobs of real encodings (fuzzFiles) plus a fuzzed child blob, which the
// root refers to through fuzzPlaceholder. It checks that Decode never
// panics; that it returns either an error or the contents, never both;
// that every error is ErrCorrupt or a blob the store lacks; that what it
// decodes has the size the root manifest claims, is at most MaxFileSize,
// round-trips through Encode, and is the original file whenever the root
// is a real encoding's; and that Blobs succeeds wherever Decode does and
// lists blobs the store has.
func FuzzDecode(f *testing.F) {
	files := fuzzFiles(f)
	store := map[content.Hash][]byte{}
	original := map[content.Hash][]byte{}
	for _, file := range files {
		maps.Copy(store, file.blobs)
		original[file.root] = file.data
	}
	for _, file := range files {
		rootBlob := file.blobs[file.root]
		f.Add(rootBlob, []byte(nil))
		f.Add(rootBlob[:len(rootBlob)-1], []byte(nil))
		m, err := parseManifest(rootBlob)
		if err != nil {
			f.Fatal(err)
		}
		if len(m.entries) == 0 {
			continue
		}
		// The root with its first entry's blob (a chunk or a sub-manifest)
		// given as the child, unless that is the large tree's 17 KB
		// sub-manifest.
		if first := m.entries[0].hash; len(file.blobs[first]) <= 4<<10 {
			f.Add(bytes.Replace(rootBlob, first[:], fuzzPlaceholder[:], 1), file.blobs[first])
		}
		// A root repeating its first entry, and one with a wrong total.
		rep := &manifest{level: m.level, size: 3 * m.entries[0].size, entries: []entry{m.entries[0], m.entries[0], m.entries[0]}}
		f.Add(rep.encode(), []byte(nil))
		bad := &manifest{level: m.level, size: m.size + 1, entries: m.entries}
		f.Add(bad.encode(), []byte(nil))
	}
	f.Fuzz(func(t *testing.T, rootBlob, child []byte) {
		childHash := content.Sum(child)
		rootBlob = bytes.ReplaceAll(rootBlob, fuzzPlaceholder[:], childHash[:])
		root := content.Sum(rootBlob)
		get := func(ctx context.Context, h content.Hash) ([]byte, error) {
			switch h {
			case root:
				return rootBlob, nil
			case childHash:
				return child, nil
			}
			if b, ok := store[h]; ok {
				return b, nil
			}
			return nil, fmt.Errorf("blob %s: %w", h, errNoBlob)
		}
		data, err := Decode(t.Context(), root, get)
		if err != nil {
			if data != nil {
				t.Fatalf("Decode returned %d bytes and error %v", len(data), err)
			}
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, errNoBlob) {
				t.Fatalf("Decode error %v is neither ErrCorrupt nor a missing blob", err)
			}
			return
		}
		if data == nil {
			t.Fatal("Decode returned neither contents nor an error")
		}
		m, err := parseManifest(rootBlob)
		if err != nil {
			t.Fatalf("Decode accepted a root that does not parse: %v", err)
		}
		if int64(len(data)) != m.size || m.size > MaxFileSize {
			t.Fatalf("decoded %d bytes, the root says %d", len(data), m.size)
		}
		if want, ok := original[root]; ok && !bytes.Equal(data, want) {
			t.Fatalf("decoding a real encoding gave %d bytes that differ from the %d encoded", len(data), len(want))
		}
		hashes, err := Blobs(t.Context(), root, get)
		if err != nil {
			t.Fatalf("Blobs fails where Decode succeeds: %v", err)
		}
		for _, h := range hashes {
			if _, err := get(t.Context(), h); err != nil {
				t.Fatalf("Blobs lists %s, which Decode did not need: %v", h, err)
			}
		}
		root2, blobs2, err := Encode(data, Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(t.Context(), root2, func(_ context.Context, h content.Hash) ([]byte, error) { return blobs2[h], nil })
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip of the decoded contents: err %v", err)
		}
	})
}
