package chunk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/content"
)

// store is an in-memory blob store for tests that counts fetches and the
// most fetches in flight at once.
type store struct {
	mu       sync.Mutex
	blobs    map[content.Hash][]byte
	fetched  []content.Hash
	inFlight atomic.Int32
	maxIn    atomic.Int32
}

func newStore(blobs map[content.Hash][]byte) *store {
	s := &store{blobs: make(map[content.Hash][]byte)}
	s.add(blobs)
	return s
}

func (s *store) add(blobs map[content.Hash][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, b := range blobs {
		s.blobs[h] = b
	}
}

func (s *store) get(ctx context.Context, h content.Hash) ([]byte, error) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxIn.Load()
		if n <= m || s.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetched = append(s.fetched, h)
	b, ok := s.blobs[h]
	if !ok {
		return nil, fmt.Errorf("blob %s not found", h)
	}
	return b, nil
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// chunkSizes returns the chunk sizes Encode cuts data into with opts.
func chunkSizes(t *testing.T, data []byte, opts Options) []int {
	t.Helper()
	opts = opts.withDefaults()
	c := newCutter(opts)
	var sizes []int
	for rest := data; len(rest) > 0; {
		n := c.cut(rest)
		sizes = append(sizes, n)
		rest = rest[n:]
	}
	return sizes
}

func TestRoundTrip(t *testing.T) {
	rnd := randomBytes(1, 10<<20)
	firstCut := chunkSizes(t, rnd[:1<<20], Options{})[0]
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"one byte", []byte{42}},
		{"min size", rnd[:DefaultMinSize]},
		{"min size plus one", rnd[:DefaultMinSize+1]},
		{"avg size", rnd[:DefaultAvgSize]},
		{"max size", rnd[:DefaultMaxSize]},
		{"max size plus one", rnd[:DefaultMaxSize+1]},
		{"exactly one content-defined chunk", rnd[:firstCut]},
		{"one content-defined chunk plus one byte", rnd[:firstCut+1]},
		{"zeros (max-size chunks, deduplicated)", make([]byte, 3*DefaultMaxSize+5)},
		{"text", []byte(strings.Repeat("keyspace ks0001 table order_detail\n", 20000))},
		{"10 MiB random", rnd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, blobs, err := Encode(tt.data, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for h, b := range blobs {
				if content.Sum(b) != h {
					t.Fatalf("blob %s does not match its hash", h)
				}
				if len(b) > max(DefaultMaxSize, MaxManifestSize) {
					t.Errorf("blob %s is %d bytes", h, len(b))
				}
			}
			got, err := Decode(context.Background(), root, newStore(blobs).get)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Fatalf("Decode returned %d bytes that differ from the %d encoded", len(got), len(tt.data))
			}
		})
	}
}

func TestChunkSizes(t *testing.T) {
	data := randomBytes(2, 10<<20)
	sizes := chunkSizes(t, data, Options{})
	for i, n := range sizes[:len(sizes)-1] {
		if n < DefaultMinSize || n > DefaultMaxSize {
			t.Errorf("chunk %d is %d bytes, outside [%d, %d]", i, n, DefaultMinSize, DefaultMaxSize)
		}
	}
	avg := len(data) / len(sizes)
	t.Logf("10 MiB random: %d chunks, %d bytes on average", len(sizes), avg)
	if avg < DefaultAvgSize/2 || avg > DefaultAvgSize*2 {
		t.Errorf("average chunk %d bytes, want about %d", avg, DefaultAvgSize)
	}
}

