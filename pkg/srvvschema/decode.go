package srvvschema

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/content"
)

// fetchConcurrency is the most blobs fetched at a time.
const fetchConcurrency = 16

// Decode fetches the encoding named root through get and assembles the
// SrvVSchema, proto.Equal to the one encoded. It fetches the root, every
// distinct leaf and every distinct piece, at most 16 at a time, and
// verifies each against its hash; a mismatch or a malformed blob is an error
// wrapping ErrCorrupt and naming the blob, as is a piece that Vitess's
// vtprotobuf and proto.Unmarshal read differently (unmarshalPiece) and a
// root claiming a SrvVSchema over MaxSize.
func Decode(ctx context.Context, root content.Hash, get Getter) (*vschemapb.SrvVSchema, error) {
	m, err := loadDecodable(ctx, nil, root, get)
	if err != nil {
		return nil, fmt.Errorf("vschema: decode %s: %w", root, err)
	}
	keyspaces, srv, err := fetchPieces(ctx, get, m.Keyspaces(), m.parts)
	if err != nil {
		return nil, fmt.Errorf("vschema: decode %s: %w", root, err)
	}
	srv.Keyspaces = keyspaces
	return srv, nil
}

// DecodeBytes is Decode returning the SrvVSchema marshalled, as a topo
// client reads it: exactly its deterministic marshalling, Size bytes,
// assembled from the pieces without unmarshalling them.
func DecodeBytes(ctx context.Context, root content.Hash, get Getter) ([]byte, error) {
	return decodeBytes(ctx, root, get, true)
}

// DecodeBytesChecked is DecodeBytes for a Getter that returns only blobs
// already checked against their hashes (a cache that admits nothing else,
// as pkg/cache does): the pieces, nearly all of the bytes, are not hashed
// again. The root and leaves are, and every size and structure check
// stays.
func DecodeBytesChecked(ctx context.Context, root content.Hash, get Getter) ([]byte, error) {
	return decodeBytes(ctx, root, get, false)
}

func decodeBytes(ctx context.Context, root content.Hash, get Getter, hash bool) ([]byte, error) {
	m, err := loadDecodable(ctx, nil, root, get)
	if err != nil {
		return nil, fmt.Errorf("vschema: decode %s: %w", root, err)
	}
	entries := m.Keyspaces()
	refs, index, err := pieceRefs(entries, m.parts)
	if err != nil {
		return nil, fmt.Errorf("vschema: decode %s: %w", root, err)
	}
	blobs := make([][]byte, len(refs))
	err = fetchAll(ctx, get, refs, hash, func(i int, b []byte) error {
		blobs[i] = b
		return nil
	})
	if err == nil {
		err = checkUnknownPart(m.parts, func(p Part) []byte { return blobs[index[p.Hash]] })
	}
	if err != nil {
		return nil, fmt.Errorf("vschema: decode %s: %w", root, err)
	}
	out := make([]byte, 0, m.size)
	for _, e := range entries {
		inner := 1 + protowire.SizeBytes(len(e.Name)) + 1 + protowire.SizeBytes(int(e.Size))
		out = protowire.AppendTag(out, keyspacesField, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(inner))
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendString(out, e.Name)
		out = protowire.AppendTag(out, 2, protowire.BytesType)
		out = protowire.AppendBytes(out, blobs[index[e.Hash]])
	}
	out = appendParts(out, m.parts, func(p Part) []byte { return blobs[index[p.Hash]] })
	if int64(len(out)) != m.size {
		return nil, fmt.Errorf("vschema: decode %s: %w: assembled %d bytes, the root says %d", root, ErrCorrupt, len(out), m.size)
	}
	return out, nil
}

// LoadManifest fetches the root named root and its leaves, verifies them and
// returns the manifest, without fetching any piece.
func LoadManifest(ctx context.Context, root content.Hash, get Getter) (*Manifest, error) {
	m, err := loadManifest(ctx, nil, root, get)
	if err != nil {
		return nil, fmt.Errorf("vschema: load manifest %s: %w", root, err)
	}
	return m, nil
}

// loadDecodable is loadManifest for a decoder: it also refuses a manifest
// of a SrvVSchema over MaxSize, before anything fetches its pieces.
func loadDecodable(ctx context.Context, old *Manifest, root content.Hash, get Getter) (*Manifest, error) {
	m, err := loadManifest(ctx, old, root, get)
	if err != nil {
		return nil, err
	}
	if m.size > MaxSize {
		return nil, fmt.Errorf("root %s: %w: a SrvVSchema of %d bytes, over the %d-byte limit", root, ErrCorrupt, m.size, MaxSize)
	}
	return m, nil
}

