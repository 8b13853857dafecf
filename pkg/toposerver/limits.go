package toposerver

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/kvmirror"
	"github.com/topod-io/topod/pkg/topoerr"
)

// Default resource limits. They hold JD's fleet with room to spare: a
// vtgate opens ~1,912 watches on its one stream, 200 vtgates ~382,000 on
// one topod (383 MiB measured), a tablet a few.
const (
	// DefaultMaxWatchesPerStream bounds the watches of one stream: a
	// topod.v1 WatchStream or an etcd Watch stream.
	DefaultMaxWatchesPerStream = 20_000
	// DefaultMaxWatches bounds the watches open on one topod, over both
	// APIs.
	DefaultMaxWatches = 1_000_000
	// DefaultMaxLockTTL bounds the lease TTL a client may ask for a lock or
	// an election (Vitess asks for --lock-ttl-like values of seconds to
	// minutes; named locks have their own 24 h, NamedLockTTL).
	DefaultMaxLockTTL = time.Hour
	// DefaultMaxConcurrentStreams bounds the concurrent RPCs of one
	// connection (HTTP/2 streams): a Vitess process holds one watch
	// stream per connection, one stream per lock or election it holds,
	// and its unary calls. More wait for a free one.
	DefaultMaxConcurrentStreams = 1_000
	// DefaultMaxStreamBacklog bounds what one WatchStream makes topod
	// hold for a client that does not read it: initial-state entries (a
	// key each, its value shared with the mirror) and answers waiting to
	// be sent. A stream over it asking for more is ended.
	DefaultMaxStreamBacklog = 100_000

	// DefaultMaxListPageBytes bounds the paths and contents of one page of
	// a paged List (a page holds at least one file, however large).
	// List("/") of the whole JD topology (46,398 files, 13.6 MiB as one
	// message) is 4 pages (BenchmarkListJDStore); a cell's 1,425 tablets
	// are one.
	DefaultMaxListPageBytes = 4 << 20
	// DefaultMaxSendMsgBytes bounds every message topod sends, on both
	// APIs: the largest blob (GetBlob, GetBlobs: MaxBlobBytes) with room
	// for framing, a List page many times over, and, on the etcd API
	// (which answers a range in one message, as etcd does), JD's whole
	// SrvVSchema (13.5 MiB in the JD profile, 17.6 MiB in JD's own) read by
	// a stock etcd2 vtgate more than three times over.
	DefaultMaxSendMsgBytes = 64 << 20
	// MinMaxSendMsgBytes is the least MaxSendMsgBytes --max-send-msg-bytes
	// takes: the largest blob must fit a GetBlob answer.
	MinMaxSendMsgBytes = MaxBlobBytes + 1<<20
	// DefaultMaxPutBlobs bounds the blobs of one PutBlobs: each costs a
	// blob store request or two (an S3 HEAD to refresh, a PUT), and
	// gRPC's receive limit (MaxBlobBytes + 1 MiB) bounds only their bytes:
	// empty blobs by the million would fit it. The plugin sends batches of
	// at most 512.
	DefaultMaxPutBlobs = 4_096
	// DefaultMaxGetBlobs bounds the hashes of one GetBlobs (the plugin
	// asks in batches of 4,096).
	DefaultMaxGetBlobs = 1 << 16
	// DefaultMaxMissingBlobs bounds the hashes of one MissingBlobs: each
	// may be a blob store request (an S3 HEAD), and keeps the blobs found
	// from collection. The plugin asks in batches of 4,096.
	DefaultMaxMissingBlobs = 1 << 14
	// MinMaxPutBlobs, MinMaxGetBlobs and MinMaxMissingBlobs are the least
	// values their flags take: the plugin's batches, which smaller limits
	// would refuse.
	MinMaxPutBlobs     = 512
	MinMaxGetBlobs     = 4_096
	MinMaxMissingBlobs = 4_096
)