func TestDeterministic(t *testing.T) {
	data := randomBytes(3, 3<<20)
	root1, blobs1, err := Encode(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	root2, blobs2, err := Encode(bytes.Clone(data), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if root1 != root2 || len(blobs1) != len(blobs2) {
		t.Fatalf("two encodings differ: roots %s and %s, %d and %d blobs", root1, root2, len(blobs1), len(blobs2))
	}
	for h, b := range blobs1 {
		if !bytes.Equal(b, blobs2[h]) {
			t.Fatalf("blob %s differs", h)
		}
	}
}

func TestEncodeCopiesData(t *testing.T) {
	data := randomBytes(4, 100<<10)
	root, blobs, err := Encode(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(data)
	clear(data)
	got, err := Decode(context.Background(), root, newStore(blobs).get)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("blobs alias the encoded data")
	}
}

// newBlobs returns the blobs of b that are not in a.
func newBlobs(a, b map[content.Hash][]byte) map[content.Hash][]byte {
	out := make(map[content.Hash][]byte)
	for h, v := range b {
		if _, ok := a[h]; !ok {
			out[h] = v
		}
	}
	return out
}

func TestEditChangesFewChunks(t *testing.T) {
	base := randomBytes(5, 4<<20)
	insert := randomBytes(6, 100)
	mid := len(base) / 2
	tests := []struct {
		name string
		edit []byte
	}{
		{"insert 100 bytes in the middle", append(append(bytes.Clone(base[:mid]), insert...), base[mid:]...)},
		{"delete 100 bytes in the middle", append(bytes.Clone(base[:mid]), base[mid+100:]...)},
		{"overwrite 100 bytes in the middle", append(append(bytes.Clone(base[:mid]), insert...), base[mid+100:]...)},
		{"append 100 bytes", append(bytes.Clone(base), insert...)},
		{"insert 100 bytes at the start", append(bytes.Clone(insert), base...)},
	}
	_, before, err := Encode(base, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, after, err := Encode(tt.edit, Options{})
			if err != nil {
				t.Fatal(err)
			}
			added := newBlobs(before, after)
			if _, ok := added[root]; !ok {
				t.Fatal("the root manifest did not change")
			}
			delete(added, root)
			var n int
			for _, b := range added {
				n += len(b)
			}
			t.Logf("%d of %d chunks new (%d bytes) + manifest (%d bytes)", len(added), len(after)-1, n, len(after[root]))
			if len(added) > 3 {
				t.Errorf("%d new chunks, want at most 3", len(added))
			}
		})
	}
}

