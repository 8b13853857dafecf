package authz

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testPolicy = `
principals:
  - name: vtgate
    identities: ["spiffe://topod.local/ns/vitess/sa/vtgate", "cn:vtgate"]
    grants:
      - {role: read, paths: ["/"]}
  - name: vttablet
    identities: ["dns:vttablet.vitess.svc"]
    grants:
      - {role: read, paths: ["/vitess"]}
      - {role: write, paths: ["/vitess/*/tablets", "/vitess/global/keyspaces/*/shards/*/locks"]}
  - name: narrow
    identities: ["cn:narrow"]
    grants:
      - {role: read, paths: ["/vitess/global"]}
  - name: ops
    identities: ["cn:ops"]
    grants:
      - {role: admin, paths: ["/"]}
  - name: anyone
    identities: ["*"]
    grants:
      - {role: read, paths: ["/public"]}
`

func TestAllows(t *testing.T) {
	p, err := Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	vtgate := []string{"cn:vtgate"}
	tablet := []string{"dns:vttablet.vitess.svc", "cn:whatever"}
	stranger := []string{"cn:stranger"}
	for _, tc := range []struct {
		name  string
		names []string
		a     Access
		want  bool
	}{
		{"read anything", vtgate, Access{Role: Read, Key: "/vitess/global/keyspaces/ks/Keyspace"}, true},
		{"read the root", vtgate, Access{Role: Read, Key: "/", Prefix: true}, true},
		{"read outside absolute paths with a root grant", vtgate, Access{Role: Read, Key: "foo"}, true},
		{"read-only may not write", vtgate, Access{Role: Write, Key: "/vitess/zone1/tablets/zone1-1/Tablet"}, false},
		{"spiffe id", []string{"spiffe://topod.local/ns/vitess/sa/vtgate"}, Access{Role: Read, Key: "/x"}, true},
		{"wildcard segment", tablet, Access{Role: Write, Key: "/vitess/zone1/tablets/zone1-1/Tablet"}, true},
		{"wildcard is one segment", tablet, Access{Role: Write, Key: "/vitess/a/b/tablets/x"}, false},
		{"the grant's path itself", tablet, Access{Role: Write, Key: "/vitess/zone1/tablets"}, true},
		{"above the grant", tablet, Access{Role: Write, Key: "/vitess/zone1"}, false},
		{"a lock dir", tablet, Access{Role: Write, Key: "/vitess/global/keyspaces/ks/shards/-80/locks"}, true},
		{"the shard record beside it", tablet, Access{Role: Write, Key: "/vitess/global/keyspaces/ks/shards/-80/Shard"}, false},
		{"a segment that only starts the same", tablet, Access{Role: Write, Key: "/vitess/zone1/tabletsX/a"}, false},
		{"read under its read grant", tablet, Access{Role: Read, Key: "/vitess/global/", Prefix: true}, true},
		{"read a prefix covering more than the grant", tablet, Access{Role: Read, Key: "/vit", Prefix: true}, false},
		{"a partial last segment needs the one before", tablet, Access{Role: Read, Key: "/vitess/glo", Prefix: true}, true},
		{"a key outside absolute paths needs a root grant", tablet, Access{Role: Read, Key: "vitess/x"}, false},
		{"a prefix ending in its grant's last segment", []string{"cn:narrow"}, Access{Role: Read, Key: "/vitess/global/", Prefix: true}, true},
		{"a prefix that also covers a longer segment", []string{"cn:narrow"}, Access{Role: Read, Key: "/vitess/global", Prefix: true}, false},
		{"write includes read", tablet, Access{Role: Read, Key: "/vitess/zone1/tablets/x"}, true},
		{"write anywhere", tablet, Access{Role: Write, Anywhere: true}, true},
		{"admin anywhere is not write", tablet, Access{Role: Admin, Anywhere: true}, false},
		{"admin includes write", []string{"cn:ops"}, Access{Role: Write, Key: "/anything"}, true},
		{"admin over everything", []string{"cn:ops"}, Access{Role: Admin, Key: "/", Prefix: true}, true},
		{"unknown client", stranger, Access{Role: Read, Key: "/vitess/x"}, false},
		{"* matches any certificate", stranger, Access{Role: Read, Key: "/public/x"}, true},
		{"* needs a certificate", nil, Access{Role: Read, Key: "/public/x"}, false},
		{"no certificate, nothing", nil, Access{Role: Read, Anywhere: true}, false},
		{"grants add up over principals", append(append([]string{}, vtgate...), tablet...), Access{Role: Write, Key: "/vitess/z/tablets/t"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := p.Allows(tc.names, tc.a)
			if got != tc.want {
				t.Errorf("Allows(%v, %s %s) = %v, want %v", tc.names, tc.a.Role, tc.a, got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, policy, want string }{
		{"empty", ``, "no principals"},
		{"unknown field", "principals:\n- name: a\n  identities: [cn:a]\n  grant: []\n", "unknown field"},
		{"no name", "principals:\n- identities: [cn:a]\n", "no name"},
		{"twice", "principals:\n- {name: a, identities: [cn:a]}\n- {name: a, identities: [cn:b]}\n", "appears twice"},
		{"no identities", "principals:\n- {name: a}\n", "no identities"},
		{"bad identity", "principals:\n- {name: a, identities: [vtgate]}\n", `identity "vtgate"`},
		{"bad role", "principals:\n- {name: a, identities: [cn:a], grants: [{role: superuser, paths: [/]}]}\n", `unknown role "superuser"`},
		{"no paths", "principals:\n- {name: a, identities: [cn:a], grants: [{role: read}]}\n", "no paths"},
		{"relative path", "principals:\n- {name: a, identities: [cn:a], grants: [{role: read, paths: [vitess]}]}\n", "not absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.policy))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestSourceReload: a changed file is applied; a broken change is refused
// and the previous policy stays in force.
func TestSourceReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(s string) {
		// As a ConfigMap update does: a new file renamed over the old.
		tmp := path + ".new"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(testPolicy)
	src, err := Open(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	allowed := func() bool {
		ok, _ := src.Policy().Allows([]string{"cn:vtgate"}, Access{Role: Write, Key: "/x"})
		return ok
	}
	if allowed() {
		t.Fatal("vtgate may write under the first policy")
	}
	if _, err := src.reload(); err != nil || src.Loads.Load() != 1 {
		t.Fatalf("an unchanged file: err %v, loads %d, want 1", err, src.Loads.Load())
	}
	write(strings.Replace(testPolicy, "{role: read, paths: [\"/\"]}", "{role: write, paths: [\"/\"]}", 1))
	if _, err := src.reload(); err != nil {
		t.Fatal(err)
	}
	if !allowed() {
		t.Error("the changed policy was not applied")
	}
	write("principals: [")
	if _, err := src.reload(); err == nil {
		t.Error("a broken policy was accepted")
	}
	if !allowed() || src.Loads.Load() != 2 {
		t.Errorf("after a broken change: allowed %v, loads %d; want the previous policy in force", allowed(), src.Loads.Load())
	}
	if _, err := Open(path, nil); err == nil {
		t.Error("Open accepted a broken policy")
	}
}

// BenchmarkAllows: the check each request pays, against the policy
// deploy/ ships, for a tablet writing its record (the longest walk: it
// matches one principal of seven and tries its every grant).
func BenchmarkAllows(b *testing.B) {
	data, err := os.ReadFile("../../deploy/overlays/prod/topod-authz-policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		b.Fatal(err)
	}
	names := []string{"spiffe://topod.local/ns/topod/sa/vttablet", "dns:localhost", "cn:vttablet"}
	a := Access{Role: Write, Key: "/vitess/global/keyspaces/commerce/shards/-80/locks"}
	for b.Loop() {
		if ok, _ := p.Allows(names, a); !ok {
			b.Fatal("denied")
		}
	}
}