// messageLimits sets the message and blob request limits left 0 to their
// defaults.
func (o *Options) messageLimits() {
	if o.MaxListPageBytes <= 0 {
		o.MaxListPageBytes = DefaultMaxListPageBytes
	}
	if o.MaxSendMsgBytes <= 0 {
		o.MaxSendMsgBytes = DefaultMaxSendMsgBytes
	}
	if o.MaxPutBlobs <= 0 {
		o.MaxPutBlobs = DefaultMaxPutBlobs
	}
	if o.MaxGetBlobs <= 0 {
		o.MaxGetBlobs = DefaultMaxGetBlobs
	}
	if o.MaxMissingBlobs <= 0 {
		o.MaxMissingBlobs = DefaultMaxMissingBlobs
	}
}

// refuseCount refuses a request carrying n items (blobs, hashes) of a kind
// over max, with InvalidArgument naming the limit and its flag, counted
// under limit.
func (s *Server) refuseCount(op string, n, max int, what, limit, flag string) error {
	if n <= max {
		return nil
	}
	s.metrics.refused.WithLabelValues(limit).Inc()
	return invalid(fmt.Errorf("%s: %d %s, over the %d limit (%s); send them in several requests", op, n, what, max, flag))
}

// watchQuota counts the watches open on a server, over both APIs, against
// its limit.
type watchQuota struct {
	max int64
	n   atomic.Int64
}

// Take counts one more watch, or reports that the server is at its limit.
func (q *watchQuota) Take() bool {
	if q.n.Add(1) > q.max {
		q.n.Add(-1)
		return false
	}
	return true
}

// Give counts one watch fewer.
func (q *watchQuota) Give() { q.n.Add(-1) }

// takeWatch counts a new watch of path on a stream holding onStream
// watches already, or answers
// ResourceExhausted, naming the limit and its flag.
func (s *Server) takeWatch(path string, onStream int) error {
	if onStream >= s.opts.MaxWatchesPerStream {
		s.metrics.refused.WithLabelValues("watches_per_stream").Inc()
		return topoerr.Errorf(topo.ResourceExhausted, "watch %s: the stream holds %d watches, the most one stream may (--max-watches-per-stream); open another stream", path, onStream)
	}
	if !s.watches.Take() {
		s.metrics.refused.WithLabelValues("watches").Inc()
		return topoerr.Errorf(topo.ResourceExhausted, "watch %s: topod holds %d watches, its limit (--max-watches)", path, s.opts.MaxWatches)
	}
	return nil
}

// checkLockTTL refuses a lock TTL over the limit. It compares seconds: a
// Duration of that many overflows past ~9.2e9 s.
func (s *Server) checkLockTTL(path string, seconds int64) error {
	if seconds > int64(s.opts.MaxLockTTL/time.Second) {
		s.metrics.refused.WithLabelValues("lock_ttl").Inc()
		return invalid(fmt.Errorf("lock %s: ttl of %d s over the %v limit (--max-lock-ttl)", path, seconds, s.opts.MaxLockTTL))
	}
	return nil
}

// checkAfter refuses a watch resuming after a revision the backend has not
// reached: no client can have seen it, unless the backend was since
// restored from an older backup, and then the client must watch from the
// start (the plugin does so on OutOfRange). Such a watch used to wait for
// its mirror and then open a backend watch of its own, so a client could
// raise etcd's watcher count at will. The backend is asked only when the
// mirror (if any) is behind after; if it cannot answer, the watch is
// served as before.
func (s *Server) checkAfter(ctx context.Context, w watchSpec, m *kvmirror.Mirror) error {
	if w.after == 0 || (m != nil && m.Rev() >= w.after) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, consistentReadWait)
	defer cancel()
	var cur int64
	var err error
	if m != nil {
		cur, err = m.Sync(ctx)
	} else {
		cur, err = s.backend.CurrentRevision(ctx)
	}
	if err != nil || w.after <= cur {
		return nil
	}
	s.metrics.refused.WithLabelValues("after_revision").Inc()
	return status.Errorf(codes.OutOfRange, "watch %s: after_revision %d is ahead of the store's revision %d; watch from the start", w.path, w.after, cur)
}
