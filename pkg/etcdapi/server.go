// Package etcdapi serves etcd's v3 gRPC API (go.etcd.io/etcd/api/v3/
// etcdserverpb) from topod's own data, so that stock etcd clients (Vitess's
// etcd2topo, etcdctl, clientv3, any etcd v3 driver) work on topod's
// address unmodified, beside the topod.v1 API the plugin speaks.
//
// It serves etcd's KV, Watch and Lease services, and of Maintenance and
// Cluster what etcdctl's endpoint commands and clientv3's endpoint sync
// need, describing topod itself; errors are etcd's own. Values over the
// inline limit are kept as blobs, as the plugin keeps them, through Values
// (toposerver's records), and a Txn's value compares read their contents.
//
// Consistency is etcd's: a default Range is linearizable (answered from
// topod's mirror once it has reached the backend's current revision, one
// revision request per batch of reads: kvmirror.Sync); a serializable one
// is answered from the mirror as it is. Writes go to the backend and answer
// once the mirror has applied them. Every watch is served from the
// mirror's one upstream watch, through a bounded window of recent events;
// a start revision older than the window is answered as etcd answers a
// compacted one.
package etcdapi

import (
	"context"
	"hash/fnv"
	"log/slog"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kvmirror"
)

// Backend is topod's backend: the endpoint uses its transactions, its
// current revision and its leases by ID.
type Backend = kv.Backend

// Values turns what a client writes into the backend's values and back:
// contents over the inline limit become a reference to blobs (uploaded by
// Encode), which Decode reassembles and verifies (toposerver's records).
type Values interface {
	Encode(ctx context.Context, key string, contents []byte) ([]byte, error)
	Decode(ctx context.Context, key string, value []byte) ([]byte, error)
}

// Mirror is one of topod's in-memory mirrors and the journal of its
// events (NewJournal, set as the mirror's kvmirror.Options.Journal).
type Mirror struct {
	*kvmirror.Mirror
	Journal *Journal
}

// Options configure a Server.
type Options struct {
	Backend Backend
	Values  Values
	// Mirrors serve reads and watches of the keys under their prefixes;
	// ranges outside them are read from the backend, and watches outside
	// them refused.
	Mirrors []Mirror
	// Name and Address describe topod as the one member of its "cluster"
	// (MemberList, Status).
	Name, Address string
	// Version is reported as the server version (Status).
	Version string
	// TLS says whether the address speaks TLS (the member's client URL).
	TLS bool
	// ProgressNotifyInterval is how often a watch that asked for progress
	// notifications gets one while it has no events (etcd's
	// --experimental-watch-progress-notify-interval). Default 10 minutes.
	ProgressNotifyInterval time.Duration
	// WriteVisibleTimeout bounds how long a write waits for the mirror to
	// apply it before answering. Default 1 s.
	WriteVisibleTimeout time.Duration
	// MaxWatchesPerStream bounds the watches of one Watch stream; 0: no
	// bound. Watches, if set, counts the watches of the whole server
	// (topod's both APIs) against its limit.
	MaxWatchesPerStream int
	Watches             Quota
	// ReservedPrefix, if set, holds keys clients may not put or delete
	// (PermissionDenied): topod's own.
	ReservedPrefix string
	Logger         *slog.Logger
}

// Quota counts the watches open on a server against a limit.
type Quota interface {
	// Take counts one more, or reports that the limit is reached.
	Take() bool
	// Give counts one fewer.
	Give()
}

// Server implements etcd's KV, Watch, Lease, Maintenance and Cluster
// services.
type Server struct {
	pb.UnimplementedKVServer
	pb.UnimplementedWatchServer
	pb.UnimplementedLeaseServer
	pb.UnimplementedMaintenanceServer
	pb.UnimplementedClusterServer

	opts      Options
	log       *slog.Logger
	clusterID uint64
	memberID  uint64
	metrics   *metrics
	// ctx ends the watch streams when the server closes.
	ctx    context.Context
	cancel context.CancelFunc
}

// New returns a server over opts.
func New(opts Options) *Server {
	if opts.ProgressNotifyInterval <= 0 {
		opts.ProgressNotifyInterval = 10 * time.Minute
	}
	if opts.WriteVisibleTimeout <= 0 {
		opts.WriteVisibleTimeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		opts:      opts,
		log:       opts.Logger.With("api", "etcd"),
		clusterID: hash64("topod cluster " + opts.Name),
		memberID:  hash64("topod member " + opts.Name + " " + opts.Address),
		metrics:   newMetrics(opts.Mirrors),
		ctx:       ctx,
		cancel:    cancel,
	}
}

// Register adds etcd's services to g.
func (s *Server) Register(g *grpc.Server) {
	pb.RegisterKVServer(g, s)
	pb.RegisterWatchServer(g, s)
	pb.RegisterLeaseServer(g, s)
	pb.RegisterMaintenanceServer(g, s)
	pb.RegisterClusterServer(g, s)
}

// Close ends the watch streams.
func (s *Server) Close() { s.cancel() }

// writesUnder says whether t may write a key m holds.
func writesUnder(t *kv.Txn, m *Mirror) bool {
	for _, ops := range [][]kv.Op{t.Success, t.Failure} {
		for _, op := range ops {
			switch op.Type {
			case kv.OpPut:
				if m.Covers(op.Key) {
					return true
				}
			case kv.OpDelete:
				if m.Covers(op.Key) || (op.End != "" && (op.End == "\x00" || op.End > m.Prefix())) {
					return true
				}
			case kv.OpTxn:
				if writesUnder(op.Txn, m) {
					return true
				}
			}
		}
	}
	return false
}

func hash64(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// header is the response header at rev.
func (s *Server) header(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: s.clusterID, MemberId: s.memberID, Revision: rev, RaftTerm: 1}
}

// mirrorFor returns the mirror holding every key of [key, end), nil if
// none does.
func (s *Server) mirrorFor(key, end string) *Mirror {
	var best *Mirror
	for i := range s.opts.Mirrors {
		m := &s.opts.Mirrors[i]
		if m.CoversRange(key, end) && (best == nil || len(m.Prefix()) > len(best.Prefix())) {
			best = m
		}
	}
	return best
}

// awaitWrite waits, at most WriteVisibleTimeout, for the mirrors holding
// keys t writes (every mirror when t is nil) to apply revision rev, so
// that what the writer reads next from memory includes it.
func (s *Server) awaitWrite(ctx context.Context, rev int64, t *kv.Txn) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.WriteVisibleTimeout)
	defer cancel()
	start := time.Now()
	defer func() { s.metrics.visibleWait.Observe(time.Since(start).Seconds()) }()
	for i := range s.opts.Mirrors {
		if t != nil && !writesUnder(t, &s.opts.Mirrors[i]) {
			continue
		}
		if err := s.opts.Mirrors[i].WaitRev(ctx, rev); err != nil {
			s.log.Debug("write answered before the mirror applied it", "revision", rev, "mirror", s.opts.Mirrors[i].Prefix(), "err", err)
			return
		}
	}
}
