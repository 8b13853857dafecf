package vschemastore

// This file holds the validation of keyspace vschemas before they are
// written: Vitess's own vindexes.BuildKeyspace and vindexes.BuildVSchema
// (what vtctld's ApplyVSchema and vtgate run) decide, and a structured pass
// names the keyspace, table, vindex and field of each problem.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	"vitess.io/vitess/go/vt/sqlparser"
	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/vtgate/vindexes"
)

// Problem codes, machine-readable, in Problem.Code.
const (
	CodeMalformed        = "malformed"     // not valid vschema JSON
	CodeUnknownField     = "unknown_field" // a JSON field the vschema has not (warning)
	CodeBadName          = "bad_name"      // a keyspace, table or vindex name
	CodeUnknownVindex    = "unknown_vindex_type"
	CodeVindexParams     = "vindex_params"      // vindex parameters refused, or unknown (warning)
	CodeMissingVindex    = "missing_vindex"     // a table names a vindex the keyspace lacks
	CodeNoPrimaryVindex  = "no_primary_vindex"  // a sharded keyspace's table without one
	CodeMissingKeyspace  = "missing_keyspace"   // a sequence or reference to a keyspace not in the topology
	CodeMissingTable     = "missing_table"      // a reference to a table not in that keyspace's vschema
	CodeUnresolved       = "unresolved"         // a reference that could not be checked (warning)
	CodeInvalid          = "invalid"            // anything else Vitess refuses
	CodeUnknownKeyspace  = "unknown_keyspace"   // the keyspace does not exist in the topology
	CodeRuleInvalid      = "invalid_rule"       // a routing or mirror rule Vitess refuses
	CodeVindexOwnerTable = "vindex_owner_table" // an owner that is not a table of the keyspace (warning)
)

// Problem is one reason an input is refused (an error) or one thing worth
// knowing about it (a warning). Field is the path of the offending value in
// the vschema JSON, such as tables.users.column_vindexes[0].name.
type Problem struct {
	Keyspace string `json:"keyspace,omitempty"`
	Table    string `json:"table,omitempty"`
	Vindex   string `json:"vindex,omitempty"`
	Field    string `json:"field,omitempty"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

// String is the problem on one line: "keyspace ks, table t, field f: message".
func (p Problem) String() string {
	var where []string
	if p.Keyspace != "" {
		where = append(where, "keyspace "+p.Keyspace)
	}
	if p.Table != "" {
		where = append(where, "table "+p.Table)
	}
	if p.Vindex != "" {
		where = append(where, "vindex "+p.Vindex)
	}
	if p.Field != "" {
		where = append(where, "field "+p.Field)
	}
	if len(where) == 0 {
		return p.Message
	}
	return strings.Join(where, ", ") + ": " + p.Message
}

// Validation is the result of validating an input: it is accepted when it
// has no errors.
type Validation struct {
	Errors   []Problem `json:"errors"`
	Warnings []Problem `json:"warnings"`
}

// OK reports whether the input has no errors.
func (v *Validation) OK() bool { return v == nil || len(v.Errors) == 0 }

func (v *Validation) errorf(p Problem, format string, args ...any) {
	p.Message = fmt.Sprintf(format, args...)
	v.Errors = append(v.Errors, p)
}

func (v *Validation) warnf(p Problem, format string, args ...any) {
	p.Message = fmt.Sprintf(format, args...)
	v.Warnings = append(v.Warnings, p)
}

// hasErrors reports whether v has an error about keyspace ks.
func (v *Validation) hasErrors(ks string) bool {
	return slices.ContainsFunc(v.Errors, func(p Problem) bool { return p.Keyspace == ks })
}

// merge appends w's problems to v.
func (v *Validation) merge(w *Validation) {
	if w != nil {
		v.Errors = append(v.Errors, w.Errors...)
		v.Warnings = append(v.Warnings, w.Warnings...)
	}
}

// ValidationError is the error of a write refused because its input did not
// validate; nothing was written.
type ValidationError struct {
	Validation *Validation
}

// Error names the first problem and how many more there are.
func (e *ValidationError) Error() string {
	if e.Validation == nil || len(e.Validation.Errors) == 0 {
		return "vschema: validation failed"
	}
	msg := "vschema: invalid: " + e.Validation.Errors[0].String()
	if n := len(e.Validation.Errors) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more)", n)
	}
	return msg
}

// Is makes a ValidationError whose every problem is a keyspace missing from
// the topology match ErrNoKeyspace.
func (e *ValidationError) Is(target error) bool {
	if target != ErrNoKeyspace || e.Validation == nil || len(e.Validation.Errors) == 0 {
		return false
	}
	for _, p := range e.Validation.Errors {
		if p.Code != CodeUnknownKeyspace {
			return false
		}
	}
	return true
}

// newValidationError returns a ValidationError of one problem.
func newValidationError(p Problem) *ValidationError {
	return &ValidationError{Validation: &Validation{Errors: []Problem{p}}}
}

// maxNameLen is the longest table or vindex name accepted: MySQL's limit on
// identifiers, which keyspace names also share in Vitess.
const maxNameLen = 64

// ValidateKeyspaceName checks a keyspace name as Vitess does when it creates
// a keyspace (letters, digits, '-' and '_', at most 64): a name such as
// "../x" is refused before it reaches a topology path.
func ValidateKeyspaceName(name string) error {
	if err := topo.ValidateKeyspaceName(name); err != nil {
		return fmt.Errorf("invalid keyspace name %q: %s", name, strings.TrimPrefix(err.Error(), "INVALID_ARGUMENT: "))
	}
	return nil
}

// checkObjectName checks a table or vindex name: not empty, valid UTF-8,
// no control characters, at most 64 bytes, no trailing space (MySQL's rules
// for quoted identifiers), and no '/' or '`'.
func checkObjectName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not valid UTF-8", name)
	case len(name) > maxNameLen:
		return fmt.Errorf("name %q is longer than %d bytes", name, maxNameLen)
	case strings.HasSuffix(name, " "):
		return fmt.Errorf("name %q ends with a space", name)
	case strings.ContainsAny(name, "/`"):
		return fmt.Errorf("name %q contains '/' or '`'", name)
	case strings.ContainsFunc(name, unicode.IsControl):
		return fmt.Errorf("name %q contains a control character", name)
	}
	return nil
}

