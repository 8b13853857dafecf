// Package srvvschema is the SrvVSchema codec: split per keyspace, two-level
// manifest, assemble, incremental encode, delta decode. Validation and the
// vschema service live in package vschemastore, so that the topology
// server links the codec without Vitess's query planner.
//
// Vitess keeps a cell's serving vschema in one topo file, a
// vschemapb.SrvVSchema holding every keyspace; at the JD scale that is
// 14–18 MiB, and at ten times that scale ten times more. This codec stores it
// as immutable content-addressed blobs (named by their SHA-256, see
// content.Hash) so that no blob is large and changing one keyspace writes,
// and a watcher fetches, three blobs of a few KiB plus that keyspace:
//
//	root ──┬─ leaf 0x00 ──┬─ piece "ks0042"   (vschemapb.Keyspace)
//	       │              └─ piece "ks1187"
//	       ├─ leaf 0x01 ── ...
//	       ├─ ... 256 leaves, by the first byte of SHA-256(keyspace name)
//	       └─ parts: routing_rules, shard_routing_rules,
//	                 keyspace_routing_rules, mirror_rules, unknown fields
//
// # Pieces
//
// A keyspace's piece is its vschemapb.Keyspace marshalled with
// proto.MarshalOptions{Deterministic: true}, so equal keyspaces give equal
// bytes and hashes (and are stored once). Every other field of the
// SrvVSchema that is set — routing_rules (field 2), shard_routing_rules (3),
// keyspace_routing_rules (4), mirror_rules (5) — is a part: its message
// marshalled the same way, recorded in the root with its field number; a
// field set to an empty message is a part with an empty piece, so nil and
// empty stay distinct. Fields unknown to this build of Vitess (from a newer
// writer) are kept as raw wire bytes in a part with field number 0
// (UnknownFields). Nothing in the message is lost: Decode returns a
// SrvVSchema proto.Equal to the encoded one, and DecodeBytes returns exactly
// its deterministic marshalling.
//
// # Manifest
//
// All integers are unsigned varints (protobuf encoding); hashes are 32 raw
// bytes; a blob starts with a 4-byte magic and a version byte (1).
//
// A leaf lists the keyspaces of one bucket, sorted by name, unique:
//
//	"TDVL" | 0x01 | n | n × ( len(name) | name | piece hash | piece size )
//
// The root lists the totals, the parts (sorted by field number) and the 256
// leaf hashes, in bucket order; every empty bucket points at the same empty
// leaf:
//
//	"TDVR" | 0x01 | keyspaces | size | nparts |
//	nparts × ( field | piece hash | piece size ) | 256 × leaf hash
//
// size is the length of the SrvVSchema as one marshalled message. The root
// is about 8.2 KiB whatever the number of keyspaces; a leaf holds about
// keyspaces/256 entries of some 43 bytes (about 3.3 KiB at 19,110
// keyspaces, 4.3 KiB for the largest leaf). A one-keyspace change writes the
// piece, one leaf and the root: at most 16 KiB besides the piece, whichever
// leaf it is, up to about 35,000 keyspaces. Beyond that the leaves grow
// linearly (43 bytes per 256 keyspaces), and a third level (a new format
// version) would keep the bound.
//
// # Use
//
// Encode splits a whole SrvVSchema; EncodeIncremental and EncodeEdit derive
// the next encoding from the previous Manifest in time proportional to the
// change. Decode fetches the root, the leaves and the pieces through a
// Getter, at most 16 at a time, verifying every blob against its hash;
// DecodeDelta starts from the manifest a watcher already holds and fetches
// only the new root, the changed leaves and the changed pieces. A
// SrvVSchema is at most MaxSize (1 GiB) marshalled: the encoders refuse a
// larger one and the decoders an encoding that claims more (equal
// keyspaces share a piece, so a small manifest can claim any size).
package srvvschema

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/content"
)

// Getter returns the blob named h. It must return an error if it has none;
// the bytes it returns are not modified. It is called concurrently.
type Getter func(ctx context.Context, h content.Hash) ([]byte, error)

// ErrCorrupt is returned (wrapped, with the hash of the blob) when a fetched
// blob does not match its hash or is not a well-formed, consistent part of
// an encoding.
var ErrCorrupt = errors.New("corrupt blob")

