// Package toposerver is topod's gRPC server. It serves every operation of
// Vitess's topo.Conn (proto topod.v1.Topo) over a kv.Backend: files with
// versions and compare-and-set, directories derived from key prefixes, watches,
// locks and leader elections held by streams and backed by leases.
//
// A file is one backend key holding a record (package record): its contents
// inline, or a reference to content-addressed blobs the client uploaded
// first (MissingBlobs, PutBlobs); a record whose blobs are not stored is
// refused. Reads and watches under the mirrored prefixes are served from
// memory (package kvmirror): one backend watch per prefix, fanned out to
// every watch of every client's WatchStream. A lock or an election lives
// as long as the client's stream and the backend lease behind it. Errors
// are gRPC statuses, with the codes package topoerr gives Vitess's topo
// errors. The same gRPC server also serves etcd's v3 API (package etcdapi,
// unless DisableEtcdAPI) over the same data. cmd/topod opens the backend
// (kv.Open) and the blob store and passes them to New.
package toposerver

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/pkg/authz"
	"github.com/topod-io/topod/pkg/blobgc"
	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/cache"
	"github.com/topod-io/topod/pkg/etcdapi"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kvmirror"
	"github.com/topod-io/topod/pkg/record"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Defaults for Options.
const (
	DefaultLockTTL = 30 * time.Second
	// DefaultBlobCacheBytes bounds topod's cache of blobs.
	DefaultBlobCacheBytes = 256 << 20
	// DefaultMirrorMaxStaleness is the default of cmd/topod's
	// --mirror-max-staleness: a mirror whose backend (etcd) has not
	// confirmed it current for this long stops serving reads.
	DefaultMirrorMaxStaleness = time.Second
	// DefaultMirrorMaxBytes bounds each in-memory mirror of the backend.
	DefaultMirrorMaxBytes = 2 << 30
	// writeVisibleTimeout bounds how long a write waits for topod's mirror
	// to reflect it, so the writer's next read is served from memory. The
	// wait is for the mirror to apply the write, never for the watchers to
	// receive it; past it the write returns anyway (counted in
	// topod_write_mirror_lag_total) and the writer's next read, which asks
	// for at least the write's revision, goes to the backend.
	writeVisibleTimeout = 100 * time.Millisecond
	// consistentReadWait bounds how long a read waits for the mirror to
	// confirm the backend's revision and reach it before it reads the
	// backend instead.
	consistentReadWait = time.Second
	// NamedLockTTL is the lease TTL of LockName locks, as Vitess's
	// topo.NamedLockTTL.
	NamedLockTTL = 24 * time.Hour
)