// loadManifest fetches the root named root and those of its leaves that old
// (which may be nil) does not have in the same bucket.
func loadManifest(ctx context.Context, old *Manifest, root content.Hash, get Getter) (*Manifest, error) {
	b, err := fetchOne(ctx, get, blobRef{what: "root", hash: root, size: -1}, true)
	if err != nil {
		return nil, err
	}
	m, leafHashes, err := parseRoot(b)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w: %w", root, ErrCorrupt, err)
	}
	// Fetch each missing leaf once, even if several (empty) buckets share it.
	buckets := make(map[content.Hash][]int)
	var refs []blobRef
	for i, h := range leafHashes {
		if old != nil && old.leaves[i].hash == h {
			m.leaves[i] = old.leaves[i]
			continue
		}
		if _, ok := buckets[h]; !ok {
			refs = append(refs, blobRef{what: fmt.Sprintf("leaf %d", i), hash: h, size: -1})
		}
		buckets[h] = append(buckets[h], i)
	}
	err = fetchAll(ctx, get, refs, true, func(i int, b []byte) error {
		for _, bucket := range buckets[refs[i].hash] {
			l, err := parseLeaf(b, bucket)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			m.leaves[bucket] = l
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("root %s: %w: %w", root, ErrCorrupt, err)
	}
	return m, nil
}

// fetchPieces fetches and unmarshals the pieces of entries and parts with
// unmarshalPiece. It returns the keyspaces by name and a SrvVSchema holding
// the parts.
func fetchPieces(ctx context.Context, get Getter, entries []Entry, parts []Part) (map[string]*vschemapb.Keyspace, *vschemapb.SrvVSchema, error) {
	refs, index, err := pieceRefs(entries, parts)
	if err != nil {
		return nil, nil, err
	}
	names := make([][]string, len(refs)) // the keyspaces sharing each piece
	for _, e := range entries {
		i := index[e.Hash]
		names[i] = append(names[i], e.Name)
	}
	values := make([][]*vschemapb.Keyspace, len(refs))
	raw := make([][]byte, len(refs))
	err = fetchAll(ctx, get, refs, true, func(i int, b []byte) error {
		raw[i] = b
		for _, name := range names[i] {
			ks := &vschemapb.Keyspace{}
			if err := unmarshalPiece(b, ks); err != nil {
				return fmt.Errorf("keyspace %q: %w", name, err)
			}
			values[i] = append(values[i], ks)
		}
		return nil
	})
	if err == nil {
		err = checkUnknownPart(parts, func(p Part) []byte { return raw[index[p.Hash]] })
	}
	if err != nil {
		return nil, nil, err
	}
	keyspaces := make(map[string]*vschemapb.Keyspace, len(entries))
	for i, ns := range names {
		for j, name := range ns {
			keyspaces[name] = values[i][j]
		}
	}
	srv := &vschemapb.SrvVSchema{}
	wire := appendParts(nil, parts, func(p Part) []byte { return raw[index[p.Hash]] })
	if err := unmarshalPiece(wire, srv); err != nil {
		return nil, nil, fmt.Errorf("parts: %w", err)
	}
	return keyspaces, srv, nil
}

// vtMessage is a message with vtprotobuf's generated unmarshaller.
type vtMessage interface {
	proto.Message
	UnmarshalVT([]byte) error
}

// unmarshalPiece unmarshals b into m with UnmarshalVT, as Vitess's topo
// client unmarshals the SrvVSchema that DecodeBytes gives it, and checks
// that proto.Unmarshal reads b as the same message. The two disagree on
// bytes no Encode writes: vtprotobuf accepts a string that is not UTF-8 and
// a group closed by another field's end marker, and refuses a known field
// with another wire type, which proto.Unmarshal keeps as unknown. Such a
// piece is an error wrapping ErrCorrupt, so what Decode returns is what
// every reader of DecodeBytes' bytes sees, and encodes again.
func unmarshalPiece(b []byte, m vtMessage) error {
	if err := m.UnmarshalVT(b); err != nil {
		return fmt.Errorf("%w: unmarshal: %w", ErrCorrupt, err)
	}
	check := m.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(b, check); err != nil {
		return fmt.Errorf("%w: unmarshal: %w", ErrCorrupt, err)
	}
	if !proto.Equal(m, check) {
		return fmt.Errorf("%w: vtprotobuf and proto read different messages", ErrCorrupt)
	}
	return nil
}

// pieceRefs returns the distinct pieces of entries and parts, and the index
// of each hash in them. Each piece is fetched and its size checked once, so
// a hash listed with two sizes is an error wrapping ErrCorrupt.
func pieceRefs(entries []Entry, parts []Part) ([]blobRef, map[content.Hash]int, error) {
	refs := make([]blobRef, 0, len(entries)+len(parts))
	index := make(map[content.Hash]int, len(entries)+len(parts))
	add := func(what string, h content.Hash, size int64) error {
		i, ok := index[h]
		if !ok {
			index[h] = len(refs)
			refs = append(refs, blobRef{what: what, hash: h, size: size})
			return nil
		}
		if refs[i].size != size {
			return fmt.Errorf("%s %s: %w: %d bytes, %s says %d", what, h, ErrCorrupt, size, refs[i].what, refs[i].size)
		}
		return nil
	}
	for _, e := range entries {
		if err := add(fmt.Sprintf("keyspace %q piece", e.Name), e.Hash, e.Size); err != nil {
			return nil, nil, err
		}
	}
	for _, p := range parts {
		if err := add(fmt.Sprintf("part %d", p.Field), p.Hash, p.Size); err != nil {
			return nil, nil, err
		}
	}
	return refs, index, nil
}

// checkUnknownPart checks the UnknownFields part among parts, if any, with
// checkUnknownFields. Otherwise Decode, which sets the keyspaces from the
// leaves and unmarshals the parts, and DecodeBytes, which appends the part
// as it is, could give different SrvVSchemas, or only one of them fail,
// for one encoding.
func checkUnknownPart(parts []Part, piece func(Part) []byte) error {
	for _, p := range parts {
		if p.Field != UnknownFields {
			continue
		}
		if err := checkUnknownFields(piece(p)); err != nil {
			return fmt.Errorf("part %d %s: %w: %w", p.Field, p.Hash, ErrCorrupt, err)
		}
	}
	return nil
}

// checkUnknownFields checks the wire bytes of a SrvVSchema's unknown
// fields, as the UnknownFields part holds them: well-formed fields (groups
// closed by their own end marker), none of them keyspaces, which are in the
// leaves. Encode refuses what fails it, and the decoders too.
func checkUnknownFields(b []byte) error {
	for len(b) > 0 {
		num, _, n := protowire.ConsumeField(b)
		switch {
		case n < 0:
			return fmt.Errorf("unknown fields: %w", protowire.ParseError(n))
		case num == keyspacesField:
			return fmt.Errorf("unknown fields: field %d is the keyspaces", num)
		}
		b = b[n:]
	}
	return nil
}

// appendParts appends the wire form of parts (sorted by field) to b: each
// field as a length-delimited field, then the unknown fields.
func appendParts(b []byte, parts []Part, piece func(Part) []byte) []byte {
	for _, p := range parts {
		if p.Field != UnknownFields {
			b = protowire.AppendTag(b, p.Field, protowire.BytesType)
			b = protowire.AppendBytes(b, piece(p))
		}
	}
	for _, p := range parts {
		if p.Field == UnknownFields {
			b = append(b, piece(p)...)
		}
	}
	return b
}

// blobRef names a blob to fetch: what it is (for errors), its hash and its
// expected size (-1 if unknown).
type blobRef struct {
	what string
	hash content.Hash
	size int64
}

// fetchAll fetches refs, at most fetchConcurrency at a time, and calls use
// with each verified blob (hashed unless hash is false), concurrently. The
// first error cancels the rest.
func fetchAll(ctx context.Context, get Getter, refs []blobRef, hash bool, use func(i int, b []byte) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchConcurrency)
	for i, r := range refs {
		g.Go(func() error {
			b, err := fetchOne(gctx, get, r, hash)
			if err != nil {
				return err
			}
			if err := use(i, b); err != nil {
				return fmt.Errorf("%s %s: %w", r.what, r.hash, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// FetchKeyspace fetches, verifies and unmarshals (with unmarshalPiece) the
// piece of keyspace name that manifest m lists; found is false when m has
// no such keyspace.
func FetchKeyspace(ctx context.Context, get Getter, m *Manifest, name string) (ks *vschemapb.Keyspace, found bool, err error) {
	e, ok := m.Keyspace(name)
	if !ok {
		return nil, false, nil
	}
	b, err := fetchOne(ctx, get, blobRef{what: fmt.Sprintf("keyspace %q piece", name), hash: e.Hash, size: e.Size}, true)
	if err != nil {
		return nil, false, err
	}
	ks = &vschemapb.Keyspace{}
	if err := unmarshalPiece(b, ks); err != nil {
		return nil, false, fmt.Errorf("keyspace %q: %w", name, err)
	}
	return ks, true, nil
}

// fetchOne fetches r and verifies its size and, if hash, its hash.
func fetchOne(ctx context.Context, get Getter, r blobRef, hash bool) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := get(ctx, r.hash)
	if err != nil {
		return nil, fmt.Errorf("%s %s: fetch: %w", r.what, r.hash, err)
	}
	if hash {
		if got := content.Sum(b); got != r.hash {
			return nil, fmt.Errorf("%s %s: %w: content hash is %s", r.what, r.hash, ErrCorrupt, got)
		}
	}
	if r.size >= 0 && int64(len(b)) != r.size {
		return nil, fmt.Errorf("%s %s: %w: %d bytes, the manifest says %d", r.what, r.hash, ErrCorrupt, len(b), r.size)
	}
	return b, nil
}
