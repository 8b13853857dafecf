package chunk

import (
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/topod-io/topod/pkg/content"
)

// Manifest format constants.
const (
	manifestMagic   = "TDCM" // topod chunk manifest
	manifestVersion = 1

	// MaxManifestSize bounds every manifest blob. A manifest has at most
	// maxEntries entries of at most 32+10 bytes plus a header of at most
	// 4+1+1+10+10 bytes: 64,538 bytes.
	MaxManifestSize = 64 << 10

	// maxEntries is the most entries one manifest holds; a file with more
	// chunks gets a tree of manifests.
	maxEntries = 1536
	// minGroup and groupMask make the grouping of a long entry list into
	// sub-manifests content-defined: a group ends after an entry whose hash
	// has its low bits (groupMask) zero, once it has minGroup entries, or at
	// maxEntries. An insertion then changes only the sub-manifests around it.
	minGroup  = 64
	groupMask = 512 - 1

	// maxLevel bounds the depth of the manifest tree Decode accepts. Level
	// 3 already addresses far more than any topo file (1536^4 chunks).
	maxLevel = 3
)

// entry is one manifest line: a chunk (level 0) or a sub-manifest (level >
// 0), with the number of data bytes it stands for.
type entry struct {
	hash content.Hash
	size int64
}

// manifest is a parsed manifest blob.
type manifest struct {
	level   int   // 0: entries are chunks; n > 0: entries are level n-1 manifests
	size    int64 // data bytes covered: the sum of the entry sizes
	entries []entry
}

// encode returns the blob of m:
//
//	"TDCM" | version (1 byte, 1) | level (1 byte) | uvarint size |
//	uvarint count | count × (hash (32 bytes) | uvarint size)
func (m *manifest) encode() []byte {
	b := make([]byte, 0, 6+2*binary.MaxVarintLen64+len(m.entries)*(content.Size+binary.MaxVarintLen64))
	b = append(b, manifestMagic...)
	b = append(b, manifestVersion, byte(m.level))
	b = protowire.AppendVarint(b, uint64(m.size))
	b = protowire.AppendVarint(b, uint64(len(m.entries)))
	for _, e := range m.entries {
		b = append(b, e.hash[:]...)
		b = protowire.AppendVarint(b, uint64(e.size))
	}
	return b
}

var errMalformed = errors.New("malformed manifest")

// parseManifest parses and checks a manifest blob: magic, version, level,
// entry sizes, and that the sizes add up.
func parseManifest(b []byte) (*manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", errMalformed, len(b), MaxManifestSize)
	}
	if len(b) < len(manifestMagic)+2 || string(b[:len(manifestMagic)]) != manifestMagic {
		return nil, fmt.Errorf("%w: bad magic", errMalformed)
	}
	b = b[len(manifestMagic):]
	if b[0] != manifestVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", errMalformed, b[0])
	}
	m := &manifest{level: int(b[1])}
	if m.level > maxLevel {
		return nil, fmt.Errorf("%w: level %d deeper than %d", errMalformed, m.level, maxLevel)
	}
	b = b[2:]
	size, n := protowire.ConsumeVarint(b)
	if n < 0 || size > 1<<62 {
		return nil, fmt.Errorf("%w: bad size", errMalformed)
	}
	b = b[n:]
	count, n := protowire.ConsumeVarint(b)
	if n < 0 || count > maxEntries {
		return nil, fmt.Errorf("%w: bad entry count", errMalformed)
	}
	b = b[n:]
	m.size = int64(size)
	m.entries = make([]entry, count)
	var sum int64
	for i := range m.entries {
		if len(b) < content.Size {
			return nil, fmt.Errorf("%w: entry %d truncated", errMalformed, i)
		}
		e := &m.entries[i]
		copy(e.hash[:], b)
		b = b[content.Size:]
		s, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: entry %d truncated", errMalformed, i)
		}
		b = b[n:]
		if s == 0 || (m.level == 0 && s > MaxChunkSize) || s > size-uint64(sum) {
			return nil, fmt.Errorf("%w: entry %d has bad size %d", errMalformed, i, s)
		}
		e.size = int64(s)
		sum += e.size
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errMalformed, len(b))
	}
	if sum != m.size {
		return nil, fmt.Errorf("%w: entries add up to %d bytes, header says %d", errMalformed, sum, m.size)
	}
	return m, nil
}

// buildTree turns the chunk list of a file of size bytes into a tree of
// manifests, adds every manifest blob to blobs and returns the root's hash.
// Each level is grouped content-defined (see groupMask) until one manifest
// holds at most maxEntries entries.
func buildTree(entries []entry, size int64, blobs map[content.Hash][]byte) content.Hash {
	level := 0
	for len(entries) > maxEntries {
		var parents []entry
		for start := 0; start < len(entries); {
			end := groupEnd(entries[start:]) + start
			m := &manifest{level: level, entries: entries[start:end]}
			for _, e := range m.entries {
				m.size += e.size
			}
			parents = append(parents, entry{hash: put(blobs, m.encode()), size: m.size})
			start = end
		}
		entries = parents
		level++
	}
	return put(blobs, (&manifest{level: level, size: size, entries: entries}).encode())
}

// groupEnd returns the length of the group that starts entries.
func groupEnd(entries []entry) int {
	n := min(len(entries), maxEntries)
	for i := minGroup - 1; i < n; i++ {
		h := entries[i].hash
		if (uint(h[content.Size-2])<<8|uint(h[content.Size-1]))&groupMask == 0 {
			return i + 1
		}
	}
	return n
}

// put adds blob to blobs under its hash and returns the hash.
func put(blobs map[content.Hash][]byte, blob []byte) content.Hash {
	h := content.Sum(blob)
	blobs[h] = blob
	return h
}