// Options configure a Server.
type Options struct {
	// Blobs is the store of the blobs large files are split into.
	// Required.
	Blobs blobstore.Store
	// BlobCacheBytes bounds the memory of topod's blob cache. Default
	// DefaultBlobCacheBytes.
	BlobCacheBytes int64
	// InlineLimit is the size up to which clients keep a file's contents in
	// its record rather than in blobs. Default record.DefaultInlineLimit.
	InlineLimit int
	// MaxValueBytes is the largest value Create and Update write to the
	// backend. Default and hard cap: record.MaxRecordBytes (64 KiB); larger
	// files are stored as blobs.
	MaxValueBytes int
	// LockTTL is the lease TTL of locks and election participations whose
	// client did not ask for one. Default DefaultLockTTL.
	LockTTL time.Duration
	// TLS, if set, makes the gRPC server (GRPCServerOptions) speak TLS
	// only; with ClientCAs and RequireAndVerifyClientCert, only clients
	// with a certificate get in.
	TLS *tls.Config
	// MirrorPrefixes are the key prefixes topod mirrors in memory, each
	// followed by one backend watch: every watch under them is served from
	// that watch, and Get, List and ListDir from memory. Empty (nil or
	// not): "/", everything.
	MirrorPrefixes []string
	// DisableMirror turns mirroring off, the only way to: every read and
	// watch goes to the backend, and the etcd API is off (it needs the
	// mirror). cmd/topod sets it for an empty --mirror-prefixes.
	DisableMirror bool
	// MirrorMaxBytes bounds the memory of each mirror; past it a mirror
	// keeps every key but not the values that do not fit, which are read
	// from the backend when asked for. Default DefaultMirrorMaxBytes.
	MirrorMaxBytes int64
	// MirrorMaxStaleness: on a backend that confirms its watches' progress
	// (etcd), a mirror serves reads only while etcd confirmed it current
	// within this bound; past it (topod cut off from etcd, or the member
	// it watches through without a leader) reads go to etcd, which answers
	// or fails, instead of the mirror answering stale. The bolt backend,
	// in-process, needs no bound. 0 (or negative): no bound, as in
	// kvmirror.Options.MaxStaleness and cmd/topod's --mirror-max-staleness,
	// whose default is DefaultMirrorMaxStaleness.
	MirrorMaxStaleness time.Duration
	// GCGrace is the grace period of blob garbage collection (package
	// blobgc). MissingBlobs and PutBlobs refresh the blobs they find stored
	// before now - GCGrace/2, so a writer has GCGrace/2 from asking to
	// writing the record that refers to them. It must be no shorter than
	// the grace of any collection run against the same store. Default
	// blobgc.DefaultGrace.
	GCGrace time.Duration
	// DisableEtcdAPI turns off the etcd v3 API (package etcdapi) served
	// beside topod.v1 on the same server. It needs the mirror: with
	// DisableMirror it is off.
	DisableEtcdAPI bool
	// EtcdWatchWindowEvents and EtcdWatchWindowBytes bound the window of
	// recent events etcd watches are served from, per mirror; a watch
	// from before it is answered as compacted. Defaults
	// DefaultEtcdWatchWindowEvents, DefaultEtcdWatchWindowBytes.
	EtcdWatchWindowEvents int
	EtcdWatchWindowBytes  int64
	// EtcdProgressNotifyInterval is how often an etcd watch that asked for
	// progress notifications gets one while it has no events (etcd's
	// --watch-progress-notify-interval). Default 10 minutes, etcd's.
	EtcdProgressNotifyInterval time.Duration
	// MaxWatchesPerStream bounds the watches of one stream (a WatchStream
	// or an etcd Watch stream); MaxWatches those open on the server over
	// both APIs; MaxLockTTL the TTL a client may ask for a lock or an
	// election; MaxConcurrentStreams the concurrent RPCs of one
	// connection; MaxStreamBacklog what a WatchStream may have waiting to
	// be sent. 0 means the Default* of each.
	MaxWatchesPerStream  int
	MaxStreamBacklog     int
	MaxWatches           int
	MaxLockTTL           time.Duration
	MaxConcurrentStreams int
	// MaxListPageBytes bounds a page of a paged List, MaxSendMsgBytes any
	// message topod sends; MaxPutBlobs the blobs of a PutBlobs,
	// MaxGetBlobs and MaxMissingBlobs the hashes of a GetBlobs and a
	// MissingBlobs (limits.go). 0 means the Default* of each.
	MaxListPageBytes int
	MaxSendMsgBytes  int
	MaxPutBlobs      int
	MaxGetBlobs      int
	MaxMissingBlobs  int
	// Authz, if set, is the authorization policy every request of both
	// APIs is checked against (package authz); it needs TLS with client
	// certificates. Nil: every client past TLS may do anything.
	Authz *authz.Source
	// Name and Address describe this topod in the etcd endpoint's member
	// list and status.
	Name, Address string
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Server implements topodv1.TopoServer over a kv.Backend.
type Server struct {
	topodv1.UnimplementedTopoServer

	backend kv.Backend
	blobs   blobstore.Store
	cache   *cache.Cache
	mirrors []*kvmirror.Mirror
	metrics *metrics
	opts    Options
	log     *slog.Logger
	health  *health.Server
	etcd    *etcdapi.Server
	watches *watchQuota // over both APIs

	// ctx ends every stream when the server closes; streams counts them so
	// Close can wait until their locks are released.
	ctx     context.Context
	cancel  context.CancelFunc
	streams sync.WaitGroup
	active  atomic.Int64
}

// New returns a server over backend and opts.Blobs. The caller keeps
// ownership of both and closes them after Close.
func New(backend kv.Backend, opts Options) *Server {
	if opts.MaxValueBytes <= 0 || opts.MaxValueBytes > record.MaxRecordBytes {
		opts.MaxValueBytes = record.MaxRecordBytes
	}
	if opts.InlineLimit <= 0 || opts.InlineLimit > opts.MaxValueBytes-1024 {
		opts.InlineLimit = min(record.DefaultInlineLimit, opts.MaxValueBytes-1024)
	}
	if opts.BlobCacheBytes <= 0 {
		opts.BlobCacheBytes = DefaultBlobCacheBytes
	}
	if len(opts.MirrorPrefixes) == 0 {
		opts.MirrorPrefixes = []string{"/"}
	}
	if opts.MirrorMaxBytes <= 0 {
		opts.MirrorMaxBytes = DefaultMirrorMaxBytes
	}
	// Only a backend whose watches confirm their progress can bound a
	// mirror's staleness; countingBackend below forwards it.
	maxStaleness := max(opts.MirrorMaxStaleness, 0)
	if _, ok := backend.(progressWatcher); !ok {
		maxStaleness = 0
	}
	if opts.LockTTL <= 0 {
		opts.LockTTL = DefaultLockTTL
	}
	if opts.GCGrace <= 0 {
		opts.GCGrace = blobgc.DefaultGrace
	}
	if opts.MaxWatchesPerStream <= 0 {
		opts.MaxWatchesPerStream = DefaultMaxWatchesPerStream
	}
	if opts.MaxStreamBacklog <= 0 {
		opts.MaxStreamBacklog = DefaultMaxStreamBacklog
	}
	if opts.MaxWatches <= 0 {
		opts.MaxWatches = DefaultMaxWatches
	}
	if opts.MaxLockTTL <= 0 {
		opts.MaxLockTTL = DefaultMaxLockTTL
	}
	if opts.MaxConcurrentStreams <= 0 {
		opts.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	opts.messageLimits()
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	met := newMetrics()
	backend = countingBackend{Backend: backend, m: met}
	s := &Server{
		metrics: met,
		watches: &watchQuota{max: int64(opts.MaxWatches)},
		backend: backend,
		blobs:   opts.Blobs,
		cache:   cache.New(opts.BlobCacheBytes),
		opts:    opts,
		log:     opts.Logger,
		health:  health.NewServer(),
		ctx:     ctx,
		cancel:  cancel,
	}
	met.observeBlobCache(s.cache)
	if opts.Authz != nil {
		met.observePolicy(opts.Authz)
	}
	s.health.SetServingStatus(topodv1.Topo_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if opts.EtcdWatchWindowEvents <= 0 {
		opts.EtcdWatchWindowEvents = DefaultEtcdWatchWindowEvents
	}
	if opts.EtcdWatchWindowBytes <= 0 {
		opts.EtcdWatchWindowBytes = DefaultEtcdWatchWindowBytes
	}
	etcdOn := !opts.DisableEtcdAPI && !opts.DisableMirror
	var etcdMirrors []etcdapi.Mirror
	if !opts.DisableMirror {
		for _, prefix := range opts.MirrorPrefixes {
			mopts := kvmirror.Options{MaxBytes: opts.MirrorMaxBytes, MaxStaleness: maxStaleness, Observer: met, Logger: opts.Logger}
			var journal *etcdapi.Journal
			if etcdOn {
				journal = etcdapi.NewJournal(opts.EtcdWatchWindowEvents, opts.EtcdWatchWindowBytes)
				mopts.Journal = journal
			}
			m := kvmirror.New(backend, prefix, mopts)
			etcdMirrors = append(etcdMirrors, etcdapi.Mirror{Mirror: m, Journal: journal})
			s.mirrors = append(s.mirrors, m)
			s.streams.Add(1)
			go func() {
				defer s.streams.Done()
				m.Run(ctx)
			}()
		}
		met.observeMirrors(s.mirrors)
	}
	if etcdOn {
		s.etcd = etcdapi.New(etcdapi.Options{
			Backend: backend, Values: newEtcdValues(s), Mirrors: etcdMirrors,
			Name: opts.Name, Address: opts.Address, Version: etcdVersion, TLS: opts.TLS != nil,
			ProgressNotifyInterval: opts.EtcdProgressNotifyInterval, Logger: opts.Logger,
			MaxWatchesPerStream: opts.MaxWatchesPerStream, Watches: s.watches, ReservedPrefix: ReservedPrefix,
		})
		met.registry.MustRegister(s.etcd.Collectors()...)
	}
	return s
}

// etcdVersion is the etcd version the etcd endpoint reports (Status): the
// API it serves is etcd 3.6's.
const etcdVersion = "3.6.10"

// mirrorFor returns the mirror covering key (the one with the longest
// prefix), or nil.
func (s *Server) mirrorFor(key string) *kvmirror.Mirror {
	var best *kvmirror.Mirror
	for _, m := range s.mirrors {
		if m.Covers(key) && (best == nil || len(m.Prefix()) > len(best.Prefix())) {
			best = m
		}
	}
	return best
}

// awaitMirror waits, at most writeVisibleTimeout, until the mirror
// covering p has applied a write at rev, so that the writer's next read is
// served from memory. It never waits for the write to reach watchers.
func (s *Server) awaitMirror(ctx context.Context, p string, rev int64) {
	m := s.mirrorFor(p)
	if m == nil || m.Rev() >= rev {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, writeVisibleTimeout)
	defer cancel()
	if err := m.WaitRev(wctx, rev); err != nil && ctx.Err() == nil {
		s.metrics.writeLag.Inc()
		s.log.Debug("write returns before the mirror reflects it", "path", p, "revision", rev, "mirror_revision", m.Rev(), "err", err)
	}
}

// Register adds the Topo service and the standard gRPC health service to g.
func (s *Server) Register(g *grpc.Server) {
	topodv1.RegisterTopoServer(g, s)
	healthpb.RegisterHealthServer(g, s.health)
	if s.etcd != nil {
		s.etcd.Register(g)
	}
	s.metrics.grpc.InitializeMetrics(g)
}

// GRPCServerOptions are the options topod's gRPC server needs: message
// sizes that fit the largest blob plus framing, and keepalives that find
// dead clients quickly (so their locks are released well within the lock
// TTL) while accepting the plugin's pings.
func (s *Server) GRPCServerOptions() []grpc.ServerOption {
	unary := []grpc.UnaryServerInterceptor{s.metrics.grpc.UnaryServerInterceptor()}
	streams := []grpc.StreamServerInterceptor{s.metrics.grpc.StreamServerInterceptor()}
	if s.opts.Authz != nil {
		a := &authorizer{policy: s.opts.Authz, denied: func(method, principal string) {
			s.metrics.denied.WithLabelValues(method, principal).Inc()
		}, leaseKeys: s.leaseKeys}
		unary = append(unary, a.unary)
		streams = append(streams, a.stream)
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxBlobBytes + 1<<20),
		grpc.MaxSendMsgSize(s.opts.MaxSendMsgBytes),
		grpc.MaxConcurrentStreams(uint32(s.opts.MaxConcurrentStreams)),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(streams...),
	}
	if s.opts.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.opts.TLS)))
	}
	return opts
}

