package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/retry"
)

const (
	// batchBytes is about the most event bytes one watch response
	// carries (whole revisions: a revision's events are never split
	// unless the watch asked for fragments).
	batchBytes = 1 << 20
	// fragmentBytes is the size past which a watch that asked for
	// fragments gets a response in pieces (etcd's default
	// --max-request-bytes).
	fragmentBytes = 3 << 19
)

// watcher is one watch of a stream.
type watcher struct {
	id       int64
	key, end string
	prevKV   bool
	progress bool
	fragment bool
	noPut    bool
	noDelete bool
	journal  *Journal
	stream   *watchStream

	// Guarded by the journal's lock.
	next    int64 // the first revision not yet sent
	pending bool  // the journal holds events for it from revision from
	from    int64
	last    int64 // to revision last at most
	lost    bool  // the journal lost events it needed
	removed bool
	// Owned by the stream's sender.
	opened  time.Time      // when it was created
	sentAt  time.Time      // when it last got a response (progress notifications)
	backoff *retry.Backoff // while its events' values cannot be read
	retryAt time.Time      // not before, then
}

// watchStream is one client's Watch stream: every watch the client opens
// on it, and one goroutine sending their responses.
type watchStream struct {
	srv  *Server
	grpc pb.Watch_WatchServer

	mu       sync.Mutex
	watchers map[int64]*watcher
	nextID   int64
	woken    map[*watcher]struct{}
	control  []*pb.WatchResponse // created and canceled responses, first
	progress bool                // a progress request waits for an answer
	signal   chan struct{}
}

// Watch is part of pb.WatchServer.
func (s *Server) Watch(stream pb.Watch_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	ws := &watchStream{
		srv: s, grpc: stream, watchers: map[int64]*watcher{}, woken: map[*watcher]struct{}{},
		signal: make(chan struct{}, 1),
	}
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()
	sent := make(chan error, 1)
	go func() { sent <- ws.send(ctx) }()
	defer ws.close()
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch r := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			ws.create(ctx, r.CreateRequest)
		case *pb.WatchRequest_CancelRequest:
			ws.cancel(r.CancelRequest.WatchId)
		case *pb.WatchRequest_ProgressRequest:
			ws.mu.Lock()
			ws.progress = true
			ws.mu.Unlock()
			ws.notify()
		}
		select {
		case err := <-sent:
			return err
		default:
		}
	}
}

// create opens a watch, answering Created (and at once Canceled if it
// cannot be served: a duplicate ID, a range no mirror holds, a start
// revision older than the window).
func (ws *watchStream) create(ctx context.Context, req *pb.WatchCreateRequest) {
	s := ws.srv
	key, end := string(req.Key), string(req.RangeEnd)
	if key == "" {
		key = "\x00"
	}
	w := &watcher{
		key: key, end: end, prevKV: req.PrevKv, progress: req.ProgressNotify, fragment: req.Fragment,
		stream: ws, opened: time.Now(),
	}
	w.sentAt = w.opened
	for _, f := range req.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		}
	}
	refuse := func(id int64, reason string) {
		ws.queue(&pb.WatchResponse{Header: s.header(s.rev()), WatchId: id, Created: true, Canceled: true, CancelReason: reason})
	}
	m := s.mirrorFor(key, end)
	if m == nil || m.Journal == nil {
		refuse(-1, "topod serves watches only of keys under its mirrored prefixes (--mirror-prefixes)")
		return
	}
	// The mirror's first listing resets the journal: wait for it.
	if err := m.WaitRev(ctx, 1); err != nil {
		refuse(-1, "topod: "+err.Error())
		return
	}
	w.journal = m.Journal
	ws.mu.Lock()
	if n := len(ws.watchers); s.opts.MaxWatchesPerStream > 0 && n >= s.opts.MaxWatchesPerStream {
		ws.mu.Unlock()
		refuse(-1, fmt.Sprintf("topod: the stream holds %d watches, the most one stream may (--max-watches-per-stream); open another stream", n))
		return
	}
	// 0 is clientv3's AutoWatchID: the next free ID, as etcd assigns.
	var id int64
	if req.WatchId != 0 {
		if _, taken := ws.watchers[req.WatchId]; taken {
			ws.mu.Unlock()
			refuse(-1, "mvcc: duplicate watch ID provided on the WatchStream")
			return
		}
		id = req.WatchId
	} else {
		for ws.watchers[ws.nextID] != nil {
			ws.nextID++
		}
		id = ws.nextID
		ws.nextID++
	}
	if s.opts.Watches != nil && !s.opts.Watches.Take() {
		ws.mu.Unlock()
		refuse(-1, "topod: the server holds the most watches it may (--max-watches)")
		return
	}
	w.id = id
	ws.watchers[id] = w
	s.metrics.watchers.Inc()
	ws.mu.Unlock()

	// As etcd: Created, at the revision before the watch (which starts
	// after it unless asked otherwise), goes out before any event of the
	// watch (clientv3 cancels a watch whose events come first).
	rev := w.journal.Rev()
	start := req.StartRevision
	if start == 0 {
		start = rev + 1
	}
	ws.queue(&pb.WatchResponse{Header: s.header(rev), WatchId: id, Created: true})
	ok, compactRev, _ := w.journal.add(w, start)
	if !ok {
		ws.forget(w)
		// No revision, as etcd's.
		ws.queue(&pb.WatchResponse{Header: s.header(0), WatchId: id, Canceled: true, CompactRevision: compactRev,
			CancelReason: rpctypes.ErrCompacted.Error()})
		return
	}
}

