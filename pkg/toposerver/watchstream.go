package toposerver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kvmirror"
	"github.com/topod-io/topod/pkg/topoerr"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// WatchStream is part of topodv1.TopoServer: many watches on one stream.
//
// A watch served from a mirror is a streamWatch and a kvmirror.Subscription:
// two small structs, no goroutine. The mirror marks a changed key on its
// subscriptions, whose notify queues the watch on its session; the
// session's one sender goroutine takes each queued watch's changes and
// packs the updates of many watches into each message. So a change costs
// the watchers of its key, a stalled client holds at most one pending key
// per watched key (and blocks only its own sender), and the mirror never
// waits for a client. A watch no mirror covers has a backend watch and a
// goroutine of its own.
func (s *Server) WatchStream(stream grpc.BidiStreamingServer[topodv1.WatchStreamRequest, topodv1.WatchStreamResponse]) error {
	ctx, done := s.stream(stream.Context(), "watch_stream")
	defer done()
	sess := &watchSession{s: s, stream: stream, watches: map[int64]*streamWatch{}, wake: make(chan struct{}, 1)}
	sess.ctx, sess.cancel = context.WithCancelCause(ctx)
	defer sess.close()
	go sess.receive()
	sent := make(chan error, 1)
	go func() { sent <- sess.sendLoop() }()
	var err error
	select {
	case err = <-sent:
	case <-sess.ctx.Done():
		// The session ended (the client went away, or went over a
		// limit): return at once, even while the sender is blocked on
		// a client that does not read. Returning ends the stream, which
		// fails that Send.
	}
	if cause := context.Cause(sess.ctx); errors.Is(cause, io.EOF) {
		// The client closed its side: a clean end.
		return nil
	} else if err == nil {
		err = cause
	}
	return s.streamEnd(err)
}

// watchSession is one WatchStream: its watches, and the queue of those
// with something to send.
type watchSession struct {
	s      *Server
	stream grpc.BidiStreamingServer[topodv1.WatchStreamRequest, topodv1.WatchStreamResponse]
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	watches map[int64]*streamWatch
	// ready holds the watches with something to send, each once.
	ready []*streamWatch
	// ends holds the last updates of watches that ended, and errors for
	// requests that named no watch.
	ends []*topodv1.WatchUpdate
	// waiting holds the watches waiting for their mirror to be ready (or
	// to reach their after revision), served in order by one goroutine.
	waiting []*streamWatch
	waiter  bool
	// backlog counts the initial-state entries taken from the mirror and
	// not yet handed to the sender (with len(ends), what a client that
	// does not read its stream makes topod hold).
	backlog int
	wake    chan struct{} // capacity 1: ready or ends is not empty

	// sendMu serializes Send between the sender loop and the goroutines of
	// watches served by backend watches.
	sendMu sync.Mutex
}

// streamWatch is one watch of a session.
type streamWatch struct {
	sess *watchSession
	id   int64
	spec watchSpec
	// The fields below are guarded by sess.mu.
	sub *kvmirror.Subscription
	// initial, when hasInitial, is the state to send before any change.
	initial    []kv.KV
	initialRev int64
	hasInitial bool
	queued     bool
	ended      bool
	// stop ends the goroutine of a watch served by a backend watch.
	stop     context.CancelFunc
	deadline time.Time // of the wait for its mirror
}

// queue marks w as having something to send. It is the notify function of
// w's subscription: it only takes the session's lock.
func (w *streamWatch) queue() {
	sess := w.sess
	sess.mu.Lock()
	if !w.queued && !w.ended {
		w.queued = true
		sess.ready = append(sess.ready, w)
	}
	sess.mu.Unlock()
	sess.signal()
}

func (sess *watchSession) signal() {
	select {
	case sess.wake <- struct{}{}:
	default:
	}
}

