package boltkv

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/topod-io/topod/pkg/kv"
)

// Watch delivers the changes to key (or under it, with prefix) made after
// afterRev (0: from now). Changes since afterRev come from the in-memory
// replay ring; if it no longer holds them (or afterRev is from before this
// process opened the file), the only response carries kv.ErrCompacted. A
// watcher that falls more than Options.WatcherBacklog events behind is
// ended the same way. Event values are shared between watchers: read only.
func (b *Backend) Watch(ctx context.Context, key string, prefix bool, afterRev int64) (<-chan kv.WatchResponse, error) {
	return b.watch(ctx, key, prefix, afterRev, 0)
}

// WatchProgress is Watch, also confirming the watch's progress with
// responses that carry no event: at once for a write to keys it does not
// watch (so its consumer knows it has seen every change up to the
// backend's revision: kvmirror's linearizable reads), and every interval
// while nothing is written (as etcdkv's WatchProgress). A progress
// response is merged with any other waiting for the consumer.
func (b *Backend) WatchProgress(ctx context.Context, key string, prefix bool, afterRev int64, interval time.Duration) (<-chan kv.WatchResponse, error) {
	if interval <= 0 {
		return nil, opError("watch", key, fmt.Errorf("progress interval %v: want a positive one", interval))
	}
	return b.watch(ctx, key, prefix, afterRev, interval)
}

func (b *Backend) watch(ctx context.Context, key string, prefix bool, afterRev int64, progress time.Duration) (<-chan kv.WatchResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, opError("watch", key, err)
	}
	w := &watcher{
		key:      key,
		prefix:   prefix,
		progress: progress,
		backlog:  b.opts.WatcherBacklog,
		out:      make(chan kv.WatchResponse, 1),
		wake:     make(chan struct{}, 1),
	}
	if err := b.notifier.register(w, afterRev); err != nil {
		return nil, opError("watch", key, err)
	}
	go w.run(ctx, b.notifier)
	return w.out, nil
}

// notifier fans committed events out to watchers. Writers publish under
// the backend's write lock, so in revision order; publish never blocks on
// a watcher.
type notifier struct {
	mu       sync.Mutex
	rev      int64 // last published revision
	ring     *eventRing
	watchers map[*watcher]struct{}
	closed   bool
	running  sync.WaitGroup // watcher goroutines
}

func newNotifier(rev int64, opts Options) *notifier {
	return &notifier{
		rev:      rev,
		ring:     newEventRing(rev, opts.WatchRingEvents, opts.WatchRingBytes),
		watchers: map[*watcher]struct{}{},
	}
}

// publish hands the events of the write at rev to the ring and to every
// watcher.
func (n *notifier) publish(rev int64, events []kv.Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rev = rev
	n.ring.add(events)
	for w := range n.watchers {
		w.deliver(rev, events)
	}
}

// register adds w, first queueing the ring's events after afterRev. Both
// happen under the lock publish takes, so w misses no event and gets none
// twice.
func (n *notifier) register(w *watcher, afterRev int64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return kv.ErrClosed
	}
	n.running.Add(1)
	if afterRev == 0 {
		afterRev = n.rev
	}
	w.after = afterRev
	replay, ok := n.ring.since(afterRev, w.matches)
	if !ok {
		w.finish(fmt.Errorf("watch %s from revision %d: history starts at %d: %w",
			w.key, afterRev, n.ring.start, kv.ErrCompacted), n.rev)
		return nil
	}
	if len(replay) > 0 {
		w.queueLocked(replay[len(replay)-1].KV.ModRevision, replay)
	}
	n.watchers[w] = struct{}{}
	return nil
}

func (n *notifier) unregister(w *watcher) {
	n.mu.Lock()
	delete(n.watchers, w)
	n.mu.Unlock()
	n.running.Done()
}

// close ends every watcher with kv.ErrClosed and waits for them to finish.
func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	for w := range n.watchers {
		w.finish(fmt.Errorf("watch %s: %w", w.key, kv.ErrClosed), n.rev)
	}
	n.mu.Unlock()
	n.running.Wait()
}

