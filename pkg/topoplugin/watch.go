package topoplugin

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/retry"
	"github.com/topod-io/topod/pkg/topoerr"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Backoff of a watch whose change could not be read (its blobs missing or
// unreachable): it tries again, ever less often, until it gets the change
// or a newer one.
const (
	minDecodeRetry = 50 * time.Millisecond
	maxDecodeRetry = 30 * time.Second
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
		f.stop()
		return nil, nil, topo.NewError(topo.NoNode, p)
	}
	first := initial.events[0]
	contents, err := c.decode(ctx, p, first.Contents)
	if err != nil {
		f.stop()
		return nil, nil, err
	}
	f.versions[p] = first.Version
	changes := make(chan *topo.WatchData, 10)
	go func() {
		defer close(changes)
		err := f.run(func(ev *topodv1.FileEvent) emitResult {
			if ev.Deleted {
				changes <- &topo.WatchData{Err: topo.NewError(topo.NoNode, p)}
				return stop
			}
			contents, err := c.decode(f.ctx, ev.Path, ev.Contents)
			if err != nil {
				logDecodeError(ev.Path, err)
				return unreadable
			}
			changes <- &topo.WatchData{Contents: contents, Version: Version(ev.Version)}
			return emitted
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
			f.stop()
			return nil, nil, err
		}
		current[i] = &topo.WatchDataRecursive{Path: ev.Path, WatchData: topo.WatchData{Contents: contents, Version: Version(ev.Version)}}
		f.versions[ev.Path] = ev.Version
	}
	changes := make(chan *topo.WatchDataRecursive, 10)
	go func() {
		defer close(changes)
		err := f.run(func(ev *topodv1.FileEvent) emitResult {
			wd := &topo.WatchDataRecursive{Path: ev.Path}
			if ev.Deleted {
				wd.Err = topo.NewError(topo.NoNode, ev.Path)
			} else {
				contents, err := c.decode(f.ctx, ev.Path, ev.Contents)
				if err != nil {
					logDecodeError(ev.Path, err)
					return unreadable
				}
				wd.Contents, wd.Version = contents, Version(ev.Version)
			}
			changes <- wd
			return emitted
		})
		if err != nil {
			changes <- &topo.WatchDataRecursive{Path: p, WatchData: topo.WatchData{Err: err}}
		}
	}()
	return current, changes, nil
}

// emitResult is what delivering one change to the watcher came to.
type emitResult int

const (
	// emitted: the watcher has the change.
	emitted emitResult = iota
	// unreadable: the change could not be read (its blobs); try again
	// later.
	unreadable
	// stop: the watch is over (its file was deleted).
	stop
)

// follower is one topo watch: the connection's watch stream (watchStream)
// puts what topod sends for it in its mailbox, and its goroutine (run)
// turns that into the changes the watcher has not seen, so it converges on
// the latest value without duplicates or gaps, across reconnections and
// replicas.
type follower struct {
	c         *Conn
	path      string
	recursive bool
	// ctx is the watcher's context, also ended by Conn.Close.
	ctx    context.Context
	cancel context.CancelFunc

	// Guarded by the stream's lock (watchStream.mu):
	id int64
	// recvRev is the revision of the last complete message received: a
	// reconnecting stream resumes the watch from it.
	recvRev int64
	// rebase: the store went back past recvRev (restored from an older
	// backup); the next initial state replaces what the watcher saw.
	rebase bool
	// partial is an initial state being received.
	partial *state
	// recreate spaces out the re-creations of a watch topod keeps ending
	// as unavailable; nil once topod sends it changes again.
	recreate *retry.Backoff
	// opened is closed when the first initial state (first) or an error
	// ending the watch before it (openErr) arrives.
	opened  chan struct{}
	isOpen  bool
	first   *state
	openErr error

	box mailbox

	// Owned by the run goroutine: the version of every file the watcher
	// has seen.
	versions map[string]int64
}

// state is the state of the watched files a watch starts with: the full
// state, or, when resuming, the files changed since the revision asked for
// (events) and the names of the others present (unchanged).
type state struct {
	events    []*topodv1.FileEvent
	unchanged []string
	rev       int64
	// rebase: the state is of a store whose versions went back (restored
	// from a backup): each file in it is delivered, whatever version the
	// watcher had seen.
	rebase bool
}

// follow opens the watch on the connection's watch stream and returns its
// initial state. It gives up with topo.Timeout if no replica answers within
// the request timeout.
func (c *Conn) follow(ctx context.Context, p string, recursive bool) (*follower, *state, error) {
	ctx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(c.ctx, cancel)
	f := &follower{
		c: c, path: p, recursive: recursive, ctx: ctx,
		opened: make(chan struct{}), box: mailbox{wake: make(chan struct{}, 1)}, versions: map[string]int64{},
	}
	f.cancel = func() { stopOnClose(); cancel() }
	ws := c.watchStream()
	ws.add(f)
	timer := time.NewTimer(requestTimeout)
	defer timer.Stop()
	select {
	case <-f.opened:
	case <-ctx.Done():
	case <-timer.C:
	}
	ws.mu.Lock()
	isOpen, first, openErr := f.isOpen, f.first, f.openErr
	f.first = nil
	ws.mu.Unlock()
	switch {
	case openErr != nil:
		f.stop()
		return nil, nil, topoerr.FromError(openErr, p)
	case !isOpen && ctx.Err() != nil:
		f.stop()
		return nil, nil, topoerr.FromError(context.Cause(ctx), p)
	case !isOpen:
		f.stop()
		return nil, nil, topo.NewError(topo.Timeout, p)
	}
	return f, first, nil
}

// stop ends the watch and takes it off the stream.
func (f *follower) stop() {
	f.cancel()
	f.c.watchStream().remove(f)
}

// run delivers the changes the watcher has not seen, from the mailbox,
// until the watch ends, calling emit for each. The returned error, if any,
// is the watcher's last notification: topo.Interrupted when its context was
// canceled, topo.NoNode when a watched file is gone, nil when the
// connection was closed.
func (f *follower) run(emit func(*topodv1.FileEvent) emitResult) error {
	defer f.stop()
	wait := retry.New(minDecodeRetry, maxDecodeRetry)
	for {
		it, ok := f.box.take(f.ctx)
		if !ok {
			return f.interrupted()
		}
		var failed []*topodv1.FileEvent
		var done bool
		switch {
		case it.end:
			return it.err
		case it.state != nil:
			failed, done = f.reset(it.state, emit)
		default:
			failed, done = f.applyAll(it.batch(), emit)
		}
		if done {
			return nil
		}
		if len(failed) == 0 {
			wait.Reset()
			continue
		}
		// The watcher keeps its last good value; the change (or a newer
		// one of the same file) is tried again.
		statUnreadable.Add(int64(len(failed)))
		f.box.requeue(failed)
		if wait.Wait(f.ctx) != nil {
			return f.interrupted()
		}
	}
}

// interrupted is the last notification of a watch whose context ended: none
// when the connection was closed (as etcd2topo), topo.Interrupted or
// topo.Timeout otherwise.
func (f *follower) interrupted() error {
	if f.c.ctx.Err() != nil {
		return nil
	}
	return topoerr.FromError(context.Cause(f.ctx), f.path)
}

// applyAll delivers changes in order; it returns those that could not be
// read, and done when the watch is over.
func (f *follower) applyAll(events []*topodv1.FileEvent, emit func(*topodv1.FileEvent) emitResult) (failed []*topodv1.FileEvent, done bool) {
	for _, ev := range events {
		switch f.apply(ev, emit) {
		case unreadable:
			failed = append(failed, ev)
		case stop:
			return failed, true
		}
	}
	return failed, false
}

// apply delivers one change if the watcher has not seen it. The version is
// recorded only once the watcher has it, so a change that could not be
// read is delivered when it can be.
func (f *follower) apply(ev *topodv1.FileEvent, emit func(*topodv1.FileEvent) emitResult) emitResult {
	if ev.Deleted {
		if _, ok := f.versions[ev.Path]; !ok && f.recursive {
			return emitted
		}
		delete(f.versions, ev.Path)
		if r := emit(ev); r == stop || !f.recursive {
			return stop
		}
		return emitted
	}
	if v, ok := f.versions[ev.Path]; ok && v >= ev.Version {
		return emitted
	}
	r := emit(ev)
	if r == emitted {
		f.versions[ev.Path] = ev.Version
	}
	return r
}

// reset turns a new initial state (after a reconnection, or sent again by
// the server when it could not follow) into the changes the watcher has not
// seen: new and updated files, then files that are gone.
func (f *follower) reset(st *state, emit func(*topodv1.FileEvent) emitResult) (failed []*topodv1.FileEvent, done bool) {
	if st.rebase {
		for p := range f.versions {
			f.versions[p] = -1
		}
	}
	present := make(map[string]bool, len(st.events)+len(st.unchanged))
	for _, p := range st.unchanged {
		present[p] = true
	}
	for _, ev := range st.events {
		present[ev.Path] = true
	}
	failed, done = f.applyAll(st.events, emit)
	if done {
		return failed, true
	}
	for p := range f.versions {
		if !present[p] {
			if f.apply(&topodv1.FileEvent{Path: p, Deleted: true, Version: st.rev}, emit) == stop {
				return failed, true
			}
		}
	}
	return failed, false
}

// mailbox holds what the watch stream received for one watch until the
// follower takes it, coalesced: consecutive changes keep the latest of each
// file, so a watcher that does not read its channel holds at most one
// pending change per file, never a queue. Initial states (after a
// reconnection) and the end of the watch are kept in order between them.
type mailbox struct {
	mu    sync.Mutex
	items []boxItem
	wake  chan struct{} // capacity 1
}

// boxItem is a batch of changes, an initial state, or the end.
type boxItem struct {
	changes map[string]*topodv1.FileEvent
	state   *state
	end     bool
	err     error
}

// batch returns a batch's changes in revision order.
func (it boxItem) batch() []*topodv1.FileEvent {
	events := make([]*topodv1.FileEvent, 0, len(it.changes))
	for _, ev := range it.changes {
		events = append(events, ev)
	}
	slices.SortFunc(events, func(a, b *topodv1.FileEvent) int {
		return cmp.Or(cmp.Compare(a.Version, b.Version), cmp.Compare(a.Path, b.Path))
	})
	return events
}

func (b *mailbox) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// pushChanges adds changes, merged into the last batch if it is one.
func (b *mailbox) pushChanges(events []*topodv1.FileEvent) {
	if len(events) == 0 {
		return
	}
	b.mu.Lock()
	n := len(b.items)
	if n == 0 || b.items[n-1].changes == nil {
		b.items = append(b.items, boxItem{changes: map[string]*topodv1.FileEvent{}})
		n++
	}
	for _, ev := range events {
		b.items[n-1].changes[ev.Path] = ev
	}
	b.mu.Unlock()
	b.signal()
}

// requeue puts back, first, changes the follower could not deliver; a
// newer change of the same file already waiting wins.
func (b *mailbox) requeue(events []*topodv1.FileEvent) {
	b.mu.Lock()
	if len(b.items) == 0 || b.items[0].changes == nil {
		b.items = slices.Insert(b.items, 0, boxItem{changes: map[string]*topodv1.FileEvent{}})
	}
	first := b.items[0].changes
	for _, ev := range events {
		if cur, ok := first[ev.Path]; !ok || cur.Version < ev.Version {
			first[ev.Path] = ev
		}
	}
	b.mu.Unlock()
	b.signal()
}

func (b *mailbox) pushState(st *state) {
	b.mu.Lock()
	b.items = append(b.items, boxItem{state: st})
	b.mu.Unlock()
	b.signal()
}

func (b *mailbox) pushEnd(err error) {
	b.mu.Lock()
	b.items = append(b.items, boxItem{end: true, err: err})
	b.mu.Unlock()
	b.signal()
}

// take returns the first item, waiting for one until ctx ends (ok false).
func (b *mailbox) take(ctx context.Context) (boxItem, bool) {
	for {
		b.mu.Lock()
		if len(b.items) > 0 {
			it := b.items[0]
			b.items[0] = boxItem{}
			b.items = b.items[1:]
			b.mu.Unlock()
			return it, true
		}
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return boxItem{}, false
		case <-b.wake:
		}
	}
}
