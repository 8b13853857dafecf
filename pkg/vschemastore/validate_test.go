package vschemastore_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	"vitess.io/vitess/go/vt/sqlparser"

	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/vschemastore"
)

// otherKeyspaces is what the validation's resolver knows besides the batch:
// "seqks" (unsharded, with a sequence table "user_seq") and "refks"
// (unsharded, with a table "countries"); "empty" exists without vschema.
func otherKeyspaces(_ context.Context, name string) (*vschemapb.Keyspace, bool, error) {
	switch name {
	case "seqks":
		return &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{"user_seq": {Type: "sequence"}}}, true, nil
	case "refks":
		return &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{"countries": {}}}, true, nil
	case "empty":
		return nil, true, nil
	case "shardedks":
		return &vschemapb.Keyspace{Sharded: true}, true, nil
	}
	return nil, false, nil
}

func sharded(tables map[string]*vschemapb.Table) *vschemapb.Keyspace {
	return &vschemapb.Keyspace{
		Sharded:  true,
		Vindexes: map[string]*vschemapb.Vindex{"hash": {Type: "hash"}},
		Tables:   tables,
	}
}

func primary(col string) []*vschemapb.ColumnVindex {
	return []*vschemapb.ColumnVindex{{Column: col, Name: "hash"}}
}

