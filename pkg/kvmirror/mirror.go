// Package kvmirror keeps an in-memory replica of every key under a prefix of a
// kv.Backend, fed by one upstream watch, and fans its changes out to any
// number of subscribers. It is how topod makes N watchers cost its backend
// one watch, and serves reads of watched prefixes from memory.
//
// The data flows one way: Run lists the prefix, then applies the upstream
// watch's events to the replica (a B-tree ordered by key). Applying an event
// marks it on the subscriptions of its key only, found through an index
// (exact keys in a map, directory prefixes by the key's ancestors), and calls their notify function: the cost of a change is the
// number of its watchers, and applying never waits for a subscriber. A
// Subscription holds at most one pending mark per key and its consumer reads
// the key's state when it takes the change, so a slow consumer costs memory
// bounded by the number of keys it watches, never a growing queue; skipping
// intermediate values is allowed by Vitess's topo watch contract. When the
// upstream watch ends (compaction, backend errors), Run lists again (with
// jittered backoff, reset once a listing succeeds) and turns the difference
// into changes: subscribers never miss a change, they may only see fewer
// intermediate ones.
//
// Reads are consistent with the revision the replica has reached (Rev). A
// reader that must see a given revision (its own write) asks for it; when
// the replica is not there yet, the caller reads the backend instead. A
// linearizable read (Sync) first asks the backend for its
// current revision, one request shared by every read waiting at the time,
// and is answered from memory once the replica has reached it.
//
// A Journal, if set, receives every upstream event with the key's state
// before it, in revision order: what an exact watch history (etcd's watch
// API, pkg/etcdapi) is served from. After a listing, the watch starts at
// the listing's own revision, so the journal also gets the events of that
// revision (which the replica already holds).
//
// Memory: past Options.MaxBytes the mirror keeps every key, its revisions
// and lease, but stops holding the values that do not fit: those are read
// from the backend (at the key's revision) when asked for. Watches and
// reads keep being served by the one upstream watch; only the reads of
// values not held reach the backend.
package kvmirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/retry"
)

// ErrStopped fails the subscriptions and waits of a mirror whose Run ended.
var ErrStopped = errors.New("mirror stopped")

// Options configure a Mirror.
type Options struct {
	// MaxBytes bounds the keys and values held; past it the mirror keeps
	// the keys but reads the values that do not fit from the backend. 0
	// means no bound.
	MaxBytes int64
	// MaxStaleness bounds how long ago the backend last confirmed the
	// mirror current for reads to be served from memory: past it, Get and
	// List answer not ok and the caller reads the backend (which, cut off
	// from its cluster, fails rather than answer stale). Confirmations are
	// the watch's events and, while no event comes, progress
	// notifications asked for every MaxStaleness/4; only a backend whose
	// watch gives them (etcdkv's WatchProgress) has the bound. 0: no bound.
	MaxStaleness time.Duration
	// Observer, if set, is told about upstream events and deliveries.
	Observer Observer
	// Journal, if set, receives the upstream events.
	Journal Journal
	Logger  *slog.Logger
}

// Change is one upstream event and the key's state before it.
type Change struct {
	kv.Event
	// Prev is the key's state before the event (Prev.Key empty: it did not
	// exist). PrevKnown is false when the mirror cannot tell (the events
	// of a listing's own revision, applied before the watch began); Prev's
	// Value is nil when the mirror did not hold it (over its memory bound)
	// and PrevEvicted says so.
	Prev        kv.KV
	PrevKnown   bool
	PrevEvicted bool
}

// Journal receives a mirror's upstream events. Its methods are called with
// the mirror's lock held, in revision order: they must return at once and
// not call the mirror.
type Journal interface {
	// Reset says the mirror listed the prefix at rev: the events before
	// it are unknown, those at rev may follow (Append with that rev).
	Reset(rev int64)
	// Append gives the events of the upstream watch up to rev (none: a
	// progress notification).
	Append(changes []Change, rev int64)
}

// Observer receives a mirror's counts, e.g. to export them as metrics.
type Observer interface {
	// EventsIn counts events received from the upstream watch.
	EventsIn(n int)
	// Coalesced counts changes that found their key already pending on a
	// subscription: the subscriber will see only the later value.
	Coalesced(n int)
	// Relisted counts full re-lists of the prefix.
	Relisted()
}

// item is one key of the replica.
type item struct {
	kv.KV
	// evicted: Value is not held (the mirror is over its memory bound);
	// it is read from the backend at ModRevision.
	evicted bool
}

