package srvvschema

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/topod-io/topod/pkg/content"
)

// Format constants: see the package documentation.
const (
	// Buckets is the number of manifest leaves: a keyspace lives in leaf
	// Bucket(name).
	Buckets = 256

	rootMagic     = "TDVR" // topod vschema root
	leafMagic     = "TDVL" // topod vschema leaf
	formatVersion = 1

	// keyspacesField is the SrvVSchema field number of keyspaces; every
	// other field is carried as a Part.
	keyspacesField protowire.Number = 1
	// UnknownFields is the Part.Field of the part carrying the SrvVSchema's
	// fields that this build of Vitess does not know (raw wire bytes).
	UnknownFields protowire.Number = 0

	maxParts     = 64      // a sanity bound for parsing a root
	maxPieceSize = 1 << 40 // a sanity bound for parsing a size

	// MaxSize is the largest SrvVSchema, as one marshalled message, that
	// the codec encodes and decodes: 1 GiB. Keyspaces with equal values
	// share their piece, so a small manifest can describe a far larger
	// SrvVSchema; the decoders refuse one that claims more before
	// fetching its pieces.
	MaxSize = 1 << 30
)

// Bucket returns the manifest leaf of the keyspace name: the first byte of
// the SHA-256 of the name.
func Bucket(name string) int {
	return int(content.Sum([]byte(name))[0])
}

// Entry is a keyspace in a manifest: its name and its piece, the
// vschemapb.Keyspace marshalled deterministically.
type Entry struct {
	Name string
	Hash content.Hash // of the piece
	Size int64        // of the piece, in bytes
}

// Part is a non-keyspace piece of a SrvVSchema: one of its message fields
// (routing_rules 2, shard_routing_rules 3, keyspace_routing_rules 4,
// mirror_rules 5), marshalled deterministically, or, with Field
// UnknownFields, the wire bytes of the fields this build does not know.
// A part is present exactly when its field is set, even to an empty message.
type Part struct {
	Field protowire.Number
	Hash  content.Hash
	Size  int64
}

// leaf is one of a manifest's 256 leaves: the entries of the keyspaces in
// its bucket, sorted by name. A leaf is immutable once built; manifests
// share unchanged leaves.
type leaf struct {
	hash    content.Hash
	size    int // of the encoded leaf blob
	entries []Entry
}

// Manifest is the decoded two-level manifest of an encoded SrvVSchema: the
// root and its 256 leaves. It is immutable and safe for concurrent use;
// manifests derived from it by EncodeEdit or DecodeDelta share its
// unchanged leaves.
type Manifest struct {
	root      content.Hash
	rootSize  int
	keyspaces int
	size      int64
	parts     []Part // sorted by Field
	leaves    [Buckets]*leaf
}

// Root returns the hash of the manifest's root blob, which names the
// encoded SrvVSchema.
func (m *Manifest) Root() content.Hash { return m.root }

// Size returns the size in bytes of the SrvVSchema as a single protobuf
// message, which is what DecodeBytes returns.
func (m *Manifest) Size() int64 { return m.size }

// Len returns the number of keyspaces.
func (m *Manifest) Len() int { return m.keyspaces }

// Parts returns the non-keyspace parts, sorted by field number.
func (m *Manifest) Parts() []Part { return slices.Clone(m.parts) }

// Keyspace returns the entry of the keyspace name, if there is one.
func (m *Manifest) Keyspace(name string) (Entry, bool) {
	entries := m.leaves[Bucket(name)].entries
	if i, ok := findEntry(entries, name); ok {
		return entries[i], true
	}
	return Entry{}, false
}

// Keyspaces returns every keyspace's entry, sorted by name.
func (m *Manifest) Keyspaces() []Entry {
	all := make([]Entry, 0, m.keyspaces)
	for _, l := range m.leaves {
		all = append(all, l.entries...)
	}
	slices.SortFunc(all, func(a, b Entry) int { return cmp.Compare(a.Name, b.Name) })
	return all
}

// BlobSizes returns the size of the root blob and of the largest leaf blob.
func (m *Manifest) BlobSizes() (root, maxLeaf int) {
	for _, l := range m.leaves {
		maxLeaf = max(maxLeaf, l.size)
	}
	return m.rootSize, maxLeaf
}