// ParseKeyspaceJSON parses a keyspace vschema in the JSON that
// `vtctldclient ApplyVSchema --vschema` accepts (protojson of
// vschemapb.Keyspace). As vtctldclient does, fields the vschema does not
// have are ignored, but each is reported as a warning. Malformed JSON is a
// *ValidationError with protojson's line and column.
func ParseKeyspaceJSON(keyspace string, data []byte) (*vschemapb.Keyspace, *Validation, error) {
	ks := &vschemapb.Keyspace{}
	if err := parseJSON(data, ks); err != nil {
		return nil, nil, newValidationError(Problem{Keyspace: keyspace, Code: CodeMalformed,
			Message: "malformed vschema JSON: " + err.Error()})
	}
	return ks, unknownFields(keyspace, data, ks), nil
}

// parseJSON parses data into m as vtctldclient does (json2.UnmarshalPB):
// protojson, ignoring unknown fields.
func parseJSON(data []byte, m proto.Message) error {
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, m); err != nil {
		// protojson's messages start "proto:" and a no-break space.
		msg := strings.TrimLeft(strings.TrimPrefix(err.Error(), "proto:"), " \u00a0")
		return errors.New(msg)
	}
	return nil
}

// unknownFields returns a warning for each JSON field of data (which parsed
// into m) that m's message does not have.
func unknownFields(keyspace string, data []byte, m proto.Message) *Validation {
	v := &Validation{}
	var doc any
	if json.Unmarshal(data, &doc) != nil {
		return v
	}
	var walk func(md protoreflect.MessageDescriptor, x any, path string)
	walk = func(md protoreflect.MessageDescriptor, x any, path string) {
		obj, ok := x.(map[string]any)
		if !ok {
			return
		}
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			fd := md.Fields().ByJSONName(k)
			if fd == nil {
				fd = md.Fields().ByName(protoreflect.Name(k))
			}
			p := k
			if path != "" {
				p = path + "." + k
			}
			if fd == nil {
				v.warnf(Problem{Keyspace: keyspace, Field: p, Code: CodeUnknownField},
					"unknown field %q ignored (vtctldclient ignores it too)", k)
				continue
			}
			switch {
			case fd.IsMap() && fd.MapValue().Kind() == protoreflect.MessageKind:
				if entries, ok := obj[k].(map[string]any); ok {
					for _, key := range slices.Sorted(maps.Keys(entries)) {
						walk(fd.MapValue().Message(), entries[key], p+"."+key)
					}
				}
			case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
				if items, ok := obj[k].([]any); ok {
					for i, item := range items {
						walk(fd.Message(), item, fmt.Sprintf("%s[%d]", p, i))
					}
				}
			case fd.Kind() == protoreflect.MessageKind && !fd.IsMap() && !fd.IsList():
				walk(fd.Message(), obj[k], p)
			}
		}
	}
	walk(m.ProtoReflect().Descriptor(), doc, "")
	return v
}

