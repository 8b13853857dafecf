package vschemastore

// This file compares two vschemas of one keyspace, or two sets of rules,
// for dry runs, audit summaries and the CLI's diff.

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
)

// Change operations of a FieldChange.
const (
	OpAdd    = "add"
	OpRemove = "remove"
	OpChange = "change"
)

// FieldChange is one difference between two vschemas: a table, a vindex or
// another top-level field (sharded, require_explicit_routing, ...), with
// its old and new JSON.
type FieldChange struct {
	Path string          `json:"path"` // "tables.users", "vindexes.hash", "sharded"
	Op   string          `json:"op"`   // add, remove, change
	Old  json.RawMessage `json:"old,omitempty"`
	New  json.RawMessage `json:"new,omitempty"`
}

// KeyspaceDiff is what differs between the old and the new vschema of a
// keyspace.
type KeyspaceDiff struct {
	Created bool          `json:"created,omitempty"` // there was no vschema
	Deleted bool          `json:"deleted,omitempty"` // there is none now
	Changes []FieldChange `json:"changes,omitempty"` // by path
	// Counts of changed tables and vindexes, and the other fields changed.
	TablesAdded     int      `json:"tables_added"`
	TablesRemoved   int      `json:"tables_removed"`
	TablesChanged   int      `json:"tables_changed"`
	VindexesAdded   int      `json:"vindexes_added"`
	VindexesRemoved int      `json:"vindexes_removed"`
	VindexesChanged int      `json:"vindexes_changed"`
	FieldsChanged   []string `json:"fields_changed,omitempty"`
	Summary         string   `json:"summary"`
}

// Empty reports whether the vschemas are equal.
func (d *KeyspaceDiff) Empty() bool {
	return d == nil || (!d.Created && !d.Deleted && len(d.Changes) == 0)
}

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true}

// DiffKeyspaces returns what differs from old to new; nil means no vschema.
func DiffKeyspaces(old, new *vschemapb.Keyspace) *KeyspaceDiff {
	d := &KeyspaceDiff{Created: old == nil && new != nil, Deleted: old != nil && new == nil}
	o, n := old, new
	if o == nil {
		o = &vschemapb.Keyspace{}
	}
	if n == nil {
		n = &vschemapb.Keyspace{}
	}
	d.Changes = append(d.Changes, diffMap("tables", o.Tables, n.Tables, &d.TablesAdded, &d.TablesRemoved, &d.TablesChanged)...)
	d.Changes = append(d.Changes, diffMap("vindexes", o.Vindexes, n.Vindexes, &d.VindexesAdded, &d.VindexesRemoved, &d.VindexesChanged)...)

	// Every other field of the message, generically.
	or, nr := o.ProtoReflect(), n.ProtoReflect()
	fields := or.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Name() == "tables" || fd.Name() == "vindexes" {
			continue
		}
		if or.Has(fd) == nr.Has(fd) && (!or.Has(fd) || or.Get(fd).Equal(nr.Get(fd))) {
			continue
		}
		c := FieldChange{Path: string(fd.Name()), Op: OpChange, Old: fieldJSON(or, fd), New: fieldJSON(nr, fd)}
		switch {
		case !or.Has(fd):
			c.Op, c.Old = OpAdd, nil
		case !nr.Has(fd):
			c.Op, c.New = OpRemove, nil
		}
		d.Changes = append(d.Changes, c)
		d.FieldsChanged = append(d.FieldsChanged, string(fd.Name()))
	}
	d.Summary = d.summary()
	return d
}