// Mirror is an in-memory replica of the keys under one prefix.
type Mirror struct {
	backend kv.Backend
	prefix  string
	opts    Options
	log     *slog.Logger

	// bounded: MaxStaleness applies (the backend confirms progress).
	bounded bool

	mu      sync.RWMutex
	tree    *btree.BTreeG[*item]
	bytes   int64
	evicted int
	rev     int64
	ready   bool
	stopped error
	// confirmed is when the backend last confirmed the mirror current.
	confirmed time.Time
	// advanced is closed (and replaced) each time rev moves or the mirror
	// stops.
	advanced chan struct{}
	watchers watcherGroup
	confirm  confirmer
}

// New returns a mirror of the keys under prefix; Run fills and follows it.
func New(backend kv.Backend, prefix string, opts Options) *Mirror {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	_, progress := backend.(progressWatcher)
	return &Mirror{
		bounded:  progress && opts.MaxStaleness > 0,
		backend:  backend,
		prefix:   prefix,
		opts:     opts,
		log:      opts.Logger.With("mirror", prefix),
		tree:     btree.NewG(32, func(a, b *item) bool { return a.Key < b.Key }),
		advanced: make(chan struct{}),
		watchers: newWatcherGroup(),
	}
}

// Prefix returns the prefix the mirror holds.
func (m *Mirror) Prefix() string { return m.prefix }

// Covers says whether key (or every key under a prefix) is in the mirror.
func (m *Mirror) Covers(key string) bool { return strings.HasPrefix(key, m.prefix) }

