// Command topod serves a Vitess topology over gRPC for the topod topo plugin
// (--topo-implementation topod), on the embedded bolt backend or on etcd.
//
//	topod --listen 127.0.0.1:15999 --backend bolt:///var/lib/topod/topo.db
//	topod --listen :15999 --backend etcd://10.0.0.1:2379,10.0.0.2:2379
//
// With no --backend, topod keeps its data in --data-dir/topo.db.
// SIGTERM or SIGINT shut it down cleanly: streams are closed, the locks and
// leaderships they held released, and the backend closed.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/topod-io/topod/pkg/authz"
	"github.com/topod-io/topod/pkg/blobgc"
	"github.com/topod-io/topod/pkg/blobstore"
	_ "github.com/topod-io/topod/pkg/blobstore/fileblob"
	_ "github.com/topod-io/topod/pkg/blobstore/s3blob"
	"github.com/topod-io/topod/pkg/kv"
	_ "github.com/topod-io/topod/pkg/kv/boltkv"
	_ "github.com/topod-io/topod/pkg/kv/etcdkv"
	"github.com/topod-io/topod/pkg/record"
	"github.com/topod-io/topod/pkg/tlsconfig"
	"github.com/topod-io/topod/pkg/toposerver"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "topod:", err)
		os.Exit(1)
	}
}

// serveFlags are the flags of the server.
type serveFlags struct {
	commonFlags
	listen         string
	tls            tlsconfig.Files
	authzPolicy    string
	inlineLimit    int
	blobCacheBytes int64
	metricsListen  string
	mirrorPrefixes []string
	mirrorMaxBytes int64
	mirrorStale    time.Duration
	lockTTL        time.Duration
	shutdownGrace  time.Duration
	gcInterval     time.Duration
	gcGrace        time.Duration
	blobTakeover   string
	etcdAPI        bool
	etcdWindow     int
	etcdWindowSize int64
	etcdProgress   time.Duration
	name           string
	advertise      string
	limits         limitFlags
}

// limitFlags are the server's resource limits (toposerver.Options.Max*).
type limitFlags struct {
	watchesPerStream int
	backlog          int
	watches          int
	lockTTL          time.Duration
	streams          int
	listPageBytes    int
	sendMsgBytes     int
	putBlobs         int
	getBlobs         int
	missingBlobs     int
}

