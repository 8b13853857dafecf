package toposerver

// This file is in package toposerver, not toposerver_test as the other
// tests are, because checkPath is unexported.

import (
	"errors"
	"path"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzCheckPath checks checkPath against its doc comment on arbitrary
// strings, with and without allowRoot. It checks that checkPath never
// panics and gives the same answer twice; that it accepts exactly the
// absolute paths of at most maxPathBytes bytes, without a NUL byte, that
// path.Clean leaves as they are (so no empty, "." or ".." segment and no
// trailing "/"), "/" itself only with allowRoot; that every path accepted
// without allowRoot is accepted with it; that its errors are
// InvalidArgument to clients; and that dirPrefix of an accepted path is the
// path with one "/" after it.
func FuzzCheckPath(f *testing.F) {
	for _, p := range []string{
		"", "/", "//", "/a", "/a/", "//a", "/a//b", "/a/b/c",
		"/keyspaces/commerce/Keyspace", "/cells/zone1/SrvVSchema", "keyspaces/commerce",
		"/.", "/..", "/...", "/a/.", "/a/..", "/a/./b", "/a/../b", "/a/..b", "/a/b..", "/.a",
		"/a\x00b", "/\xff\xfe", "/ä/ö", "/a b/c", "\\a", "/a\\b",
		"/" + strings.Repeat("a", maxPathBytes-1), "/" + strings.Repeat("a", maxPathBytes),
		strings.Repeat("/a", maxPathBytes/2), strings.Repeat("/a", maxPathBytes/2) + "/",
	} {
		f.Add(p, false)
		f.Add(p, true)
	}
	f.Fuzz(func(t *testing.T, p string, allowRoot bool) {
		err := checkPath(p, allowRoot)
		if again := checkPath(p, allowRoot); (again == nil) != (err == nil) {
			t.Fatalf("checkPath(%q, %v) = %v, then %v", p, allowRoot, err, again)
		}
		want := len(p) <= maxPathBytes && strings.HasPrefix(p, "/") && !strings.Contains(p, "\x00") &&
			path.Clean(p) == p && (allowRoot || p != "/")
		if (err == nil) != want {
			t.Fatalf("checkPath(%q, %v) = %v, want accepted %v", p, allowRoot, err, want)
		}
		if err != nil {
			var inv invalidArgument
			if !errors.As(err, &inv) || status.Code(toStatus(err)) != codes.InvalidArgument {
				t.Fatalf("checkPath(%q, %v) = %v, not an InvalidArgument error", p, allowRoot, err)
			}
			return
		}
		if !allowRoot && checkPath(p, true) != nil {
			t.Fatalf("%q is accepted as a file but not as a directory", p)
		}
		// A clean path has no empty, "." or ".." segment, and no trailing
		// slash unless it is the root.
		for _, bad := range []string{"//", "/./", "/../"} {
			if p != "/" && strings.Contains(p+"/", bad) {
				t.Fatalf("accepted %q, which contains %q", p, bad)
			}
		}
		if prefix := dirPrefix(p); !strings.HasSuffix(prefix, "/") || strings.HasSuffix(prefix, "//") || strings.TrimSuffix(prefix, "/") != strings.TrimSuffix(p, "/") {
			t.Fatalf("dirPrefix(%q) = %q", p, prefix)
		}
	})
}
