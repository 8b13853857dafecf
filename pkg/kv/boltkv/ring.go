package boltkv

import (
	"sort"

	"github.com/topod-io/topod/pkg/kv"
)

// eventRing keeps the most recent events, in revision order, for watches
// that start from a past revision. It holds at most maxEvents events and
// about maxBytes of keys and values; start is the revision after which it
// holds every event.
type eventRing struct {
	buf       []kv.Event // circular, len(buf) is the capacity in use
	head, n   int
	bytes     int
	maxEvents int
	maxBytes  int
	start     int64
}

func newEventRing(start int64, maxEvents, maxBytes int) *eventRing {
	return &eventRing{start: start, maxEvents: maxEvents, maxBytes: maxBytes}
}

// eventSize is what an event counts for against maxBytes.
func eventSize(ev kv.Event) int {
	const overhead = 64 // the Event itself
	return overhead + len(ev.KV.Key) + len(ev.KV.Value)
}

// add appends events, all at one revision past every held one, evicting
// the oldest as needed.
func (r *eventRing) add(events []kv.Event) {
	for _, ev := range events {
		if r.n == len(r.buf) {
			r.grow()
		}
		r.buf[(r.head+r.n)%len(r.buf)] = ev
		r.n++
		r.bytes += eventSize(ev)
		for r.n > r.maxEvents || (r.bytes > r.maxBytes && r.n > 0) {
			r.evict()
		}
	}
}

// grow doubles the buffer, up to maxEvents (+1 so that add can place an
// event before evicting).
func (r *eventRing) grow() {
	size := max(2*len(r.buf), 64)
	size = min(size, r.maxEvents+1)
	if size <= len(r.buf) {
		r.evict()
		return
	}
	buf := make([]kv.Event, size)
	for i := range r.n {
		buf[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = buf, 0
}

func (r *eventRing) evict() {
	ev := r.buf[r.head]
	r.buf[r.head] = kv.Event{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.bytes -= eventSize(ev)
	r.start = ev.KV.ModRevision
}

func (r *eventRing) at(i int) kv.Event { return r.buf[(r.head+i)%len(r.buf)] }

// since returns the held events after rev that match, or ok false if
// events after rev have already been evicted.
func (r *eventRing) since(rev int64, match func(key string) bool) (events []kv.Event, ok bool) {
	if rev < r.start {
		return nil, false
	}
	first := sort.Search(r.n, func(i int) bool { return r.at(i).KV.ModRevision > rev })
	for i := first; i < r.n; i++ {
		if ev := r.at(i); match(ev.KV.Key) {
			events = append(events, ev)
		}
	}
	return events, true
}
