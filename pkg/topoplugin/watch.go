package topoplugin

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"vitess.io/vitess/go/vt/topo"

	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Reconnection backoff of a broken watch stream.
const (
	minRetryDelay = 50 * time.Millisecond
	maxRetryDelay = 5 * time.Second
	// decodeAttempts is how often a watcher tries to fetch a change's blobs.
	decodeAttempts = 3
)

// Watch is part of topo.Conn.
func (c *Conn) Watch(ctx context.Context, filePath string) (*topo.WatchData, <-chan *topo.WatchData, error) {
	p, err := c.fullPath(filePath)
	if err != nil {
		return nil, nil, err
	}
	f, initial, err := c.follow(ctx, p, false)
	if err != nil {
		return nil, nil, err
	}
	if len(initial.events) == 0 {
		f.cancel()
		return nil, nil, topo.NewError(topo.NoNode, p)
	}
	first := initial.events[0]
	contents, err := c.decode(ctx, p, first.Contents)
	if err != nil {
		f.cancel()
		return nil, nil, err
	}
	changes := make(chan *topo.WatchData, 10)
	go func() {
		defer close(changes)
		err := f.run(func(ev *topodv1.FileEvent) bool {
			if ev.Deleted {
				changes <- &topo.WatchData{Err: topo.NewError(topo.NoNode, p)}
				return false
			}
			contents, ok := f.decode(ev)
			if !ok {
				return true
			}
			return f.send(func() { changes <- &topo.WatchData{Contents: contents, Version: Version(ev.Version)} })
		})
		if err != nil {
			changes <- &topo.WatchData{Err: err}
		}
	}()
	return &topo.WatchData{Contents: contents, Version: Version(first.Version)}, changes, nil
}

// WatchRecursive is part of topo.Conn. Paths in the results are full keys,
// root included, as etcd2topo returns them.
func (c *Conn) WatchRecursive(ctx context.Context, dirPath string) ([]*topo.WatchDataRecursive, <-chan *topo.WatchDataRecursive, error) {
	p, err := c.fullPath(dirPath)
	if err != nil {
		return nil, nil, err
	}
	f, initial, err := c.follow(ctx, p, true)
	if err != nil {
		return nil, nil, err
	}
	current := make([]*topo.WatchDataRecursive, len(initial.events))
	for i, ev := range initial.events {
		contents, err := c.decode(ctx, ev.Path, ev.Contents)
		if err != nil {
			f.cancel()
			return nil, nil, err
		}
		current[i] = &topo.WatchDataRecursive{Path: ev.Path, WatchData: topo.WatchData{Contents: contents, Version: Version(ev.Version)}}
	}
	changes := make(chan *topo.WatchDataRecursive, 10)
	go func() {
		defer close(changes)
		err := f.run(func(ev *topodv1.FileEvent) bool {
			wd := &topo.WatchDataRecursive{Path: ev.Path}
			if ev.Deleted {
				wd.Err = topo.NewError(topo.NoNode, ev.Path)
			} else {
				contents, ok := f.decode(ev)
				if !ok {
					return true
				}
				wd.Contents, wd.Version = contents, Version(ev.Version)
			}
			return f.send(func() { changes <- wd })
		})
		if err != nil {
			changes <- &topo.WatchDataRecursive{Path: p, WatchData: topo.WatchData{Err: err}}
		}
	}()
	return current, changes, nil
}

// follower follows one topod watch stream for a topo watcher, reconnecting
// (to any replica) when the stream breaks and resuming from the revision it
// had reached: the replica sends the files changed since and names the
// others, and the follower turns that into the changes the watcher has not
// seen, so it converges on the latest value without duplicates or gaps.
type follower struct {
	c         *Conn
	path      string
	recursive bool
	// ctx is the watcher's context, also ended by Conn.Close.
	ctx    context.Context
	cancel context.CancelFunc
	stream grpc.ServerStreamingClient[topodv1.WatchResponse]
	// versions is the version of every file the watcher has seen.
	versions map[string]int64
	// rev is the backend revision the watcher has seen every change up to.
	rev int64
}

