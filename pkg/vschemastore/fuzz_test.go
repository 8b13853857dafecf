package vschemastore_test

import (
	"errors"
	"path"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/topod-io/topod/pkg/vschemastore"
)

// keyspaceJSONSeeds are vschema JSON documents as `vtctldclient
// ApplyVSchema` takes them, valid and not.
var keyspaceJSONSeeds = []string{
	`{}`,
	`{"sharded": true, "vindexes": {"hash": {"type": "hash"}}, "tables": {"users": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}`,
	`{"sharded": true, "tables": {"t": {"columnVindexes": [{"column": "id", "name": "hash"}], "autoIncrement": {"column": "id", "sequence": "s.t"}}}}`,
	`{"tables": {"t_seq": {"type": "sequence"}, "ref": {"type": "reference", "source": "commerce.ref"}}}`,
	`{"sharded": true, "vindexes": {"lookup": {"type": "consistent_lookup_unique", "params": {"table": "ks.lookup", "from": "email", "to": "keyspace_id"}, "owner": "users"}}}`,
	`{"foreign_key_mode": "managed", "require_explicit_routing": true, "multi_tenant_spec": {"tenant_id_column_name": "tenant_id", "tenant_id_column_type": "INT64"}}`,
	`{"shardedd": true, "tables": {"t": {"colour": 1, "column_vindexes": [{"nme": "x"}]}}}`,
	`{"sharded": tru}`, `{"tables": []}`, `"ks"`, `[]`, `null`, ``, `{"sharded": true,}`, `{"tables": {"t": null}}`,
	`{"sharded": true, "sharded": false}`, `{"tables": {"a": {}, "a": {}}}`, `{"vindexes": {"v": {"params": {"k": 1}}}}`,
	"{\"tables\": {\"\xff\": {}}}", `{"tables": {"t": {"columns": [{"name": "c", "type": "VARCHAR"}]}}}`,
}

// FuzzParseKeyspaceJSON parses arbitrary JSON as a keyspace vschema. It
// checks that ParseKeyspaceJSON never panics; that it returns a keyspace
// and its warnings, or a malformed-JSON ValidationError about the
// keyspace, never both; that every warning is an unknown field of that
// keyspace; and that a keyspace it returns, marshalled back to JSON, parses
// to an equal keyspace with no warnings.
func FuzzParseKeyspaceJSON(f *testing.F) {
	for _, s := range keyspaceJSONSeeds {
		f.Add("commerce", []byte(s))
	}
	f.Add("", []byte(`{}`))
	f.Fuzz(func(t *testing.T, keyspace string, data []byte) {
		ks, v, err := vschemastore.ParseKeyspaceJSON(keyspace, data)
		if err != nil {
			if ks != nil || v != nil {
				t.Fatalf("ParseKeyspaceJSON returned a keyspace or warnings and error %v", err)
			}
			checkMalformed(t, err, keyspace)
			return
		}
		if ks == nil || v == nil || len(v.Errors) != 0 {
			t.Fatalf("ParseKeyspaceJSON = %v, %+v, nil", ks, v)
		}
		for _, w := range v.Warnings {
			// Field is the key's path: "" for a top-level key "".
			if w.Code != vschemastore.CodeUnknownField || w.Keyspace != keyspace {
				t.Fatalf("warning %+v is not an unknown field of keyspace %q", w, keyspace)
			}
		}
		again, err := protojson.Marshal(ks)
		if err != nil {
			t.Fatal(err)
		}
		ks2, v2, err := vschemastore.ParseKeyspaceJSON(keyspace, again)
		if err != nil || !proto.Equal(ks, ks2) || len(v2.Warnings) != 0 {
			t.Fatalf("%s re-parses to %v, %+v, %v", again, ks2, v2, err)
		}
	})
}

// checkMalformed checks that err is a ValidationError with a single
// malformed-JSON problem about keyspace.
func checkMalformed(t *testing.T, err error, keyspace string) {
	t.Helper()
	var verr *vschemastore.ValidationError
	if !errors.As(err, &verr) || verr.Validation == nil || len(verr.Validation.Errors) != 1 {
		t.Fatalf("error %v is not a ValidationError of one problem", err)
	}
	if p := verr.Validation.Errors[0]; p.Code != vschemastore.CodeMalformed || p.Keyspace != keyspace || p.Message == "" {
		t.Fatalf("problem %+v is not malformed JSON about keyspace %q", p, keyspace)
	}
}

