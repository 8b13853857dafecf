package toposerver

import (
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxPathBytes bounds the length of a path or prefix in a request.
const maxPathBytes = 4096

// checkPath validates an absolute, clean path: it starts with "/", has no
// empty, "." or ".." segment, no trailing "/" (except the root itself), no NUL
// byte and at most maxPathBytes bytes. allowRoot says whether "/" itself is
// acceptable (directories yes, files no).
// ReservedPrefix holds topod's own keys (the blob collector's lock): no
// client may write, delete, lock or campaign under it, on either API.
const ReservedPrefix = "/topod/"

// checkWritable refuses a write, delete, lock or campaign at p (already a
// valid path) under ReservedPrefix.
func checkWritable(p string) error {
	if strings.HasPrefix(p+"/", ReservedPrefix) {
		return status.Errorf(codes.PermissionDenied, "%s is under %s, topod's own keys: clients may not change them", p, ReservedPrefix)
	}
	return nil
}

func checkPath(p string, allowRoot bool) error {
	switch {
	case p == "":
		return invalid(fmt.Errorf("path is empty"))
	case len(p) > maxPathBytes:
		return invalid(fmt.Errorf("path of %d bytes is over the %d-byte limit", len(p), maxPathBytes))
	case p[0] != '/':
		return invalid(fmt.Errorf("path %q is relative: paths must start with /", p))
	case strings.IndexByte(p, 0) >= 0:
		return invalid(fmt.Errorf("path %q contains a NUL byte", p))
	case p == "/":
		if !allowRoot {
			return invalid(fmt.Errorf("path / is a directory, not a file"))
		}
		return nil
	case strings.HasSuffix(p, "/"):
		return invalid(fmt.Errorf("path %q ends with /", p))
	}
	for _, seg := range strings.Split(p[1:], "/") {
		switch seg {
		case "":
			return invalid(fmt.Errorf("path %q has an empty segment", p))
		case ".", "..":
			return invalid(fmt.Errorf("path %q has a %q segment", p, seg))
		}
	}
	return nil
}

// dirPrefix is the key prefix of everything under directory p.
func dirPrefix(p string) string {
	if p == "/" {
		return "/"
	}
	return p + "/"
}