// bigTree encodes data with small chunks so that it needs a manifest tree.
func bigTree(t testing.TB, data []byte) (content.Hash, map[content.Hash][]byte) {
	t.Helper()
	root, blobs, err := Encode(data, Options{MinSize: 64, AvgSize: 256, MaxSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	return root, blobs
}

func TestManifestTree(t *testing.T) {
	data := randomBytes(7, 2<<20) // about 8,000 chunks of 256 bytes
	root, blobs := bigTree(t, data)
	m, err := parseManifest(blobs[root])
	if err != nil {
		t.Fatal(err)
	}
	if m.level < 1 {
		t.Fatalf("root manifest has level %d, want a tree", m.level)
	}
	for h, b := range blobs {
		if string(b[:min(4, len(b))]) == manifestMagic && len(b) > MaxManifestSize {
			t.Errorf("manifest %s is %d bytes", h, len(b))
		}
	}
	got, err := Decode(context.Background(), root, newStore(blobs).get)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("round trip through a manifest tree differs")
	}

	// An insertion changes a few chunks, one sub-manifest and the root.
	mid := len(data) / 2
	edited := append(append(bytes.Clone(data[:mid]), "inserted"...), data[mid:]...)
	root2, blobs2 := bigTree(t, edited)
	var manifests, chunks int
	for _, b := range newBlobs(blobs, blobs2) {
		if bytes.HasPrefix(b, []byte(manifestMagic)) {
			manifests++
		} else {
			chunks++
		}
	}
	t.Logf("level %d tree; insertion: %d new chunks, %d new manifests", m.level, chunks, manifests)
	if manifests > m.level+1 || chunks > 3 {
		t.Errorf("insertion: %d new chunks and %d new manifests, want at most 3 and %d", chunks, manifests, m.level+1)
	}
	if got, err := Decode(context.Background(), root2, newStore(blobs2).get); err != nil || !bytes.Equal(got, edited) {
		t.Fatalf("round trip of the edit: err %v", err)
	}
}

// encodeOneMiB encodes 1 MiB of random bytes and returns them, the
// encoding and its root manifest.
func encodeOneMiB(t *testing.T, seed uint64) (data []byte, root content.Hash, blobs map[content.Hash][]byte, m *manifest) {
	t.Helper()
	data = randomBytes(seed, 1<<20)
	root, blobs, err := Encode(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err = parseManifest(blobs[root]); err != nil {
		t.Fatal(err)
	}
	return data, root, blobs, m
}

func TestDecodeErrors(t *testing.T) {
	_, root, blobs, m := encodeOneMiB(t, 8)
	chunk := m.entries[len(m.entries)/2].hash
	flip := func(b []byte) []byte {
		b = bytes.Clone(b)
		b[len(b)/2] ^= 1
		return b
	}
	// forged stores a well-formed blob under its own hash and makes the
	// root point at it: valid content, inconsistent manifest.
	forge := func(mutate func(m *manifest)) (content.Hash, map[content.Hash][]byte) {
		mm, _ := parseManifest(blobs[root])
		mm.entries = append([]entry(nil), mm.entries...)
		mutate(mm)
		out := maps.Clone(blobs)
		return put(out, mm.encode()), out
	}
	tests := []struct {
		name    string
		root    content.Hash
		blobs   func() map[content.Hash][]byte
		corrupt bool
		naming  content.Hash
	}{
		{
			name: "corrupt chunk", root: root, corrupt: true, naming: chunk,
			blobs: func() map[content.Hash][]byte {
				out := maps.Clone(blobs)
				out[chunk] = flip(out[chunk])
				return out
			},
		},
		{
			name: "corrupt manifest", root: root, corrupt: true, naming: root,
			blobs: func() map[content.Hash][]byte {
				out := maps.Clone(blobs)
				out[root] = flip(out[root])
				return out
			},
		},
		{
			name: "missing chunk", root: root, naming: chunk,
			blobs: func() map[content.Hash][]byte {
				out := maps.Clone(blobs)
				delete(out, chunk)
				return out
			},
		},
		{
			name: "not a manifest", root: chunk, corrupt: true, naming: chunk,
			blobs: func() map[content.Hash][]byte { return blobs },
		},
	}
	var forgedRoot content.Hash
	var forgedBlobs map[content.Hash][]byte
	forgedRoot, forgedBlobs = forge(func(m *manifest) { m.entries[0].size++; m.size++ })
	tests = append(tests, struct {
		name    string
		root    content.Hash
		blobs   func() map[content.Hash][]byte
		corrupt bool
		naming  content.Hash
	}{
		name: "chunk size differs from manifest", root: forgedRoot, corrupt: true, naming: m.entries[0].hash,
		blobs: func() map[content.Hash][]byte { return forgedBlobs },
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(context.Background(), tt.root, newStore(tt.blobs()).get)
			if err == nil {
				t.Fatal("Decode succeeded")
			}
			if got := errors.Is(err, ErrCorrupt); got != tt.corrupt {
				t.Errorf("errors.Is(%v, ErrCorrupt) = %v, want %v", err, got, tt.corrupt)
			}
			if !strings.Contains(err.Error(), tt.naming.String()) {
				t.Errorf("error %q does not name blob %s", err, tt.naming)
			}
		})
	}
}

// TestDecodeAmplification: a few small blobs can describe a huge file by
// repeating a chunk or a sub-manifest (a "zip bomb"). Decode refuses a file
// over MaxFileSize after reading only its root manifest, allocates the file
// only once its chunks are fetched and verified, and, like Blobs, reads
// each distinct manifest once. Before, the 3.4 GiB tree (four blobs of
// 150 KB in all) ran the process out of memory, the 96 GiB manifest made
// Decode allocate 96 GiB before fetching a chunk, and decoding the 2.25 MiB
// file fetched its sub-manifest 1,536 times and allocated 1 GiB.
func TestDecodeAmplification(t *testing.T) {
	blobs := map[content.Hash][]byte{}
	x := put(blobs, []byte("x"))
	repeat := func(level int, e entry) content.Hash {
		m := &manifest{level: level, size: maxEntries * e.size}
		for range maxEntries {
			m.entries = append(m.entries, e)
		}
		return put(blobs, m.encode())
	}
	l0 := repeat(0, entry{x, 1})                            // 1,536 bytes
	l1 := repeat(1, entry{l0, maxEntries})                  // 2.25 MiB
	l2 := repeat(2, entry{l1, maxEntries * maxEntries})     // 3.4 GiB
	big := repeat(0, entry{content.Sum(nil), MaxChunkSize}) // 96 GiB
	// 1 GiB, the most Decode accepts, of a chunk the store lacks.
	missing := entry{content.Sum([]byte("missing")), MaxChunkSize}
	sub := put(blobs, (&manifest{size: MaxChunkSize, entries: []entry{missing}}).encode())
	gib := &manifest{level: 1, size: MaxFileSize}
	for range MaxFileSize / MaxChunkSize {
		gib.entries = append(gib.entries, entry{sub, MaxChunkSize})
	}
	gibRoot := put(blobs, gib.encode())

	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	tests := []struct {
		name    string
		root    content.Hash
		size    int64 // decoded size; -1: Decode fails
		corrupt bool  // the failure is ErrCorrupt (else a missing blob)
		fetches int   // Decode makes, at most
		blobs   int   // Blobs lists, fetching one fewer (the chunks are not fetched)
	}{
		{"a chunk repeated 2.4 million times", l1, maxEntries * maxEntries, false, 3, 3},
		{"3.4 GiB of repeats", l2, -1, true, 1, 4},
		{"96 GiB in one manifest", big, -1, true, 1, 2},
		{"1 GiB of a chunk the store lacks", gibRoot, -1, false, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(blobs)
			var got []byte
			var err error
			n := allocated(func() { got, err = Decode(t.Context(), tt.root, s.get) })
			if tt.size >= 0 {
				if err != nil || int64(len(got)) != tt.size || bytes.Count(got, []byte("x")) != len(got) {
					t.Fatalf("Decode = %d bytes, %v; want %d bytes of x", len(got), err, tt.size)
				}
			} else {
				if err == nil {
					t.Fatalf("Decode of %d bytes succeeded", len(got))
				}
				if errors.Is(err, ErrCorrupt) != tt.corrupt {
					t.Fatalf("Decode: %v; want ErrCorrupt %v", err, tt.corrupt)
				}
				if limit := uint64(16 << 20); n > limit {
					t.Errorf("Decode allocated %d MiB to fail", n>>20)
				}
			}
			t.Logf("Decode: %d fetches, %d KiB allocated, err %v", len(s.fetched), n>>10, err)
			if len(s.fetched) > tt.fetches {
				t.Errorf("Decode fetched %d blobs, want at most %d", len(s.fetched), tt.fetches)
			}
			s = newStore(blobs)
			hashes, err := Blobs(t.Context(), tt.root, s.get)
			if err != nil || len(hashes) != tt.blobs {
				t.Fatalf("Blobs = %d hashes, %v; want %d", len(hashes), err, tt.blobs)
			}
			if len(s.fetched) != tt.blobs-1 {
				t.Errorf("Blobs fetched %d blobs, want the %d manifests", len(s.fetched), tt.blobs-1)
			}
		})
	}
}

