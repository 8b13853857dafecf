package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/topod-io/topod/pkg/chunk"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/record"
	"github.com/topod-io/topod/pkg/srvvschema"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// File is one file, decoded.
type File struct {
	Path string `json:"path"`
	// Version is the file's version (the revision of its last write), or
	// for a past version read with GetVersion, the version asked for.
	Version int64  `json:"version"`
	Stored  Stored `json:"stored"`
	Decoded
}

// ErrUndecodable is wrapped by Get's error for contents that do not decode
// as the Vitess type their name says; the File is returned with it.
var ErrUndecodable = errors.New("contents do not decode as their Vitess type")

// Get reads the file at key as it is (version 0) or was at version, fetches
// its blobs if it is kept as blobs, and decodes it by its name as Vitess
// does. Contents that are not the Vitess type their name says are returned
// as text (or base64) with an error wrapping ErrUndecodable.
func Get(ctx context.Context, src Source, key string, version int64, opts Options) (*File, error) {
	v, err := getValue(ctx, src, key, version)
	if err != nil {
		return nil, err
	}
	st, err := parse(v)
	if err != nil {
		return nil, err
	}
	data, err := contents(ctx, src, v, st, newFetcher(src, opts))
	if err != nil {
		return nil, err
	}
	f := &File{Path: key, Version: v.Version, Stored: st, Decoded: decodeVitess(key, data)}
	if f.Error != "" {
		return f, fmt.Errorf("%s: %w: %s", key, ErrUndecodable, f.Error)
	}
	return f, nil
}

// contents returns the contents of v, fetching its blobs through f, with
// progress once their number is known.
func contents(ctx context.Context, src Source, v Value, st Stored, f *fetcher) ([]byte, error) {
	if st.ref == nil {
		return record.Decode(ctx, v.Raw, nil)
	}
	// Fetch the manifests first, to count the blobs, then everything.
	root := content.Hash(st.ref.Root)
	done := f.keeping()
	var total int
	switch st.ref.Codec {
	case topodv1.Codec_CODEC_SRVVSCHEMA:
		m, err := srvvschema.LoadManifest(ctx, root, f.get)
		if err != nil {
			done()
			return nil, fmt.Errorf("%s (version %d) in %s: %w", v.Key, v.Version, src, err)
		}
		total = len(m.Blobs())
	case topodv1.Codec_CODEC_CHUNKS:
		hashes, err := chunk.Blobs(ctx, root, f.get)
		if err != nil {
			done()
			return nil, fmt.Errorf("%s (version %d) in %s: %w", v.Key, v.Version, src, err)
		}
		total = len(hashes)
	}
	done()
	f.start("blobs", total)
	data, err := record.Decode(ctx, v.Raw, f.get)
	f.finish()
	if err != nil {
		return nil, fmt.Errorf("%s (version %d) in %s: %w", v.Key, v.Version, src, err)
	}
	return data, nil
}

// WriteText writes f for a person: what it is and how it is stored, then
// its contents as JSON (or text).
func (f *File) WriteText(w io.Writer) error {
	typ := f.Type
	if typ == "" {
		typ = "(not a Vitess proto: " + f.Encoding + ")"
	}
	fmt.Fprintf(w, "path:     %s\n", f.Path)
	fmt.Fprintf(w, "type:     %s\n", typ)
	fmt.Fprintf(w, "version:  %d\n", f.Version)
	fmt.Fprintf(w, "size:     %s, %s\n", bytesString(f.Stored.Size), f.Stored)
	if f.Stored.Kind == "blobs" {
		fmt.Fprintf(w, "root:     %s (record of %d bytes)\n", f.Stored.Root, f.Stored.RecordBytes)
	}
	if f.Error != "" {
		fmt.Fprintf(w, "error:    %s\n", f.Error)
	}
	var err error
	switch f.Encoding {
	case "json":
		_, err = fmt.Fprintf(w, "%s\n", f.Value)
	default:
		// A JSON string: print what it holds.
		s, uerr := unquote(f.Value)
		if uerr != nil {
			return uerr
		}
		_, err = fmt.Fprintf(w, "%s\n", s)
	}
	return err
}
