// Package record is the envelope of a topo file in topod's backend. Small
// contents are stored as they are; large ones become immutable,
// content-addressed blobs (pkg/srvvschema for a SrvVSchema, pkg/chunk for any
// other file) and the backend holds a small reference to them:
//
//	"\x00TPR" | topodv1.Record{ref: {codec, root hash, size}}
//
// A backend value without that magic prefix is the file's contents as they
// are: a valid protobuf, JSON or text value never starts with a NUL byte.
// Small contents that do start with the magic are wrapped in an inline
// Record, so every value decodes unambiguously.
//
// Commit order, on which readers rely: upload every blob of an Encoded, then
// write its Value. A reader that sees a reference can then fetch its blobs.
package record

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"

	"google.golang.org/protobuf/proto"

	"github.com/topod-io/topod/pkg/chunk"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/srvvschema"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Magic starts every backend value that is a Record rather than contents.
const Magic = "\x00TPR"

// DefaultInlineLimit is the size up to which contents stay in the record.
const DefaultInlineLimit = 32 << 10

// MaxRecordBytes is the hard cap on any value topod writes to its backend.
const MaxRecordBytes = 64 << 10

// srvVSchemaFile is the name of the files the SrvVSchema codec splits.
const srvVSchemaFile = "SrvVSchema"

// Getter fetches one blob by hash. Decoders verify what it returns.
type Getter func(ctx context.Context, h content.Hash) ([]byte, error)

// Encoded is a file ready to commit: upload Blobs (those the store lacks),
// then write Value to the backend.
type Encoded struct {
	Value []byte
	// Blobs the value refers to, by hash; empty for contents stored as they
	// are.
	Blobs map[content.Hash][]byte
	// Ref is the reference in Value, nil when the contents are inline.
	Ref *topodv1.BlobRef
}

// Encode returns the backend value of the file at filePath with contents:
// the contents themselves up to inlineLimit bytes, otherwise a reference to
// blobs. A file named SrvVSchema that parses as one is split per keyspace,
// and reads back as its deterministic marshalling (proto-equal to the
// contents); anything else large, including a SrvVSchema whose
// deterministic marshalling has another size than the contents (a
// non-canonical encoding, such as a keyspaces entry with no key or value
// fields), is chunked and reads back as it is.
func Encode(filePath string, contents []byte, inlineLimit int) (*Encoded, error) {
	if len(contents) <= inlineLimit {
		if !bytes.HasPrefix(contents, []byte(Magic)) {
			return &Encoded{Value: contents}, nil
		}
		value, err := marshal(&topodv1.Record{Body: &topodv1.Record_Inline{Inline: contents}})
		return &Encoded{Value: value}, err
	}
	ref := &topodv1.BlobRef{Size: int64(len(contents))}
	var blobs map[content.Hash][]byte
	if path.Base(filePath) == srvVSchemaFile {
		// Decode checks the size the reference gives: the split must
		// reassemble to as many bytes as the contents have.
		if enc, err := srvvschema.EncodeBytes(contents); err == nil && enc.Size == int64(len(contents)) {
			ref.Codec, ref.Root, blobs = topodv1.Codec_CODEC_SRVVSCHEMA, enc.Root[:], enc.Blobs
		}
	}
	if blobs == nil {
		root, chunks, err := chunk.Encode(contents, chunk.Options{})
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", filePath, err)
		}
		ref.Codec, ref.Root, blobs = topodv1.Codec_CODEC_CHUNKS, root[:], chunks
	}
	value, err := marshal(&topodv1.Record{Body: &topodv1.Record_Ref{Ref: ref}})
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", filePath, err)
	}
	return &Encoded{Value: value, Blobs: blobs, Ref: ref}, nil
}

