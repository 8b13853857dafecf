package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Identity is who a child process runs as.
type Identity struct {
	Name     string
	UID, GID uint32
	// Switch is set when the caller is root and processes must switch to
	// UID/GID; otherwise they run as the caller, who is UID/GID.
	Switch bool
}

// EnsureUser returns the identity to run processes that refuse root (as
// Vitess's do) as: the caller if the caller is not root, else the system
// user name, created (with useradd --system) if it does not exist.
func EnsureUser(name string) (*Identity, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("current user: %w", err)
		}
		return &Identity{Name: u.Username, UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}, nil
	}
	u, err := user.Lookup(name)
	if errors.As(err, new(user.UnknownUserError)) {
		out, uerr := exec.Command("useradd", "--system", "--no-create-home", "--user-group",
			"--shell", "/usr/sbin/nologin", name).CombinedOutput()
		// Another process (a parallel test) may have created it meanwhile.
		if u, err = user.Lookup(name); err != nil {
			return nil, fmt.Errorf("create user %s: useradd: %v: %s", name, uerr, strings.TrimSpace(string(out)))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("look up user %s: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("user %s is root: Vitess refuses to run as root", name)
	}
	return &Identity{Name: name, UID: uint32(uid), GID: uint32(gid), Switch: true}, nil
}

// credential returns the credential a child process runs with, or nil to
// run it as the caller.
func (id *Identity) credential() *syscall.Credential {
	if id == nil || !id.Switch {
		return nil
	}
	return &syscall.Credential{Uid: id.UID, Gid: id.GID, Groups: []uint32{}}
}

// MkdirAll creates dir (and its parents) and makes dir itself owned by the
// identity, so that its processes can write there.
func (id *Identity) MkdirAll(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if id != nil && id.Switch {
		if err := os.Chown(dir, int(id.UID), int(id.GID)); err != nil {
			return fmt.Errorf("chown %s to %s: %w", dir, id.Name, err)
		}
	}
	return nil
}

// CheckAccess reports an error naming the first directory the identity
// cannot traverse on the way to path (e.g. a repository cloned under a
// root-only home directory), and whether it can execute path when exec is
// set. The check reads permission bits only: no ACLs.
func (id *Identity) CheckAccess(path string, exec bool) error {
	if id == nil || !id.Switch {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	var dirs []string
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if !id.may(dirs[i], 0o1) {
			return fmt.Errorf("user %s cannot reach %s: directory %s is not searchable by it (clone the repository where other users can read it, or run as a non-root user)", id.Name, abs, dirs[i])
		}
	}
	if exec && !id.may(abs, 0o1) {
		return fmt.Errorf("user %s cannot execute %s", id.Name, abs)
	}
	return nil
}

// may reports whether the identity has permission bit perm (1 execute, 2
// write, 4 read) on path.
func (id *Identity) may(path string, perm os.FileMode) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	mode := fi.Mode().Perm()
	switch {
	case st.Uid == id.UID:
		return mode&(perm<<6) != 0
	case st.Gid == id.GID:
		return mode&(perm<<3) != 0
	default:
		return mode&perm != 0
	}
}
