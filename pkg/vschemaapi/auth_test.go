package vschemaapi

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func writeTokens(t testing.TB, yaml string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestTokens: scopes by keyspace glob and verb, tokens by value or digest,
// and the configuration errors.
func TestTokens(t *testing.T) {
	digest := sha256.Sum256([]byte("hashed-secret"))
	a, err := LoadTokens(writeTokens(t, `
tokens:
  - name: ops
    sha256: `+hex.EncodeToString(digest[:])+`
    keyspaces: ["*"]
    verbs: [admin]
  - name: team
    token: team-secret
    keyspaces: ["customer*", "commerce"]
    verbs: [read, write]
  - name: viewer
    token: viewer-secret
    keyspaces: ["commerce"]
    verbs: [read]
`))
	if err != nil {
		t.Fatal(err)
	}
	req := func(h string) *http.Request {
		r, _ := http.NewRequest("GET", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		return r
	}
	cases := []struct {
		header   string
		who      string // "" for refused
		verb     Verb
		keyspace string
		allowed  bool
		all      bool // canAll(verb)
	}{
		{header: "Bearer hashed-secret", who: "ops", verb: VerbAdmin, keyspace: "anything", allowed: true, all: true},
		{header: "bearer team-secret", who: "team", verb: VerbWrite, keyspace: "customer_eu", allowed: true},
		{header: "Bearer team-secret", who: "team", verb: VerbRead, keyspace: "commerce", allowed: true},
		{header: "Bearer team-secret", who: "team", verb: VerbWrite, keyspace: "inventory", allowed: false},
		{header: "Bearer team-secret", who: "team", verb: VerbAdmin, keyspace: "commerce", allowed: false},
		{header: "Bearer viewer-secret", who: "viewer", verb: VerbWrite, keyspace: "commerce", allowed: false},
		{header: "Bearer viewer-secret", who: "viewer", verb: VerbRead, keyspace: "commerce", allowed: true},
		{header: "Bearer wrong"},
		{header: "Basic dGVhbTp4"},
		{header: ""},
	}
	for _, c := range cases {
		p, err := a.Authorize(req(c.header))
		if c.who == "" {
			if err == nil {
				t.Errorf("%q accepted as %s", c.header, p.Name)
			}
			continue
		}
		if err != nil || p.Name != c.who {
			t.Errorf("%q: %v, %v", c.header, p, err)
			continue
		}
		if got := p.can(c.verb, c.keyspace); got != c.allowed {
			t.Errorf("%s can %s %s = %v", c.who, c.verb, c.keyspace, got)
		}
		if got := p.canAll(c.verb); got != c.all {
			t.Errorf("%s canAll %s = %v", c.who, c.verb, got)
		}
	}

	for name, cfg := range map[string]string{
		"no tokens":       `tokens: []`,
		"no name":         "tokens:\n  - token: x\n    keyspaces: ['*']\n    verbs: [read]",
		"duplicate name":  "tokens:\n  - {name: a, token: x, keyspaces: ['*'], verbs: [read]}\n  - {name: a, token: y, keyspaces: ['*'], verbs: [read]}",
		"no secret":       "tokens:\n  - {name: a, keyspaces: ['*'], verbs: [read]}",
		"both secrets":    "tokens:\n  - {name: a, token: x, sha256: ab, keyspaces: ['*'], verbs: [read]}",
		"bad digest":      "tokens:\n  - {name: a, sha256: xyz, keyspaces: ['*'], verbs: [read]}",
		"no keyspaces":    "tokens:\n  - {name: a, token: x, verbs: [read]}",
		"bad glob":        "tokens:\n  - {name: a, token: x, keyspaces: ['[a'], verbs: [read]}",
		"unknown verb":    "tokens:\n  - {name: a, token: x, keyspaces: ['*'], verbs: [delete]}",
		"unknown field":   "tokens:\n  - {name: a, token: x, keyspaces: ['*'], verbs: [read], colour: red}",
		"not YAML at all": "{{{",
	} {
		if _, err := LoadTokens(writeTokens(t, cfg)); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