// TestValidateKeyspaces: each refusal names the keyspace, table and field
// with a code; what Vitess accepts is accepted.
func TestValidateKeyspaces(t *testing.T) {
	parser := sqlparser.NewTestParser()
	cases := []struct {
		name     string
		keyspace string
		ks       *vschemapb.Keyspace
		strict   bool
		want     *vschemastore.Problem // nil: valid
		warning  string                // a warning code expected
	}{
		{name: "valid sharded", keyspace: "users", ks: sharded(map[string]*vschemapb.Table{"users": {ColumnVindexes: primary("id")}})},
		{name: "valid unsharded", keyspace: "users", ks: &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{"t": {}}}},
		{name: "empty sharded keyspace", keyspace: "users", ks: &vschemapb.Keyspace{Sharded: true}},
		{
			name: "unknown vindex type", keyspace: "users",
			ks:   &vschemapb.Keyspace{Sharded: true, Vindexes: map[string]*vschemapb.Vindex{"h": {Type: "hashh"}}},
			want: &vschemastore.Problem{Keyspace: "users", Vindex: "h", Field: "vindexes.h.type", Code: vschemastore.CodeUnknownVindex},
		},
		{
			name: "missing vindex", keyspace: "users",
			ks:   sharded(map[string]*vschemapb.Table{"orders": {ColumnVindexes: []*vschemapb.ColumnVindex{{Column: "id", Name: "nosuch"}}}}),
			want: &vschemastore.Problem{Keyspace: "users", Table: "orders", Field: "tables.orders.column_vindexes[0].name", Code: vschemastore.CodeMissingVindex},
		},
		{
			name: "no primary vindex", keyspace: "users",
			ks:   sharded(map[string]*vschemapb.Table{"orders": {}}),
			want: &vschemastore.Problem{Keyspace: "users", Table: "orders", Field: "tables.orders.column_vindexes", Code: vschemastore.CodeNoPrimaryVindex},
		},
		{
			name: "bad keyspace name", keyspace: "../x",
			ks:   &vschemapb.Keyspace{},
			want: &vschemastore.Problem{Keyspace: "../x", Code: vschemastore.CodeBadName},
		},
		{
			name: "bad table name", keyspace: "users",
			ks:   &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{"a/b": {}}},
			want: &vschemastore.Problem{Keyspace: "users", Table: "a/b", Field: "tables.a/b", Code: vschemastore.CodeBadName},
		},
		{
			name: "table name too long", keyspace: "users",
			ks:   &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{strings.Repeat("t", 65): {}}},
			want: &vschemastore.Problem{Keyspace: "users", Table: strings.Repeat("t", 65), Code: vschemastore.CodeBadName},
		},
		{
			name: "sequence in a missing keyspace", keyspace: "users",
			ks: sharded(map[string]*vschemapb.Table{"users": {ColumnVindexes: primary("id"),
				AutoIncrement: &vschemapb.AutoIncrement{Column: "id", Sequence: "nosuch.user_seq"}}}),
			want: &vschemastore.Problem{Keyspace: "users", Table: "users", Field: "tables.users.auto_increment.sequence", Code: vschemastore.CodeMissingKeyspace},
		},
		{
			name: "sequence in an existing keyspace", keyspace: "users",
			ks: sharded(map[string]*vschemapb.Table{"users": {ColumnVindexes: primary("id"),
				AutoIncrement: &vschemapb.AutoIncrement{Column: "id", Sequence: "seqks.user_seq"}}}),
		},
		{
			name: "sequence not declared as one", keyspace: "users",
			ks: sharded(map[string]*vschemapb.Table{"users": {ColumnVindexes: primary("id"),
				AutoIncrement: &vschemapb.AutoIncrement{Column: "id", Sequence: "empty.user_seq"}}}),
			warning: vschemastore.CodeUnresolved,
		},
		{
			name: "sequence table missing in a sharded keyspace", keyspace: "users",
			ks: sharded(map[string]*vschemapb.Table{"users": {ColumnVindexes: primary("id"),
				AutoIncrement: &vschemapb.AutoIncrement{Column: "id", Sequence: "shardedks.user_seq"}}}),
			want: &vschemastore.Problem{Keyspace: "users", Table: "users", Field: "tables.users.auto_increment.sequence", Code: vschemastore.CodeMissingTable},
		},
		{
			name: "reference to a missing keyspace", keyspace: "users",
			ks:   sharded(map[string]*vschemapb.Table{"countries": {Type: "reference", Source: "nosuch.countries"}}),
			want: &vschemastore.Problem{Keyspace: "users", Table: "countries", Field: "tables.countries.source", Code: vschemastore.CodeMissingKeyspace},
		},
		{
			name: "reference to a missing table", keyspace: "users",
			ks:   sharded(map[string]*vschemapb.Table{"countries": {Type: "reference", Source: "refks.regions"}}),
			want: &vschemastore.Problem{Keyspace: "users", Table: "countries", Field: "tables.countries.source", Code: vschemastore.CodeMissingTable},
		},
		{name: "reference", keyspace: "users", ks: sharded(map[string]*vschemapb.Table{"countries": {Type: "reference", Source: "refks.countries"}})},
		{
			name: "unknown table type", keyspace: "users",
			ks:   &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{"t": {Type: "view"}}},
			want: &vschemastore.Problem{Keyspace: "users", Table: "t", Field: "tables.t.type", Code: vschemastore.CodeInvalid},
		},
		{
			name: "sharded sequence", keyspace: "users",
			ks:   sharded(map[string]*vschemapb.Table{"s": {Type: "sequence"}}),
			want: &vschemastore.Problem{Keyspace: "users", Table: "s", Field: "tables.s.type", Code: vschemastore.CodeInvalid},
		},
		{
			name: "non-unique primary vindex (found by Vitess)", keyspace: "users",
			ks: &vschemapb.Keyspace{Sharded: true,
				Vindexes: map[string]*vschemapb.Vindex{"lk": {Type: "lookup", Params: map[string]string{"table": "users.lk", "from": "c", "to": "keyspace_id"}}},
				Tables:   map[string]*vschemapb.Table{"orders": {ColumnVindexes: []*vschemapb.ColumnVindex{{Column: "c", Name: "lk"}}}}},
			want: &vschemastore.Problem{Keyspace: "users", Table: "orders", Field: "tables.orders", Code: vschemastore.CodeInvalid},
		},
		{
			name: "missing vindex parameter", keyspace: "users",
			ks:   &vschemapb.Keyspace{Sharded: true, Vindexes: map[string]*vschemapb.Vindex{"mc": {Type: "multicol"}}},
			want: &vschemastore.Problem{Keyspace: "users", Vindex: "mc", Field: "vindexes.mc.params", Code: vschemastore.CodeVindexParams},
		},
		{
			name: "unknown vindex parameter", keyspace: "users",
			ks:      &vschemapb.Keyspace{Sharded: true, Vindexes: map[string]*vschemapb.Vindex{"h": {Type: "hash", Params: map[string]string{"colour": "blue"}}}},
			warning: vschemastore.CodeVindexParams,
		},
		{
			name: "unknown vindex parameter, strict", keyspace: "users", strict: true,
			ks:   &vschemapb.Keyspace{Sharded: true, Vindexes: map[string]*vschemapb.Vindex{"h": {Type: "hash", Params: map[string]string{"colour": "blue"}}}},
			want: &vschemastore.Problem{Keyspace: "users", Vindex: "h", Field: "vindexes.h.params", Code: vschemastore.CodeVindexParams},
		},
		{
			name: "duplicate column", keyspace: "users",
			ks:   &vschemapb.Keyspace{Tables: map[string]*vschemapb.Table{"t": {Columns: []*vschemapb.Column{{Name: "a"}, {Name: "A"}}}}},
			want: &vschemastore.Problem{Keyspace: "users", Table: "t", Field: "tables.t", Code: vschemastore.CodeInvalid},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := vschemastore.ValidateKeyspaces(t.Context(), parser, map[string]*vschemapb.Keyspace{c.keyspace: c.ks}, otherKeyspaces, vschemastore.ValidateOptions{Strict: c.strict})
			if err != nil {
				t.Fatal(err)
			}
			if c.want == nil {
				if !v.OK() {
					t.Fatalf("refused: %v", v.Errors)
				}
			} else {
				if v.OK() {
					t.Fatalf("accepted, want %+v", *c.want)
				}
				got := v.Errors[0]
				if got.Keyspace != c.want.Keyspace || got.Table != c.want.Table || got.Vindex != c.want.Vindex ||
					(c.want.Field != "" && got.Field != c.want.Field) || got.Code != c.want.Code || got.Message == "" {
					t.Fatalf("problem %+v, want %+v", got, *c.want)
				}
				t.Logf("%s", got)
			}
			if c.warning != "" {
				if len(v.Warnings) == 0 || v.Warnings[0].Code != c.warning {
					t.Fatalf("warnings %+v, want one of code %s", v.Warnings, c.warning)
				}
			}
		})
	}
}