// state is the state of the watched files a stream starts with: the full
// state, or, when resuming, the files changed since the revision asked for
// (events) and the names of the others present (unchanged).
type state struct {
	events    []*topodv1.FileEvent
	unchanged []string
	rev       int64
}

// follow opens the watch and returns its initial state. It gives up with
// topo.Timeout if no replica answers within the request timeout.
func (c *Conn) follow(ctx context.Context, p string, recursive bool) (*follower, *state, error) {
	ctx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(c.ctx, cancel)
	f := &follower{c: c, path: p, recursive: recursive, ctx: ctx, versions: map[string]int64{}}
	f.cancel = func() { stopOnClose(); cancel() }

	openCtx, openCancel := context.WithTimeout(ctx, requestTimeout)
	defer openCancel()
	initial, err := f.open(openCtx)
	if err != nil {
		f.cancel()
		if ctx.Err() == nil && openCtx.Err() != nil {
			return nil, nil, topo.NewError(topo.Timeout, p)
		}
		return nil, nil, convertError(err, p)
	}
	for _, ev := range initial.events {
		f.versions[ev.Path] = ev.Version
	}
	f.rev = initial.rev
	return f, initial, nil
}

// open starts a stream and reads its initial state: the full state on the
// first open, the changes since f.rev when resuming. The stream lives in
// f.ctx; openCtx only bounds the wait for the initial state.
func (f *follower) open(openCtx context.Context) (*state, error) {
	streamCtx, streamCancel := context.WithCancel(f.ctx)
	stop := context.AfterFunc(openCtx, streamCancel)
	defer stop()
	req := &topodv1.WatchRequest{Path: f.path, AfterRevision: f.rev}
	var stream grpc.ServerStreamingClient[topodv1.WatchResponse]
	var err error
	if f.recursive {
		stream, err = f.c.client.WatchRecursive(streamCtx, req, grpc.WaitForReady(true))
	} else {
		stream, err = f.c.client.Watch(streamCtx, req, grpc.WaitForReady(true))
	}
	if err != nil {
		streamCancel()
		return nil, err
	}
	msg, err := stream.Recv()
	if err == nil && !msg.Initial {
		err = status.Errorf(codes.Internal, "watch %s: first message is not the initial state", f.path)
	}
	var st *state
	if err == nil {
		st, err = readState(stream, msg)
	}
	if err != nil {
		streamCancel()
		return nil, err
	}
	f.stream = stream
	return st, nil
}

// readState reads an initial state, which starts with msg, to its last
// message.
func readState(stream grpc.ServerStreamingClient[topodv1.WatchResponse], msg *topodv1.WatchResponse) (*state, error) {
	st := &state{}
	for {
		if !msg.Initial {
			return nil, status.Errorf(codes.Internal, "watch: initial state interrupted by a change")
		}
		st.events = append(st.events, msg.Events...)
		st.unchanged = append(st.unchanged, msg.Unchanged...)
		st.rev = msg.Revision
		if msg.InitialComplete {
			return st, nil
		}
		var err error
		if msg, err = stream.Recv(); err != nil {
			return nil, err
		}
	}
}

// decode returns the contents of a changed file. If its blobs cannot be
// had (after a few tries) the change is skipped and logged: the watcher
// keeps the last good value rather than getting an error or wrong content.
func (f *follower) decode(ev *topodv1.FileEvent) ([]byte, bool) {
	delay := minRetryDelay
	for attempt := 0; ; attempt++ {
		contents, err := f.c.decode(f.ctx, ev.Path, ev.Contents)
		if err == nil {
			return contents, true
		}
		if attempt == decodeAttempts-1 || f.ctx.Err() != nil {
			logDecodeError(ev.Path, err)
			return nil, false
		}
		select {
		case <-f.ctx.Done():
		case <-time.After(delay):
		}
		delay *= 4
	}
}