// Run fills the mirror and follows the upstream watch until ctx ends,
// listing again after any break. It returns ctx's error; the mirror's
// subscriptions then fail with ErrStopped.
func (m *Mirror) Run(ctx context.Context) error {
	defer m.stop()
	wait := retry.New(50*time.Millisecond, 5*time.Second)
	for {
		listed, err := m.follow(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if listed {
			wait.Reset()
		}
		m.log.Warn("upstream watch ended, listing again", "err", err)
		if err := wait.Wait(ctx); err != nil {
			return err
		}
	}
}

// progressWatcher is a backend whose watch also confirms its progress
// while no event comes (etcdkv).
type progressWatcher interface {
	WatchProgress(ctx context.Context, key string, prefix bool, afterRev int64, interval time.Duration) (<-chan kv.WatchResponse, error)
}

// follow lists the prefix, brings the replica to it, and applies the watch
// from there until it breaks. listed says whether it got past the listing.
func (m *Mirror) follow(ctx context.Context) (listed bool, err error) {
	start := time.Now()
	kvs, rev, err := m.backend.List(ctx, m.prefix, false)
	if err != nil {
		return false, fmt.Errorf("list %s: %w", m.prefix, err)
	}
	m.reset(kvs, rev, start)
	// With a journal, the watch starts at the listing's revision itself,
	// whose events the journal needs (a watch from a read's revision is
	// the usual etcd pattern); if the backend no longer has them (etcd
	// compacted there, or bolt opened since), after it.
	if m.opts.Journal != nil && rev > 1 {
		err := m.apply1(ctx, rev-1)
		if !errors.Is(err, errBeforeHistory) {
			return true, err
		}
	}
	return true, m.apply1(ctx, rev)
}

// errBeforeHistory: the backend answered a watch's first response with
// kv.ErrCompacted.
var errBeforeHistory = errors.New("watch from before the backend's history")

// apply1 applies the upstream watch from afterRev until it breaks, and
// returns why; errBeforeHistory if its first response is ErrCompacted.
func (m *Mirror) apply1(ctx context.Context, afterRev int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes, err := m.watch(ctx, afterRev)
	if errors.Is(err, kv.ErrCompacted) {
		return errBeforeHistory
	}
	if err != nil {
		return fmt.Errorf("watch %s: %w", m.prefix, err)
	}
	first := true
	for resp := range changes {
		if resp.Err != nil {
			if first && errors.Is(resp.Err, kv.ErrCompacted) {
				return errBeforeHistory
			}
			return fmt.Errorf("watch %s: %w", m.prefix, resp.Err)
		}
		first = false
		m.apply(resp.Events, resp.Revision)
	}
	return fmt.Errorf("watch %s: ended", m.prefix)
}

// watch opens the upstream watch of the prefix after afterRev.
func (m *Mirror) watch(ctx context.Context, afterRev int64) (<-chan kv.WatchResponse, error) {
	// A watch that confirms its progress also moves the replica's
	// revision past writes outside the prefix, which a linearizable read
	// (Sync) waits for.
	if pw, ok := m.backend.(progressWatcher); ok {
		interval := progressInterval
		if m.bounded {
			interval = m.opts.MaxStaleness / 4
		}
		return pw.WatchProgress(ctx, m.prefix, true, afterRev, interval)
	}
	return m.backend.Watch(ctx, m.prefix, true, afterRev)
}

// progressInterval is how often a mirror with no staleness bound asks its
// backend to confirm its progress while nothing under its prefix changes.
const progressInterval = time.Second

// reset replaces the replica by a fresh listing at rev, asked for at
// listed, marking the differences on the subscriptions.
func (m *Mirror) reset(kvs []kv.KV, rev int64, listed time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.confirmed = listed
	if m.opts.Observer != nil && m.ready {
		m.opts.Observer.Relisted()
	}
	var events []kv.Event
	seen := make(map[string]bool, len(kvs))
	for i := range kvs {
		e := kvs[i]
		seen[e.Key] = true
		if old, ok := m.tree.Get(&item{KV: kv.KV{Key: e.Key}}); !ok || old.ModRevision != e.ModRevision {
			events = append(events, kv.Event{Type: kv.Put, KV: e})
		}
	}
	m.tree.Ascend(func(old *item) bool {
		if !seen[old.Key] {
			events = append(events, kv.Event{Type: kv.Delete, KV: kv.KV{Key: old.Key, ModRevision: rev}})
		}
		return true
	})
	m.applyLocked(events, rev, false)
	if m.opts.Journal != nil {
		m.opts.Journal.Reset(rev)
	}
}

// apply applies upstream events up to rev (none: a progress notification),
// which confirms the mirror current.
func (m *Mirror) apply(events []kv.Event, rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.confirmed = time.Now()
	if m.opts.Observer != nil {
		m.opts.Observer.EventsIn(len(events))
	}
	m.applyLocked(events, rev, true)
}

// applyLocked updates the replica, marks each change on its key's
// subscriptions, and moves the revision, waking the readers waiting for it.
// upstream events go to the journal too; a listing's differences do not.
func (m *Mirror) applyLocked(events []kv.Event, rev int64, upstream bool) {
	wasEvicting := m.evicted > 0
	var changes []Change
	if upstream && m.opts.Journal != nil {
		changes = make([]Change, 0, len(events))
	}
	for i := range events {
		ev := &events[i]
		if upstream && ev.KV.ModRevision <= m.rev {
			// The listing's own revision, already held: for the
			// journal only.
			if changes != nil {
				changes = append(changes, Change{Event: *ev})
			}
			continue
		}
		old, had := m.tree.Delete(&item{KV: kv.KV{Key: ev.KV.Key}})
		if had {
			m.forget(old)
		}
		if changes != nil {
			c := Change{Event: *ev, PrevKnown: true}
			if had {
				c.Prev, c.PrevEvicted = old.KV, old.evicted
			}
			changes = append(changes, c)
		}
		if ev.Type == kv.Put {
			m.hold(&item{KV: ev.KV})
		}
		m.watchers.each(ev.KV.Key, func(s *Subscription) { s.mark(ev.KV.Key, m.opts.Observer) })
	}
	if changes != nil {
		m.opts.Journal.Append(changes, max(rev, m.rev))
	}
	if !wasEvicting && m.evicted > 0 {
		m.log.Warn("mirror over its memory bound: values that do not fit are read from the backend", "bytes", m.bytes, "max", m.opts.MaxBytes)
	} else if wasEvicting && m.evicted == 0 {
		m.log.Info("mirror back under its memory bound: every value held", "bytes", m.bytes, "max", m.opts.MaxBytes)
	}
	if rev > m.rev {
		m.rev = rev
		close(m.advanced)
		m.advanced = make(chan struct{})
	}
	m.ready = true
}

// hold inserts it, without its value if that would take the mirror over
// its memory bound.
func (m *Mirror) hold(it *item) {
	if m.opts.MaxBytes > 0 && m.bytes+size(it) > m.opts.MaxBytes {
		it.Value, it.evicted = nil, true
		m.evicted++
	}
	m.tree.ReplaceOrInsert(it)
	m.bytes += size(it)
}

// forget accounts for an item taken out of the tree.
func (m *Mirror) forget(it *item) {
	m.bytes -= size(it)
	if it.evicted {
		m.evicted--
	}
}

func size(it *item) int64 { return int64(len(it.Key) + len(it.Value) + 96) }

// load fills in the values of kvs[i] for i in evicted (values the mirror
// does not hold), from the backend, dropping the keys deleted since.
func (m *Mirror) load(ctx context.Context, kvs []kv.KV, evicted []int) ([]kv.KV, error) {
	if len(evicted) == 0 {
		return kvs, nil
	}
	gone := map[int]bool{}
	for _, i := range evicted {
		e, found, err := m.loadOne(ctx, kvs[i])
		if err != nil {
			return nil, err
		}
		kvs[i] = e
		gone[i] = !found
	}
	out := kvs[:0]
	for i, e := range kvs {
		if !gone[i] {
			out = append(out, e)
		}
	}
	return out, nil
}

// loadOne reads the value of e, a key the mirror holds without its value:
// as of e.ModRevision, or, when the backend no longer has that revision,
// the key's current state (found false if it is gone).
func (m *Mirror) loadOne(ctx context.Context, e kv.KV) (kv.KV, bool, error) {
	v, err := m.backend.GetRevision(ctx, e.Key, e.ModRevision)
	if err == nil {
		e.Value = v
		return e, true, nil
	}
	if !errors.Is(err, kv.ErrCompacted) && !errors.Is(err, kv.ErrNotFound) {
		return e, false, err
	}
	cur, err := m.backend.Get(ctx, e.Key)
	if errors.Is(err, kv.ErrNotFound) {
		return e, false, nil
	}
	return cur, err == nil, err
}

// Stats is a snapshot of a mirror.
type Stats struct {
	Prefix   string
	Ready    bool
	Stopped  bool
	Keys     int
	Bytes    int64
	MaxBytes int64
	// EvictedValues is the number of keys whose values the mirror does
	// not hold, being over its memory bound.
	EvictedValues int
	Revision      int64
	Subscriptions int
	// Serving: reads are served from memory (ready, and confirmed current
	// within Options.MaxStaleness where that applies).
	Serving bool
	// Confirmed is when the backend last confirmed the mirror current
	// (an event, a progress notification or a listing).
	Confirmed time.Time
}

// Stats returns the mirror's size and state.
func (m *Mirror) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Stats{
		Prefix: m.prefix, Ready: m.ready, Stopped: m.stopped != nil, Keys: m.tree.Len(),
		Bytes: m.bytes, MaxBytes: m.opts.MaxBytes, EvictedValues: m.evicted,
		Revision: m.rev, Subscriptions: m.watchers.n, Serving: m.servesLocked(0), Confirmed: m.confirmed,
	}
}

