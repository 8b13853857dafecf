// Package chunk is the generic content-defined chunking codec for any topo
// file over the inline limit: it splits a value into immutable,
// content-addressed blobs (chunks plus a manifest) and reassembles it.
//
// # Chunking
//
// Chunk boundaries are content-defined with FastCDC: a gear rolling hash
// (fp = fp<<1 + gear[byte], the table fixed forever, see gear) with
// normalized chunking, by default a 16 KiB minimum, a 64 KiB target and a
// 256 KiB maximum (Options). A boundary depends only on the 64 bytes before
// it, so inserting or deleting bytes in the middle of a large file changes
// the chunks around the edit only; the boundaries after it resynchronise and
// their chunks keep their hashes, so storing the new version moves a few
// chunks and the manifest.
//
// # Format
//
// Every blob is named by its SHA-256 (content.Hash). Chunks are raw bytes.
// A manifest is
//
//	"TDCM" | version (1 byte, = 1) | level (1 byte) | uvarint size |
//	uvarint count | count × ( hash (32 bytes) | uvarint size )
//
// listing, in order, the chunks of the file (level 0) or the level-(n-1)
// manifests that cover it (level n), each with the number of file bytes it
// stands for; size is their sum. A manifest holds at most 1,536 entries, so
// no manifest blob exceeds 64 KiB (MaxManifestSize). A file of more chunks
// (about 96 MiB at the default target) gets a tree: its chunk list is cut
// into groups at content-defined points (after an entry whose hash ends in
// nine zero bits, with at least 64 and at most 1,536 entries per group), so
// an edit changes one sub-manifest and the root rather than every
// sub-manifest after it. The root of an encoding is always a manifest, even
// for an empty file (a level-0 manifest with no entries).
//
// # Decoding
//
// Decode fetches blobs through a Getter, at most 16 at a time, verifies each
// against its hash and every manifest's sizes, and reassembles the file. The
// caller's Getter does the caching, so decoding a new version of a file
// fetches only the chunks that changed. Files are at most MaxFileSize
// (1 GiB): repeated content deduplicates, so a few small blobs can describe
// a far larger file, and Decode refuses one that claims more.
package chunk

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/topod-io/topod/pkg/content"
)

// Getter returns the blob named h. It must return an error if it has none;
// the bytes it returns are not modified.
type Getter func(ctx context.Context, h content.Hash) ([]byte, error)

// ErrCorrupt is returned (wrapped, with the hash of the blob) when a fetched
// blob does not match its hash, or a manifest is malformed or inconsistent.
var ErrCorrupt = errors.New("corrupt blob")

// fetchConcurrency is the most blobs Decode fetches at a time.
const fetchConcurrency = 16

// Encode splits data into content-defined chunks and returns the hash of
// the root manifest and every blob the encoding needs (chunks and
// manifests), keyed by hash. Equal data always gives the same root and
// blobs. The blobs are copies: data may be modified afterwards. The error
// is non-nil only for invalid options or data over MaxFileSize.
func Encode(data []byte, opts Options) (root content.Hash, blobs map[content.Hash][]byte, err error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return content.Hash{}, nil, err
	}
	if len(data) > MaxFileSize {
		return content.Hash{}, nil, fmt.Errorf("chunk: %d bytes, over the %d-byte limit", len(data), MaxFileSize)
	}
	c := newCutter(opts)
	blobs = make(map[content.Hash][]byte, len(data)/opts.AvgSize+2)
	entries := make([]entry, 0, len(data)/opts.AvgSize+1)
	for rest := data; len(rest) > 0; {
		n := c.cut(rest)
		h := content.Sum(rest[:n])
		if _, ok := blobs[h]; !ok {
			blobs[h] = append([]byte(nil), rest[:n]...)
		}
		entries = append(entries, entry{hash: h, size: int64(n)})
		rest = rest[n:]
	}
	return buildTree(entries, int64(len(data)), blobs), blobs, nil
}

// Decode reassembles the file whose root manifest is root, fetching every
// blob through get (at most 16 concurrently) and verifying it against its
// hash. A blob that does not match its hash, or a malformed manifest, gives
// an error wrapping ErrCorrupt and naming the blob, as does a root
// manifest claiming more than MaxFileSize bytes. Each distinct blob is
// fetched once, and the file is allocated only once its chunks are in.
func Decode(ctx context.Context, root content.Hash, get Getter) ([]byte, error) {
	return decode(ctx, root, get, true)
}

// DecodeChecked is Decode for a Getter that returns only blobs already
// checked against their hashes (a cache that admits nothing else, as
// pkg/cache does): the chunks are not hashed again; the manifests are, and
// every size and structure check stays.
func DecodeChecked(ctx context.Context, root content.Hash, get Getter) ([]byte, error) {
	return decode(ctx, root, get, false)
}