// send delivers a change unless the watcher's context ends first; it
// reports whether to go on.
func (f *follower) send(deliver func()) bool {
	if f.ctx.Err() != nil {
		return false
	}
	deliver()
	return true
}

// run follows the stream until the watch ends, calling emit for every change
// the watcher has not seen (emit returns false to stop). The returned error,
// if any, is the watcher's last notification: topo.Interrupted when its
// context was canceled, topo.NoNode when a watched file is gone, nil when the
// connection was closed.
func (f *follower) run(emit func(*topodv1.FileEvent) bool) error {
	defer f.cancel()
	delay := minRetryDelay
	for {
		msg, err := f.stream.Recv()
		if err == nil && msg.Initial {
			// The server could not follow (compaction) and sends the
			// state again; one cut short is not applied: the stream is
			// broken and the follower resumes on a new one.
			var st *state
			if st, err = readState(f.stream, msg); err == nil {
				if !f.reset(st, emit) {
					return nil
				}
				delay = minRetryDelay
				continue
			}
		}
		if err == nil {
			for _, ev := range msg.Events {
				if !f.apply(ev, emit) {
					return nil
				}
			}
			f.rev = max(f.rev, msg.Revision)
			delay = minRetryDelay
			continue
		}
		if final, done := f.final(err); done {
			return final
		}
		// The stream broke (replica gone, server shutting down): resume on
		// any replica from the revision reached.
		for {
			select {
			case <-f.ctx.Done():
				return f.interrupted()
			case <-time.After(delay):
			}
			delay = min(2*delay, maxRetryDelay)
			st, err := f.open(f.ctx)
			if err != nil {
				if final, done := f.final(err); done {
					return final
				}
				continue
			}
			if !f.reset(st, emit) {
				return nil
			}
			break
		}
	}
}

// final says whether a stream error ends the watch, and with what
// notification.
func (f *follower) final(err error) (error, bool) {
	if f.ctx.Err() != nil {
		return f.interrupted(), true
	}
	switch status.Code(err) {
	case codes.NotFound:
		return topo.NewError(topo.NoNode, f.path), true
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
		return convertError(err, f.path), true
	}
	return nil, false
}

// interrupted is the last notification of a watch whose context ended: none
// when the connection was closed (as etcd2topo), topo.Interrupted or
// topo.Timeout otherwise.
func (f *follower) interrupted() error {
	if f.c.ctx.Err() != nil {
		return nil
	}
	return convertError(context.Cause(f.ctx), f.path)
}

// apply delivers one change if the watcher has not seen it.
func (f *follower) apply(ev *topodv1.FileEvent, emit func(*topodv1.FileEvent) bool) bool {
	if ev.Deleted {
		if _, ok := f.versions[ev.Path]; !ok && f.recursive {
			return true
		}
		delete(f.versions, ev.Path)
		return emit(ev) && f.recursive
	}
	if v, ok := f.versions[ev.Path]; ok && v >= ev.Version {
		return true
	}
	f.versions[ev.Path] = ev.Version
	return emit(ev)
}

// reset turns a new initial state (after a reconnection, or sent again by
// the server when it could not follow) into the changes the watcher has not
// seen: new and updated files, then files that are gone.
func (f *follower) reset(st *state, emit func(*topodv1.FileEvent) bool) bool {
	present := make(map[string]bool, len(st.events)+len(st.unchanged))
	for _, p := range st.unchanged {
		present[p] = true
	}
	for _, ev := range st.events {
		present[ev.Path] = true
		if !f.apply(ev, emit) {
			return false
		}
	}
	for p := range f.versions {
		if !present[p] {
			if !f.apply(&topodv1.FileEvent{Path: p, Deleted: true}, emit) {
				return false
			}
		}
	}
	f.rev = max(f.rev, st.rev)
	return true
}