// Parse returns the reference in a backend value, nil if the value holds
// the contents themselves.
func Parse(value []byte) (*topodv1.BlobRef, error) {
	if !bytes.HasPrefix(value, []byte(Magic)) {
		return nil, nil
	}
	rec := &topodv1.Record{}
	if err := proto.Unmarshal(value[len(Magic):], rec); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	switch body := rec.Body.(type) {
	case *topodv1.Record_Inline:
		return nil, nil
	case *topodv1.Record_Ref:
		if len(body.Ref.Root) != content.Size {
			return nil, fmt.Errorf("record: root hash of %d bytes", len(body.Ref.Root))
		}
		return body.Ref, nil
	default:
		return nil, errors.New("record: empty record")
	}
}

// Decode returns the contents of the file whose backend value is value,
// fetching its blobs through get.
func Decode(ctx context.Context, value []byte, get Getter) ([]byte, error) {
	return decode(ctx, value, get, true)
}

// DecodeChecked is Decode for a Getter that returns only blobs already
// checked against their hashes (a cache that admits nothing else, as
// pkg/cache does): the bulk of the file, a SrvVSchema's pieces or a file's
// chunks, is not hashed again (srvvschema.DecodeBytesChecked,
// chunk.DecodeChecked).
func DecodeChecked(ctx context.Context, value []byte, get Getter) ([]byte, error) {
	return decode(ctx, value, get, false)
}

func decode(ctx context.Context, value []byte, get Getter, hash bool) ([]byte, error) {
	if !bytes.HasPrefix(value, []byte(Magic)) {
		return value, nil
	}
	rec := &topodv1.Record{}
	if err := proto.Unmarshal(value[len(Magic):], rec); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if inline, ok := rec.Body.(*topodv1.Record_Inline); ok {
		return inline.Inline, nil
	}
	ref, err := Parse(value)
	if err != nil {
		return nil, err
	}
	root := content.Hash(ref.Root)
	var data []byte
	vschemaDecode, chunkDecode := srvvschema.DecodeBytes, chunk.Decode
	if !hash {
		vschemaDecode, chunkDecode = srvvschema.DecodeBytesChecked, chunk.DecodeChecked
	}
	switch ref.Codec {
	case topodv1.Codec_CODEC_SRVVSCHEMA:
		data, err = vschemaDecode(ctx, root, srvvschema.Getter(get))
	case topodv1.Codec_CODEC_CHUNKS:
		data, err = chunkDecode(ctx, root, chunk.Getter(get))
	default:
		return nil, fmt.Errorf("record: unknown codec %v", ref.Codec)
	}
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != ref.Size {
		return nil, fmt.Errorf("record: %s decodes to %d bytes, record says %d", root, len(data), ref.Size)
	}
	return data, nil
}

// Blobs returns every blob hash ref reaches, fetching only manifests.
func Blobs(ctx context.Context, ref *topodv1.BlobRef, get Getter) ([]content.Hash, error) {
	root := content.Hash(ref.Root)
	switch ref.Codec {
	case topodv1.Codec_CODEC_SRVVSCHEMA:
		m, err := srvvschema.LoadManifest(ctx, root, srvvschema.Getter(get))
		if err != nil {
			return nil, err
		}
		return m.Blobs(), nil
	case topodv1.Codec_CODEC_CHUNKS:
		return chunk.Blobs(ctx, root, chunk.Getter(get))
	default:
		return nil, fmt.Errorf("record: unknown codec %v", ref.Codec)
	}
}

func marshal(rec *topodv1.Record) ([]byte, error) {
	b, err := proto.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return append([]byte(Magic), b...), nil
}

// RefValue returns the backend value of a file stored as the blobs under
// root, encoded with codec, of size bytes assembled: what a writer that
// encoded the file itself (e.g. srvvschema.EncodeIncremental) commits after
// uploading the blobs.
func RefValue(codec topodv1.Codec, root content.Hash, size int64) ([]byte, error) {
	return marshal(&topodv1.Record{Body: &topodv1.Record_Ref{Ref: &topodv1.BlobRef{Codec: codec, Root: root[:], Size: size}}})
}
