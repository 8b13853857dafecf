package kvmirror

import (
	"context"
	"strings"

	"github.com/topod-io/topod/pkg/kv"
)

// Page bounds one page of a listing: at most Keys keys (0: any number)
// whose keys and values add up to at most Bytes (0: any size), but always
// at least one key, however large.
type Page struct {
	Keys, Bytes int
}

// Size is what a key counts for against Page.Bytes: its key and value.
func Size(e kv.KV) int { return len(e.Key) + len(e.Value) }

// Cut returns the first keys of kvs that fit p, and whether keys of kvs
// are left after them.
func (p Page) Cut(kvs []kv.KV) (page []kv.KV, more bool) {
	n := p.fit(kvs)
	return kvs[:n], n < len(kvs)
}

// fit is how many of the first keys of kvs fit p.
func (p Page) fit(kvs []kv.KV) int {
	size := 0
	for i, e := range kvs {
		if p.full(i, size, Size(e)) {
			return i
		}
		size += Size(e)
	}
	return len(kvs)
}

// full says whether a page holding n keys of size bytes is full before a
// key of next bytes.
func (p Page) full(n, size, next int) bool {
	if n == 0 {
		return false
	}
	return (p.Keys > 0 && n >= p.Keys) || (p.Bytes > 0 && size+next > p.Bytes)
}

// RangePage is Range stopped at a page: the keys of [key, end) from key on,
// sorted, up to p, and whether keys of the range are left after them
// (more). With atRev 0 it answers (ok) as Range does, for revision minRev
// or later; with atRev > 0 only when the mirror is exactly at atRev, the
// keys then being as they were at that revision, however long ago the
// backend last confirmed it (the state at a revision does not go stale).
// A value the mirror does not hold (over its memory bound) counts as
// empty while the page is walked; once loaded, the page is cut to p again.
func (m *Mirror) RangePage(ctx context.Context, key, end string, minRev, atRev int64, p Page) (kvs []kv.KV, rev int64, more, ok bool, err error) {
	m.mu.RLock()
	serves := m.servesLocked(minRev)
	if atRev > 0 {
		serves = m.ready && m.rev == atRev
	}
	if !serves || !m.CoversRange(key, end) || end == "" {
		m.mu.RUnlock()
		return nil, 0, false, false, nil
	}
	rev = m.rev
	var evicted []int
	size := 0
	m.tree.AscendGreaterOrEqual(&item{KV: kv.KV{Key: key}}, func(it *item) bool {
		if end != "\x00" && strings.Compare(it.Key, end) >= 0 {
			return false
		}
		if p.full(len(kvs), size, Size(it.KV)) {
			more = true
			return false
		}
		size += Size(it.KV)
		if it.evicted {
			evicted = append(evicted, len(kvs))
		}
		kvs = append(kvs, it.KV)
		return true
	})
	m.mu.RUnlock()
	if kvs, err = m.load(ctx, kvs, evicted); err != nil {
		return nil, 0, false, false, err
	}
	if n := p.fit(kvs); n < len(kvs) {
		kvs, more = kvs[:n], true
	}
	return kvs, rev, more, true, nil
}