// FuzzParseRulesJSON parses arbitrary JSON as each kind of rules (and an
// unknown kind). It checks that ParseRulesJSON never panics; that an
// unknown kind is ErrBadRequest; that otherwise it returns the kind's
// message and its warnings, or a malformed-JSON ValidationError, never
// both; that every warning is an unknown field; and that rules it returns,
// marshalled back to JSON, parse to equal rules with no warnings.
func FuzzParseRulesJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"rules": []}`, `[]`, `null`, ``, `{"rules": [{"from_table": "t"`,
		`{"rules": [{"from_table": "t", "to_tables": ["commerce.t"]}, {"fromTable": "ks.t@replica", "toTables": ["customer.t"]}]}`,
		`{"rules": [{"from_keyspace": "a", "to_keyspace": "b", "shard": "-80"}]}`,
		`{"rules": [{"from_keyspace": "a", "to_keyspace": "b"}]}`,
		`{"rules": [{"from_table": "commerce.t", "to_table": "customer.t", "percent": 12.5}]}`,
		`{"rules": [{"from_table": "t", "percent": "NaN"}]}`, `{"rules": [{"percent": 1e40}]}`,
		`{"rules": [{"from_table": "t", "to_tables": "commerce.t"}]}`, `{"rulez": [{"from": "t"}], "rules": [{"x": 1}]}`,
	} {
		for kind := range byte(len(vschemastore.AllRules) + 1) {
			f.Add(kind, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		k := vschemastore.RulesKind("no-such-rules")
		if int(kind) < len(vschemastore.AllRules) {
			k = vschemastore.AllRules[kind]
		}
		m, v, err := vschemastore.ParseRulesJSON(k, data)
		if err != nil {
			if m != nil || v != nil {
				t.Fatalf("ParseRulesJSON returned rules or warnings and error %v", err)
			}
			if k.New() == nil {
				if !errors.Is(err, vschemastore.ErrBadRequest) {
					t.Fatalf("ParseRulesJSON of kind %q: %v, want ErrBadRequest", k, err)
				}
				return
			}
			checkMalformed(t, err, "")
			return
		}
		if m == nil || v == nil || len(v.Errors) != 0 {
			t.Fatalf("ParseRulesJSON = %v, %+v, nil", m, v)
		}
		if reflect.TypeOf(m) != reflect.TypeOf(k.New()) {
			t.Fatalf("ParseRulesJSON of kind %q returned a %T", k, m)
		}
		for _, w := range v.Warnings {
			if w.Code != vschemastore.CodeUnknownField || w.Keyspace != "" {
				t.Fatalf("warning %+v is not an unknown field", w)
			}
		}
		again, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, v2, err := vschemastore.ParseRulesJSON(k, again)
		if err != nil || !proto.Equal(m, m2) || len(v2.Warnings) != 0 {
			t.Fatalf("%s re-parses to %v, %+v, %v", again, m2, v2, err)
		}
	})
}

// FuzzValidateKeyspaceName checks ValidateKeyspaceName on arbitrary
// strings: it never panics, and accepts exactly 1 to 64 ASCII letters,
// digits, '-' and '_', which makes a name a single, clean topology path
// segment.
func FuzzValidateKeyspaceName(f *testing.F) {
	for _, s := range []string{
		"ks0001", "commerce", "a-b_c", "A", "-", "_", ".", "..", "../x", "", "a/b", "a.b", "a b", "ks%2F",
		"ks\x00", "ä", "\xff", strings.Repeat("k", 64), strings.Repeat("k", 65),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := vschemastore.ValidateKeyspaceName(name)
		want := len(name) >= 1 && len(name) <= 64 && strings.Trim(name,
			"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == ""
		if (err == nil) != want {
			t.Fatalf("ValidateKeyspaceName(%q) = %v, want accepted %v", name, err, want)
		}
		if err == nil {
			p := path.Join("/keyspaces", name, "VSchema")
			if p != "/keyspaces/"+name+"/VSchema" {
				t.Fatalf("accepted %q, which makes the path %q", name, p)
			}
		} else if !strings.Contains(err.Error(), strconv.Quote(name)) {
			t.Fatalf("error %q does not name %q", err, name)
		}
	})
}

// FuzzParseVersion checks ParseVersion on arbitrary strings: it never
// panics; it returns a positive version or an error wrapping
// ErrBadRequest; and a version it returns is the decimal digits of the
// input (an optional '+' and surrounding quotes and spaces aside), and
// parses back from its decimal form, bare or quoted as an ETag.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{
		"1", "42", `"42"`, ` "42" `, `W/"42"`, "0", "-1", "+7", "007", "1e3", "0x10", "", `""`, " ", "abc",
		"9223372036854775807", "9223372036854775808", "１２", "4 2", "\"4\"2\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, err := vschemastore.ParseVersion(v)
		if err != nil {
			if n != 0 || !errors.Is(err, vschemastore.ErrBadRequest) {
				t.Fatalf("ParseVersion(%q) = %d, %v; want 0 and ErrBadRequest", v, n, err)
			}
			return
		}
		if n <= 0 {
			t.Fatalf("ParseVersion(%q) = %d", v, n)
		}
		digits := strings.TrimPrefix(strings.Trim(v, `" `), "+")
		if strings.TrimLeft(digits, "0") != strconv.FormatInt(n, 10) {
			t.Fatalf("ParseVersion(%q) = %d", v, n)
		}
		for _, s := range []string{strconv.FormatInt(n, 10), strconv.Quote(strconv.FormatInt(n, 10))} {
			if m, err := vschemastore.ParseVersion(s); err != nil || m != n {
				t.Fatalf("ParseVersion(%q) = %d, %v; want %d", s, m, err, n)
			}
		}
	})
}
