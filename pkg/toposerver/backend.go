package toposerver

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/kv/etcdkv"
)

// OpenBackend opens the backend a --backend URL names:
//
//	bolt:///var/lib/topod/topo.db      one bbolt file (the embedded default)
//	etcd://10.0.0.1:2379,10.0.0.2:2379 an etcd cluster
//
// An empty URL means bolt at dataDir/topo.db. etcdTLS, if set, secures the
// connection to etcd (ignored for bolt).
func OpenBackend(ctx context.Context, rawURL, dataDir string, etcdTLS *tls.Config) (kv.Backend, error) {
	if rawURL == "" {
		rawURL = "bolt://" + filepath.Join(dataDir, "topo.db")
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("backend %q: want bolt:///path/to/topo.db or etcd://host:port[,host:port...]", rawURL)
	}
	switch scheme {
	case "bolt":
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", rawURL, err)
		}
		p := u.Path
		if u.Host != "" {
			// bolt://relative/path.db
			p = filepath.Join(u.Host, u.Path)
		}
		if p == "" {
			return nil, fmt.Errorf("backend %q: no bolt file path", rawURL)
		}
		return boltkv.Open(p, boltkv.Options{})
	case "etcd":
		var endpoints []string
		for _, e := range strings.Split(strings.TrimSuffix(rest, "/"), ",") {
			if e = strings.TrimSpace(e); e != "" {
				endpoints = append(endpoints, e)
			}
		}
		if len(endpoints) == 0 {
			return nil, fmt.Errorf("backend %q: no etcd endpoints", rawURL)
		}
		return etcdkv.Open(ctx, endpoints, etcdkv.Options{TLS: etcdTLS})
	default:
		return nil, fmt.Errorf("backend %q: unknown scheme %q (want bolt or etcd)", rawURL, scheme)
	}
}