// watcher is one Watch: a queue the notifier fills and a goroutine that
// drains it into out. The goroutine is out's only sender.
type watcher struct {
	key    string
	prefix bool
	// progress: WatchProgress's interval; 0 for a plain Watch.
	progress time.Duration
	after    int64 // events at or before it are not w's
	backlog  int
	out      chan kv.WatchResponse // capacity 1
	wake     chan struct{}         // capacity 1: the queue or end changed

	mu     sync.Mutex
	queue  []kv.WatchResponse
	queued int               // events in queue
	end    *kv.WatchResponse // the last response, once the watcher must end
}

func (w *watcher) matches(key string) bool {
	if w.prefix {
		return strings.HasPrefix(key, w.key)
	}
	return key == w.key
}

// deliver queues the events of the write at rev that w watches.
func (w *watcher) deliver(rev int64, events []kv.Event) {
	if rev <= w.after {
		return
	}
	var matched []kv.Event
	for _, ev := range events {
		if w.matches(ev.KV.Key) {
			matched = append(matched, ev)
		}
	}
	if len(matched) > 0 || w.progress > 0 {
		w.queueLocked(rev, matched)
	}
}

// queueLocked queues one response, or ends w if its backlog is full. The
// notifier's lock is held.
func (w *watcher) queueLocked(rev int64, events []kv.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.end != nil {
		return
	}
	if len(events) == 0 && len(w.queue) > 0 {
		// Progress: the last response waiting now reaches rev.
		w.queue[len(w.queue)-1].Revision = rev
		return
	}
	if w.queued+len(events) > w.backlog {
		w.endLocked(fmt.Errorf("watch %s: more than %d events behind at revision %d: %w",
			w.key, w.backlog, rev, kv.ErrCompacted), rev)
		return
	}
	w.queue = append(w.queue, kv.WatchResponse{Events: events, Revision: rev})
	w.queued += len(events)
	w.signal()
}

// finish ends w with err: its queue is dropped and a last response carries
// err.
func (w *watcher) finish(err error, rev int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.endLocked(err, rev)
}

func (w *watcher) endLocked(err error, rev int64) {
	if w.end != nil {
		return
	}
	w.end = &kv.WatchResponse{Revision: rev, Err: err}
	w.queue, w.queued = nil, 0
	w.signal()
}

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take returns the queued events as one response (nil if none), or the
// last response if w must end.
func (w *watcher) take() (resp *kv.WatchResponse, end *kv.WatchResponse) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.end != nil {
		return nil, w.end
	}
	if len(w.queue) == 0 {
		return nil, nil
	}
	merged := w.queue[0]
	for _, r := range w.queue[1:] {
		merged.Events = append(merged.Events, r.Events...)
		merged.Revision = r.Revision
	}
	w.queue, w.queued = nil, 0
	return &merged, nil
}

// progress queues a progress response at the notifier's revision.
func (n *notifier) progress(w *watcher) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rev > w.after {
		w.queueLocked(n.rev, nil)
	}
}

// ended returns the last response if w must end.
func (w *watcher) ended() *kv.WatchResponse {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.end
}

// run moves responses from the queue to out until ctx ends or w is ended.
// While a response waits for the consumer, newer events stay in the queue,
// where they count against the backlog.
func (w *watcher) run(ctx context.Context, n *notifier) {
	defer n.unregister(w)
	defer close(w.out)
	var tick <-chan time.Time
	if w.progress > 0 {
		t := time.NewTicker(w.progress)
		defer t.Stop()
		tick = t.C
	}
	var pending *kv.WatchResponse
	for {
		if pending == nil {
			var end *kv.WatchResponse
			pending, end = w.take()
			if end != nil {
				w.sendLast(*end)
				return
			}
		}
		if pending == nil {
			select {
			case <-w.wake:
			case <-tick:
				n.progress(w)
			case <-ctx.Done():
				return
			}
			continue
		}
		select {
		case w.out <- *pending:
			pending = nil
		case <-w.wake:
			if end := w.ended(); end != nil {
				w.sendLast(*end)
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// sendLast puts the last response on out without blocking: a response the
// consumer has not taken yet is dropped to make room (the last response
// says the consumer must start over anyway).
func (w *watcher) sendLast(resp kv.WatchResponse) {
	select {
	case <-w.out:
	default:
	}
	w.out <- resp
}
