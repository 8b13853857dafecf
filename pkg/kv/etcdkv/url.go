package etcdkv

import (
	"context"
	"fmt"
	"strings"

	"github.com/topod-io/topod/pkg/kv"
)

func init() {
	kv.Register("etcd", "etcd://host:port[,host:port...]", openURL)
}

// openURL opens etcd://host:port[,host:port...].
func openURL(ctx context.Context, rawURL, rest string, opts kv.OpenOptions) (kv.Backend, error) {
	var endpoints []string
	for _, e := range strings.Split(strings.TrimSuffix(rest, "/"), ",") {
		if e = strings.TrimSpace(e); e != "" {
			endpoints = append(endpoints, e)
		}
	}
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("backend %q: no etcd endpoints", rawURL)
	}
	return Open(ctx, endpoints, Options{TLS: opts.TLS})
}