// diffMap compares two maps of messages by key.
func diffMap[M proto.Message](prefix string, old, new map[string]M, added, removed, changed *int) []FieldChange {
	var out []FieldChange
	keys := slices.Sorted(maps.Keys(old))
	for k := range new {
		if _, ok := old[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		ov, inOld := old[k]
		nv, inNew := new[k]
		c := FieldChange{Path: prefix + "." + k}
		switch {
		case !inOld:
			c.Op, c.New = OpAdd, messageJSON(nv)
			*added++
		case !inNew:
			c.Op, c.Old = OpRemove, messageJSON(ov)
			*removed++
		case proto.Equal(ov, nv):
			continue
		default:
			c.Op, c.Old, c.New = OpChange, messageJSON(ov), messageJSON(nv)
			*changed++
		}
		out = append(out, c)
	}
	return out
}

func messageJSON(m proto.Message) json.RawMessage {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		return json.RawMessage(fmt.Sprintf("%q", err.Error()))
	}
	return b
}

// fieldJSON returns the JSON of one field of m: the field alone in an
// otherwise empty message, marshalled, and the value taken out.
func fieldJSON(m protoreflect.Message, fd protoreflect.FieldDescriptor) json.RawMessage {
	one := m.New()
	one.Set(fd, m.Get(fd))
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(one.Interface())
	if err != nil {
		return nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(b, &obj) != nil {
		return nil
	}
	return obj[string(fd.Name())]
}

func (d *KeyspaceDiff) summary() string {
	if d.Empty() {
		return "no change"
	}
	var parts []string
	switch {
	case d.Created:
		parts = append(parts, "created")
	case d.Deleted:
		parts = append(parts, "deleted")
	}
	count := func(n int, what, verb string) {
		if n == 1 {
			parts = append(parts, fmt.Sprintf("1 %s %s", what, verb))
		} else if n > 1 {
			parts = append(parts, fmt.Sprintf("%d %ss %s", n, what, verb))
		}
	}
	count(d.TablesAdded, "table", "added")
	count(d.TablesRemoved, "table", "removed")
	count(d.TablesChanged, "table", "changed")
	count(d.VindexesAdded, "vindex", "added")
	count(d.VindexesRemoved, "vindex", "removed")
	count(d.VindexesChanged, "vindex", "changed")
	for _, f := range d.FieldsChanged {
		parts = append(parts, f+" changed")
	}
	return strings.Join(parts, ", ")
}

// RulesDiff is what differs between two versions of a rules file (routing,
// shard routing, keyspace routing or mirror rules).
type RulesDiff struct {
	OldRules int    `json:"old_rules"`
	NewRules int    `json:"new_rules"`
	Added    int    `json:"added"`
	Removed  int    `json:"removed"`
	Summary  string `json:"summary"`
}

// Empty reports whether the rules are equal.
func (d *RulesDiff) Empty() bool { return d == nil || (d.Added == 0 && d.Removed == 0) }

// DiffRules compares two rules messages of the same type (nil for none),
// rule by rule: a rule is its "rules" list entry, compared whole.
func DiffRules(old, new proto.Message) *RulesDiff {
	a, b := ruleKeys(old), ruleKeys(new)
	d := &RulesDiff{OldRules: len(a), NewRules: len(b)}
	count := func(x, y []string) int { // entries of x not in y, as multisets
		left := map[string]int{}
		for _, k := range y {
			left[k]++
		}
		n := 0
		for _, k := range x {
			if left[k] > 0 {
				left[k]--
			} else {
				n++
			}
		}
		return n
	}
	d.Added, d.Removed = count(b, a), count(a, b)
	if d.Empty() {
		d.Summary = "no change"
	} else {
		d.Summary = fmt.Sprintf("%d rules added, %d removed (%d -> %d)", d.Added, d.Removed, d.OldRules, d.NewRules)
	}
	return d
}

// ruleKeys returns the entries of m's repeated "rules" field, each
// marshalled deterministically.
func ruleKeys(m proto.Message) []string {
	if m == nil {
		return nil
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("rules")
	if fd == nil || !fd.IsList() || !r.IsValid() {
		return nil
	}
	l := r.Get(fd).List()
	out := make([]string, l.Len())
	for i := range l.Len() {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(l.Get(i).Message().Interface())
		out[i] = string(b)
	}
	return out
}
