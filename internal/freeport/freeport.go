// Package freeport picks loopback TCP ports for test servers that may be
// stopped and started again on the same port.
//
// Asking the kernel for port 0 returns a port from its ephemeral range, the
// same range it draws the source ports of outgoing connections from: once a
// server on such a port stops, any client connection in any process on the
// machine may take the port, and the restart fails with "address already in
// use". Ports here are drawn at random below the ephemeral range instead,
// where the kernel never assigns ports by itself, and each is reserved for
// the life of the process with a lock file that the other processes picking
// ports here respect (go test runs several test packages at once).
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// lowest is the lowest port handed out: above the well-known and registered
// ports local services commonly listen on (topod's demo uses 15xxx).
const lowest = 20000

// ephemeralRange is where Linux puts the ephemeral range; the real one is
// read from /proc when available.
var ephemeralRange = [2]int{32768, 60999}

// Pick returns n distinct ports free on 127.0.0.1 at the time of the call,
// none in the kernel's ephemeral range when the machine leaves room below
// it (otherwise it falls back to ports the kernel picks).
func Pick(n int) ([]int, error) {
	lo, hi := lowest, ephemeralStart()-1
	if hi-lo < 1000 {
		return kernelPorts(n)
	}
	ports := make([]int, 0, n)
	seen := make(map[int]bool, n)
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts > 100*n {
			return nil, fmt.Errorf("pick %d free ports in %d-%d: too many in use", n, lo, hi)
		}
		p := lo + rand.IntN(hi-lo+1)
		if seen[p] {
			continue
		}
		seen[p] = true
		lock, ok := reserve(p)
		if !ok {
			continue
		}
		l, ok := listen(p)
		if !ok {
			release(lock)
			continue
		}
		held = append(held, l)
		ports = append(ports, p)
	}
	return ports, nil
}

// reserved holds, for the life of the process, an exclusive flock on
// TMPDIR/topod-freeport/PORT for every port Pick handed out. Test packages
// run side by side (go test runs several at once), each picking ports for
// servers it starts later or stops and starts again: the locks keep two of
// them from picking the same port while both run, and one process from
// picking a port twice. The kernel drops them when the process exits.
var (
	reservedMu sync.Mutex
	reserved   = map[int]*os.File{}
)

// reserve takes port's lock, reporting false if another holder has it.
// When the lock directory cannot be used, every port is taken to be free,
// and the bind check alone decides, as before.
func reserve(port int) (*os.File, bool) {
	dir := filepath.Join(os.TempDir(), "topod-freeport")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, true
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	reservedMu.Lock()
	reserved[port] = f
	reservedMu.Unlock()
	return f, true
}

// release gives up a lock reserve took, for a port found in use.
func release(f *os.File) {
	if f == nil {
		return
	}
	reservedMu.Lock()
	for p, g := range reserved {
		if g == f {
			delete(reserved, p)
		}
	}
	reservedMu.Unlock()
	f.Close()
}

// PickBase returns a port base such that base+o is free on 127.0.0.1, and
// reserved as Pick reserves ports, for every o of offsets (each >= 0): for
// servers that derive their ports from one base, as the demo's tablets do.
func PickBase(offsets ...int) (int, error) {
	lo, hi := lowest, ephemeralStart()-1-slices.Max(append([]int{0}, offsets...))
	if hi-lo < 1000 {
		return 0, fmt.Errorf("pick a port base for offsets %v: no room below the ephemeral range", offsets)
	}
	for attempt := 0; attempt < 1000; attempt++ {
		base := lo + rand.IntN(hi-lo+1)
		var locks []*os.File
		ok := true
		for _, o := range offsets {
			lock, free := reserve(base + o)
			if free {
				var l net.Listener
				if l, free = listen(base + o); free {
					l.Close()
				}
			}
			locks = append(locks, lock)
			if !free {
				ok = false
				break
			}
		}
		if ok {
			return base, nil
		}
		for _, l := range locks {
			release(l)
		}
	}
	return 0, fmt.Errorf("pick a port base for offsets %v in %d-%d: too many in use", offsets, lo, hi)
}

// listen listens on 127.0.0.1:port, reporting whether it could.
func listen(port int) (net.Listener, bool) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	return l, err == nil
}

// Listen listens on a loopback port picked as Pick does, and returns the
// listener itself: nothing can take the port between picking and serving.
func Listen() (net.Listener, error) {
	for attempt := 0; ; attempt++ {
		ports, err := Pick(1)
		if err != nil {
			return nil, err
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])))
		if err == nil || attempt == 10 {
			return l, err
		}
	}
}

// Addr returns one free loopback address, host:port.
func Addr() (string, error) {
	ports, err := Pick(1)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), nil
}

// ephemeralStart returns the first port of the kernel's ephemeral range.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return ephemeralRange[0]
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return ephemeralRange[0]
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return ephemeralRange[0]
	}
	return lo
}

// kernelPorts lets the kernel pick, holding every listener until all n are
// picked so none is returned twice.
func kernelPorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var held []net.Listener
	var errs []error
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			errs = append(errs, fmt.Errorf("pick a free port: %w", err))
			break
		}
		held = append(held, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range held {
		l.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ports, nil
}