func newRootCommand() *cobra.Command {
	f := serveFlags{}
	cmd := &cobra.Command{
		Use:           "topod",
		Short:         "topod serves a Vitess topology to the topod topo plugin",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return serve(ctx, f)
		},
	}
	cmd.AddCommand(newGCCommand(), newMigrateCommand(), newHealthCommand(), newInspectCommand())
	fs := cmd.Flags()
	fs.StringVar(&f.listen, "listen", "127.0.0.1:15999", "address of the gRPC server")
	fs.StringVar(&f.tls.Cert, "tls-cert", "", "TLS certificate (PEM) of the gRPC server; with --tls-key, topod speaks TLS only (the plugin's --topod-tls-* flags)")
	fs.StringVar(&f.tls.Key, "tls-key", "", "private key (PEM) of --tls-cert")
	fs.StringVar(&f.tls.CA, "tls-client-ca", "", "CA certificates (PEM) client certificates must be signed by: with it, only clients presenting one get in (mutual TLS); needs --tls-cert")
	fs.StringVar(&f.authzPolicy, "authz-policy", "", "authorization policy (YAML, see SECURITY.md): which client certificate identities may read, write or administer which paths, on both topod.v1 and the etcd API; reread on change (an invalid change is logged and the previous policy stays); needs --tls-client-ca. Empty: every client past TLS may do anything")
	f.commonFlags.register(fs)
	fs.IntVar(&f.inlineLimit, "inline-limit", record.DefaultInlineLimit, "files up to this many bytes are stored in their record; larger ones as blobs (at most 63 KiB: no backend value exceeds 64 KiB)")
	fs.Int64Var(&f.blobCacheBytes, "blob-cache-bytes", toposerver.DefaultBlobCacheBytes, "memory bound of topod's blob cache, in bytes")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "address of the HTTP server for /metrics (Prometheus) and /debug/status; empty: none")
	fs.StringSliceVar(&f.mirrorPrefixes, "mirror-prefixes", []string{"/"}, "key prefixes topod mirrors in memory, each with one backend watch serving every client watch and read under it; empty (--mirror-prefixes=): no mirror, every read and watch goes to the backend and the etcd API is off")
	fs.DurationVar(&f.mirrorStale, "mirror-max-staleness", toposerver.DefaultMirrorMaxStaleness, "on etcd, a mirror serves reads only while etcd confirmed it current this recently (its watch's events, or progress notifications asked for every quarter of it); past it, cut off from etcd, reads go to etcd instead of answering stale; 0: no bound")
	fs.Int64Var(&f.mirrorMaxBytes, "mirror-max-bytes", toposerver.DefaultMirrorMaxBytes, "memory bound of each mirrored prefix; past it the mirror keeps every key but reads the values that do not fit from the backend (topod_mirror_evicted_values)")
	// The names of earlier releases, which called the mirror a cache (as
	// --blob-cache-bytes still names the blob cache): accepted, with a
	// warning.
	fs.StringSliceVar(&f.mirrorPrefixes, "cache-prefixes", []string{"/"}, "")
	fs.Int64Var(&f.mirrorMaxBytes, "cache-max-bytes", toposerver.DefaultMirrorMaxBytes, "")
	_ = fs.MarkDeprecated("cache-prefixes", "use --mirror-prefixes")
	_ = fs.MarkDeprecated("cache-max-bytes", "use --mirror-max-bytes")
	fs.DurationVar(&f.lockTTL, "lock-ttl", toposerver.DefaultLockTTL, "lease TTL of locks and elections whose client asked for none")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "how long a shutdown waits for requests in flight")
	fs.DurationVar(&f.gcInterval, "gc-interval", 0, "run blob garbage collection this often (e.g. 1h; one replica at a time, by a lock in the backend); 0: never (see topod gc)")
	registerGCGrace(fs, &f.gcGrace, &f.blobTakeover)
	fs.BoolVar(&f.etcdAPI, "etcd-api", true, "also serve etcd's v3 gRPC API on --listen, behind the same TLS: stock etcd2 Vitess binaries (--topo-implementation etcd2), etcdctl and any etcd v3 client use topod as they would etcd, reading and writing the same data as the plugin; needs the mirror (--mirror-prefixes)")
	fs.IntVar(&f.etcdWindow, "etcd-watch-window-events", toposerver.DefaultEtcdWatchWindowEvents, "etcd API: how many recent events topod keeps, per mirrored prefix, for watches from a past revision; a watch from before them is answered as compacted and its client re-reads")
	fs.Int64Var(&f.etcdWindowSize, "etcd-watch-window-bytes", toposerver.DefaultEtcdWatchWindowBytes, "etcd API: memory bound, in bytes, of the recent events kept per mirrored prefix (see --etcd-watch-window-events)")
	fs.DurationVar(&f.etcdProgress, "etcd-progress-notify-interval", 10*time.Minute, "etcd API: how often a watch that asked for progress notifications gets one while it has no events (etcd's --watch-progress-notify-interval)")
	fs.IntVar(&f.limits.watchesPerStream, "max-watches-per-stream", toposerver.DefaultMaxWatchesPerStream, "the most watches one stream may hold (a plugin connection's WatchStream, or an etcd client's Watch stream: a vtgate holds ~1 per keyspace plus a few); more are refused with ResourceExhausted")
	fs.IntVar(&f.limits.backlog, "max-stream-backlog", toposerver.DefaultMaxStreamBacklog, "the most initial-state entries (a file each) and answers one watch stream may have waiting to be sent; a stream over it that asks for another watch is ended with ResourceExhausted (its client is not reading it)")
	fs.IntVar(&f.limits.watches, "max-watches", toposerver.DefaultMaxWatches, "the most watches this topod holds, over both APIs (about 1 KiB each); more are refused with ResourceExhausted")
	fs.DurationVar(&f.limits.lockTTL, "max-lock-ttl", toposerver.DefaultMaxLockTTL, "the longest lease TTL a client may ask for a lock (named locks keep Vitess's 24 h); longer is refused with InvalidArgument")
	fs.IntVar(&f.limits.streams, "max-concurrent-streams", toposerver.DefaultMaxConcurrentStreams, "the most concurrent RPCs of one client connection (its watch stream, one stream per lock or election it holds, its calls); more wait for a free one")
	fs.IntVar(&f.limits.listPageBytes, "max-list-page-bytes", toposerver.DefaultMaxListPageBytes, "the most bytes of paths and contents in one page of a List (the plugin follows the pages, all read at the first page's revision); a page holds at least one file")
	fs.IntVar(&f.limits.sendMsgBytes, "max-send-msg-bytes", toposerver.DefaultMaxSendMsgBytes, fmt.Sprintf("the largest message topod sends, on both APIs (at least %d MiB: the largest blob; and at least --max-list-page-bytes + 1 MiB); an unpaged List (a plugin of an earlier release) or an etcd API answer over it is refused with ResourceExhausted", toposerver.MinMaxSendMsgBytes>>20))
	fs.IntVar(&f.limits.putBlobs, "max-put-blobs", toposerver.DefaultMaxPutBlobs, fmt.Sprintf("the most blobs one PutBlobs may carry (each a blob store request or two; at least %d, the plugin's batch); more are refused with InvalidArgument", toposerver.MinMaxPutBlobs))
	fs.IntVar(&f.limits.getBlobs, "max-get-blobs", toposerver.DefaultMaxGetBlobs, fmt.Sprintf("the most hashes one GetBlobs may ask for (at least %d, the plugin's batch); more are refused with InvalidArgument", toposerver.MinMaxGetBlobs))
	fs.IntVar(&f.limits.missingBlobs, "max-missing-blobs", toposerver.DefaultMaxMissingBlobs, fmt.Sprintf("the most hashes one MissingBlobs may ask about (each may be a blob store request; at least %d, the plugin's batch); more are refused with InvalidArgument", toposerver.MinMaxMissingBlobs))
	fs.StringVar(&f.name, "name", "", "this topod's name in the etcd API's member list and status (default: the host name)")
	fs.StringVar(&f.advertise, "advertise-address", "", "host:port clients reach this topod at, listed as its client URL in the etcd API's member list (clientv3 endpoint sync dials it); default: --listen, with the host name for an unspecified host")
	return cmd
}

