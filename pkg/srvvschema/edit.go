package srvvschema

import (
	"fmt"
	"maps"
	"slices"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/content"
)

// Edit is a change to an encoded SrvVSchema.
type Edit struct {
	// Keyspaces maps a keyspace name to its new value; nil deletes the
	// keyspace (deleting an absent keyspace does nothing).
	Keyspaces map[string]*vschemapb.Keyspace
	// Rules, when not nil, replaces every non-keyspace field of the
	// SrvVSchema (routing rules, shard and keyspace routing rules, mirror
	// rules, unknown fields) with those of Rules; fields not set in Rules
	// are cleared. Rules.Keyspaces is ignored.
	Rules *vschemapb.SrvVSchema
}

// EncodeIncremental returns the encoding of prev's SrvVSchema with the
// keyspace name set to ks, or deleted if ks is nil. It marshals only ks and
// rewrites one leaf and the root: its Blobs are the new piece, leaf and root
// (fewer if the keyspace did not change).
func EncodeIncremental(prev *Manifest, name string, ks *vschemapb.Keyspace) (*Encoded, error) {
	return EncodeEdit(prev, Edit{Keyspaces: map[string]*vschemapb.Keyspace{name: ks}})
}

// EncodeEdit returns the encoding of prev's SrvVSchema with e applied, in
// time proportional to the change (plus the 8 KiB root): only the changed
// keyspaces are marshalled and only their leaves rewritten. Encoded.Blobs
// holds the blobs prev does not reference. prev is not modified; the new
// manifest shares its unchanged leaves.
func EncodeEdit(prev *Manifest, e Edit) (*Encoded, error) {
	if prev == nil {
		return nil, fmt.Errorf("vschema: encode edit: no previous manifest")
	}
	m := *prev // copies the leaf array; the leaves themselves are shared
	blobs := make(map[content.Hash][]byte)

	// Group the changed keyspaces by bucket; sorted for deterministic errors.
	byBucket := make(map[int][]string)
	for _, name := range slices.Sorted(maps.Keys(e.Keyspaces)) {
		b := Bucket(name)
		byBucket[b] = append(byBucket[b], name)
	}
	for _, b := range slices.Sorted(maps.Keys(byBucket)) {
		names := byBucket[b]
		old := prev.leaves[b]
		entries := slices.Clone(old.entries)
		for _, name := range names {
			i, found := findEntry(entries, name)
			if found {
				m.keyspaces--
				m.size -= entryWireSize(entries[i])
			}
			ks := e.Keyspaces[name]
			if ks == nil {
				if found {
					entries = slices.Delete(entries, i, i+1)
				}
				continue
			}
			ne, piece, err := encodeKeyspace(name, ks)
			if err != nil {
				return nil, fmt.Errorf("vschema: encode edit of %s: %w", prev.root, err)
			}
			if found {
				if entries[i].Hash != ne.Hash {
					blobs[ne.Hash] = piece
				}
				entries[i] = ne
			} else {
				blobs[ne.Hash] = piece
				entries = slices.Insert(entries, i, ne)
			}
			m.keyspaces++
			m.size += entryWireSize(ne)
		}
		l, blob := newLeaf(entries)
		if l.hash != old.hash {
			blobs[l.hash] = blob
		}
		m.leaves[b] = l
	}

	if e.Rules != nil {
		parts, pieces, err := splitParts(e.Rules)
		if err != nil {
			return nil, fmt.Errorf("vschema: encode edit of %s: %w", prev.root, err)
		}
		for _, p := range prev.parts {
			m.size -= partWireSize(p)
		}
		for _, p := range parts {
			m.size += partWireSize(p)
			if !slices.Contains(prev.parts, p) {
				blobs[p.Hash] = pieces[p.Field]
			}
		}
		m.parts = parts
	}

	if err := checkSize(m.size); err != nil {
		return nil, fmt.Errorf("vschema: encode edit of %s: %w", prev.root, err)
	}
	root := m.encodeRoot()
	if m.root != prev.root {
		blobs[m.root] = root
	}
	return &Encoded{Root: m.root, Blobs: blobs, Size: m.size, Manifest: &m}, nil
}