// cancel ends a watch at the client's request.
func (ws *watchStream) cancel(id int64) {
	ws.mu.Lock()
	w := ws.watchers[id]
	delete(ws.watchers, id)
	ws.mu.Unlock()
	if w == nil {
		return
	}
	w.journal.remove(w)
	ws.srv.watchEnded()
	ws.queue(&pb.WatchResponse{Header: ws.srv.header(w.journal.Rev()), WatchId: id, Canceled: true})
}

// forget takes w out of the stream, unless the stream has (cancel,
// close).
func (ws *watchStream) forget(w *watcher) {
	ws.mu.Lock()
	mine := ws.watchers[w.id] == w
	if mine {
		delete(ws.watchers, w.id)
	}
	ws.mu.Unlock()
	if mine {
		w.journal.remove(w)
		ws.srv.watchEnded()
	}
}

// watchEnded accounts for a watch that was open.
func (s *Server) watchEnded() {
	s.metrics.watchers.Dec()
	if s.opts.Watches != nil {
		s.opts.Watches.Give()
	}
}

// close ends every watch of the stream.
func (ws *watchStream) close() {
	ws.mu.Lock()
	ws2 := ws.watchers
	ws.watchers = map[int64]*watcher{}
	ws.mu.Unlock()
	for _, w := range ws2 {
		w.journal.remove(w)
		ws.srv.watchEnded()
	}
}

func (ws *watchStream) queue(resp *pb.WatchResponse) {
	ws.mu.Lock()
	ws.control = append(ws.control, resp)
	ws.mu.Unlock()
	ws.notify()
}

// wake marks w as having something to send. It is called with the
// journal's lock held.
func (ws *watchStream) wake(w *watcher) {
	ws.mu.Lock()
	ws.woken[w] = struct{}{}
	ws.mu.Unlock()
	ws.notify()
}

func (ws *watchStream) notify() {
	select {
	case ws.signal <- struct{}{}:
	default:
	}
}

// send is the stream's sender: control responses first, then the events
// of the watchers woken, then the answer to a progress request once every
// watcher has caught up, and periodic progress notifications.
func (ws *watchStream) send(ctx context.Context) error {
	ticker := time.NewTicker(min(ws.srv.opts.ProgressNotifyInterval, time.Minute))
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ws.signal:
		case <-ticker.C:
			if err := ws.sendProgressNotifications(); err != nil {
				return err
			}
			continue
		}
		ws.mu.Lock()
		control, woken, progress := ws.control, ws.woken, ws.progress
		ws.control, ws.woken = nil, map[*watcher]struct{}{}
		ws.mu.Unlock()
		for _, resp := range control {
			if err := ws.grpc.Send(resp); err != nil {
				return err
			}
		}
		for w := range woken {
			if err := ws.sendEvents(ctx, w); err != nil {
				return err
			}
		}
		if progress {
			if err := ws.answerProgress(); err != nil {
				return err
			}
		}
	}
}