// Resolver returns the vschema of another keyspace for the cross-keyspace
// checks (sequences and reference tables): exists reports whether the
// keyspace exists in the topology at all; ks is nil when it has no vschema.
type Resolver func(ctx context.Context, keyspace string) (ks *vschemapb.Keyspace, exists bool, err error)

// ValidateOptions adjust ValidateKeyspaces.
type ValidateOptions struct {
	// Strict makes unknown vindex parameters errors (vtctld's --strict).
	Strict bool
}

// ValidateKeyspaces validates the vschemas of batch (keyspace name to
// vschema) as vtctld's ApplyVSchema does, with vindexes.BuildKeyspace, and
// the references between keyspaces as vtgate would resolve them, with
// vindexes.BuildVSchema over the batch and the keyspaces it refers to
// (fetched through resolve; never the other keyspaces). Problems name the
// keyspace, table, vindex and field. The error is for a failure of
// resolve, not for an invalid input.
func ValidateKeyspaces(ctx context.Context, parser *sqlparser.Parser, batch map[string]*vschemapb.Keyspace, resolve Resolver, opts ValidateOptions) (*Validation, error) {
	v := &Validation{}
	names := slices.Sorted(maps.Keys(batch))
	refs := map[string][]ref{} // by referenced keyspace
	for _, name := range names {
		if err := ValidateKeyspaceName(name); err != nil {
			v.errorf(Problem{Keyspace: name, Code: CodeBadName}, "%v", err)
			continue
		}
		ks := batch[name]
		if ks == nil {
			ks = &vschemapb.Keyspace{}
		}
		v.merge(checkKeyspace(name, ks, opts))
		for _, r := range references(name, ks, parser) {
			if r.resolved() {
				refs[r.keyspace] = append(refs[r.keyspace], r)
			}
		}
		if !v.hasErrors(name) {
			// Vitess decides: anything it refuses that the structured pass
			// did not name is reported with the table it is about.
			if _, err := vindexes.BuildKeyspace(ks, parser); err != nil {
				v.Errors = append(v.Errors, attribute(name, ks, parser, err))
			}
		}
	}

	// The keyspaces referred to: from the batch, else from the topology.
	universe := make(map[string]*vschemapb.Keyspace, len(batch)+len(refs))
	for name, ks := range batch {
		if ks == nil {
			ks = &vschemapb.Keyspace{}
		}
		universe[name] = ks
	}
	for _, target := range slices.Sorted(maps.Keys(refs)) {
		if _, ok := universe[target]; ok {
			continue
		}
		var ks *vschemapb.Keyspace
		exists := false
		if ValidateKeyspaceName(target) == nil {
			var err error
			if ks, exists, err = resolve(ctx, target); err != nil {
				return nil, fmt.Errorf("vschema: validate: read keyspace %s: %w", target, err)
			}
		}
		if !exists {
			for _, r := range refs[target] {
				v.errorf(r.problem(CodeMissingKeyspace), "%s %q refers to keyspace %q, which does not exist in the topology", r.what, r.value, target)
			}
			continue
		}
		if ks == nil {
			ks = &vschemapb.Keyspace{} // as RebuildSrvVSchema sees a keyspace without vschema
		}
		universe[target] = ks
	}
	// Tables named by references, where the structured pass can say which.
	for _, target := range slices.Sorted(maps.Keys(refs)) {
		ks, ok := universe[target]
		if !ok {
			continue
		}
		for _, r := range refs[target] {
			t, listed := ks.Tables[r.table]
			switch {
			case r.kind == refReference && !listed:
				v.errorf(r.problem(CodeMissingTable), "%s %q refers to table %q, which is not in the vschema of keyspace %q", r.what, r.value, r.table, target)
			case r.kind == refSequence && ks.Sharded && !listed:
				v.errorf(r.problem(CodeMissingTable), "%s %q refers to table %q, which is not in the vschema of sharded keyspace %q", r.what, r.value, r.table, target)
			case r.kind == refSequence && (!listed || t.Type != vindexes.TypeSequence):
				v.warnf(r.problem(CodeUnresolved), "%s %q: table %q of keyspace %q is not declared as a sequence table", r.what, r.value, r.table, target)
			}
		}
	}

	// vtgate's view: build the batch with what it refers to.
	srv := &vschemapb.SrvVSchema{Keyspaces: universe}
	built := vindexes.BuildVSchema(srv, parser)
	for _, name := range names {
		ksb := built.Keyspaces[name]
		if ksb == nil || ksb.Error == nil || v.hasErrors(name) {
			continue
		}
		v.Errors = append(v.Errors, attribute(name, batch[name], parser, ksb.Error))
	}
	return v, nil
}

