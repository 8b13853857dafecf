package topoplugin

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"vitess.io/vitess/go/vt/log"

	"github.com/topod-io/topod/pkg/retry"
	"github.com/topod-io/topod/pkg/topoerr"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Reconnection backoff of a broken watch stream, jittered so that the
// clients of a replica that died do not all come back in the same instant.
const (
	minRetryDelay = 50 * time.Millisecond
	maxRetryDelay = 5 * time.Second
)

// watchStream carries every watch of a Conn on one topod WatchStream, as
// etcd's client multiplexes its watches on one gRPC stream: a watch costs
// a create request and a follower, not a stream. One goroutine reads the
// stream and hands each watch's updates to its follower's mailbox without
// ever blocking, so a watcher that does not read its channel holds up no
// other. When the stream breaks (a replica died, topod restarted) it is
// opened again, on any replica, and every watch is created again from the
// revision it had received: each resumes where it was.
type watchStream struct {
	c *Conn

	mu      sync.Mutex
	started bool
	nextID  int64
	watches map[int64]*follower
	// stream is the current stream, nil while there is none.
	stream grpc.BidiStreamingClient[topodv1.WatchStreamRequest, topodv1.WatchStreamResponse]

	// sendMu serializes requests on the stream.
	sendMu sync.Mutex
}

// watchStream returns the connection's watch stream, starting it on first
// use.
func (c *Conn) watchStream() *watchStream {
	ws := c.watches
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if !ws.started {
		ws.started = true
		go ws.run()
	}
	return ws
}

// add registers f under a new id and asks topod for it, now if the stream
// is up, else when it is (re)opened.
func (ws *watchStream) add(f *follower) {
	ws.mu.Lock()
	ws.nextID++
	f.id = ws.nextID
	ws.watches[f.id] = f
	watchesOpen.Add(1)
	stream := ws.stream
	req := ws.createRequest(f)
	ws.mu.Unlock()
	if stream != nil {
		ws.send(stream, req)
	}
}

// remove takes f off the stream, canceling it on topod.
func (ws *watchStream) remove(f *follower) {
	ws.mu.Lock()
	if ws.watches[f.id] != f {
		ws.mu.Unlock()
		return
	}
	delete(ws.watches, f.id)
	watchesOpen.Add(-1)
	stream := ws.stream
	ws.mu.Unlock()
	if stream != nil {
		ws.send(stream, &topodv1.WatchStreamRequest{Request: &topodv1.WatchStreamRequest_Cancel{Cancel: &topodv1.WatchCancel{WatchId: f.id}}})
	}
}

// createRequest is the request creating f, from the revision it had
// received. ws.mu is held.
func (ws *watchStream) createRequest(f *follower) *topodv1.WatchStreamRequest {
	f.partial = nil
	return &topodv1.WatchStreamRequest{Request: &topodv1.WatchStreamRequest_Create{Create: &topodv1.WatchCreate{
		WatchId: f.id, Path: f.path, Recursive: f.recursive, AfterRevision: f.recvRev,
	}}}
}

// send sends a request; a failure is the stream's, which its reader sees
// and recovers from by creating every watch again.
func (ws *watchStream) send(stream grpc.BidiStreamingClient[topodv1.WatchStreamRequest, topodv1.WatchStreamResponse], req *topodv1.WatchStreamRequest) {
	ws.sendMu.Lock()
	defer ws.sendMu.Unlock()
	_ = stream.Send(req)
}

// run keeps a stream open until the connection closes: it opens one (on
// any replica, waiting for one to be reachable), creates every watch on
// it, reads it until it breaks, and starts again after a jittered backoff.
func (ws *watchStream) run() {
	ctx := ws.c.ctx
	wait := retry.New(minRetryDelay, maxRetryDelay)
	for ctx.Err() == nil {
		err := ws.serve(ctx, wait)
		if ctx.Err() != nil {
			break
		}
		statStreamReconnects.Add(1)
		switch status.Code(err) {
		case codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated:
			// This topod will not serve watches to this client: say so
			// to every watcher rather than retry for ever.
			ws.failAll(err)
		}
		_ = wait.Wait(ctx)
	}
	ws.failAll(nil)
}

