package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/retry"
)

// Backoff (jittered, package retry) between attempts to re-establish a
// watch etcd ended (no leader on the member it was on, for example).
const (
	minRewatchDelay = 50 * time.Millisecond
	maxRewatchDelay = 2 * time.Second
)

// Watch delivers the changes to key (every key starting with key when prefix
// is true) made after revision afterRev, in revision order. afterRev 0 means
// after the current revision, read before Watch returns: a write that
// happens after Watch returns is always seen.
//
// Each response's Revision is the revision of its last event, so everything
// up to Revision has been delivered and a consumer can resume from it. (The
// etcd header revision can run ahead of the events while etcd is catching a
// watcher up.)
//
// The etcd watch requires a leader (clientv3.WithRequireLeader): a member
// cut off from its cluster ends the watch instead of leaving it silently
// stalled, and the watch is re-established, on any member, from the revision
// after the last one delivered. The same happens whenever etcd ends the
// watch for a reason other than the request itself being refused
// (permission denied, invalid argument: those end the channel with the
// error). A compacted afterRev (or compaction while re-establishing) ends
// the channel with kv.ErrCompacted; Close ends it with kv.ErrClosed; the end
// of ctx closes it without an error.
func (b *Backend) Watch(ctx context.Context, key string, prefix bool, afterRev int64) (<-chan kv.WatchResponse, error) {
	return b.watch(ctx, key, prefix, afterRev, 0)
}

// WatchProgress is Watch that also confirms, about every interval while
// the watch is live, that every change up to a revision has been
// delivered: a response with no events and that Revision (etcd's progress
// notifications, asked for with RequestProgress). A consumer that receives
// nothing for much longer than interval is cut off from etcd, or the
// member it watches through has no leader.
func (b *Backend) WatchProgress(ctx context.Context, key string, prefix bool, afterRev int64, interval time.Duration) (<-chan kv.WatchResponse, error) {
	if interval <= 0 {
		return nil, fail("watch", key, fmt.Errorf("progress interval %v: want a positive one", interval))
	}
	return b.watch(ctx, key, prefix, afterRev, interval)
}

func (b *Backend) watch(ctx context.Context, key string, prefix bool, afterRev int64, progress time.Duration) (<-chan kv.WatchResponse, error) {
	const op = "watch"
	if err := b.checkOpen(op, key); err != nil {
		return nil, err
	}
	if afterRev <= 0 {
		probe := key
		if probe == "" {
			probe = "\x00" // etcd refuses an empty key
		}
		resp, err := b.cli.Get(ctx, probe, clientv3.WithCountOnly())
		if err != nil {
			return nil, b.wrap(op, key, err)
		}
		afterRev = resp.Header.Revision
	}
	w := &watcher{
		b:        b,
		key:      key,
		prefix:   prefix,
		progress: progress,
		next:     afterRev + 1,
		out:      make(chan kv.WatchResponse),
	}
	go w.run(ctx)
	return w.out, nil
}

// progressSeq names the watch streams of WatchProgress, one each.
var progressSeq atomic.Int64

// watcher is one Watch: it runs etcd watches one after the other, each
// resuming where the previous one ended, and forwards their events.
type watcher struct {
	b        *Backend
	key      string
	prefix   bool
	progress time.Duration // how often to ask for progress; 0: never
	next     int64         // the first revision not delivered yet
	out      chan kv.WatchResponse
}

// run feeds w.out until ctx ends or the watch fails for good, then closes it.
func (w *watcher) run(ctx context.Context) {
	defer close(w.out)
	wait := retry.New(minRewatchDelay, maxRewatchDelay)
	for {
		delivered, err := w.watchOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			select {
			case w.out <- kv.WatchResponse{Err: err}:
			case <-ctx.Done():
			}
			return
		}
		w.b.rewatches.Add(1)
		if delivered {
			wait.Reset()
		}
		t := time.NewTimer(wait.Next())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.b.done:
			t.Stop()
		}
	}
}