// sendEvents sends w's pending events, a batch at a time; a watcher that
// lost events is canceled with the revision to start again from, one
// whose events cannot be read yet waits (retryLater).
func (ws *watchStream) sendEvents(ctx context.Context, w *watcher) error {
	s := ws.srv
	if time.Now().Before(w.retryAt) {
		return nil // its timer wakes it
	}
	for {
		b := w.journal.take(w, batchBytes)
		if b.compactRev != 0 {
			ws.forget(w)
			s.metrics.compactedWatches.Inc()
			return ws.grpc.Send(&pb.WatchResponse{Header: s.header(0), WatchId: w.id, Canceled: true,
				CompactRevision: b.compactRev, CancelReason: rpctypes.ErrCompacted.Error()})
		}
		if len(b.events) > 0 {
			events, err := s.watchEvents(ctx, w, b.events)
			if err != nil {
				if ctx.Err() != nil {
					return nil // the stream ended
				}
				ws.retryLater(w, b.events[0].KV.ModRevision, err)
				return nil
			}
			if w.backoff != nil {
				w.backoff, w.retryAt = nil, time.Time{}
				s.log.Info("watch resumed: its events' values can be read again", "key", w.key, "revision", b.events[0].KV.ModRevision)
			}
			if err := ws.sendResponse(w, &pb.WatchResponse{Header: s.header(b.rev), WatchId: w.id, Events: events}); err != nil {
				return err
			}
			w.sentAt = time.Now()
			if at := b.events[0].at; at.After(w.opened) {
				s.metrics.sendDelay.Observe(w.sentAt.Sub(at).Seconds())
			}
		}
		if !b.more {
			return nil
		}
	}
}

// retryLater puts w back to revision from, whose events could not be
// converted (a value's blobs or a previous value unreadable: the blob
// store or the backend down), and wakes it again after a backoff. The
// watch is held, not canceled, as etcd never cancels a watch for a read
// it cannot do: its client sees the events late and in order, and no
// progress notification claims it has seen past them. If the window
// moves past from meanwhile, the watch is canceled as compacted, which
// every etcd client handles (clientv3 up to 3.7 panics on a progress
// response after a cancel without a compact revision, etcd-io/etcd#21969).
func (ws *watchStream) retryLater(w *watcher, from int64, err error) {
	s := ws.srv
	if w.backoff == nil {
		w.backoff = retry.New(100*time.Millisecond, 5*time.Second)
		s.log.Warn("watch waits: an event's value could not be read; retrying", "key", w.key, "revision", from, "err", err)
	}
	s.metrics.readRetries.Inc()
	w.journal.rewind(w, from)
	d := w.backoff.Next()
	w.retryAt = time.Now().Add(d)
	time.AfterFunc(d, func() { ws.wake(w) })
}

// sendResponse sends resp, in fragments if w asked for them and it is
// large.
func (ws *watchStream) sendResponse(w *watcher, resp *pb.WatchResponse) error {
	if !w.fragment || resp.Size() <= fragmentBytes {
		return ws.grpc.Send(resp)
	}
	var part []*mvccpb.Event
	size := 0
	for i, ev := range resp.Events {
		part = append(part, ev)
		size += ev.Size()
		if size >= fragmentBytes || i == len(resp.Events)-1 {
			r := &pb.WatchResponse{Header: resp.Header, WatchId: resp.WatchId, Events: part, Fragment: i < len(resp.Events)-1}
			if err := ws.grpc.Send(r); err != nil {
				return err
			}
			part, size = nil, 0
		}
	}
	return nil
}