// checkKeyspace is the structured pass over one keyspace: names, vindex
// types and parameters, tables' vindexes, types and pins. It refuses only
// what Vitess refuses too, plus bad names.
func checkKeyspace(name string, ks *vschemapb.Keyspace, opts ValidateOptions) *Validation {
	v := &Validation{}
	for _, vname := range slices.Sorted(maps.Keys(ks.Vindexes)) {
		vi := ks.Vindexes[vname]
		p := Problem{Keyspace: name, Vindex: vname, Field: "vindexes." + vname}
		if err := checkObjectName(vname); err != nil {
			p.Code = CodeBadName
			v.errorf(p, "bad vindex name: %v", err)
			continue
		}
		if vi == nil {
			vi = &vschemapb.Vindex{}
		}
		p.Field += ".type"
		if vi.Type == "" {
			p.Code = CodeUnknownVindex
			v.errorf(p, "vindex has no type")
			continue
		}
		vdx, err := vindexes.CreateVindex(vi.Type, vname, vi.Params)
		if err != nil {
			if isUnknownVindexType(vi.Type, err) {
				p.Code = CodeUnknownVindex
				v.errorf(p, "unknown vindex type %q (Vitess knows %s)", vi.Type, strings.Join(KnownVindexTypes(), ", "))
			} else {
				p.Code, p.Field = CodeVindexParams, "vindexes."+vname+".params"
				v.errorf(p, "vindex of type %q refused its parameters: %s", vi.Type, vitessMessage(err))
			}
			continue
		}
		if pv, ok := vdx.(vindexes.ParamValidating); ok {
			if unknown := pv.UnknownParams(); len(unknown) > 0 {
				p.Code, p.Field = CodeVindexParams, "vindexes."+vname+".params"
				if opts.Strict {
					v.errorf(p, "unknown vindex parameters: %s", strings.Join(unknown, ", "))
				} else {
					v.warnf(p, "unknown vindex parameters, ignored by Vitess: %s", strings.Join(unknown, ", "))
				}
			}
		}
		if vi.Owner != "" {
			if _, ok := ks.Tables[vi.Owner]; !ok {
				p.Code, p.Field = CodeVindexOwnerTable, "vindexes."+vname+".owner"
				v.warnf(p, "owner %q is not a table of the keyspace", vi.Owner)
			}
		}
	}
	for _, tname := range slices.Sorted(maps.Keys(ks.Tables)) {
		t := ks.Tables[tname]
		if t == nil {
			t = &vschemapb.Table{}
		}
		p := Problem{Keyspace: name, Table: tname, Field: "tables." + tname}
		if err := checkObjectName(tname); err != nil {
			p.Code = CodeBadName
			v.errorf(p, "bad table name: %v", err)
			continue
		}
		switch t.Type {
		case "", vindexes.TypeReference:
		case vindexes.TypeSequence:
			if ks.Sharded && t.Pinned == "" {
				p.Code, p.Field = CodeInvalid, "tables."+tname+".type"
				v.errorf(p, "a sequence table must be in an unsharded keyspace, or pinned")
			}
		default:
			p.Code, p.Field = CodeInvalid, "tables."+tname+".type"
			v.errorf(p, "unknown table type %q (want \"\", %q or %q)", t.Type, vindexes.TypeReference, vindexes.TypeSequence)
		}
		if ks.Sharded && t.Type != vindexes.TypeReference && t.Pinned == "" && len(t.ColumnVindexes) == 0 {
			p.Code, p.Field = CodeNoPrimaryVindex, "tables."+tname+".column_vindexes"
			v.errorf(p, "table of sharded keyspace %q has no primary vindex (column_vindexes is empty and the table is neither a reference table nor pinned)", name)
		}
		for i, cv := range t.ColumnVindexes {
			field := fmt.Sprintf("tables.%s.column_vindexes[%d]", tname, i)
			if cv == nil {
				continue
			}
			if _, ok := ks.Vindexes[cv.Name]; !ok {
				p.Code, p.Field = CodeMissingVindex, field+".name"
				if cv.Name == "" {
					v.errorf(p, "column vindex has no name")
				} else {
					v.errorf(p, "vindex %q is not defined in the keyspace's vindexes", cv.Name)
				}
				continue
			}
			if cv.Column != "" && len(cv.Columns) > 0 {
				p.Code, p.Field = CodeInvalid, field
				v.errorf(p, "column and columns are both set")
			} else if cv.Column == "" && len(cv.Columns) == 0 {
				p.Code, p.Field = CodeInvalid, field+".column"
				v.errorf(p, "no column")
			}
		}
	}
	return v
}