// watchOnce runs one etcd watch from w.next until it ends. It returns a
// non-nil error if the watch must end for good, nil if it can be
// re-established; delivered says whether it delivered any event.
func (w *watcher) watchOnce(ctx context.Context) (delivered bool, err error) {
	if w.b.closed.Load() {
		return false, fail("watch", w.key, kv.ErrClosed)
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	from := w.next
	if w.progress > 0 {
		// A stream of its own: etcd answers RequestProgress only when
		// every watch on the stream is caught up, and for all of them.
		wctx = metadata.AppendToOutgoingContext(wctx, "topod-kv-progress", strconv.FormatInt(progressSeq.Add(1), 10))
		// And only for watches that started at or before its current
		// revision: start at the last revision delivered, whose events
		// are dropped below.
		from = max(w.next-1, 1)
	}
	opts := []clientv3.OpOption{clientv3.WithRev(from)}
	if w.prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	wch := w.b.cli.Watch(wctx, w.key, opts...)
	var tick <-chan time.Time
	if w.progress > 0 {
		t := time.NewTicker(w.progress)
		defer t.Stop()
		tick = t.C
	}
	for {
		var (
			wresp clientv3.WatchResponse
			ok    bool
		)
		select {
		case wresp, ok = <-wch:
		case <-tick:
			// An error here is the stream's: the watch ends with it.
			_ = w.b.cli.RequestProgress(wctx)
			continue
		case <-ctx.Done():
			return delivered, nil
		case <-w.b.done:
			return delivered, fail("watch", w.key, kv.ErrClosed)
		}
		if !ok {
			if w.b.closed.Load() {
				return delivered, fail("watch", w.key, kv.ErrClosed)
			}
			return delivered, nil
		}
		if wresp.CompactRevision != 0 {
			return delivered, fail("watch", w.key, fmt.Errorf(
				"from revision %d, history compacted up to revision %d: %w",
				w.next, wresp.CompactRevision, kv.ErrCompacted))
		}
		if err := wresp.Err(); err != nil {
			if w.b.closed.Load() {
				return delivered, fail("watch", w.key, kv.ErrClosed)
			}
			if permanent(err) {
				return delivered, w.b.wrap("watch", w.key, err)
			}
			return delivered, nil
		}
		if len(wresp.Events) == 0 {
			// Created, or a progress notification: every change up to
			// the header's revision has been delivered.
			if w.progress > 0 && wresp.IsProgressNotify() && wresp.Header.Revision >= w.next-1 {
				select {
				case w.out <- kv.WatchResponse{Revision: wresp.Header.Revision}:
				case <-ctx.Done():
					return delivered, nil
				}
				w.next = wresp.Header.Revision + 1
			}
			continue
		}
		resp := kv.WatchResponse{Events: make([]kv.Event, 0, len(wresp.Events))}
		for _, ev := range wresp.Events {
			if ev.Kv.ModRevision >= w.next { // not delivered already
				resp.Events = append(resp.Events, fromEtcdEvent(ev))
			}
		}
		if len(resp.Events) == 0 {
			continue
		}
		resp.Revision = resp.Events[len(resp.Events)-1].KV.ModRevision
		select {
		case w.out <- resp:
		case <-ctx.Done():
			return delivered, nil
		}
		delivered = true
		w.next = resp.Revision + 1
	}
}

// permanent reports whether a watch that etcd ended with err would fail
// again if re-established: the request itself is refused. Anything else (no
// leader, member unavailable or restarting, the stream cancelled by the
// server) is transient.
func permanent(err error) bool {
	var code codes.Code
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else if s, ok := status.FromError(err); ok {
		code = s.Code()
	} else {
		return false
	}
	// Unauthenticated (an expired auth token) is not permanent: the client
	// gets a new token when the watch is re-established.
	switch code {
	case codes.InvalidArgument, codes.PermissionDenied, codes.FailedPrecondition, codes.Unimplemented:
		return true
	}
	return false
}

// fromEtcdEvent converts an etcd event. A delete's KeyValue holds the key
// and, as ModRevision, the revision of the delete.
func fromEtcdEvent(ev *clientv3.Event) kv.Event {
	e := kv.Event{KV: fromEtcd(ev.Kv)}
	if ev.Type == mvccpb.DELETE {
		e.Type = kv.Delete
		e.KV.Value = nil
	}
	return e
}