// Close marks the server not serving, ends every stream (releasing the locks
// and leaderships they hold) and waits for them to finish.
func (s *Server) Close() {
	s.health.Shutdown()
	if s.etcd != nil {
		s.etcd.Close()
	}
	s.cancel()
	s.streams.Wait()
}

// stream registers a long-lived stream of a kind (for metrics): the
// returned context ends when the client goes away or the server closes;
// done must be called when the stream handler returns.
func (s *Server) stream(ctx context.Context, kind string) (context.Context, func()) {
	s.streams.Add(1)
	s.active.Add(1)
	gauge := s.metrics.streams.WithLabelValues(kind)
	gauge.Inc()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
		gauge.Dec()
		s.active.Add(-1)
		s.streams.Done()
	}
}

// EtcdAPI says whether the server serves etcd's v3 API (Register adds it).
func (s *Server) EtcdAPI() bool { return s.etcd != nil }

// ActiveStreams is the number of open watch, lock and election streams.
func (s *Server) ActiveStreams() int { return int(s.active.Load()) }

// streamEnd is the status a stream handler returns: the error's status, or
// Unavailable when the server is shutting down, so clients resume on another
// replica instead of seeing their stream canceled.
func (s *Server) streamEnd(err error) error {
	if err != nil && s.ctx.Err() != nil {
		return status.Error(codes.Unavailable, "topod is shutting down")
	}
	return toStatus(err)
}

func (s *Server) checkValue(p string, contents []byte) error {
	if len(contents) > s.opts.MaxValueBytes {
		return invalid(fmt.Errorf("value for %s is %d bytes, over the %d-byte limit", p, len(contents), s.opts.MaxValueBytes))
	}
	return nil
}
