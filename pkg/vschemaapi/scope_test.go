package vschemaapi_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaapi"
	"github.com/topod-io/topod/pkg/vschemaapi/wire"
)

// TestReferenceScope: a token scoped to some keyspaces may not make their
// vschemas name the tables of others (lookup vindex tables, sequences,
// reference sources), nor names whose keyspace cannot be told; it is
// refused with 403 and nothing is written. Names inside its scope, and
// any name for a token on "*", are applied.
func TestReferenceScope(t *testing.T) {
	tokens := vschemaapi.WriteTokens(t, `
tokens:
  - {name: admin, token: admin-token, keyspaces: ["*"], verbs: [admin]}
  - {name: team, token: team-token, keyspaces: ["commerce", "customer"], verbs: [write]}
`)
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tp.CreateKeyspaces(t, "commerce", "customer", "payroll")
	srv := vschematest.StartVSchemad(t, tp, &vschematest.VSchemadOptions{Tokens: tokens})
	api := srv.URL + "/api/v1"
	auth := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	// commerce's vschema with a lookup vindex on table lookupTable and,
	// unless "", a sequence for orders.id.
	commerce := func(lookupTable, sequence string) string {
		ai := ""
		if sequence != "" {
			ai = `, "auto_increment": {"column": "id", "sequence": "` + sequence + `"}`
		}
		return `{"sharded": true,
  "vindexes": {"hash": {"type": "hash"},
    "lk": {"type": "lookup_unique", "params": {"table": "` + lookupTable + `", "from": "code", "to": "keyspace_id"}, "owner": "orders"}},
  "tables": {"orders": {"column_vindexes": [{"column": "id", "name": "hash"}, {"column": "code", "name": "lk"}]` + ai + `},
    "code_lookup": {"column_vindexes": [{"column": "code", "name": "hash"}]}}}`
	}
	for _, ks := range []string{"customer", "payroll"} {
		if code, body, _ := vschematest.Call(t, nil, "PUT", api+"/keyspaces/"+ks+"/vschema", []byte(`{}`), auth("admin-token")...); code != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", ks, code, body)
		}
	}
	// An admin may point commerce's lookup at payroll: the version the
	// team's rollback below asks for.
	code, body, h := vschematest.Call(t, nil, "PUT", api+"/keyspaces/commerce/vschema", []byte(commerce("payroll.salary_lookup", "")), auth("admin-token")...)
	if code != http.StatusOK {
		t.Fatalf("admin PUT: %d %s", code, body)
	}
	adminVersion, _ := strconv.Unquote(h.Get("ETag"))
	if code, body, _ := vschematest.Call(t, nil, "PUT", api+"/keyspaces/commerce/vschema", []byte(commerce("customer.code_lookup", "")), auth("admin-token")...); code != http.StatusOK {
		t.Fatalf("admin PUT: %d %s", code, body)
	}

	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"lookup vindex into another keyspace", "PUT", "/keyspaces/commerce/vschema", commerce("payroll.salary_lookup", ""), http.StatusForbidden,
			`team may not write keyspace payroll, which keyspace commerce's lookup table "payroll.salary_lookup" (vindexes.lk.params.table) refers to`},
		{"lookup vindex into another keyspace, quoted", "PUT", "/keyspaces/commerce/vschema", commerce("`payroll`.`salary_lookup`", ""), http.StatusForbidden,
			"team may not write keyspace payroll"},
		{"sequence in another keyspace", "PUT", "/keyspaces/commerce/vschema", commerce("customer.code_lookup", "payroll.order_seq"), http.StatusForbidden,
			`team may not write keyspace payroll, which keyspace commerce's sequence "payroll.order_seq" (tables.orders.auto_increment.sequence) refers to`},
		{"reference table sourced from another keyspace", "PUT", "/keyspaces/customer/vschema", `{"tables": {"rates": {"type": "reference", "source": "payroll.rates"}}}`, http.StatusForbidden,
			`team may not write keyspace payroll, which keyspace customer's reference source "payroll.rates"`},
		{"unqualified lookup table not in the keyspace", "PUT", "/keyspaces/commerce/vschema", commerce("salary_lookup", ""), http.StatusForbidden,
			`lookup table "salary_lookup" (vindexes.lk.params.table) names no keyspace and is not a table of commerce's vschema`},
		{"unqualified sequence not in the keyspace", "PUT", "/keyspaces/commerce/vschema", commerce("customer.code_lookup", "order_seq"), http.StatusForbidden,
			"qualify it as keyspace.table"},
		{"lookup table that is not a table name", "PUT", "/keyspaces/commerce/vschema", commerce("customer.code_lookup, payroll.salary", ""), http.StatusForbidden,
			"names no keyspace"},
		{"dry run needs read on the keyspace named", "PUT", "/keyspaces/commerce/vschema?dry_run=true", commerce("payroll.salary_lookup", ""), http.StatusForbidden,
			"team may not read keyspace payroll"},
		{"batch", "POST", "/vschemas", `{"keyspaces": {"customer": {}, "commerce": ` + commerce("payroll.salary_lookup", "") + `}}`, http.StatusForbidden,
			"team may not write keyspace payroll"},
		{"rollback to a version naming another keyspace", "POST", "/keyspaces/commerce/vschema/rollback", `{"version": "` + adminVersion + `"}`, http.StatusForbidden,
			`team may not write keyspace payroll, which keyspace commerce's lookup table "payroll.salary_lookup"`},
		{"routing rules", "PUT", "/routing-rules", `{"rules": [{"from_table": "orders", "to_tables": ["payroll.salary"]}]}`, http.StatusForbidden,
			"team may not admin routing-rules"},
		// Applied.
		{"lookup and sequence within the scope", "PUT", "/keyspaces/commerce/vschema", commerce("customer.code_lookup", "customer.order_seq"), http.StatusOK, ""},
		{"unqualified lookup table of the keyspace", "PUT", "/keyspaces/commerce/vschema", commerce("code_lookup", ""), http.StatusOK, ""},
		{"qualified with the keyspace itself", "PUT", "/keyspaces/commerce/vschema", commerce("commerce.code_lookup", ""), http.StatusOK, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := tp.Snapshot(t)
			code, out, _ := vschematest.Call(t, nil, c.method, api+c.path, []byte(c.body), auth("team-token")...)
			if code != c.status {
				t.Fatalf("status %d, want %d: %s", code, c.status, out)
			}
			if c.status == http.StatusOK {
				return
			}
			if e := vschematest.Decode[wire.ErrorResponse](t, out); !strings.Contains(e.Message, c.want) {
				t.Fatalf("error %q does not say %q", e.Message, c.want)
			}
			if !before.Equal(tp.Snapshot(t)) {
				t.Fatal("the topology changed")
			}
		})
	}
	// An admin's token may name any keyspace.
	if code, body, _ := vschematest.Call(t, nil, "PUT", api+"/keyspaces/commerce/vschema", []byte(commerce("payroll.salary_lookup", "payroll.order_seq")), auth("admin-token")...); code != http.StatusOK {
		t.Fatalf("admin PUT: %d %s", code, body)
	}
}
