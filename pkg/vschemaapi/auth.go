package vschemaapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/vschemastore"
)

// verb is what a request does; each verb includes those below it.
type verb int

const (
	verbRead  verb = 1 // read vschemas, history, cells
	verbWrite verb = 2 // apply, delete, roll back
	verbAdmin verb = 3 // rules, the audit log, rebuilding a cell
)

func (v verb) String() string {
	switch v {
	case verbRead:
		return "read"
	case verbWrite:
		return "write"
	case verbAdmin:
		return "admin"
	}
	return fmt.Sprintf("verb(%d)", int(v))
}

func parseVerb(s string) (verb, error) {
	for _, v := range []verb{verbRead, verbWrite, verbAdmin} {
		if strings.EqualFold(s, v.String()) {
			return v, nil
		}
	}
	return 0, fmt.Errorf("unknown verb %q (want read, write or admin)", s)
}

// tokensFile is the format of --tokens-file (YAML or JSON):
//
//	tokens:
//	  - name: deployer          # who, in the audit log
//	    sha256: 9f86d08...      # hex SHA-256 of the token (or token: the token itself)
//	    keyspaces: ["commerce", "customer*"]   # globs (path.Match); "*" is every keyspace
//	    verbs: [write]          # read, write (implies read) or admin (implies both)
type tokensFile struct {
	Tokens []tokenConfig `json:"tokens"`
}

type tokenConfig struct {
	Name      string   `json:"name"`
	Token     string   `json:"token,omitempty"`
	SHA256    string   `json:"sha256,omitempty"`
	Keyspaces []string `json:"keyspaces"`
	Verbs     []string `json:"verbs"`
}

// token is a configured bearer token.
type token struct {
	name      string
	digest    [sha256.Size]byte
	keyspaces []string
	level     verb
}

// authenticator checks bearer tokens against --tokens-file.
type authenticator struct {
	tokens []token
}

// loadTokens reads a tokens file.
func loadTokens(file string) (*authenticator, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	var cfg tokensFile
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, fmt.Errorf("parse tokens file %s: %w", file, err)
	}
	if len(cfg.Tokens) == 0 {
		return nil, fmt.Errorf("tokens file %s has no tokens", file)
	}
	a := &authenticator{}
	names := map[string]bool{}
	for i, tc := range cfg.Tokens {
		where := fmt.Sprintf("tokens file %s, token %d (%s)", file, i, tc.Name)
		if tc.Name == "" {
			return nil, fmt.Errorf("%s: no name", where)
		}
		if names[tc.Name] {
			return nil, fmt.Errorf("%s: name used twice", where)
		}
		names[tc.Name] = true
		t := token{name: tc.Name}
		switch {
		case tc.Token != "" && tc.SHA256 != "":
			return nil, fmt.Errorf("%s: both token and sha256", where)
		case tc.Token != "":
			t.digest = sha256.Sum256([]byte(tc.Token))
		case tc.SHA256 != "":
			d, err := hex.DecodeString(tc.SHA256)
			if err != nil || len(d) != sha256.Size {
				return nil, fmt.Errorf("%s: sha256 is not 64 hex digits", where)
			}
			copy(t.digest[:], d)
		default:
			return nil, fmt.Errorf("%s: neither token nor sha256", where)
		}
		if len(tc.Keyspaces) == 0 {
			return nil, fmt.Errorf("%s: no keyspaces (use [\"*\"] for all)", where)
		}
		for _, g := range tc.Keyspaces {
			if _, err := path.Match(g, "x"); err != nil {
				return nil, fmt.Errorf("%s: bad keyspace glob %q: %w", where, g, err)
			}
		}
		t.keyspaces = tc.Keyspaces
		if len(tc.Verbs) == 0 {
			return nil, fmt.Errorf("%s: no verbs", where)
		}
		for _, v := range tc.Verbs {
			lv, err := parseVerb(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			t.level = max(t.level, lv)
		}
		a.tokens = append(a.tokens, t)
	}
	return a, nil
}

// principal is who a request comes from, and what it may do.
type principal struct {
	name      string
	keyspaces []string // globs; nil with all
	level     verb
	all       bool // unauthenticated loopback or mutual TLS without tokens
}

// can reports whether p may do v on keyspace ks.
func (p *principal) can(v verb, ks string) bool {
	if p.all {
		return true
	}
	if p.level < v {
		return false
	}
	return slices.ContainsFunc(p.keyspaces, func(g string) bool {
		ok, _ := path.Match(g, ks)
		return ok
	})
}

// canAll reports whether p may do v on every keyspace (a "*" glob): what
// operations spanning keyspaces need (rules, whole SrvVSchemas, the audit
// log).
func (p *principal) canAll(v verb) bool {
	return p.all || (p.level >= v && slices.Contains(p.keyspaces, "*"))
}

// mayReference returns the 403 of a vschema of keyspace ks that names a
// table of a keyspace p may not do v on (v being what p does to ks: write,
// or read for a dry run). Through a lookup vindex vtgate writes and reads
// the lookup table, through a sequence it takes ids from the sequence
// table, and through a reference table it routes to the source: a token
// scoped to some keyspaces could otherwise reach the tables of the others
// by naming them. A name whose keyspace cannot be told (unqualified and
// not a table of ks's own vschema) is refused too, asking for ks.table.
// Routing rules, which redirect tables between keyspaces, need v on "*"
// already (canAll in their handlers), as do keyspace routing rules.
func mayReference(p *principal, v verb, ks string, vs *vschemapb.Keyspace) error {
	if p.canAll(v) {
		return nil
	}
	refs, err := vschemastore.ForeignReferences(ks, vs)
	if err != nil {
		return err
	}
	for _, r := range refs {
		switch {
		case r.Keyspace == "":
			return errorf(http.StatusForbidden, "%s may not name a table of a keyspace it may not %s: keyspace %s's %s %q (%s) names no keyspace and is not a table of %s's vschema, so vtgate may resolve it in any keyspace: qualify it as keyspace.table",
				p.name, v, ks, r.What, r.Value, r.Field, ks)
		case !p.can(v, r.Keyspace):
			return errorf(http.StatusForbidden, "%s may not %s keyspace %s, which keyspace %s's %s %q (%s) refers to",
				p.name, v, r.Keyspace, ks, r.What, r.Value, r.Field)
		}
	}
	return nil
}

var (
	errNoToken  = errors.New("no bearer token: send Authorization: Bearer <token>")
	errBadToken = errors.New("unknown bearer token")
)

// authenticate returns the principal of a request's bearer token.
func (a *authenticator) authenticate(r *http.Request) (*principal, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return nil, errNoToken
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	var found *token
	for i := range a.tokens {
		// Compare with every token, in constant time each.
		if subtle.ConstantTimeCompare(d[:], a.tokens[i].digest[:]) == 1 {
			found = &a.tokens[i]
		}
	}
	if found == nil {
		return nil, errBadToken
	}
	return &principal{name: found.name, keyspaces: found.keyspaces, level: found.level}, nil
}

// keyspaceGlobsValid reports a glob that can match no valid keyspace name
// (a typo such as "commerce/"), for the startup log.
func keyspaceGlobsValid(globs []string) error {
	for _, g := range globs {
		if !strings.ContainsAny(g, "*?[") {
			if err := vschemastore.ValidateKeyspaceName(g); err != nil {
				return err
			}
		}
	}
	return nil
}