// TestValidateBatch: keyspaces of one batch may refer to each other, and
// the whole JD profile (sequences, references, lookups) validates.
func TestValidateBatch(t *testing.T) {
	parser := sqlparser.NewTestParser()
	p := jd.JD().Sized(200)
	batch := map[string]*vschemapb.Keyspace{}
	refs := 0
	for i := range p.Keyspaces {
		name, ks := p.Keyspace(i)
		batch[name] = ks
		refs += len(vschemastore.References(name, ks))
	}
	if refs == 0 {
		t.Fatal("the profile has no cross-keyspace references to check")
	}
	v, err := vschemastore.ValidateKeyspaces(t.Context(), parser, batch, otherKeyspaces, vschemastore.ValidateOptions{})
	if err != nil || !v.OK() {
		t.Fatalf("JD profile refused: %v %v", err, v.Errors)
	}
	// Without the keyspaces they refer to, the referring ones are refused.
	for name, ks := range batch {
		if len(vschemastore.References(name, ks)) == 0 {
			continue
		}
		v, err := vschemastore.ValidateKeyspaces(t.Context(), parser, map[string]*vschemapb.Keyspace{name: ks}, otherKeyspaces, vschemastore.ValidateOptions{})
		if err != nil || v.OK() || v.Errors[0].Code != vschemastore.CodeMissingKeyspace {
			t.Fatalf("%s alone: %v %+v", name, err, v)
		}
		break
	}
}