// serve opens a stream, creates every watch on it and dispatches what it
// receives until it breaks.
func (ws *watchStream) serve(ctx context.Context, wait *retry.Backoff) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ws.c.client.WatchStream(sctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	ws.mu.Lock()
	ws.stream = stream
	ids := make([]int64, 0, len(ws.watches))
	for id := range ws.watches {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	reqs := make([]*topodv1.WatchStreamRequest, len(ids))
	for i, id := range ids {
		reqs[i] = ws.createRequest(ws.watches[id])
	}
	ws.mu.Unlock()
	defer func() {
		ws.mu.Lock()
		ws.stream = nil
		ws.mu.Unlock()
	}()
	for _, req := range reqs {
		ws.send(stream, req)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			if n := ws.count(); ctx.Err() == nil && n > 0 {
				log.Warn("topod: watch stream broken, resuming its watches", slog.Int("watches", n), slog.Any("err", err))
			}
			return err
		}
		wait.Reset()
		for _, u := range msg.Updates {
			ws.dispatch(stream, u)
		}
	}
}

func (ws *watchStream) count() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.watches)
}

// dispatch hands one update to its watch's follower. Updates for a watch
// no longer on the stream (canceled) are dropped.
func (ws *watchStream) dispatch(stream grpc.BidiStreamingClient[topodv1.WatchStreamRequest, topodv1.WatchStreamResponse], u *topodv1.WatchUpdate) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	f := ws.watches[u.WatchId]
	if f == nil {
		return
	}
	if r := u.Response; r != nil {
		if r.Initial {
			if f.partial == nil {
				f.partial = &state{}
			}
			f.partial.events = append(f.partial.events, r.Events...)
			f.partial.unchanged = append(f.partial.unchanged, r.Unchanged...)
			f.partial.rev = r.Revision
			if r.InitialComplete {
				st := f.partial
				f.partial = nil
				st.rebase, f.rebase = f.rebase, false
				f.recvRev = max(f.recvRev, st.rev)
				if !f.isOpen {
					f.isOpen, f.first = true, st
					close(f.opened)
				} else {
					f.box.pushState(st)
				}
			}
		} else if f.isOpen {
			f.recreate = nil // topod follows the watch again
			f.recvRev = max(f.recvRev, r.Revision)
			f.box.pushChanges(r.Events)
		}
	}
	if !u.Ended {
		return
	}
	delete(ws.watches, u.WatchId)
	watchesOpen.Add(-1)
	err := status.Error(codes.Code(u.Code), u.Error)
	if u.Code == int32(codes.OK) {
		err = nil
	}
	if !f.isOpen {
		if err == nil {
			err = status.Errorf(codes.Internal, "watch %s: ended before its initial state", f.path)
		}
		f.openErr = err
		f.isOpen = true
		close(f.opened)
		return
	}
	switch status.Code(err) {
	case codes.OK:
		f.box.pushEnd(nil)
	case codes.NotFound, codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented, codes.AlreadyExists:
		f.box.pushEnd(topoerr.FromError(err, f.path))
	default:
		// topod could not go on with this watch (a value it could not
		// read, its backend unreachable): create it again, under a new
		// id, from the revision received; or from the start when that
		// revision is ahead of the store's (OutOfRange: etcd restored
		// from an older backup), getting its whole state again.
		if status.Code(err) == codes.OutOfRange {
			f.recvRev, f.rebase = 0, true
		}
		ws.nextID++
		f.id = ws.nextID
		ws.watches[f.id] = f
		watchesOpen.Add(1)
		req := ws.createRequest(f)
		if f.recreate == nil {
			f.recreate = retry.New(minRetryDelay, maxRetryDelay)
		}
		delay := f.recreate.Next()
		go func() {
			select {
			case <-f.ctx.Done():
			case <-time.After(delay):
				ws.send(stream, req)
			}
		}()
	}
}

// failAll ends every watch: with err (converted) when topod refuses the
// stream, with no notification when the connection was closed (err nil).
func (ws *watchStream) failAll(err error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for id, f := range ws.watches {
		delete(ws.watches, id)
		watchesOpen.Add(-1)
		if !f.isOpen {
			f.openErr = err
			if err == nil {
				f.openErr = context.Canceled
			}
			f.isOpen = true
			close(f.opened)
			continue
		}
		if err != nil {
			f.box.pushEnd(topoerr.FromError(err, f.path))
		}
	}
}