func decode(ctx context.Context, root content.Hash, get Getter, hash bool) ([]byte, error) {
	t, err := loadTree(ctx, root, get)
	if err != nil {
		return nil, fmt.Errorf("chunk: decode %s: %w", root, err)
	}
	// Fetch each distinct chunk once; assemble the file from them only then,
	// so that a tree naming chunks the store lacks costs no allocation of
	// the size it claims.
	chunks := make([][]byte, len(t.chunks))
	index := make(map[content.Hash]int, len(t.chunks))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchConcurrency)
	for i, e := range t.chunks {
		index[e.hash] = i
		g.Go(func() error {
			b, err := fetch(gctx, get, e.hash, hash)
			if err != nil {
				return fmt.Errorf("chunk %s: %w", e.hash, err)
			}
			if int64(len(b)) != e.size {
				return fmt.Errorf("chunk %s: %w: %d bytes, manifest says %d", e.hash, ErrCorrupt, len(b), e.size)
			}
			chunks[i] = b
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("chunk: decode %s: %w", root, err)
	}
	out := make([]byte, t.root.size)
	t.assemble(t.root, out, func(h content.Hash) []byte { return chunks[index[h]] })
	return out, nil
}

// tree is a file's manifest tree, loaded and checked: its root, every
// distinct sub-manifest and every distinct chunk.
type tree struct {
	root      *manifest
	manifests map[content.Hash]*manifest // sub-manifests by hash
	chunks    []entry                    // distinct, in order of first appearance
}

// loadTree fetches the manifest tree under root, each distinct manifest
// once, and checks it: the root covers at most MaxFileSize bytes, every
// sub-manifest has the level below its parent's and the size its parents
// give it, and a chunk has one size wherever it appears.
func loadTree(ctx context.Context, root content.Hash, get Getter) (*tree, error) {
	m, err := loadManifest(ctx, get, root)
	if err != nil {
		return nil, err
	}
	if m.size > MaxFileSize {
		return nil, fmt.Errorf("manifest %s: %w: it covers %d bytes, over the %d-byte limit", root, ErrCorrupt, m.size, MaxFileSize)
	}
	t := &tree{root: m, manifests: make(map[content.Hash]*manifest)}
	parents := []*manifest{m}
	for level := m.level; level > 0; level-- {
		refs, err := distinct(parents)
		if err != nil {
			return nil, err
		}
		children := make([]*manifest, len(refs))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(fetchConcurrency)
		for i, e := range refs {
			g.Go(func() error {
				c, err := loadManifest(gctx, get, e.hash)
				if err != nil {
					return err
				}
				if c.level != level-1 || c.size != e.size {
					return fmt.Errorf("manifest %s: %w: level %d covering %d bytes, parent says level %d covering %d",
						e.hash, ErrCorrupt, c.level, c.size, level-1, e.size)
				}
				children[i] = c
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		for i, e := range refs {
			t.manifests[e.hash] = children[i]
		}
		parents = children
	}
	if t.chunks, err = distinct(parents); err != nil {
		return nil, err
	}
	return t, nil
}

// distinct returns the distinct entries of manifests, in order of first
// appearance. An entry whose blob appears elsewhere with another size is
// an error wrapping ErrCorrupt.
func distinct(manifests []*manifest) ([]entry, error) {
	var out []entry
	sizes := make(map[content.Hash]int64)
	for _, m := range manifests {
		for _, e := range m.entries {
			size, ok := sizes[e.hash]
			switch {
			case !ok:
				sizes[e.hash] = e.size
				out = append(out, e)
			case size != e.size:
				return nil, fmt.Errorf("blob %s: %w: listed as %d bytes and as %d", e.hash, ErrCorrupt, size, e.size)
			}
		}
	}
	return out, nil
}

// assemble copies the data m covers into out, len(out) = m.size, taking
// each chunk's bytes from chunk.
func (t *tree) assemble(m *manifest, out []byte, chunk func(content.Hash) []byte) {
	for _, e := range m.entries {
		if m.level == 0 {
			copy(out, chunk(e.hash))
		} else {
			t.assemble(t.manifests[e.hash], out[:e.size], chunk)
		}
		out = out[e.size:]
	}
}

// loadManifest fetches, verifies and parses the manifest h.
func loadManifest(ctx context.Context, get Getter, h content.Hash) (*manifest, error) {
	b, err := fetch(ctx, get, h, true)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", h, err)
	}
	m, err := parseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w: %w", h, ErrCorrupt, err)
	}
	return m, nil
}

// fetch gets blob h and, if hash, verifies it against h.
func fetch(ctx context.Context, get Getter, h content.Hash, hash bool) ([]byte, error) {
	b, err := get(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if hash {
		if got := content.Sum(b); got != h {
			return nil, fmt.Errorf("%w: content hash is %s", ErrCorrupt, got)
		}
	}
	return b, nil
}

// Blobs returns the hash of every blob the file under root is made of: the
// manifests and the chunks, each once. It is what a garbage collector marks
// as live. Chunks are not fetched, only manifests, each distinct one once.
func Blobs(ctx context.Context, root content.Hash, get Getter) ([]content.Hash, error) {
	seen := map[content.Hash]bool{}
	var out []content.Hash
	add := func(h content.Hash) {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	// loaded holds the manifests already read: one repeated in the tree (a
	// sub-manifest of repeated content) is read once, not once per parent
	// entry, which for a tree of three levels is up to 1536^2 times.
	loaded := map[content.Hash]bool{root: true}
	level := []content.Hash{root}
	for len(level) > 0 {
		var next []content.Hash
		for _, h := range level {
			add(h)
			m, err := loadManifest(ctx, get, h)
			if err != nil {
				return nil, fmt.Errorf("chunk: blobs of %s: %w", root, err)
			}
			for _, e := range m.entries {
				switch {
				case m.level == 0:
					add(e.hash)
				case !loaded[e.hash]:
					loaded[e.hash] = true
					next = append(next, e.hash)
				}
			}
		}
		level = next
	}
	return out, nil
}