func serve(ctx context.Context, f serveFlags) error {
	log, err := f.logger()
	if err != nil {
		return err
	}
	if f.gcInterval < 0 || f.gcGrace < blobgc.MinGrace {
		return fmt.Errorf("--gc-interval %v, --gc-grace %v: want an interval of 0 (off) or more and a grace of at least %v (a writer's upload-then-publish window)", f.gcInterval, f.gcGrace, blobgc.MinGrace)
	}
	if f.inlineLimit <= 0 || f.inlineLimit > record.MaxRecordBytes-1024 {
		return fmt.Errorf("--inline-limit %d: want 1 to %d bytes", f.inlineLimit, record.MaxRecordBytes-1024)
	}
	if l := f.limits; l.watchesPerStream <= 0 || l.backlog <= 0 || l.watches <= 0 || l.lockTTL < time.Second || l.streams <= 0 {
		return fmt.Errorf("--max-watches-per-stream %d, --max-stream-backlog %d, --max-watches %d, --max-lock-ttl %v, --max-concurrent-streams %d: want positive counts and a TTL of 1s or more",
			l.watchesPerStream, l.backlog, l.watches, l.lockTTL, l.streams)
	}
	if l := f.limits; l.sendMsgBytes < toposerver.MinMaxSendMsgBytes || l.listPageBytes <= 0 || l.listPageBytes > l.sendMsgBytes-1<<20 {
		return fmt.Errorf("--max-send-msg-bytes %d, --max-list-page-bytes %d: want messages of at least %d bytes (the largest blob, and framing) and pages of 1 byte to 1 MiB less than a message (a page may hold one file more)",
			l.sendMsgBytes, l.listPageBytes, toposerver.MinMaxSendMsgBytes)
	}
	if l := f.limits; l.putBlobs < toposerver.MinMaxPutBlobs || l.getBlobs < toposerver.MinMaxGetBlobs || l.missingBlobs < toposerver.MinMaxMissingBlobs {
		return fmt.Errorf("--max-put-blobs %d, --max-get-blobs %d, --max-missing-blobs %d: want at least %d, %d and %d (the plugin's batches)",
			l.putBlobs, l.getBlobs, l.missingBlobs, toposerver.MinMaxPutBlobs, toposerver.MinMaxGetBlobs, toposerver.MinMaxMissingBlobs)
	}
	if f.etcdWindow <= 0 || f.etcdWindowSize <= 0 || f.etcdProgress <= 0 {
		return fmt.Errorf("--etcd-watch-window-events %d, --etcd-watch-window-bytes %d, --etcd-progress-notify-interval %v: want positive values", f.etcdWindow, f.etcdWindowSize, f.etcdProgress)
	}
	var serverTLS *tls.Config
	switch {
	case f.tls.Cert != "" || f.tls.Key != "":
		if serverTLS, err = tlsconfig.Server(f.tls); err != nil {
			return fmt.Errorf("--tls-cert/--tls-key/--tls-client-ca: %w", err)
		}
	case f.tls.CA != "":
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	}
	var policy *authz.Source
	if f.authzPolicy != "" {
		if f.tls.CA == "" {
			return errors.New("--authz-policy needs --tls-client-ca: the policy grants by client certificate, and without mutual TLS no client has one")
		}
		if policy, err = authz.Open(f.authzPolicy, log); err != nil {
			return fmt.Errorf("--authz-policy: %w", err)
		}
		go policy.Run(ctx, authz.DefaultReloadInterval)
	}
	backend, blobs, err := open(ctx, f.commonFlags)
	if err != nil {
		return err
	}
	defer func() {
		if err := blobs.Close(); err != nil {
			log.Error("close blob store", "err", err)
		}
		if err := backend.Close(); err != nil {
			log.Error("close backend", "err", err)
		}
	}()
	// The blob store must be this backend's, kept with this grace: a
	// topod writing into another backend's store loses its blobs to that
	// backend's collections, and one with another grace breaks theirs.
	claimCtx, cancel := context.WithTimeout(ctx, time.Minute)
	err = claimBlobs(claimCtx, backend, blobs, f.commonFlags, "/", f.gcGrace, f.blobTakeover, false, log)
	cancel()
	if err != nil {
		return err
	}

	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	host, err := os.Hostname()
	if err != nil {
		host = "topod"
	}
	name := f.name
	if name == "" {
		name = host
	}
	advertise, err := advertiseAddress(f.advertise, lis.Addr(), host)
	if err != nil {
		lis.Close()
		return err
	}
	srv := toposerver.New(backend, toposerver.Options{
		Blobs:                      blobs,
		BlobCacheBytes:             f.blobCacheBytes,
		InlineLimit:                f.inlineLimit,
		LockTTL:                    f.lockTTL,
		MirrorPrefixes:             mirrorPrefixes(f.mirrorPrefixes),
		DisableMirror:              len(mirrorPrefixes(f.mirrorPrefixes)) == 0,
		MirrorMaxBytes:             f.mirrorMaxBytes,
		MirrorMaxStaleness:         f.mirrorStale,
		GCGrace:                    f.gcGrace,
		TLS:                        serverTLS,
		Authz:                      policy,
		DisableEtcdAPI:             !f.etcdAPI,
		EtcdWatchWindowEvents:      f.etcdWindow,
		EtcdWatchWindowBytes:       f.etcdWindowSize,
		EtcdProgressNotifyInterval: f.etcdProgress,
		MaxWatchesPerStream:        f.limits.watchesPerStream,
		MaxStreamBacklog:           f.limits.backlog,
		MaxWatches:                 f.limits.watches,
		MaxLockTTL:                 f.limits.lockTTL,
		MaxConcurrentStreams:       f.limits.streams,
		MaxListPageBytes:           f.limits.listPageBytes,
		MaxSendMsgBytes:            f.limits.sendMsgBytes,
		MaxPutBlobs:                f.limits.putBlobs,
		MaxGetBlobs:                f.limits.getBlobs,
		MaxMissingBlobs:            f.limits.missingBlobs,
		Name:                       name,
		Address:                    advertise,
		Logger:                     log,
	})
	if f.metricsListen != "" {
		mlis, err := net.Listen("tcp", f.metricsListen)
		if err != nil {
			srv.Close()
			return fmt.Errorf("metrics listen: %w", err)
		}
		hs := &http.Server{Handler: srv.DebugHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(mlis) }()
		defer hs.Close()
		log.Info("metrics serving", "listen", mlis.Addr().String())
	}
	g := grpc.NewServer(srv.GRPCServerOptions()...)
	srv.Register(g)

	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	log.Info("topod serving", "listen", lis.Addr().String(), "tls", describeTLS(f.tls), "etcd_api", srv.EtcdAPI(), "backend", describe(f.commonFlags), "blobs", blobsURL(f.commonFlags))
	if serverTLS == nil && !isLoopback(lis.Addr()) {
		log.Warn("serving without TLS on a non-loopback address: anyone who reaches it can read and change the topology; see --tls-cert, --tls-key and --tls-client-ca", "listen", lis.Addr().String())
	} else if policy == nil && !isLoopback(lis.Addr()) {
		log.Warn("serving without an authorization policy on a non-loopback address: every client past TLS may create, change and delete anything, and take any lock; see --authz-policy", "listen", lis.Addr().String())
	}
	if f.gcInterval > 0 {
		stopGC := startPeriodicGC(ctx, backend, blobs, f.gcInterval, f.gcGrace, describeBackend(ctx, f.commonFlags, backend), log)
		defer stopGC() // before the backend and the store close
	}

	select {
	case err := <-served:
		srv.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("topod shutting down")
	srv.Close()
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(f.shutdownGrace):
		g.Stop()
	}
	log.Info("topod stopped")
	return nil
}

