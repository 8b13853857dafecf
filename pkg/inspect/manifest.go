package inspect

import (
	"context"
	"fmt"
	"io"
	"path"

	"google.golang.org/protobuf/encoding/protowire"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/srvvschema"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Piece is a blob of a SrvVSchema: one keyspace's piece, or a part (the
// routing rules and the other non-keyspace fields).
type Piece struct {
	Name string `json:"name"`
	Hash string `json:"hash"`
	Size int64  `json:"size"`
}

// Manifest is the manifest of a SrvVSchema (pkg/srvvschema): the keyspaces
// and the piece holding each, the parts, and the blobs they make.
type Manifest struct {
	Path    string `json:"path"`
	Version int64  `json:"version"`
	Stored  Stored `json:"stored"`
	// Computed: the SrvVSchema is small enough to be stored inline, and
	// this is the manifest the codec would store it under (the same
	// pieces and hashes, so it compares with stored ones).
	Computed bool `json:"computed,omitempty"`
	// Root is the hash of the manifest's root blob.
	Root string `json:"root"`
	// Size is the SrvVSchema's size as one marshalled message.
	Size      int64   `json:"size"`
	Keyspaces []Piece `json:"keyspaces"`
	Parts     []Piece `json:"parts"`
	// The blobs, each counted once: the root, the distinct leaves, the
	// distinct pieces and parts.
	RootBytes  int   `json:"root_bytes"`
	Leaves     int   `json:"leaves"`
	LeafBytes  int64 `json:"leaf_bytes"`
	Pieces     int   `json:"pieces"`
	PieceBytes int64 `json:"piece_bytes"`
	Blobs      int   `json:"blobs"`
	BlobBytes  int64 `json:"blob_bytes"`

	m *srvvschema.Manifest
}

// ReadManifest reads the SrvVSchema at key as it is (version 0) or was at
// version and returns its manifest, fetching only the root and the leaves.
// A SrvVSchema stored inline gets the manifest the codec would give it
// (Computed); any other file is an error.
func ReadManifest(ctx context.Context, src Source, key string, version int64, opts Options) (*Manifest, error) {
	if path.Base(key) != topo.SrvVSchemaFile {
		return nil, fmt.Errorf("%s: not a SrvVSchema: only a SrvVSchema is split per keyspace", key)
	}
	v, err := getValue(ctx, src, key, version)
	if err != nil {
		return nil, err
	}
	st, err := parse(v)
	if err != nil {
		return nil, err
	}
	out := &Manifest{Path: key, Version: v.Version, Stored: st}
	sizes := map[content.Hash]int{}
	var leaves []content.Hash
	switch {
	case st.ref == nil:
		data, err := contents(ctx, src, v, st, newFetcher(src, opts))
		if err != nil {
			return nil, err
		}
		enc, err := srvvschema.EncodeBytes(data)
		if err != nil {
			return nil, fmt.Errorf("%s (version %d): %w", key, v.Version, err)
		}
		out.Computed, out.m = true, enc.Manifest
		for h, b := range enc.Blobs {
			sizes[h] = len(b)
		}
		if leaves, err = srvvschema.LeafHashes(enc.Blobs[enc.Root]); err != nil {
			return nil, err
		}
	case st.ref.Codec == topodv1.Codec_CODEC_SRVVSCHEMA:
		f := newFetcher(src, opts)
		defer f.keeping()()
		root := content.Hash(st.ref.Root)
		rootBlob, err := f.get(ctx, root)
		if err != nil {
			return nil, fmt.Errorf("%s (version %d): root: %w", key, v.Version, err)
		}
		if leaves, err = srvvschema.LeafHashes(rootBlob); err != nil {
			return nil, fmt.Errorf("%s (version %d): %w", key, v.Version, err)
		}
		f.start("manifest blobs", 1+len(leaves))
		out.m, err = srvvschema.LoadManifest(ctx, root, f.get)
		f.finish()
		if err != nil {
			return nil, fmt.Errorf("%s (version %d) in %s: %w", key, v.Version, src, err)
		}
		for _, h := range append([]content.Hash{root}, leaves...) {
			n, _ := f.size(h)
			sizes[h] = n
		}
	default:
		return nil, fmt.Errorf("%s (version %d): stored as %s, not split per keyspace", key, v.Version, st)
	}
	m := out.m
	out.Root, out.Size = m.Root().String(), m.Size()
	out.RootBytes = sizes[m.Root()]
	out.Leaves = len(leaves)
	for _, h := range leaves {
		out.LeafBytes += int64(sizes[h])
	}
	seen := map[content.Hash]bool{}
	addPiece := func(h content.Hash, size int64) {
		if !seen[h] {
			seen[h] = true
			out.Pieces++
			out.PieceBytes += size
		}
	}
	for _, e := range m.Keyspaces() {
		out.Keyspaces = append(out.Keyspaces, Piece{Name: e.Name, Hash: e.Hash.String(), Size: e.Size})
		addPiece(e.Hash, e.Size)
	}
	for _, p := range m.Parts() {
		out.Parts = append(out.Parts, Piece{Name: partName(p.Field), Hash: p.Hash.String(), Size: p.Size})
		addPiece(p.Hash, p.Size)
	}
	out.Blobs = len(m.Blobs())
	out.BlobBytes = int64(out.RootBytes) + out.LeafBytes + out.PieceBytes
	return out, nil
}

// partName names a SrvVSchema part by its field ("routing_rules").
func partName(field protowire.Number) string {
	if field == srvvschema.UnknownFields {
		return "(fields unknown to this build)"
	}
	fd := (&vschemapb.SrvVSchema{}).ProtoReflect().Descriptor().Fields().ByNumber(field)
	if fd == nil {
		return fmt.Sprintf("field %d", field)
	}
	return string(fd.Name())
}

// WriteText writes the manifest for a person: a summary, then a table of
// the keyspaces and one of the parts.
func (m *Manifest) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "path:       %s\n", m.Path)
	fmt.Fprintf(w, "version:    %d\n", m.Version)
	if m.Computed {
		fmt.Fprintf(w, "stored:     inline (%s): the manifest below is the one the codec would store it under\n", bytesString(m.Stored.Size))
	} else {
		fmt.Fprintf(w, "stored:     %s, a record of %d bytes\n", m.Stored, m.Stored.RecordBytes)
	}
	fmt.Fprintf(w, "root:       %s\n", m.Root)
	fmt.Fprintf(w, "size:       %s (%d bytes) as one SrvVSchema\n", bytesString(m.Size), m.Size)
	fmt.Fprintf(w, "keyspaces:  %d\n", len(m.Keyspaces))
	leaves := fmt.Sprintf("%d leaves", m.Leaves)
	if m.Leaves == 1 {
		leaves = "1 leaf"
	}
	fmt.Fprintf(w, "blobs:      %d, %s: the root %s, %s %s, %s %s\n",
		m.Blobs, bytesString(m.BlobBytes), bytesString(int64(m.RootBytes)), leaves, bytesString(m.LeafBytes), plural(m.Pieces, "piece"), bytesString(m.PieceBytes))
	fmt.Fprintln(w)
	tw := newTable(w)
	fmt.Fprintln(tw, "KEYSPACE\tPIECE BYTES\tPIECE HASH")
	for _, p := range m.Keyspaces {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", p.Name, p.Size, p.Hash)
	}
	if len(m.Parts) > 0 {
		fmt.Fprintln(tw, "\t\t")
		fmt.Fprintln(tw, "PART\tBYTES\tHASH")
		for _, p := range m.Parts {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", p.Name, p.Size, p.Hash)
		}
	}
	return tw.Flush()
}
