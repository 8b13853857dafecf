package topoplugin

import (
	"fmt"
	"strconv"

	"vitess.io/vitess/go/vt/topo"
)

// Version is topod's topo.Version: the backend revision of a file's last
// write (etcd's ModRevision, bolt's revision counter).
type Version int64

// String is part of topo.Version.
func (v Version) String() string { return strconv.FormatInt(int64(v), 10) }

// versionOf returns the revision of a topo.Version, 0 for nil (no
// condition).
func versionOf(v topo.Version) (int64, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case Version:
		return int64(v), nil
	default:
		return 0, fmt.Errorf("topod: version %v is a %T, not a topod version", v, v)
	}
}