// findEntry finds name in entries, sorted by name, or where it would go.
func findEntry(entries []Entry, name string) (int, bool) {
	return slices.BinarySearchFunc(entries, name, func(e Entry, name string) int { return cmp.Compare(e.Name, name) })
}

// newLeaf encodes entries (sorted by name, unique) as a leaf:
//
//	"TDVL" | version | uvarint n | n × (uvarint len(name) | name | hash | uvarint size)
func newLeaf(entries []Entry) (*leaf, []byte) {
	n := len(leafMagic) + 1 + protowire.SizeVarint(uint64(len(entries)))
	for _, e := range entries {
		n += protowire.SizeBytes(len(e.Name)) + content.Size + protowire.SizeVarint(uint64(e.Size))
	}
	b := make([]byte, 0, n)
	b = append(b, leafMagic...)
	b = append(b, formatVersion)
	b = protowire.AppendVarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = protowire.AppendString(b, e.Name)
		b = append(b, e.Hash[:]...)
		b = protowire.AppendVarint(b, uint64(e.Size))
	}
	return &leaf{hash: content.Sum(b), size: len(b), entries: entries}, b
}

// encodeRoot encodes m's root:
//
//	"TDVR" | version | uvarint keyspaces | uvarint size | uvarint nparts |
//	nparts × (uvarint field | hash | uvarint size) | 256 × leaf hash
//
// and sets m.root and m.rootSize.
func (m *Manifest) encodeRoot() []byte {
	b := make([]byte, 0, len(rootMagic)+1+3*binary.MaxVarintLen64+len(m.parts)*(content.Size+2*binary.MaxVarintLen64)+Buckets*content.Size)
	b = append(b, rootMagic...)
	b = append(b, formatVersion)
	b = protowire.AppendVarint(b, uint64(m.keyspaces))
	b = protowire.AppendVarint(b, uint64(m.size))
	b = protowire.AppendVarint(b, uint64(len(m.parts)))
	for _, p := range m.parts {
		b = protowire.AppendVarint(b, uint64(p.Field))
		b = append(b, p.Hash[:]...)
		b = protowire.AppendVarint(b, uint64(p.Size))
	}
	for _, l := range m.leaves {
		b = append(b, l.hash[:]...)
	}
	m.root = content.Sum(b)
	m.rootSize = len(b)
	return b
}

// errMalformed is wrapped by parse errors (themselves wrapped with
// ErrCorrupt and the blob's hash by the caller).
var errMalformed = errors.New("malformed")

// reader consumes a blob, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{errMalformed}, args...)...)
	}
}

func (r *reader) header(magic string) {
	if len(r.b) < len(magic)+1 || string(r.b[:len(magic)]) != magic {
		r.fail("bad magic, want %q", magic)
		return
	}
	if v := r.b[len(magic)]; v != formatVersion {
		r.fail("unsupported format version %d", v)
		return
	}
	r.b = r.b[len(magic)+1:]
}