// open opens the backend and the blob store the flags name, creating the
// data directory when a default needs it.
func open(ctx context.Context, f commonFlags) (kv.Backend, blobstore.Store, error) {
	if f.backend == "" || f.blobs == "" {
		if err := os.MkdirAll(f.dataDir, 0o750); err != nil {
			return nil, nil, fmt.Errorf("data dir: %w", err)
		}
	}
	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var etcdTLS *tls.Config
	if f.etcdTLS.Enabled() {
		var err error
		if etcdTLS, err = tlsconfig.Client(f.etcdTLS); err != nil {
			return nil, nil, fmt.Errorf("--etcd-tls-*: %w", err)
		}
	}
	backendURL := f.backend
	if backendURL == "" {
		backendURL = "bolt://" + filepath.Join(f.dataDir, "topo.db")
	}
	backend, err := kv.Open(openCtx, backendURL, kv.OpenOptions{TLS: etcdTLS, ReadOnly: f.readOnly})
	if err != nil {
		return nil, nil, err
	}
	blobs, err := blobstore.Open(openCtx, blobsURL(f), blobstore.Options{CredentialsFile: f.credentialsFile})
	if err != nil {
		backend.Close()
		return nil, nil, err
	}
	return backend, blobs, nil
}

// mirrorPrefixes drops empty entries, so --mirror-prefixes= turns mirroring
// off.
func mirrorPrefixes(in []string) []string {
	out := []string{}
	for _, p := range in {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func blobsURL(f commonFlags) string {
	if f.blobs != "" {
		return f.blobs
	}
	abs, err := filepath.Abs(filepath.Join(f.dataDir, "blobs"))
	if err != nil {
		abs = filepath.Join(f.dataDir, "blobs")
	}
	return "file://" + abs
}

func describe(f commonFlags) string {
	if f.backend == "" {
		return "bolt in " + f.dataDir
	}
	return f.backend
}

// describeTLS says, for the log, how the gRPC server authenticates.
func describeTLS(f tlsconfig.Files) string {
	switch {
	case f.Cert == "":
		return "off"
	case f.CA == "":
		return "on"
	default:
		return "on, client certificates required"
	}
}

// advertiseAddress is the address topod lists itself at: flag if set
// (host:port), else the listener's, with host for an unspecified host
// (":15999", "[::]:15999").
func advertiseAddress(flag string, lis net.Addr, host string) (string, error) {
	if flag != "" {
		if _, _, err := net.SplitHostPort(flag); err != nil {
			return "", fmt.Errorf("--advertise-address %q: want host:port: %w", flag, err)
		}
		return flag, nil
	}
	tcp, ok := lis.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return lis.String(), nil
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port)), nil
}

func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