// watchEvents converts journal events to etcd's, values decoded and,
// if asked for, with the keys' previous states.
func (s *Server) watchEvents(ctx context.Context, w *watcher, events []journalEvent) ([]*mvccpb.Event, error) {
	out := make([]*mvccpb.Event, 0, len(events))
	for _, e := range events {
		ev := &mvccpb.Event{}
		if e.Type == kv.Delete {
			ev.Type = mvccpb.DELETE
			ev.Kv = &mvccpb.KeyValue{Key: []byte(e.KV.Key), ModRevision: e.KV.ModRevision}
		} else {
			kvs := []kv.KV{e.KV}
			if err := s.decodeAll(ctx, kvs); err != nil {
				return nil, err
			}
			ev.Kv = toKeyValue(kvs[0])
		}
		if w.prevKV {
			prev, err := s.prevKV(ctx, e)
			if err != nil {
				return nil, err
			}
			ev.PrevKv = prev
		}
		out = append(out, ev)
	}
	return out, nil
}

// prevKV returns the state of e's key before e: from the journal, or,
// where it did not hold it, from the backend.
func (s *Server) prevKV(ctx context.Context, e journalEvent) (*mvccpb.KeyValue, error) {
	if e.PrevKnown && !e.PrevEvicted {
		if e.Prev.Key == "" {
			return nil, nil
		}
		return s.decodeKV(ctx, &e.Prev)
	}
	at := e.KV.ModRevision - 1
	if e.PrevKnown {
		if e.Prev.Key == "" {
			return nil, nil
		}
		at = e.Prev.ModRevision
	}
	res, err := s.opts.Backend.Txn(ctx, kv.Txn{Success: []kv.Op{{Type: kv.OpRange, Key: e.KV.Key, Rev: at}}})
	if errors.Is(err, kv.ErrCompacted) {
		return nil, nil // etcd too leaves it out once compacted
	}
	if err != nil {
		return nil, err
	}
	if r := res.Responses[0].Range; len(r) > 0 {
		return s.decodeKV(ctx, &r[0])
	}
	return nil, nil
}

// answerProgress answers a progress request once every watcher of the
// stream has caught up (etcd's RequestProgress: watch ID -1, the header
// revision every watcher has seen everything up to).
func (ws *watchStream) answerProgress() error {
	ws.mu.Lock()
	byJournal := map[*Journal][]*watcher{}
	for _, w := range ws.watchers {
		byJournal[w.journal] = append(byJournal[w.journal], w)
	}
	ws.mu.Unlock()
	rev := int64(-1)
	for j, list := range byJournal {
		r, ok := j.synced(list)
		if !ok {
			return nil // asked again once they have caught up
		}
		if rev < 0 || r < rev {
			rev = r
		}
	}
	if rev < 0 {
		// No watcher: the current revision.
		for _, m := range ws.srv.opts.Mirrors {
			if m.Journal != nil {
				rev = max(rev, m.Journal.Rev())
			}
		}
	}
	ws.mu.Lock()
	ws.progress = false
	ws.mu.Unlock()
	return ws.grpc.Send(&pb.WatchResponse{Header: ws.srv.header(rev), WatchId: -1})
}

// sendProgressNotifications sends each watcher that asked for progress
// notifications and has had no response for ProgressNotifyInterval the
// revision it has seen everything up to.
func (ws *watchStream) sendProgressNotifications() error {
	interval := ws.srv.opts.ProgressNotifyInterval
	ws.mu.Lock()
	var due []*watcher
	for _, w := range ws.watchers {
		if w.progress && time.Since(w.sentAt) >= interval {
			due = append(due, w)
		}
	}
	ws.mu.Unlock()
	for _, w := range due {
		rev, ok := w.journal.synced([]*watcher{w})
		if !ok {
			continue
		}
		w.sentAt = time.Now()
		if err := ws.grpc.Send(&pb.WatchResponse{Header: ws.srv.header(rev), WatchId: w.id}); err != nil {
			return err
		}
	}
	return nil
}