func (r *reader) uvarint(what string, limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := protowire.ConsumeVarint(r.b)
	if n < 0 {
		r.fail("truncated %s", what)
		return 0
	}
	if v > limit {
		r.fail("%s %d exceeds %d", what, v, limit)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) hash(what string) (h content.Hash) {
	if r.err != nil {
		return h
	}
	if len(r.b) < content.Size {
		r.fail("truncated %s", what)
		return h
	}
	copy(h[:], r.b)
	r.b = r.b[content.Size:]
	return h
}

func (r *reader) string(what string) string {
	n := r.uvarint(what+" length", uint64(len(r.b)))
	// The bound above counts the length's own bytes: check what is left.
	if r.err == nil && n > uint64(len(r.b)) {
		r.fail("truncated %s: %d bytes, %d left", what, n, len(r.b))
	}
	if r.err != nil {
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}

// parseLeaf parses the leaf blob b of bucket and checks that its entries
// are sorted, unique, valid UTF-8 and belong to bucket.
func parseLeaf(b []byte, bucket int) (*leaf, error) {
	r := &reader{b: b}
	r.header(leafMagic)
	n := r.uvarint("entry count", uint64(len(b)))
	entries := make([]Entry, 0, min(n, uint64(len(b))/content.Size))
	for i := uint64(0); i < n && r.err == nil; i++ {
		e := Entry{Name: r.string("name"), Hash: r.hash("piece hash"), Size: int64(r.uvarint("piece size", maxPieceSize))}
		if r.err != nil {
			break
		}
		switch {
		case !utf8.ValidString(e.Name):
			r.fail("entry %d: name is not valid UTF-8", i)
		case Bucket(e.Name) != bucket:
			r.fail("entry %d: keyspace %q belongs in leaf %d, not %d", i, e.Name, Bucket(e.Name), bucket)
		case len(entries) > 0 && entries[len(entries)-1].Name >= e.Name:
			r.fail("entry %d: keyspace %q out of order", i, e.Name)
		}
		entries = append(entries, e)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return &leaf{hash: content.Sum(b), size: len(b), entries: entries}, nil
}

// LeafHashes returns the distinct hashes of the leaves a root blob names,
// so that a client with a cold cache can fetch them in one batch before
// LoadManifest. It parses root without verifying it against a hash.
func LeafHashes(root []byte) ([]content.Hash, error) {
	_, leaves, err := parseRoot(root)
	if err != nil {
		return nil, fmt.Errorf("vschema: root: %w: %w", ErrCorrupt, err)
	}
	seen := make(map[content.Hash]bool, len(leaves))
	var out []content.Hash
	for _, h := range leaves {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out, nil
}

// parseRoot parses a root blob. The leaves are left nil; their hashes are
// returned.
func parseRoot(b []byte) (*Manifest, [Buckets]content.Hash, error) {
	var leaves [Buckets]content.Hash
	r := &reader{b: b}
	r.header(rootMagic)
	m := &Manifest{root: content.Sum(b), rootSize: len(b)}
	m.keyspaces = int(r.uvarint("keyspace count", 1<<40))
	m.size = int64(r.uvarint("size", 1<<62))
	nparts := r.uvarint("part count", maxParts)
	for i := uint64(0); i < nparts && r.err == nil; i++ {
		p := Part{
			Field: protowire.Number(r.uvarint("part field", uint64(protowire.MaxValidNumber))),
			Hash:  r.hash("part hash"),
			Size:  int64(r.uvarint("part size", maxPieceSize)),
		}
		switch {
		case r.err != nil:
		case p.Field == keyspacesField:
			r.fail("part %d: field %d is the keyspaces", i, p.Field)
		case len(m.parts) > 0 && m.parts[len(m.parts)-1].Field >= p.Field:
			r.fail("part %d: field %d out of order", i, p.Field)
		}
		m.parts = append(m.parts, p)
	}
	for i := range leaves {
		leaves[i] = r.hash("leaf hash")
	}
	return m, leaves, r.end()
}

// check verifies that the totals in m's root agree with its leaves.
func (m *Manifest) check() error {
	n, size := 0, int64(0)
	for _, l := range m.leaves {
		n += len(l.entries)
		for _, e := range l.entries {
			size += entryWireSize(e)
		}
	}
	for _, p := range m.parts {
		size += partWireSize(p)
	}
	if n != m.keyspaces || size != m.size {
		return fmt.Errorf("%w: root says %d keyspaces and %d bytes, leaves and parts make %d and %d",
			errMalformed, m.keyspaces, m.size, n, size)
	}
	return nil
}

// entryWireSize is the size of e's keyspaces map entry in the SrvVSchema
// message: tag, length, and the entry (key field, value field).
func entryWireSize(e Entry) int64 {
	inner := 1 + protowire.SizeBytes(len(e.Name)) + 1 + protowire.SizeBytes(int(e.Size))
	return int64(protowire.SizeTag(keyspacesField) + protowire.SizeBytes(inner))
}

// partWireSize is the size of p in the SrvVSchema message.
func partWireSize(p Part) int64 {
	if p.Field == UnknownFields {
		return p.Size
	}
	return int64(protowire.SizeTag(p.Field) + protowire.SizeBytes(int(p.Size)))
}

// Blobs returns the hash of every blob the manifest's SrvVSchema is made of:
// the root, the leaves, the keyspace pieces and the parts, each once. It is
// what a garbage collector marks as live.
func (m *Manifest) Blobs() []content.Hash {
	seen := map[content.Hash]bool{m.root: true}
	out := []content.Hash{m.root}
	add := func(h content.Hash) {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, l := range m.leaves {
		add(l.hash)
		for _, e := range l.entries {
			add(e.Hash)
		}
	}
	for _, p := range m.parts {
		add(p.Hash)
	}
	return out
}
