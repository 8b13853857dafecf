// Package topoplugin is the Vitess topo plugin for topod: a topo.Conn that
// talks gRPC to one or more topod replicas. Importing the package registers
// it as --topo-implementation topod:
//
//	--topo-implementation topod
//	--topo-global-server-address 127.0.0.1:15999[,10.0.0.2:15999...]
//	--topo-global-root /vitess/global
//
// Several comma-separated addresses are replicas of one topod service: the
// connection fails over between them, unary calls wait for a replica to be
// ready (bounded by --topod-request-timeout when the caller set no deadline),
// and watches resume on another replica, converging to the latest value.
// A connection carries all its watches on one WatchStream; when the stream
// breaks it opens another (on any replica) and each watch resumes from the
// revision it had reached.
//
// Contents over the inline limit topod reports (ServerInfo) are written as
// blobs uploaded before the record that refers to them: SrvVSchema split
// per keyspace (package srvvschema), so that a change uploads and a watcher
// fetches only the keyspaces that changed, any other large file in chunks.
// Blobs are read through a process-wide cache (--topod-blob-cache-bytes).
// Errors reach Vitess as package topoerr makes them: the topo error of
// their kind, keeping topod's gRPC status.
package topoplugin

import (
	"context"
	"fmt"
	"net"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"vitess.io/vitess/go/vt/servenv"
	"vitess.io/vitess/go/vt/topo"
	"vitess.io/vitess/go/vt/utils"

	"github.com/topod-io/topod/pkg/cache"
	"github.com/topod-io/topod/pkg/tlsconfig"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Name is the --topo-implementation value of this plugin.
const Name = "topod"

var (
	requestTimeout = 30 * time.Second
	lockTTL        = 30 * time.Second
	// tlsFiles, when any is set, make connections to topod use TLS.
	tlsFiles tlsconfig.Files
)

func init() {
	for _, cmd := range topo.FlagBinaries {
		servenv.OnParseFor(cmd, RegisterFlags)
	}
	topo.RegisterFactory(Name, Factory{})
}

// RegisterFlags adds the plugin's --topod-* flags to fs. Vitess binaries
// get them through servenv; other tools that open a topod topology
// (vschemad, topod migrate) call it.
func RegisterFlags(fs *pflag.FlagSet) {
	utils.SetFlagDurationVar(fs, &requestTimeout, "topod-request-timeout", requestTimeout, "Deadline of a topod request whose caller set none; a request waits this long for a topod replica to become reachable.")
	utils.SetFlagDurationVar(fs, &lockTTL, "topod-lock-ttl", lockTTL, "Lease TTL of topo locks and leader elections held through topod: how long a lock outlives a topod replica that died while holding it.")
	utils.SetFlagInt64Var(fs, &blobCacheBytes, "topod-blob-cache-bytes", blobCacheBytes, "Memory bound of the process-wide cache of topod blobs (the pieces large files such as SrvVSchema are split into), in bytes.")
	utils.SetFlagStringVar(fs, &tlsFiles.CA, "topod-tls-ca", "", "CA certificates (PEM) to verify topod's certificate by; setting any --topod-tls-* flag makes the connection use TLS (with the system's roots if this one is empty).")
	utils.SetFlagStringVar(fs, &tlsFiles.Cert, "topod-tls-cert", "", "Client certificate (PEM) to present to topod, for a topod started with --tls-client-ca.")
	utils.SetFlagStringVar(fs, &tlsFiles.Key, "topod-tls-key", "", "Private key (PEM) of --topod-tls-cert.")
	utils.SetFlagStringVar(fs, &tlsFiles.ServerName, "topod-tls-server-name", "", "Name topod's certificate must carry, if not the host in the server address.")
}

// Factory is the topo.Factory of the plugin.
type Factory struct{}

// HasGlobalReadOnlyCell is part of topo.Factory.
func (Factory) HasGlobalReadOnlyCell(serverAddr, root string) bool { return false }

// Create is part of topo.Factory.
func (Factory) Create(cell, serverAddr, root string) (topo.Conn, error) {
	return NewConn(serverAddr, root)
}

// Conn is a topo.Conn on topod.
type Conn struct {
	root   string
	cc     *grpc.ClientConn
	client topodv1.TopoClient

	// ctx ends with Close, and with it every watch, lock and election of the
	// connection.
	ctx    context.Context
	cancel context.CancelFunc

	// seen is the highest backend revision this connection has written or
	// read: reads ask topod for at least that revision, so the connection
	// reads its own writes whichever replica or cache answers.
	seen atomic.Int64

	// watches carries the connection's watches on one stream.
	watches *watchStream

	info     atomic.Pointer[topodv1.ServerInfoResponse]
	blobs    *cache.Cache
	counters blobCounters
}

var resolverSeq atomic.Int64

// NewConn connects to the topod replicas at serverAddr (comma-separated
// host:port list) serving the Vitess tree at root. It does not wait for a
// replica to be reachable: calls do. Blobs are cached in the process-wide
// cache (--topod-blob-cache-bytes).
func NewConn(serverAddr, root string) (*Conn, error) {
	return NewConnWithCache(serverAddr, root, sharedBlobCache())
}

// NewConnWithCache is NewConn with a blob cache of the caller's, e.g. to
// measure what one client fetches.
func NewConnWithCache(serverAddr, root string, blobs *cache.Cache) (*Conn, error) {
	var addrs []resolver.Address
	for _, a := range strings.Split(serverAddr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			// Under TLS each replica's certificate is checked against
			// --topod-tls-server-name or else the host of its own
			// address (both the operator's flag values).
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				return nil, fmt.Errorf("topod: server address %q: %w", a, err)
			}
			if tlsFiles.ServerName != "" {
				host = tlsFiles.ServerName
			}
			addrs = append(addrs, resolver.Address{Addr: a, ServerName: host})
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("topod: no server address in %q", serverAddr)
	}
	if !path.IsAbs(root) {
		return nil, fmt.Errorf("topod: root %q is not an absolute path", root)
	}
	// Each connection gets its own static resolver over the replica list;
	// pick_first with a shuffled list spreads clients over the replicas and
	// moves to another one when the current one fails.
	creds, err := transportCredentials()
	if err != nil {
		return nil, err
	}
	r := manual.NewBuilderWithScheme(fmt.Sprintf("topod-%d", resolverSeq.Add(1)))
	r.InitialState(resolver.State{Addresses: addrs})
	cc, err := grpc.NewClient(r.Scheme()+":///topod",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"pick_first":{"shuffleAddressList":true}}]}`),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)),
	)
	if err != nil {
		return nil, fmt.Errorf("topod: connect to %s: %w", serverAddr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		root:   path.Clean(root),
		blobs:  blobs,
		cc:     cc,
		client: topodv1.NewTopoClient(cc),
		ctx:    ctx,
		cancel: cancel,
	}
	c.watches = &watchStream{c: c, watches: map[int64]*follower{}}
	return c, nil
}

// transportCredentials returns TLS credentials when a --topod-tls-* flag is
// set, plaintext otherwise. The name a replica's certificate must carry is
// set per address (gRPC takes it from there, not from the tls.Config).
func transportCredentials() (credentials.TransportCredentials, error) {
	if !tlsFiles.Enabled() {
		return insecure.NewCredentials(), nil
	}
	c, err := tlsconfig.Client(tlsFiles)
	if err != nil {
		return nil, fmt.Errorf("topod: --topod-tls-*: %w", err)
	}
	return credentials.NewTLS(c), nil
}

// Close is part of topo.Conn.
func (c *Conn) Close() {
	c.cancel()
	c.cc.Close()
}

// observe records a revision the connection has seen.
func (c *Conn) observe(rev int64) {
	for {
		cur := c.seen.Load()
		if rev <= cur || c.seen.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// fullPath joins the root and a path relative to it. ".." segments are
// refused rather than cleaned away, so a path never escapes the root.
func (c *Conn) fullPath(p string) (string, error) {
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("topod: path %q has a \"..\" segment", p)
		}
	}
	return path.Join(c.root, p), nil
}

// unary bounds a unary call whose caller set no deadline, and makes it wait
// for a reachable replica rather than fail at once.
func (c *Conn) unary(ctx context.Context) (context.Context, context.CancelFunc, grpc.CallOption) {
	if _, ok := ctx.Deadline(); ok {
		ctx, cancel := context.WithCancel(ctx)
		return ctx, cancel, grpc.WaitForReady(true)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	return ctx, cancel, grpc.WaitForReady(true)
}
