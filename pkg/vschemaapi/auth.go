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

// Verb is what a request does; each verb includes those below it.
type Verb int

// The verbs, each including those before it.
const (
	VerbRead  Verb = 1 // read vschemas, history, cells
	VerbWrite Verb = 2 // apply, delete, roll back
	VerbAdmin Verb = 3 // rules, the audit log, rebuilding a cell
)

func (v Verb) String() string {
	switch v {
	case VerbRead:
		return "read"
	case VerbWrite:
		return "write"
	case VerbAdmin:
		return "admin"
	}
	return fmt.Sprintf("verb(%d)", int(v))
}

func parseVerb(s string) (Verb, error) {
	for _, v := range []Verb{VerbRead, VerbWrite, VerbAdmin} {
		if strings.EqualFold(s, v.String()) {
			return v, nil
		}
	}
	return 0, fmt.Errorf("unknown verb %q (want read, write or admin)", s)
}

// tokensFile is the format of a tokens file (LoadTokens).
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
	level     Verb
}

// Tokens is the Authorizer of a tokens file: a request's bearer token
// names who sent it, and grants verbs on keyspaces.
type Tokens struct {
	tokens []token
}

// LoadTokens reads a tokens file (YAML or JSON):
//
//	tokens:
//	  - name: deployer          # who, in the audit log
//	    sha256: 9f86d08...      # hex SHA-256 of the token (or token: the token itself)
//	    keyspaces: ["commerce", "customer*"]   # globs (path.Match); "*" is every keyspace
//	    verbs: [write]          # read, write (implies read) or admin (implies both)
func LoadTokens(file string) (*Tokens, error) {
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
	a := &Tokens{}
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

// Principal is who a request comes from, and what it may do.
type Principal struct {
	// Name is who, in the log and the audit log.
	Name string
	// Keyspaces are globs (path.Match) of the keyspaces it may act on;
	// "*" is every keyspace, which what spans keyspaces (rules, whole
	// SrvVSchemas, the audit log) requires.
	Keyspaces []string
	// Verb is the most it may do there.
	Verb Verb
}

// can reports whether p may do v on keyspace ks.
func (p *Principal) can(v Verb, ks string) bool {
	if p.Verb < v {
		return false
	}
	return slices.ContainsFunc(p.Keyspaces, func(g string) bool {
		ok, _ := path.Match(g, ks)
		return ok
	})
}

// canAll reports whether p may do v on every keyspace (a "*" glob): what
// operations spanning keyspaces need (rules, whole SrvVSchemas, the audit
// log).
func (p *Principal) canAll(v Verb) bool {
	return p.Verb >= v && slices.Contains(p.Keyspaces, "*")
}

// Anyone is the Authorizer of a server without tokens (unauthenticated on
// loopback, or mutual TLS alone): every request may do everything, as
// "anonymous".
var Anyone Authorizer = anyone{}

type anyone struct{}

func (anyone) Authorize(*http.Request) (Principal, error) {
	return Principal{Name: "anonymous", Keyspaces: []string{"*"}, Verb: VerbAdmin}, nil
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
func mayReference(p *Principal, v Verb, ks string, vs *vschemapb.Keyspace) error {
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
				p.Name, v, ks, r.What, r.Value, r.Field, ks)
		case !p.can(v, r.Keyspace):
			return errorf(http.StatusForbidden, "%s may not %s keyspace %s, which keyspace %s's %s %q (%s) refers to",
				p.Name, v, r.Keyspace, ks, r.What, r.Value, r.Field)
		}
	}
	return nil
}

var (
	errNoToken  = errors.New("no bearer token: send Authorization: Bearer <token>")
	errBadToken = errors.New("unknown bearer token")
)

// Authorize returns the principal of a request's bearer token.
func (a *Tokens) Authorize(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return Principal{}, errNoToken
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
		return Principal{}, errBadToken
	}
	return Principal{Name: found.name, Keyspaces: found.keyspaces, Verb: found.level}, nil
}

// Warnings names the tokens whose scope can match no valid keyspace name
// (a typo such as "commerce/"), for the startup log.
func (a *Tokens) Warnings() []string {
	var out []string
	for _, t := range a.tokens {
		for _, g := range t.keyspaces {
			if strings.ContainsAny(g, "*?[") {
				continue
			}
			if err := vschemastore.ValidateKeyspaceName(g); err != nil {
				out = append(out, fmt.Sprintf("token %s: its scope names no valid keyspace: %v", t.name, err))
				break
			}
		}
	}
	return out
}
