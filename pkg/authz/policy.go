// Package authz decides who may do what on topod. A client is known by the
// names in its verified certificate (Identity); a policy file maps those
// names to principals, and each principal holds grants of a role (read,
// write or admin) over path prefixes. topod's gRPC server asks Decide for
// every request of topod.v1 and of its etcd endpoint.
//
// The policy format (YAML):
//
//	principals:
//	  - name: vtgate
//	    identities: ["spiffe://topod.local/ns/topod/sa/vtgate", "cn:vtgate"]
//	    grants:
//	      - {role: read, paths: ["/"]}
//	  - name: vttablet
//	    identities: ["cn:vttablet"]
//	    grants:
//	      - {role: read, paths: ["/"]}
//	      - {role: write, paths: ["/vitess/*/tablets"]}
//
// An identity is a URI SAN as written (spiffe://...), "dns:" and a DNS SAN,
// "cn:" and the subject's common name, or "*" for any verified certificate.
// A path covers itself and everything under it, segment by segment; "*"
// stands for exactly one segment. Roles nest: admin includes write, write
// includes read. A client matching several principals holds all their
// grants.
package authz

import (
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// Role is what a grant allows. Roles nest: each includes the ones below it.
type Role int

// The roles, weakest first.
const (
	// Read: get, list and watch files, read leaders and blobs.
	Read Role = iota + 1
	// Write: create, update and delete files, take locks, campaign in
	// elections, upload blobs.
	Write
	// Admin: what no Vitess component needs: deleting a whole range on
	// the etcd endpoint, compaction and maintenance, topod's own keys.
	Admin
)

func (r Role) String() string {
	switch r {
	case Read:
		return "read"
	case Write:
		return "write"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

func parseRole(s string) (Role, error) {
	for _, r := range []Role{Read, Write, Admin} {
		if s == r.String() {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q (want read, write or admin)", s)
}

// Policy is a parsed policy file. The zero Policy grants nothing.
type Policy struct {
	principals []principal
}

type principal struct {
	name       string
	identities map[string]bool
	grants     []grant
}

type grant struct {
	role  Role
	paths [][]string // segments; "*" matches one segment
}

// file is the YAML form of a policy.
type file struct {
	Principals []struct {
		Name       string   `json:"name"`
		Identities []string `json:"identities"`
		Grants     []struct {
			Role  string   `json:"role"`
			Paths []string `json:"paths"`
		} `json:"grants"`
	} `json:"principals"`
}

// Parse parses a policy. Unknown fields, roles, empty names and paths that
// are not absolute are errors naming the principal.
func Parse(data []byte) (*Policy, error) {
	var f file
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if len(f.Principals) == 0 {
		return nil, errors.New("policy: no principals: every client would be refused")
	}
	p := &Policy{}
	seen := map[string]bool{}
	for i, fp := range f.Principals {
		if fp.Name == "" {
			return nil, fmt.Errorf("policy: principal %d has no name", i+1)
		}
		if seen[fp.Name] {
			return nil, fmt.Errorf("policy: principal %q appears twice", fp.Name)
		}
		seen[fp.Name] = true
		pr := principal{name: fp.Name, identities: map[string]bool{}}
		if len(fp.Identities) == 0 {
			return nil, fmt.Errorf("policy: principal %q has no identities", fp.Name)
		}
		for _, id := range fp.Identities {
			if err := checkIdentity(id); err != nil {
				return nil, fmt.Errorf("policy: principal %q: %w", fp.Name, err)
			}
			pr.identities[id] = true
		}
		for _, fg := range fp.Grants {
			r, err := parseRole(fg.Role)
			if err != nil {
				return nil, fmt.Errorf("policy: principal %q: %w", fp.Name, err)
			}
			if len(fg.Paths) == 0 {
				return nil, fmt.Errorf("policy: principal %q: a %s grant with no paths", fp.Name, r)
			}
			g := grant{role: r}
			for _, path := range fg.Paths {
				if !strings.HasPrefix(path, "/") {
					return nil, fmt.Errorf("policy: principal %q: path %q is not absolute", fp.Name, path)
				}
				g.paths = append(g.paths, segments(path))
			}
			pr.grants = append(pr.grants, g)
		}
		p.principals = append(p.principals, pr)
	}
	return p, nil
}

func checkIdentity(id string) error {
	switch {
	case id == "*":
	case strings.HasPrefix(id, "cn:") && len(id) > 3:
	case strings.HasPrefix(id, "dns:") && len(id) > 4:
	case strings.Contains(id, "://"):
	default:
		return fmt.Errorf("identity %q: want a URI (spiffe://...), dns:<name>, cn:<name> or *", id)
	}
	return nil
}

// segments splits an absolute path into its segments: "/" has none, and a
// trailing "/" adds none.
func segments(path string) []string {
	path = strings.Trim(path, "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}

// covers says whether pattern covers the path of segments segs: segs
// starts with pattern's segments.
func covers(pattern, segs []string) bool {
	if len(segs) < len(pattern) {
		return false
	}
	for i, s := range pattern {
		if s != "*" && s != segs[i] {
			return false
		}
	}
	return true
}

// Access is what one request needs: a role over a key, or over everything
// under a prefix, or (Anywhere) a role over any path at all, for what has no
// path (blobs, leases).
type Access struct {
	Role Role
	// Key is a file's path, or with Prefix the start of a range of keys.
	Key string
	// Prefix: the access covers every key starting with Key. A Key not
	// ending in "/" covers keys that extend its last segment too, so the
	// grant must cover the segment before it.
	Prefix bool
	// Anywhere: any grant of Role suffices (blobs and leases have no
	// path).
	Anywhere bool
}

func (a Access) String() string {
	switch {
	case a.Anywhere:
		return "(any path)"
	case a.Prefix:
		return a.Key + "*"
	}
	return a.Key
}

// segs is the path a grant must cover for a.
func (a Access) segs() ([]string, bool) {
	if !strings.HasPrefix(a.Key, "/") {
		// Keys outside the tree of absolute paths (possible on the etcd
		// endpoint) are covered only by a grant on "/".
		return nil, true
	}
	s := segments(a.Key)
	if a.Prefix && !strings.HasSuffix(a.Key, "/") && len(s) > 0 {
		s = s[:len(s)-1]
	}
	return s, false
}

// Allows reports whether a client known by names may have a, and the
// principals those names matched (for messages and metrics).
func (p *Policy) Allows(names []string, a Access) (bool, []string) {
	segs, rootOnly := a.segs()
	var matched []string
	ok := false
	for _, pr := range p.principals {
		if !pr.matches(names) {
			continue
		}
		matched = append(matched, pr.name)
		for _, g := range pr.grants {
			if g.role < a.Role {
				continue
			}
			for _, pat := range g.paths {
				if a.Anywhere || (rootOnly && len(pat) == 0) || (!rootOnly && covers(pat, segs)) {
					ok = true
				}
			}
		}
	}
	return ok, matched
}

func (pr principal) matches(names []string) bool {
	if pr.identities["*"] && len(names) > 0 {
		return true
	}
	for _, n := range names {
		if pr.identities[n] {
			return true
		}
	}
	return false
}
