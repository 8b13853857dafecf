// Package inspect shows what topod stores, for `topod inspect`: the files
// of a Vitess topology with their records (contents kept inline, or a
// reference to blobs), decoded into Vitess's own protos as JSON; the
// manifest of a SrvVSchema kept as blobs (its keyspaces, the piece each is
// stored in, their sizes and hashes); which keyspaces differ between two
// versions of a SrvVSchema, or between two cells'; and the blob store's
// usage, with the blobs no record refers to.
//
// Everything is read through a Source, of which there are two:
//
//   - Topod reads a running topod through its gRPC API (topod.v1), as the
//     plugin does: the record as stored, and the blobs it names.
//   - Direct reads a backend (kv.Backend) and a blob store
//     (blobstore.Store) itself, for a topod that is down, or beside one on
//     etcd. It can also list the past versions of a file the backend still
//     holds (Historian).
//
// Blob usage (Blobs) needs the backend and the store themselves: topod's
// API does not list the store, nor the past versions whose blobs are still
// referenced. It reuses blob garbage collection's mark (pkg/blobgc, a dry
// run) and never writes or deletes anything.
//
// # Past versions
//
// A file's version is the backend revision of its last write. GetVersion
// reads a file as it was at any revision the backend still holds: on etcd,
// every revision since its last compaction; on bolt, the last 20
// superseded versions of each key (boltkv.Options.HistoryPerKey). An older
// one is ErrVersionGone. So Diff compares a SrvVSchema with an earlier
// version of itself only within that window; two cells' SrvVSchemas (two
// paths) can always be compared.
package inspect

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/record"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Errors a Source returns, wrapped with the path; test with errors.Is.
var (
	// ErrNotFound: no file at the path.
	ErrNotFound = errors.New("not found")
	// ErrVersionGone: the backend no longer holds that version (etcd
	// compacted it, bolt pruned it), or it is from before the file existed.
	ErrVersionGone = errors.New("version no longer held by the backend")
)

// Source is where inspect reads topod's records and blobs from. Values are
// backend values as stored (pkg/record): a file's contents, or a reference
// to the blobs holding them.
type Source interface {
	// String names the source, for messages ("topod at 127.0.0.1:15999").
	String() string
	// Get returns the current value of the file at key.
	Get(ctx context.Context, key string) (Value, error)
	// GetVersion returns the value the file at key had at version (a
	// backend revision): ErrNotFound if it did not exist then,
	// ErrVersionGone if that history is gone.
	GetVersion(ctx context.Context, key string, version int64) (Value, error)
	// List returns every file whose key starts with prefix, sorted by key;
	// none is not an error.
	List(ctx context.Context, prefix string) ([]Value, error)
	// Blob returns the blob named h, checked against its hash.
	Blob(ctx context.Context, h content.Hash) ([]byte, error)
}

// Historian is a Source that can list the past versions of a file (the
// backend's retained history). Topod's API cannot.
type Historian interface {
	// History returns the past values of the file at key the backend still
	// holds (not its current value), each with the version that wrote it.
	History(ctx context.Context, key string) ([]Value, error)
}

// Value is one backend value.
type Value struct {
	Key string
	// Raw is the value as stored: contents, or a record (pkg/record).
	Raw []byte
	// Version is the backend revision that wrote it; for GetVersion, the
	// version asked for (topod's API does not say which write it was).
	Version int64
}

// Stored says how a value keeps its contents.
type Stored struct {
	// Kind is "inline" (the contents are the value) or "blobs".
	Kind string `json:"kind"`
	// Codec is, for blobs, "srvvschema" (split per keyspace) or "chunks".
	Codec string `json:"codec,omitempty"`
	// Root is the hash of the root blob, for blobs.
	Root string `json:"root,omitempty"`
	// Size is the contents' size in bytes.
	Size int64 `json:"size"`
	// RecordBytes is the size of the value in the backend.
	RecordBytes int `json:"record_bytes"`

	ref *topodv1.BlobRef
}

// String is the human form: "inline" or "blobs (srvvschema)".
func (s Stored) String() string {
	if s.Kind == "blobs" {
		return "blobs (" + s.Codec + ")"
	}
	return s.Kind
}

// parse says how v keeps its contents.
func parse(v Value) (Stored, error) {
	ref, err := record.Parse(v.Raw)
	if err != nil {
		return Stored{}, fmt.Errorf("%s: %w", v.Key, err)
	}
	if ref == nil {
		// Inline, possibly wrapped in an inline Record (contents that
		// start with the record magic): Decode unwraps it.
		data, err := record.Decode(context.Background(), v.Raw, nil)
		if err != nil {
			return Stored{}, fmt.Errorf("%s: %w", v.Key, err)
		}
		return Stored{Kind: "inline", Size: int64(len(data)), RecordBytes: len(v.Raw)}, nil
	}
	return Stored{
		Kind:        "blobs",
		Codec:       codecName(ref.Codec),
		Root:        content.Hash(ref.Root).String(),
		Size:        ref.Size,
		RecordBytes: len(v.Raw),
		ref:         ref,
	}, nil
}

func codecName(c topodv1.Codec) string {
	switch c {
	case topodv1.Codec_CODEC_SRVVSCHEMA:
		return "srvvschema"
	case topodv1.Codec_CODEC_CHUNKS:
		return "chunks"
	default:
		return c.String()
	}
}

// Key returns the backend key of p: p itself if absolute, else p under
// root (a Vitess root such as /vitess/global). ".." is refused.
func Key(root, p string) (string, error) {
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("path %q: no \"..\" segments", p)
		}
	}
	if !path.IsAbs(p) {
		if !path.IsAbs(root) {
			return "", fmt.Errorf("path %q is relative and root %q is not absolute", p, root)
		}
		p = path.Join(root, p)
	}
	return path.Clean(p), nil
}

// getValue reads key at version (0: the current value).
func getValue(ctx context.Context, src Source, key string, version int64) (Value, error) {
	if version < 0 {
		return Value{}, fmt.Errorf("%s: version %d: versions start at 1", key, version)
	}
	if version == 0 {
		return src.Get(ctx, key)
	}
	return src.GetVersion(ctx, key, version)
}