// isUnknownVindexType reports whether err, from vindexes.CreateVindex of
// typ, says that no vindex type typ is registered.
func isUnknownVindexType(typ string, err error) bool {
	return err != nil && err.Error() == fmt.Sprintf("vindexType %q not found", typ)
}

// KnownVindexTypes returns the vindex types registered with Vitess, sorted.
// The vindexes package has no list of them: each of Vitess 24's types is
// checked against the registry.
func KnownVindexTypes() []string {
	var out []string
	for _, name := range vindexTypeNames {
		if _, err := vindexes.CreateVindex(name, "probe", nil); !isUnknownVindexType(name, err) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// vindexTypeNames are the vindex types Vitess 24 registers (its tests
// register more).
var vindexTypeNames = []string{
	"binary", "binary_md5", "cfc", "consistent_lookup", "consistent_lookup_unique",
	"hash", "lookup", "lookup_hash", "lookup_hash_unique", "lookup_unicodeloosemd5_hash",
	"lookup_unicodeloosemd5_hash_unique", "lookup_unique", "lookup_cost", "multicol", "null", "numeric",
	"numeric_static_map", "region_experimental", "region_json", "reverse_bits",
	"unicode_loose_md5", "unicode_loose_xxhash", "xxhash",
}

// refKind is what a cross-keyspace reference is.
type refKind int

const (
	refSequence refKind = iota
	refReference
	refLookup
)

// ref is a reference from a table or vindex of one keyspace to a table of
// another.
type ref struct {
	kind     refKind
	from     string // keyspace
	table    string // referenced table
	keyspace string // referenced keyspace; "" when the name does not say (ForeignReferences)
	fromTbl  string
	field    string
	what     string
	value    string
}

func (r ref) problem(code string) Problem {
	return Problem{Keyspace: r.from, Table: r.fromTbl, Field: r.field, Code: code}
}

// resolved reports whether validation resolves r against the keyspace it
// names: sequences and reference sources qualified with a keyspace. Vitess
// resolves lookup tables only when it queries them, so validation does
// not.
func (r ref) resolved() bool { return r.kind != refLookup && r.keyspace != "" }

// references returns the references of ks to tables of other keyspaces:
// auto-increment sequences, reference tables' sources and every vindex's
// "table" parameter (the lookup vindexes' tables), qualified with another
// keyspace; with keyspace "", the unqualified sequences and lookup tables
// that are not tables of ks's own vschema, and the lookup tables that are
// not a table name at all. Unparsable sequences and unqualified reference
// sources, which Vitess refuses, are left out.
func references(name string, ks *vschemapb.Keyspace, parser *sqlparser.Parser) []ref {
	var out []ref
	// foreign returns the keyspace a table name refers to, if it is not
	// name; ok is false for a table of name.
	foreign := func(value string) (keyspace, table string, ok bool, err error) {
		q, tbl, err := parser.ParseTable(value)
		switch {
		case err != nil:
			return "", "", true, err
		case q == "":
			_, own := ks.Tables[tbl]
			return "", tbl, !own, nil
		}
		return q, tbl, q != name, nil
	}
	for _, tname := range slices.Sorted(maps.Keys(ks.Tables)) {
		t := ks.Tables[tname]
		if t == nil {
			continue
		}
		if ai := t.AutoIncrement; ai != nil && ai.Sequence != "" {
			if q, tbl, ok, err := foreign(ai.Sequence); err == nil && ok {
				out = append(out, ref{kind: refSequence, from: name, fromTbl: tname, keyspace: q, table: tbl,
					field: "tables." + tname + ".auto_increment.sequence", what: "sequence", value: ai.Sequence})
			}
		}
		if t.Type == vindexes.TypeReference && t.Source != "" {
			if q, tbl, ok := strings.Cut(t.Source, "."); ok && q != "" && q != name {
				out = append(out, ref{kind: refReference, from: name, fromTbl: tname, keyspace: strings.Trim(q, "`"), table: strings.Trim(tbl, "`"),
					field: "tables." + tname + ".source", what: "reference source", value: t.Source})
			}
		}
	}
	for _, vname := range slices.Sorted(maps.Keys(ks.Vindexes)) {
		table, ok := ks.Vindexes[vname].GetParams()["table"]
		if !ok {
			continue
		}
		if q, tbl, ok, _ := foreign(table); ok {
			out = append(out, ref{kind: refLookup, from: name, keyspace: q, table: tbl,
				field: "vindexes." + vname + ".params.table", what: "lookup table", value: table})
		}
	}
	return out
}

// References returns the keyspaces that ks refers to through sequences and
// reference tables (sorted, without ks itself): they must exist, and be
// applied first, for ks to validate.
func References(name string, ks *vschemapb.Keyspace) []string {
	parser, err := sqlparser.New(sqlparser.Options{})
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	for _, r := range references(name, ks, parser) {
		if r.resolved() {
			seen[r.keyspace] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// Reference is a name, in a keyspace's vschema, of a table that is, or may
// be, in another keyspace.
type Reference struct {
	// Keyspace is the keyspace named; "" when the name does not say which
	// (an unqualified name that is not a table of the keyspace's own
	// vschema, or a lookup table that is not a table name).
	Keyspace string
	Table    string
	What     string // "sequence", "reference source" or "lookup table"
	Field    string // e.g. tables.t.auto_increment.sequence, vindexes.v.params.table
	Value    string // as written
}

// ForeignReferences returns the names in ks (the vschema of keyspace name)
// of tables outside it, through which vtgate reads and writes another
// keyspace's tables on ks's behalf: auto-increment sequences (vtgate takes
// ids from them), lookup vindexes' tables (vtgate writes and reads them;
// any vindex's "table" parameter counts) and reference tables' sources.
// An unqualified sequence or lookup table that ks's own vschema does not
// list is returned with Keyspace "": vtgate resolves an unqualified
// sequence among every keyspace's tables (and the routing rules), and a
// lookup's query in the session's keyspace, so it may be any keyspace's.
func ForeignReferences(name string, ks *vschemapb.Keyspace) ([]Reference, error) {
	parser, err := sqlparser.New(sqlparser.Options{})
	if err != nil {
		return nil, err
	}
	var out []Reference
	for _, r := range references(name, ks, parser) {
		out = append(out, Reference{Keyspace: r.keyspace, Table: r.table, What: r.what, Field: r.field, Value: r.value})
	}
	return out, nil
}

// attribute turns an error of Vitess's about keyspace name into a Problem
// naming the table it is about: each table is built alone with the
// keyspace's vindexes to find the first one Vitess refuses.
func attribute(name string, ks *vschemapb.Keyspace, parser *sqlparser.Parser, err error) Problem {
	p := Problem{Keyspace: name, Code: CodeInvalid, Message: vitessMessage(err)}
	if ks == nil {
		return p
	}
	msg := err.Error()
	for _, tname := range slices.Sorted(maps.Keys(ks.Tables)) {
		t := ks.Tables[tname]
		if t.GetAutoIncrement() != nil && strings.Contains(msg, "cannot resolve sequence "+t.AutoIncrement.Sequence+":") {
			p.Table, p.Field = tname, "tables."+tname+".auto_increment.sequence"
			return p
		}
		if t.GetSource() != "" && strings.Contains(msg, fmt.Sprintf("%q", t.Source)) && strings.HasSuffix(msg, tname) {
			p.Table, p.Field = tname, "tables."+tname+".source"
			return p
		}
	}
	for _, tname := range slices.Sorted(maps.Keys(ks.Tables)) {
		one := proto.Clone(ks).(*vschemapb.Keyspace)
		one.Tables = map[string]*vschemapb.Table{tname: ks.Tables[tname]}
		if _, err := vindexes.BuildKeyspace(one, parser); err != nil {
			p.Table, p.Field = tname, "tables."+tname
			return p
		}
	}
	return p
}

// vitessMessage strips vterrors' code prefix ("INVALID_ARGUMENT: msg" or
// "Code: INVALID_ARGUMENT\nmsg").
func vitessMessage(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "Code: "); ok {
		if _, after, ok := strings.Cut(rest, "\n"); ok {
			return after
		}
	}
	if i := strings.Index(msg, ": "); i > 0 && strings.ToUpper(msg[:i]) == msg[:i] && !strings.Contains(msg[:i], " ") {
		return msg[i+2:]
	}
	return msg
}