// Rev returns the revision the mirror has reached, 0 before it is ready.
func (m *Mirror) Rev() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.ready {
		return 0
	}
	return m.rev
}

// servesLocked says whether the mirror can answer a read for revision
// minRev or later: it is ready, has reached minRev, and (Options.
// MaxStaleness) the backend confirmed it current recently enough.
func (m *Mirror) servesLocked(minRev int64) bool {
	if !m.ready || m.rev < minRev {
		return false
	}
	return !m.bounded || time.Since(m.confirmed) <= m.opts.MaxStaleness
}

// Get returns key's state if the mirror can answer for revision minRev or
// later: ok reports whether it can; found whether the key exists.
func (m *Mirror) Get(ctx context.Context, key string, minRev int64) (e kv.KV, found, ok bool, err error) {
	m.mu.RLock()
	if !m.servesLocked(minRev) || !m.Covers(key) {
		m.mu.RUnlock()
		return kv.KV{}, false, false, nil
	}
	got, found := m.tree.Get(&item{KV: kv.KV{Key: key}})
	m.mu.RUnlock()
	if !found {
		return kv.KV{}, false, true, nil
	}
	if !got.evicted {
		return got.KV, true, true, nil
	}
	e, found, err = m.loadOne(ctx, got.KV)
	return e, found, err == nil, err
}

// List returns the keys under prefix, sorted, if the mirror can answer for
// revision minRev or later (ok).
func (m *Mirror) List(ctx context.Context, prefix string, keysOnly bool, minRev int64) (kvs []kv.KV, ok bool, err error) {
	end := PrefixEnd(prefix)
	if end == "" {
		end = "\x00" // every key
	}
	kvs, _, ok, err = m.Range(ctx, prefix, end, keysOnly, minRev)
	return kvs, ok, err
}

// WaitRev waits until the mirror is ready and has reached rev, ctx ends
// (its error), or the mirror stops (ErrStopped).
func (m *Mirror) WaitRev(ctx context.Context, rev int64) error {
	for {
		m.mu.RLock()
		reached, stopped, advanced := m.ready && m.rev >= rev, m.stopped, m.advanced
		m.mu.RUnlock()
		if reached {
			return nil
		}
		if stopped != nil {
			return stopped
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-advanced:
		}
	}
}

// stop fails every subscription and wait: Run has ended.
func (m *Mirror) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ready = false
	m.stopped = ErrStopped
	close(m.advanced)
	m.advanced = make(chan struct{})
	m.watchers.all(func(s *Subscription) { s.fail(ErrStopped) })
	m.watchers = newWatcherGroup()
}
