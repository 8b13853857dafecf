package srvvschema

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/reflect/protoreflect"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/content"
)

// Diff is what differs between two manifests.
type Diff struct {
	Upserted     []string // keyspaces added or changed, sorted
	Deleted      []string // keyspaces removed, sorted
	RulesChanged bool     // whether any non-keyspace part differs
}

// Empty reports whether the manifests were equal.
func (d Diff) Empty() bool {
	return len(d.Upserted) == 0 && len(d.Deleted) == 0 && !d.RulesChanged
}

// Compare returns what differs from old to new (either may be nil, meaning
// no keyspaces and no parts). It looks only into the leaves whose hashes
// differ.
func Compare(old, new *Manifest) Diff {
	old, new = orEmpty(old), orEmpty(new)
	var d Diff
	for i := range Buckets {
		a, b := old.leaves[i], new.leaves[i]
		if a.hash == b.hash {
			continue
		}
		x, y := a.entries, b.entries
		for len(x) > 0 || len(y) > 0 {
			switch {
			case len(y) == 0 || (len(x) > 0 && x[0].Name < y[0].Name):
				d.Deleted = append(d.Deleted, x[0].Name)
				x = x[1:]
			case len(x) == 0 || y[0].Name < x[0].Name:
				d.Upserted = append(d.Upserted, y[0].Name)
				y = y[1:]
			default:
				if x[0] != y[0] {
					d.Upserted = append(d.Upserted, y[0].Name)
				}
				x, y = x[1:], y[1:]
			}
		}
	}
	slices.Sort(d.Upserted)
	slices.Sort(d.Deleted)
	d.RulesChanged = !slices.Equal(old.parts, new.parts)
	return d
}

// Delta is the change from an old encoding to a new one, with the new
// values of what changed.
type Delta struct {
	Diff
	// Manifest is the new manifest; it shares unchanged leaves with the old.
	Manifest *Manifest
	// Keyspaces holds the new value of every keyspace in Diff.Upserted.
	Keyspaces map[string]*vschemapb.Keyspace
	// Rules, if Diff.RulesChanged, holds the new non-keyspace fields
	// (routing rules and the rest) and no keyspaces; otherwise nil.
	Rules *vschemapb.SrvVSchema
}

// DecodeDelta fetches what changed from old (the manifest the caller holds,
// or nil for none) to the encoding named newRoot: the new root, the leaves
// whose hashes changed and the pieces of the keyspaces and parts that
// changed, verifying each. For a one-keyspace change that is three blobs.
func DecodeDelta(ctx context.Context, old *Manifest, newRoot content.Hash, get Getter) (*Delta, error) {
	old = orEmpty(old)
	m, err := loadDecodable(ctx, old, newRoot, get)
	if err != nil {
		return nil, fmt.Errorf("vschema: decode delta %s -> %s: %w", old.root, newRoot, err)
	}
	d := &Delta{Diff: Compare(old, m), Manifest: m}
	entries := make([]Entry, len(d.Upserted))
	for i, name := range d.Upserted {
		entries[i], _ = m.Keyspace(name)
	}
	var parts []Part
	if d.RulesChanged {
		parts = m.parts
	}
	keyspaces, rules, err := fetchPieces(ctx, get, entries, parts)
	if err != nil {
		return nil, fmt.Errorf("vschema: decode delta %s -> %s: %w", old.root, newRoot, err)
	}
	d.Keyspaces = keyspaces
	if d.RulesChanged {
		d.Rules = rules
	}
	return d, nil
}

// Apply returns the new SrvVSchema: old, the value of the delta's old
// manifest, with the delta applied. old is not modified; the result shares
// old's unchanged keyspace and rule messages and the delta's new ones, so
// neither may be modified afterwards.
func (d *Delta) Apply(old *vschemapb.SrvVSchema) *vschemapb.SrvVSchema {
	srv := &vschemapb.SrvVSchema{}
	rules := old
	if d.RulesChanged {
		rules = d.Rules
	}
	dst := srv.ProtoReflect()
	rules.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Number() != keyspacesField {
			dst.Set(fd, v)
		}
		return true
	})
	if rules != nil {
		dst.SetUnknown(rules.ProtoReflect().GetUnknown())
	}
	n := len(old.GetKeyspaces()) + len(d.Upserted) - len(d.Deleted)
	if n == 0 {
		return srv
	}
	srv.Keyspaces = make(map[string]*vschemapb.Keyspace, n)
	for name, ks := range old.GetKeyspaces() {
		if _, deleted := slices.BinarySearch(d.Deleted, name); !deleted {
			srv.Keyspaces[name] = ks
		}
	}
	for name, ks := range d.Keyspaces {
		srv.Keyspaces[name] = ks
	}
	return srv
}

// emptyLeaf is the leaf of every empty bucket.
var emptyLeaf, _ = newLeaf(nil)

// orEmpty returns m, or the manifest of an empty SrvVSchema if m is nil.
func orEmpty(m *Manifest) *Manifest {
	if m != nil {
		return m
	}
	e := &Manifest{}
	for i := range e.leaves {
		e.leaves[i] = emptyLeaf
	}
	e.encodeRoot()
	return e
}
