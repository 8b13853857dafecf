package kv

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// OpenOptions configure Open beyond what the URL says.
type OpenOptions struct {
	// TLS, if set, secures the connection to a remote backend (etcd); an
	// embedded one (bolt) ignores it.
	TLS *tls.Config
	// ReadOnly opens an embedded backend's existing file for reading only
	// (boltkv.Options.ReadOnly): for a caller that only reads (topod
	// inspect). A remote backend (etcd) ignores it: the caller must not
	// write.
	ReadOnly bool
}

// An Opener opens the backend rawURL names; rest is what follows
// "scheme://" in it.
type Opener func(ctx context.Context, rawURL, rest string, opts OpenOptions) (Backend, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
	// usage shows each registered scheme's URL form, for errors.
	usage = map[string]string{}
)

// Register makes a backend available to Open under a URL scheme; form is
// how its URLs look (for error messages). Backends call it from their init
// function, as database/sql drivers do, so that the command, not the
// server, chooses which backends are linked in. It panics on a scheme
// registered twice.
func Register(scheme, form string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[scheme]; dup {
		panic(fmt.Sprintf("kv: backend scheme %q registered twice", scheme))
	}
	registry[scheme], usage[scheme] = open, form
}

// Open opens the backend a URL names, e.g. bolt:///var/lib/topod/topo.db or
// etcd://10.0.0.1:2379,10.0.0.2:2379, with the package registering its
// scheme linked in (boltkv, etcdkv). Errors name the URL and say what
// URLs are accepted.
func Open(ctx context.Context, rawURL string, opts OpenOptions) (Backend, error) {
	registryMu.RLock()
	schemes := slices.Sorted(maps.Keys(registry))
	forms := make([]string, len(schemes))
	for i, s := range schemes {
		forms[i] = usage[s]
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	open := registry[scheme]
	registryMu.RUnlock()
	want := strings.Join(forms, " or ")
	switch {
	case !ok:
		return nil, fmt.Errorf("backend %q: want %s", rawURL, want)
	case open == nil:
		return nil, fmt.Errorf("backend %q: unknown scheme %q (want %s)", rawURL, scheme, strings.Join(schemes, " or "))
	}
	return open(ctx, rawURL, rest, opts)
}