// receive reads the client's requests until the stream ends, then ends
// the session with the reason (io.EOF when the client closed its side).
// It stops reading once the session has ended for another reason.
func (sess *watchSession) receive() {
	for sess.ctx.Err() == nil {
		req, err := sess.stream.Recv()
		if err != nil {
			sess.cancel(err)
			return
		}
		switch r := req.Request.(type) {
		case *topodv1.WatchStreamRequest_Create:
			sess.create(r.Create)
		case *topodv1.WatchStreamRequest_Cancel:
			sess.cancelWatch(r.Cancel.WatchId)
		default:
			sess.endID(0, status.Error(codes.InvalidArgument, "watch stream: empty request (want create or cancel)"))
		}
	}
}

// create starts a watch: from its mirror at once when that is ready (the
// common case, no goroutine), after a wait for it otherwise, or from a
// backend watch when no mirror covers the path.
func (sess *watchSession) create(c *topodv1.WatchCreate) {
	s := sess.s
	if c.WatchId == 0 {
		sess.endID(0, status.Errorf(codes.InvalidArgument, "watch %s: watch id 0 is reserved: ids start at 1", c.Path))
		return
	}
	spec, err := newWatchSpec(c.Path, c.Recursive, c.AfterRevision)
	if err != nil {
		sess.endID(c.WatchId, fmt.Errorf("watch id %d: %w", c.WatchId, err))
		return
	}
	w := &streamWatch{sess: sess, id: c.WatchId, spec: spec}
	sess.mu.Lock()
	if _, taken := sess.watches[c.WatchId]; taken {
		sess.mu.Unlock()
		sess.endID(c.WatchId, status.Errorf(codes.AlreadyExists, "watch %s: watch id %d is in use on this stream", c.Path, c.WatchId))
		return
	}
	if n := sess.backlog + len(sess.ends); n >= s.opts.MaxStreamBacklog {
		sess.mu.Unlock()
		s.metrics.refused.WithLabelValues("stream_backlog").Inc()
		sess.cancel(topoerr.Errorf(topo.ResourceExhausted, "watch stream: %d initial entries and answers wait to be sent, the most one stream may (--max-stream-backlog): the client is not reading its stream", n))
		return
	}
	if err := s.takeWatch(c.Path, len(sess.watches)); err != nil {
		sess.mu.Unlock()
		sess.endID(c.WatchId, err)
		return
	}
	sess.watches[c.WatchId] = w
	sess.mu.Unlock()
	s.metrics.watchOpened(spec.after > 0)
	s.metrics.watches.Inc()

	m := s.mirrorFor(spec.key)
	if err := s.checkAfter(sess.ctx, spec, m); err != nil {
		sess.end(w, err)
		return
	}
	switch {
	case m == nil:
		sess.serveBackend(w)
	case m.Rev() >= max(spec.after, 1):
		sess.subscribe(w, m)
	default:
		sess.await(w, m)
	}
}

// await queues w until its mirror is ready and at its after revision (at
// most resumeWait): one goroutine per session serves the queue, so a
// stream of thousands of watches resuming on a topod that just started
// costs one goroutine, not thousands.
func (sess *watchSession) await(w *streamWatch, m *kvmirror.Mirror) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	w.deadline = time.Now().Add(resumeWait)
	sess.waiting = append(sess.waiting, w)
	if sess.waiter {
		return
	}
	sess.waiter = true
	go func() {
		for {
			sess.mu.Lock()
			if len(sess.waiting) == 0 {
				sess.waiter = false
				sess.mu.Unlock()
				return
			}
			w := sess.waiting[0]
			sess.waiting = sess.waiting[1:]
			sess.mu.Unlock()
			ctx, cancel := context.WithDeadline(sess.ctx, w.deadline)
			err := m.WaitRev(ctx, max(w.spec.after, 1))
			cancel()
			switch {
			case sess.ctx.Err() != nil:
			case err == nil:
				sess.subscribe(w, m)
			default:
				sess.serveBackend(w)
			}
		}
	}()
}