func TestParseManifestRejects(t *testing.T) {
	good := (&manifest{level: 0, size: 10, entries: []entry{{content.Sum([]byte("a")), 4}, {content.Sum([]byte("b")), 6}}}).encode()
	if _, err := parseManifest(good); err != nil {
		t.Fatalf("good manifest: %v", err)
	}
	tests := []struct {
		name string
		blob []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte("XXXX"), good[4:]...)},
		{"bad version", append(append([]byte(manifestMagic), 9), good[5:]...)},
		{"too deep", append(append([]byte(manifestMagic), manifestVersion, maxLevel+1), good[6:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing bytes", append(bytes.Clone(good), 0)},
		{"sizes do not add up", (&manifest{size: 11, entries: []entry{{content.Sum(nil), 10}}}).encode()},
		{"zero-size entry", (&manifest{size: 0, entries: []entry{{content.Sum(nil), 0}}}).encode()},
		{"chunk too large", (&manifest{size: MaxChunkSize + 1, entries: []entry{{content.Sum(nil), MaxChunkSize + 1}}}).encode()},
		{"too large", make([]byte, MaxManifestSize+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseManifest(tt.blob); !errors.Is(err, errMalformed) {
				t.Errorf("parseManifest: err = %v, want errMalformed", err)
			}
		})
	}
}

func TestDecodeConcurrencyBound(t *testing.T) {
	root, blobs, err := Encode(randomBytes(9, 8<<20), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(blobs)
	slow := func(ctx context.Context, h content.Hash) ([]byte, error) {
		time.Sleep(time.Millisecond)
		return s.get(ctx, h)
	}
	if _, err := Decode(context.Background(), root, slow); err != nil {
		t.Fatal(err)
	}
	if n := s.maxIn.Load(); n > fetchConcurrency {
		t.Errorf("%d fetches in flight at once, want at most %d", n, fetchConcurrency)
	}
	if len(s.fetched) != len(blobs) {
		t.Errorf("fetched %d blobs, the encoding has %d distinct ones", len(s.fetched), len(blobs))
	}
}

func TestDecodeCancelled(t *testing.T) {
	root, blobs, err := Encode(randomBytes(10, 1<<20), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Decode(ctx, root, newStore(blobs).get); !errors.Is(err, context.Canceled) {
		t.Fatalf("Decode with a cancelled context: err = %v", err)
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		opts Options
		ok   bool
	}{
		{Options{}, true},
		{Options{MinSize: 1, AvgSize: 8, MaxSize: 8}, true},
		{Options{MinSize: -1}, false},
		{Options{MinSize: 128 << 10}, false},        // min > avg
		{Options{AvgSize: 100 << 10}, false},        // not a power of two
		{Options{MaxSize: 32 << 10}, false},         // max < avg
		{Options{MinSize: 1, AvgSize: 4}, false},    // avg too small to normalize
		{Options{MaxSize: MaxChunkSize + 1}, false}, // over the format limit
	}
	for _, tt := range tests {
		_, _, err := Encode([]byte("data"), tt.opts)
		if (err == nil) != tt.ok {
			t.Errorf("Encode with %+v: err = %v, want ok %v", tt.opts, err, tt.ok)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	data := randomBytes(11, 64<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := Encode(data, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	data := randomBytes(12, 64<<20)
	root, blobs, err := Encode(data, Options{})
	if err != nil {
		b.Fatal(err)
	}
	get := func(_ context.Context, h content.Hash) ([]byte, error) { return blobs[h], nil }
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Decode(context.Background(), root, get); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDecodeChecked: for a Getter whose blobs are already checked, the
// chunks are not hashed again; the result is Decode's, and a chunk of the
// wrong size or a missing one is still an error.
func TestDecodeChecked(t *testing.T) {
	data, root, blobs, m := encodeOneMiB(t, 9)
	chunk := m.entries[len(m.entries)/2].hash
	tests := []struct {
		name    string
		mutate  func(map[content.Hash][]byte)
		wantErr bool
	}{
		{"as encoded", func(map[content.Hash][]byte) {}, false},
		{"truncated chunk", func(b map[content.Hash][]byte) { b[chunk] = b[chunk][:len(b[chunk])-1] }, true},
		{"missing chunk", func(b map[content.Hash][]byte) { delete(b, chunk) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := maps.Clone(blobs)
			tt.mutate(bs)
			got, err := DecodeChecked(context.Background(), root, newStore(bs).get)
			if (err != nil) != tt.wantErr {
				t.Fatalf("DecodeChecked: %v, want an error: %v", err, tt.wantErr)
			}
			if err == nil && !bytes.Equal(got, data) {
				t.Error("DecodeChecked does not return the file")
			}
		})
	}
}
