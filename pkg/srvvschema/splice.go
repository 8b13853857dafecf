package srvvschema

// This file edits a marshalled SrvVSchema in place: the portable path of an
// incremental update, for topologies that hold the SrvVSchema as one value
// (stock etcd2, or a topod whose plugin offers no record-level access). The
// other keyspaces are copied as wire bytes, never unmarshalled.

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
)

// Splice returns data, a marshalled SrvVSchema, with e applied (see Edit):
// the keyspaces of e replaced or removed and, if e.Rules is set, every
// non-keyspace field replaced. Only the keyspaces in e (and the rules) are
// unmarshalled or marshalled; the rest is copied as it is. changed is
// false, and out is data, when the result would be proto-equal to data.
// A keyspace that appears more than once in data (the last one counts, as
// for any map entry) is left once.
func Splice(data []byte, e Edit) (out []byte, changed bool, err error) {
	type oldEntry struct {
		value   []byte
		present bool
	}
	old := make(map[string]*oldEntry, len(e.Keyspaces))
	for name := range e.Keyspaces {
		old[name] = &oldEntry{}
	}
	var oldRules []byte // non-keyspace fields, when e.Rules replaces them
	out = make([]byte, 0, len(data)+1024)

	for b := data; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false, fmt.Errorf("vschema: splice: SrvVSchema: %w", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, false, fmt.Errorf("vschema: splice: SrvVSchema field %d: %w", num, protowire.ParseError(m))
		}
		field := b[:n+m]
		b = b[n+m:]
		if num == keyspacesField && typ == protowire.BytesType {
			entry, _ := protowire.ConsumeBytes(field[n:])
			name, value, err := parseMapEntry(entry)
			if err != nil {
				return nil, false, fmt.Errorf("vschema: splice: SrvVSchema keyspaces entry: %w", err)
			}
			if o, ok := old[name]; ok {
				o.value, o.present = value, true
				continue
			}
			out = append(out, field...)
			continue
		}
		if e.Rules != nil {
			oldRules = append(oldRules, field...)
			continue
		}
		out = append(out, field...)
	}

	for name, ks := range e.Keyspaces {
		o := old[name]
		switch {
		case ks == nil:
			changed = changed || o.present
			continue
		case !o.present:
			changed = true
		default:
			prev := &vschemapb.Keyspace{}
			if err := prev.UnmarshalVT(o.value); err != nil {
				return nil, false, fmt.Errorf("vschema: splice: keyspace %q: unmarshal: %w", name, err)
			}
			changed = changed || !proto.Equal(prev, ks)
		}
		piece, err := marshalOpts.Marshal(ks)
		if err != nil {
			return nil, false, fmt.Errorf("vschema: splice: keyspace %q: marshal: %w", name, err)
		}
		out = protowire.AppendTag(out, keyspacesField, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(1+protowire.SizeBytes(len(name))+1+protowire.SizeBytes(len(piece))))
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendString(out, name)
		out = protowire.AppendTag(out, 2, protowire.BytesType)
		out = protowire.AppendBytes(out, piece)
	}

	if e.Rules != nil {
		rules := rulesOnly(e.Rules)
		prev := &vschemapb.SrvVSchema{}
		if err := proto.Unmarshal(oldRules, prev); err != nil {
			return nil, false, fmt.Errorf("vschema: splice: SrvVSchema rules: unmarshal: %w", err)
		}
		if !proto.Equal(prev, rules) {
			changed = true
		}
		piece, err := marshalOpts.Marshal(rules)
		if err != nil {
			return nil, false, fmt.Errorf("vschema: splice: SrvVSchema rules: marshal: %w", err)
		}
		out = append(out, piece...)
	}
	if !changed {
		return data, false, nil
	}
	return out, true, nil
}

// rulesOnly returns srv without its keyspaces (srv itself if it has none).
func rulesOnly(srv *vschemapb.SrvVSchema) *vschemapb.SrvVSchema {
	if len(srv.GetKeyspaces()) == 0 {
		return srv
	}
	r := proto.Clone(srv).(*vschemapb.SrvVSchema)
	r.Keyspaces = nil
	return r
}

// FindKeyspace returns the vschema of keyspace name in data, a marshalled
// SrvVSchema, unmarshalling only that keyspace; ok is false if data has
// none.
func FindKeyspace(data []byte, name string) (ks *vschemapb.Keyspace, ok bool, err error) {
	var found []byte
	for b := data; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false, fmt.Errorf("vschema: find keyspace %q: %w", name, protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, false, fmt.Errorf("vschema: find keyspace %q: field %d: %w", name, num, protowire.ParseError(m))
		}
		if num == keyspacesField && typ == protowire.BytesType {
			entry, _ := protowire.ConsumeBytes(b[n:])
			key, value, err := parseMapEntry(entry)
			if err != nil {
				return nil, false, fmt.Errorf("vschema: find keyspace %q: %w", name, err)
			}
			if key == name {
				found, ok = value, true
			}
		}
		b = b[n+m:]
	}
	if !ok {
		return nil, false, nil
	}
	ks = &vschemapb.Keyspace{}
	if err := ks.UnmarshalVT(found); err != nil {
		return nil, false, fmt.Errorf("vschema: find keyspace %q: unmarshal: %w", name, err)
	}
	return ks, true, nil
}

// parseMapEntry parses a keyspaces map entry: key (field 1) and value
// (field 2) wire bytes, either possibly absent, the last occurrence
// counting.
func parseMapEntry(b []byte) (key string, value []byte, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return "", nil, protowire.ParseError(m)
		}
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, _ := protowire.ConsumeBytes(b[n:])
			key = string(v)
		case num == 2 && typ == protowire.BytesType:
			value, _ = protowire.ConsumeBytes(b[n:])
		}
		b = b[n+m:]
	}
	return key, value, nil
}