// TestParseKeyspaceJSON: the JSON vtctldclient accepts; unknown fields are
// warnings naming their path; malformed JSON is a ValidationError.
func TestParseKeyspaceJSON(t *testing.T) {
	cases := []struct {
		name, json string
		warnings   []string // fields
		malformed  bool
	}{
		{name: "vtctldclient's example", json: `{"sharded": true, "vindexes": {"hash": {"type": "hash"}}, "tables": {"users": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}`},
		{name: "camelCase", json: `{"sharded": true, "tables": {"t": {"columnVindexes": [{"column": "id", "name": "hash"}], "autoIncrement": {"column": "id", "sequence": "s.t"}}}}`},
		{name: "unknown fields", json: `{"shardedd": true, "tables": {"t": {"colour": 1, "column_vindexes": [{"nme": "x"}]}}}`,
			warnings: []string{"shardedd", "tables.t.colour", "tables.t.column_vindexes[0].nme"}},
		{name: "malformed", json: `{"sharded": tru}`, malformed: true},
		{name: "wrong type", json: `{"tables": []}`, malformed: true},
		{name: "not an object", json: `"ks"`, malformed: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ks, v, err := vschemastore.ParseKeyspaceJSON("ks", []byte(c.json))
			if c.malformed {
				var verr *vschemastore.ValidationError
				if !errors.As(err, &verr) || verr.Validation.Errors[0].Code != vschemastore.CodeMalformed {
					t.Fatalf("err = %v, want a malformed-JSON ValidationError", err)
				}
				t.Logf("%v", err)
				return
			}
			if err != nil || ks == nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range v.Warnings {
				got = append(got, w.Field)
			}
			if strings.Join(got, ",") != strings.Join(c.warnings, ",") {
				t.Fatalf("warnings on %v, want %v", got, c.warnings)
			}
		})
	}
}

func TestValidateKeyspaceName(t *testing.T) {
	for name, ok := range map[string]bool{
		"ks0001": true, "commerce": true, "a-b_c": true, "../x": false, "": false,
		"a/b": false, "a.b": false, strings.Repeat("k", 65): false, "ks%2F": false,
	} {
		if err := vschemastore.ValidateKeyspaceName(name); (err == nil) != ok {
			t.Errorf("ValidateKeyspaceName(%q) = %v", name, err)
		}
	}
}

// TestBadKeyspaceNameKeepsItsCause: a read refused for its keyspace name is
// ErrBadRequest and still wraps the validation error that refused it.
func TestBadKeyspaceNameKeepsItsCause(t *testing.T) {
	s, err := vschemastore.NewStore(nil, vschemastore.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const bad = "bad/name"
	cause := vschemastore.ValidateKeyspaceName(bad)
	if cause == nil {
		t.Fatalf("ValidateKeyspaceName(%q) accepted it", bad)
	}
	for _, tc := range []struct {
		op   string
		read func() error
	}{
		{"GetKeyspace", func() error { _, _, err := s.GetKeyspace(t.Context(), bad); return err }},
		{"GetKeyspaceAt", func() error { _, err := s.GetKeyspaceAt(t.Context(), bad, "1"); return err }},
		{"GetCellKeyspace", func() error { _, err := s.GetCellKeyspace(t.Context(), "cell1", bad); return err }},
	} {
		err := tc.read()
		if !errors.Is(err, vschemastore.ErrBadRequest) {
			t.Errorf("%s(%q) = %v, want ErrBadRequest", tc.op, bad, err)
		}
		multi, ok := err.(interface{ Unwrap() []error })
		if !ok || !slices.ContainsFunc(multi.Unwrap(), func(e error) bool { return e.Error() == cause.Error() }) {
			t.Errorf("%s(%q) = %v: does not wrap its cause %q", tc.op, bad, err, cause)
		}
	}
}