// subscribe serves w from mirror m: its initial state is sent first, then
// whatever the subscription marks.
func (sess *watchSession) subscribe(w *streamWatch, m *kvmirror.Mirror) {
	sub, snapshot, rev, ok, err := m.Subscribe(sess.ctx, w.spec.key, w.spec.recursive, w.queue)
	switch {
	case err != nil:
		sess.end(w, fmt.Errorf("watch %s: %w", w.spec.path, err))
		return
	case !ok:
		sess.serveBackend(w)
		return
	case !w.spec.recursive && len(snapshot) == 0:
		sub.Close()
		sess.end(w, fmt.Errorf("watch %s: %w", w.spec.path, kv.ErrNotFound))
		return
	}
	sess.mu.Lock()
	if w.ended {
		sess.mu.Unlock()
		sub.Close()
		return
	}
	w.sub, w.initial, w.initialRev, w.hasInitial = sub, snapshot, rev, true
	sess.backlog += len(snapshot)
	sess.mu.Unlock()
	w.queue()
}

// serveBackend serves w from a backend watch of its own, in a goroutine.
func (sess *watchSession) serveBackend(w *streamWatch) {
	ctx, stop := context.WithCancel(sess.ctx)
	sess.mu.Lock()
	if w.ended {
		sess.mu.Unlock()
		stop()
		return
	}
	w.stop = stop
	sess.mu.Unlock()
	go func() {
		err := sess.s.watchBackend(ctx, func(r *topodv1.WatchResponse) error { return sess.sendOne(w, r) }, w.spec)
		if ctx.Err() == nil {
			sess.end(w, err)
		}
	}()
}

// sendOne sends one message of a watch served by a backend watch, unless
// the watch has ended.
func (sess *watchSession) sendOne(w *streamWatch, r *topodv1.WatchResponse) error {
	sess.sendMu.Lock()
	defer sess.sendMu.Unlock()
	sess.mu.Lock()
	ended := w.ended
	sess.mu.Unlock()
	if ended {
		return context.Canceled
	}
	return sess.stream.Send(&topodv1.WatchStreamResponse{Updates: []*topodv1.WatchUpdate{{WatchId: w.id, Response: r}}})
}

// cancelWatch ends a watch at the client's request.
func (sess *watchSession) cancelWatch(id int64) {
	sess.mu.Lock()
	w := sess.watches[id]
	sess.mu.Unlock()
	if w == nil {
		sess.endID(id, status.Errorf(codes.NotFound, "cancel: no watch id %d on this stream", id))
		return
	}
	sess.end(w, nil)
}

// end ends a watch: it sends nothing more but its last update, which
// carries err's status (OK for nil).
func (sess *watchSession) end(w *streamWatch, err error) {
	sess.mu.Lock()
	if w.ended {
		sess.mu.Unlock()
		return
	}
	release := sess.retire(w)
	sess.mu.Unlock()
	release()
	sess.endID(w.id, err)
}

// retire takes w out of the session; sess.mu is held. The returned function
// releases its subscription or backend watch and must be called once
// sess.mu is released: closing a subscription takes the mirror's lock,
// which the mirror holds when it calls a subscription's notify (queue),
// which takes sess.mu.
func (sess *watchSession) retire(w *streamWatch) (release func()) {
	w.ended = true
	delete(sess.watches, w.id)
	sess.backlog -= len(w.initial)
	w.initial = nil
	sess.s.metrics.watches.Dec()
	sess.s.watches.Give()
	sub, stop := w.sub, w.stop
	return func() {
		if sub != nil {
			sub.Close()
		}
		if stop != nil {
			stop()
		}
	}
}

// endID queues the last update of watch id, with err's status.
func (sess *watchSession) endID(id int64, err error) {
	u := &topodv1.WatchUpdate{WatchId: id, Ended: true}
	if err != nil {
		st := status.Convert(toStatus(err))
		u.Code, u.Error = int32(st.Code()), st.Message()
	}
	sess.mu.Lock()
	sess.ends = append(sess.ends, u)
	sess.mu.Unlock()
	sess.signal()
}

