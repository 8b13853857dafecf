// Package etcdkv is the distributed kv.Backend: topod's store on an etcd v3
// cluster, through go.etcd.io/etcd/client/v3, as Vitess's etcd2topo uses
// etcd. etcd's errors are returned as package kv's.
//
// The kv model maps onto etcd directly: a key's version is its etcd
// ModRevision, a revision is etcd's store revision, and a kv.Lease is an etcd
// lease kept alive by a concurrency.Session.
package etcdkv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/topod-io/topod/pkg/kv"
)

// DefaultDialTimeout bounds how long Open waits for etcd to answer.
const DefaultDialTimeout = 5 * time.Second

// Keep-alive pings on the client connection, so that a member that vanished
// without closing its TCP connections is noticed and the client fails over.
// etcd's default minimum ping interval (--grpc-keepalive-min-time) is 5 s.
const (
	keepAliveTime    = 10 * time.Second
	keepAliveTimeout = 5 * time.Second
)

// Options configure Open. The zero value is a plain-text connection without
// authentication.
type Options struct {
	// DialTimeout bounds how long Open waits for the cluster to answer
	// (default DefaultDialTimeout).
	DialTimeout time.Duration
	// TLS, if set, secures the connection (client certificate, CA).
	TLS *tls.Config
	// Username and Password authenticate to an etcd with auth enabled.
	Username, Password string
	// Logger receives the etcd client's logs; nil means errors only to
	// stderr (the client warns about every failed request it retries,
	// including the expected ones, such as put's lease-keeping attempt on
	// a missing key).
	Logger *zap.Logger
}

// Backend is a kv.Backend on an etcd cluster. It is safe for concurrent use.
type Backend struct {
	cli       *clientv3.Client
	endpoints string
	closed    atomic.Bool
	done      chan struct{} // closed by Close
	rewatches atomic.Int64  // etcd watches re-established after etcd ended them
	renewer   renewer       // the one keep-alive stream of RenewLease
}

var _ kv.Backend = (*Backend)(nil)

// Open connects to the etcd cluster at endpoints (host:port or URLs) and
// checks that it answers within opts.DialTimeout: the etcd client connects
// lazily, so an unreachable cluster would otherwise only show on the first
// operation.
func Open(ctx context.Context, endpoints []string, opts Options) (*Backend, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("etcdkv: no endpoints")
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.Logger == nil {
		cfg := zap.NewProductionConfig()
		cfg.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
		if l, err := cfg.Build(); err == nil {
			opts.Logger = l
		}
	}
	addrs := strings.Join(endpoints, ",")
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          opts.DialTimeout,
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: keepAliveTimeout,
		TLS:                  opts.TLS,
		Username:             opts.Username,
		Password:             opts.Password,
		Logger:               opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd at %s: %w", addrs, err)
	}
	if err := probe(ctx, cli, opts.DialTimeout); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd at %s unreachable (no answer within %v): %w", addrs, opts.DialTimeout, err)
	}
	return &Backend{cli: cli, endpoints: addrs, done: make(chan struct{})}, nil
}

// probe asks the cluster for its member list, which any client may read
// whatever its permissions, and which any member answers.
func probe(ctx context.Context, cli *clientv3.Client, timeout time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := cli.MemberList(pctx)
	if err != nil && pctx.Err() != nil {
		// The client reports a timeout as a gRPC status; report the
		// context's own error, which errors.Is understands.
		return pctx.Err()
	}
	return err
}

// Client returns the underlying etcd client, for what package kv does not
// cover (maintenance, metrics). Closing it closes the backend.
func (b *Backend) Client() *clientv3.Client { return b.cli }

// Close closes the client. Watches end with kv.ErrClosed; leases are no
// longer kept alive and expire after their TTL.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	close(b.done)
	b.renewer.close()
	if err := b.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close etcd client for %s: %w", b.endpoints, err)
	}
	return nil
}