// Encoded is the result of an encoding.
type Encoded struct {
	// Root names the encoded SrvVSchema: the hash of the manifest root.
	Root content.Hash
	// Blobs are the blobs to store, by hash. For Encode, every blob the
	// encoding needs; for EncodeEdit and EncodeIncremental, those that the
	// previous manifest does not already reference (the changed pieces and
	// leaves and the root), assuming it was stored in full.
	Blobs map[content.Hash][]byte
	// Size is the size of the SrvVSchema as one marshalled message.
	Size int64
	// Manifest is the new manifest, for the next EncodeEdit or DecodeDelta.
	Manifest *Manifest
}

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// Encode splits srv into pieces and builds their manifest. Equal
// SrvVSchemas give equal roots and blobs. A nil keyspace in srv.Keyspaces is
// encoded as an empty one. It refuses a SrvVSchema over MaxSize, and one
// whose unknown fields are malformed wire bytes or hold keyspaces (with the
// wrong wire type), which the decoders would refuse.
func Encode(srv *vschemapb.SrvVSchema) (*Encoded, error) {
	names := make([]string, 0, len(srv.GetKeyspaces()))
	for name := range srv.GetKeyspaces() {
		names = append(names, name)
	}
	slices.Sort(names)
	entries := make([]Entry, len(names))
	pieces := make([][]byte, len(names))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, name := range names {
		g.Go(func() error {
			e, piece, err := encodeKeyspace(name, srv.Keyspaces[name])
			entries[i], pieces[i] = e, piece
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("vschema: encode: %w", err)
	}
	parts, partBlobs, err := splitParts(srv)
	if err != nil {
		return nil, fmt.Errorf("vschema: encode: %w", err)
	}

	m, blobs := newManifest(entries, parts)
	if err := checkSize(m.size); err != nil {
		return nil, fmt.Errorf("vschema: encode: %w", err)
	}
	for i, e := range entries {
		blobs[e.Hash] = pieces[i]
	}
	for _, p := range parts {
		blobs[p.Hash] = partBlobs[p.Field]
	}
	return &Encoded{Root: m.root, Blobs: blobs, Size: m.size, Manifest: m}, nil
}

// checkSize refuses to encode a SrvVSchema of size bytes over MaxSize,
// which no decoder would read.
func checkSize(size int64) error {
	if size > MaxSize {
		return fmt.Errorf("a SrvVSchema of %d bytes, over the %d-byte limit", size, MaxSize)
	}
	return nil
}

// newManifest builds the manifest of entries (sorted by name, unique) and
// parts (sorted by field) and returns it with its leaf and root blobs.
func newManifest(entries []Entry, parts []Part) (*Manifest, map[content.Hash][]byte) {
	blobs := make(map[content.Hash][]byte, len(entries)+len(parts)+Buckets+1)
	m := &Manifest{keyspaces: len(entries), parts: parts}
	for _, p := range parts {
		m.size += partWireSize(p)
	}
	var buckets [Buckets][]Entry
	for _, e := range entries {
		b := Bucket(e.Name)
		buckets[b] = append(buckets[b], e)
		m.size += entryWireSize(e)
	}
	for i, es := range buckets {
		l, blob := newLeaf(es)
		m.leaves[i] = l
		blobs[l.hash] = blob
	}
	root := m.encodeRoot()
	blobs[m.root] = root
	return m, blobs
}

// EncodeBytes is Encode of the SrvVSchema marshalled in data, as a topo
// client writes it.
func EncodeBytes(data []byte) (*Encoded, error) {
	srv := &vschemapb.SrvVSchema{}
	if err := srv.UnmarshalVT(data); err != nil {
		return nil, fmt.Errorf("vschema: encode: unmarshal SrvVSchema: %w", err)
	}
	return Encode(srv)
}

// encodeKeyspace returns the entry and piece of keyspace name.
func encodeKeyspace(name string, ks *vschemapb.Keyspace) (Entry, []byte, error) {
	if !utf8.ValidString(name) {
		return Entry{}, nil, fmt.Errorf("keyspace %q: name is not valid UTF-8", name)
	}
	piece, err := marshalOpts.Marshal(ks)
	if err != nil {
		return Entry{}, nil, fmt.Errorf("keyspace %q: marshal: %w", name, err)
	}
	if piece == nil {
		piece = []byte{}
	}
	return Entry{Name: name, Hash: content.Sum(piece), Size: int64(len(piece))}, piece, nil
}

// splitParts returns the parts of srv, sorted by field, and their pieces.
// Every set field but keyspaces that is a singular message is a part of its
// own; anything else (unknown fields; in a future Vitess, maybe scalar
// fields) goes into the UnknownFields part as wire bytes, which must pass
// checkUnknownFields (as the decoders require).
func splitParts(srv *vschemapb.SrvVSchema) ([]Part, map[protowire.Number][]byte, error) {
	var parts []Part
	pieces := make(map[protowire.Number][]byte)
	rest := (&vschemapb.SrvVSchema{}).ProtoReflect()
	var err error
	srv.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Number() == keyspacesField:
		case fd.Kind() == protoreflect.MessageKind && fd.Cardinality() != protoreflect.Repeated:
			var piece []byte
			if piece, err = marshalOpts.Marshal(v.Message().Interface()); err != nil {
				err = fmt.Errorf("field %s: marshal: %w", fd.Name(), err)
				return false
			}
			if piece == nil {
				piece = []byte{}
			}
			parts = append(parts, Part{Field: fd.Number(), Hash: content.Sum(piece), Size: int64(len(piece))})
			pieces[fd.Number()] = piece
		default:
			rest.Set(fd, v)
		}
		return true
	})
	if err != nil {
		return nil, nil, err
	}
	if srv != nil {
		rest.SetUnknown(srv.ProtoReflect().GetUnknown())
	}
	if piece, err := marshalOpts.Marshal(rest.Interface()); err != nil {
		return nil, nil, fmt.Errorf("unknown fields: marshal: %w", err)
	} else if len(piece) > 0 {
		if err := checkUnknownFields(piece); err != nil {
			return nil, nil, err
		}
		parts = append(parts, Part{Field: UnknownFields, Hash: content.Sum(piece), Size: int64(len(piece))})
		pieces[UnknownFields] = piece
	}
	slices.SortFunc(parts, func(a, b Part) int { return int(a.Field) - int(b.Field) })
	return parts, pieces, nil
}