// sendLoop sends what the watches have, as it comes, until the session
// ends. It returns the error that ended it.
func (sess *watchSession) sendLoop() error {
	for {
		select {
		case <-sess.ctx.Done():
			return nil
		case <-sess.wake:
		}
		for {
			sess.mu.Lock()
			ready, ends := sess.ready, sess.ends
			sess.ready, sess.ends = nil, nil
			for _, w := range ready {
				w.queued = false
			}
			sess.mu.Unlock()
			if len(ready) == 0 && len(ends) == 0 {
				break
			}
			var updates []*topodv1.WatchUpdate
			for _, w := range ready {
				u, err := sess.take(w)
				if err != nil {
					return err
				}
				updates = append(updates, u...)
			}
			if err := sess.send(append(updates, ends...)); err != nil {
				return err
			}
		}
	}
}

// take returns the updates a queued watch has: its initial state if not
// sent yet, then its changes. A single-file watch whose file was deleted
// ends with that change.
func (sess *watchSession) take(w *streamWatch) ([]*topodv1.WatchUpdate, error) {
	s := sess.s
	sess.mu.Lock()
	if w.ended || w.sub == nil {
		sess.mu.Unlock()
		return nil, nil
	}
	sub, initial, rev, hasInitial := w.sub, w.initial, w.initialRev, w.hasInitial
	w.initial, w.hasInitial = nil, false
	sess.backlog -= len(initial)
	sess.mu.Unlock()
	var updates []*topodv1.WatchUpdate
	if hasInitial {
		for _, r := range s.initialResponses(initial, rev, w.spec.after) {
			updates = append(updates, &topodv1.WatchUpdate{WatchId: w.id, Response: r})
		}
	}
	events, rev, err := sub.Take(sess.ctx)
	if errors.Is(err, kvmirror.ErrStopped) {
		// The server is closing.
		return nil, err
	}
	if err != nil {
		// A value the mirror does not hold could not be read: end the
		// watch as unavailable; the client resumes it from the revision
		// it had reached.
		sess.end(w, fmt.Errorf("watch %s: %w", w.spec.path, err))
		return updates, nil
	}
	if len(events) > 0 {
		r, ended := s.eventsResponse(events, rev, w.spec.recursive)
		u := &topodv1.WatchUpdate{WatchId: w.id, Response: r}
		if ended {
			release := func() {}
			sess.mu.Lock()
			if !w.ended {
				release = sess.retire(w)
				u.Ended = true
			}
			sess.mu.Unlock()
			release()
		}
		updates = append(updates, u)
	}
	return updates, nil
}

// send sends updates, packed into messages of about maxWatchMessageBytes.
func (sess *watchSession) send(updates []*topodv1.WatchUpdate) error {
	sess.sendMu.Lock()
	defer sess.sendMu.Unlock()
	msg := &topodv1.WatchStreamResponse{}
	size := 0
	for _, u := range updates {
		n := proto.Size(u)
		if size > 0 && size+n > maxWatchMessageBytes {
			if err := sess.stream.Send(msg); err != nil {
				return err
			}
			msg, size = &topodv1.WatchStreamResponse{}, 0
		}
		msg.Updates = append(msg.Updates, u)
		size += n
	}
	if len(msg.Updates) == 0 {
		return nil
	}
	return sess.stream.Send(msg)
}

// close ends every watch of the session.
func (sess *watchSession) close() {
	sess.cancel(context.Canceled)
	sess.mu.Lock()
	var releases []func()
	for _, w := range sess.watches {
		releases = append(releases, sess.retire(w))
	}
	sess.waiting = nil
	sess.mu.Unlock()
	for _, release := range releases {
		release()
	}
}
