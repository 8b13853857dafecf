package topoplugin

import (
	"strings"
	"testing"
)

// TestPathsStayUnderRoot: a ".." segment is refused before any request, so a
// Vitess path can never reach outside the connection's root.
func TestPathsStayUnderRoot(t *testing.T) {
	// No server at this address: a request would time out, not fail fast.
	c, err := NewConn("127.0.0.1:1", "/vitess/global")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	for _, p := range []string{"../x", "keyspaces/../../cell1/SrvVSchema", ".."} {
		if _, _, err := c.Get(ctx, p); err == nil || !strings.Contains(err.Error(), `".." segment`) {
			t.Errorf("Get(%q) = %v", p, err)
		}
		if _, err := c.Create(ctx, p, nil); err == nil {
			t.Errorf("Create(%q) worked", p)
		}
		if _, err := c.Lock(ctx, p, ""); err == nil {
			t.Errorf("Lock(%q) worked", p)
		}
	}
	if got, err := c.fullPath("/keyspaces/ks/"); err != nil || got != "/vitess/global/keyspaces/ks" {
		t.Errorf("fullPath = %q, %v", got, err)
	}
	for _, bad := range []struct{ addr, root string }{{"", "/r"}, {" , ", "/r"}, {"127.0.0.1:1", "relative"}} {
		if _, err := NewConn(bad.addr, bad.root); err == nil {
			t.Errorf("NewConn(%q, %q) worked", bad.addr, bad.root)
		}
	}
}
