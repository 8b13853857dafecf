package vschemaapi_test

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/topod-io/topod/internal/vschematest"
	"github.com/topod-io/topod/pkg/vschemaapi"
	"github.com/topod-io/topod/pkg/vschemaapi/wire"
)

// TestBrowserGuard: a vschemad without bearer tokens refuses what a web
// page can make a browser send (a text/plain or body-less POST, a
// cross-origin request, a DNS-rebound Host) with nothing written to the
// topology or the audit log, and serves its own clients on every loopback
// name. With mutual TLS and no tokens (a browser presents its certificate
// by itself) the Origin and Content-Type checks apply, not the Host one.
// With bearer tokens the checks are off: a page cannot send a token.
func TestBrowserGuard(t *testing.T) {
	tp := vschematest.StartTopodBolt(t, vschematest.Options{})
	tp.CreateKeyspaces(t, "commerce")
	open := vschematest.StartVSchemad(t, tp, nil)
	tokens := vschemaapi.WriteTokens(t, "tokens:\n  - {name: ops, token: s3cret, keyspaces: ['*'], verbs: [admin]}\n")
	withTokens := vschematest.StartVSchemad(t, tp, &vschematest.VSchemadOptions{Tokens: tokens})
	// The guard of client certificates alone (--tls-client-ca without
	// tokens); the TLS itself is cmd/vschemad's, tested there.
	mtls := vschematest.StartVSchemad(t, tp, &vschematest.VSchemadOptions{ClientCerts: true})
	hc := map[*vschematest.VSchemad]*http.Client{}
	if code, body, _ := vschematest.Call(t, nil, "PUT", open.URL+"/api/v1/keyspaces/commerce/vschema", []byte(`{"tables": {"t": {}}}`)); code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(open.URL, "http://"))
	self := "http://127.0.0.1:" + port
	cell := tp.Cells[0]

	cases := []struct {
		name         string
		srv          *vschematest.VSchemad
		method, path string
		body         string
		hdr          []string
		status       int
		want         string // in the error
	}{
		{"text/plain cross-origin POST", open, "POST", "/keyspaces/commerce/vschema/rollback", `{"version": "1"}`,
			[]string{"Content-Type", "text/plain", "Origin", "http://evil.example"}, http.StatusForbidden, "Origin http://evil.example is not this server"},
		{"text/plain rollback", open, "POST", "/keyspaces/commerce/vschema/rollback", `{"version": "1"}`,
			[]string{"Content-Type", "text/plain;charset=UTF-8"}, http.StatusUnsupportedMediaType, `Content-Type "text/plain;charset=UTF-8": send Content-Type: application/json`},
		{"form apply", open, "PUT", "/keyspaces/commerce/vschema", `{}`,
			[]string{"Content-Type", "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType, "application/json"},
		{"body-less rebuild without Content-Type", open, "POST", "/cells/" + cell + "/srvvschema/rebuild", "",
			[]string{"Content-Type", ""}, http.StatusUnsupportedMediaType, "Content-Type (none)"},
		{"delete without Content-Type", open, "DELETE", "/keyspaces/commerce/vschema", "",
			[]string{"Content-Type", ""}, http.StatusUnsupportedMediaType, "required of every DELETE"},
		{"cross-origin JSON apply", open, "PUT", "/keyspaces/commerce/vschema", `{}`,
			[]string{"Origin", "http://evil.example"}, http.StatusForbidden, "Origin http://evil.example is not this server"},
		{"opaque origin", open, "POST", "/cells/" + cell + "/srvvschema/rebuild", "",
			[]string{"Origin", "null"}, http.StatusForbidden, "Origin null"},
		{"cross-site fetch metadata", open, "POST", "/cells/" + cell + "/srvvschema/rebuild", "",
			[]string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden, "Sec-Fetch-Site cross-site"},
		{"cross-origin read", open, "GET", "/audit", "",
			[]string{"Origin", "http://evil.example:" + port}, http.StatusForbidden, "is not this server"},
		{"DNS-rebound read", open, "GET", "/keyspaces/commerce/vschema", "",
			[]string{"Host", "rebind.evil.example:" + port}, http.StatusMisdirectedRequest, `Host "rebind.evil.example:` + port + `" is not a loopback name`},
		{"DNS-rebound write", open, "POST", "/cells/" + cell + "/srvvschema/rebuild", "",
			[]string{"Host", "rebind.evil.example"}, http.StatusMisdirectedRequest, "localhost, 127.0.0.1 or [::1]"},
		{"mutual TLS without tokens: cross-origin", mtls, "POST", "/cells/" + cell + "/srvvschema/rebuild", "",
			[]string{"Origin", "https://evil.example"}, http.StatusForbidden, "Origin https://evil.example"},
		{"mutual TLS without tokens: text/plain", mtls, "POST", "/cells/" + cell + "/srvvschema/rebuild", "",
			[]string{"Content-Type", "text/plain"}, http.StatusUnsupportedMediaType, "application/json"},
		// Served.
		{"mutual TLS without tokens: any Host", mtls, "GET", "/keyspaces/commerce/vschema", "", []string{"Host", "vschemad.example"}, http.StatusOK, ""},
		{"localhost", open, "GET", "/keyspaces/commerce/vschema", "", []string{"Host", "localhost:" + port}, http.StatusOK, ""},
		{"localhost without port", open, "GET", "/keyspaces/commerce/vschema", "", []string{"Host", "LocalHost"}, http.StatusOK, ""},
		{"[::1]", open, "GET", "/keyspaces/commerce/vschema", "", []string{"Host", "[::1]:" + port}, http.StatusOK, ""},
		{"127.0.0.1 without port", open, "GET", "/keyspaces/commerce/vschema", "", []string{"Host", "127.0.0.1"}, http.StatusOK, ""},
		{"same-origin JSON rebuild", open, "POST", "/cells/" + cell + "/srvvschema/rebuild", "",
			[]string{"Origin", self, "Sec-Fetch-Site", "same-origin", "Content-Type", "application/json; charset=utf-8"}, http.StatusOK, ""},
		{"tokens: text/plain with a token", withTokens, "POST", "/cells/" + cell + "/srvvschema/rebuild", "",
			[]string{"Content-Type", "text/plain", "Authorization", "Bearer s3cret", "Host", "vschemad.example"}, http.StatusOK, ""},
		{"tokens: cross-origin without a token", withTokens, "POST", "/cells/" + cell + "/srvvschema/rebuild", "",
			[]string{"Content-Type", "text/plain", "Origin", "http://evil.example"}, http.StatusUnauthorized, "no bearer token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := tp.Snapshot(t)
			auditBefore, err := os.ReadFile(c.srv.Audit)
			if err != nil {
				t.Fatal(err)
			}
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			code, out, _ := vschematest.Call(t, hc[c.srv], c.method, c.srv.URL+"/api/v1"+c.path, body, c.hdr...)
			if code != c.status {
				t.Fatalf("status %d, want %d: %s", code, c.status, out)
			}
			if c.status == http.StatusOK {
				return
			}
			if e := vschematest.Decode[wire.ErrorResponse](t, out); e.Status != c.status || !strings.Contains(e.Message, c.want) {
				t.Fatalf("error %+v does not say %q", e, c.want)
			}
			if !before.Equal(tp.Snapshot(t)) {
				t.Fatal("the topology changed")
			}
			if after, _ := os.ReadFile(c.srv.Audit); !bytes.Equal(after, auditBefore) {
				t.Fatalf("the audit log changed:\n%s", after[len(auditBefore):])
			}
		})
	}
}
