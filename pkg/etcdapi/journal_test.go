package etcdapi

import (
	"fmt"
	"slices"
	"testing"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kvmirror"
)

// put and del are one-event changes at rev.
func put(key string, rev int64) kvmirror.Change {
	return kvmirror.Change{Event: kv.Event{Type: kv.Put, KV: kv.KV{Key: key, Value: []byte(key), ModRevision: rev}}, PrevKnown: true}
}

func del(key string, rev int64) kvmirror.Change {
	return kvmirror.Change{Event: kv.Event{Type: kv.Delete, KV: kv.KV{Key: key, ModRevision: rev}}, PrevKnown: true}
}

// newTestWatcher is a watcher of [key, end) on a stream of its own.
func newTestWatcher(j *Journal, key, end string) *watcher {
	ws := &watchStream{woken: map[*watcher]struct{}{}, signal: make(chan struct{}, 1)}
	return &watcher{key: key, end: end, journal: j, stream: ws}
}

// revs are the (key@rev) of a batch's events.
func revs(b batch) []string {
	var out []string
	for _, e := range b.events {
		out = append(out, fmt.Sprintf("%s@%d", e.KV.Key, e.KV.ModRevision))
	}
	return out
}

func TestJournalWatchers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		key, end string
		start    int64
		noDelete bool
		want     []string
	}{
		{"key from now", "/a/1", "", 0, false, []string{"/a/1@12"}},
		{"key from a past revision", "/a/1", "", 10, false, []string{"/a/1@10", "/a/1@12"}},
		{"prefix", "/a/", kvmirror.PrefixEnd("/a/"), 10, false, []string{"/a/1@10", "/a/2@11", "/a/1@12", "/a/2@13"}},
		{"prefix without deletes", "/a/", kvmirror.PrefixEnd("/a/"), 10, true, []string{"/a/1@10", "/a/2@11", "/a/1@12"}},
		{"range", "/a/2", "/b/2", 11, false, []string{"/a/2@11", "/a/2@13", "/b/1@13"}},
		{"from key on", "/b/", "\x00", 10, false, []string{"/b/1@13"}},
		{"future start", "/a/1", "", 13, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := NewJournal(100, 1<<20)
			j.Reset(9)
			j.Append([]kvmirror.Change{put("/a/1", 10)}, 10)
			j.Append([]kvmirror.Change{put("/a/2", 11)}, 11)
			w := newTestWatcher(j, tc.key, tc.end)
			w.noDelete = tc.noDelete
			if ok, _, _ := j.add(w, tc.start); !ok {
				t.Fatalf("add from %d: refused as compacted", tc.start)
			}
			j.Append([]kvmirror.Change{put("/a/1", 12)}, 12)
			j.Append([]kvmirror.Change{del("/a/2", 13), put("/b/1", 13)}, 13)
			j.Append(nil, 15) // a progress notification
			b := j.take(w, 1<<20)
			if got := revs(b); !slices.Equal(got, tc.want) {
				t.Errorf("events = %v, want %v", got, tc.want)
			}
			if b.rev != 15 || b.more || b.compactRev != 0 {
				t.Errorf("batch rev %d, more %v, compact %d: want 15, false, 0", b.rev, b.more, b.compactRev)
			}
			if again := j.take(w, 1<<20); len(again.events) != 0 {
				t.Errorf("second take = %v, want nothing", revs(again))
			}
		})
	}
}

// TestJournalBatchesWholeRevisions: a batch stops at a revision boundary
// past its size, and the watcher resumes from there.
func TestJournalBatchesWholeRevisions(t *testing.T) {
	j := NewJournal(100, 1<<20)
	j.Reset(1)
	w := newTestWatcher(j, "/k/", kvmirror.PrefixEnd("/k/"))
	if ok, _, _ := j.add(w, 0); !ok {
		t.Fatal("add refused")
	}
	j.Append([]kvmirror.Change{put("/k/a", 2), put("/k/b", 2)}, 2)
	j.Append([]kvmirror.Change{put("/k/c", 3)}, 3)
	first := j.take(w, 1) // one byte: whole revision 2, then stop
	if got := revs(first); !slices.Equal(got, []string{"/k/a@2", "/k/b@2"}) || !first.more || first.rev != 2 {
		t.Fatalf("first batch %v more %v rev %d: want revision 2 whole, more, rev 2", got, first.more, first.rev)
	}
	second := j.take(w, 1)
	if got := revs(second); !slices.Equal(got, []string{"/k/c@3"}) || second.more || second.rev != 3 {
		t.Fatalf("second batch %v more %v rev %d: want revision 3, done, rev 3", got, second.more, second.rev)
	}
}

// TestJournalCompaction: a start before the window is refused; a watcher
// that falls behind the window, or whose mirror lists again, is canceled
// with the revision to start again from; the listing's own revision stays
// servable once its events arrive.
func TestJournalCompaction(t *testing.T) {
	j := NewJournal(2, 1<<20)
	j.Reset(4)
	if ok, _, _ := j.add(newTestWatcher(j, "/x", ""), 4); ok {
		t.Fatal("a watch from the listing's revision was accepted before its events arrived")
	}
	j.Append([]kvmirror.Change{put("/x", 4)}, 4) // the listing's own revision
	from4 := newTestWatcher(j, "/x", "")
	if ok, _, _ := j.add(from4, 4); !ok {
		t.Fatal("a watch from the listing's revision was refused once its events arrived")
	}
	slow := newTestWatcher(j, "/x", "")
	if ok, _, _ := j.add(slow, 0); !ok {
		t.Fatal("add refused")
	}
	for rev := int64(5); rev <= 8; rev++ {
		j.Append([]kvmirror.Change{put("/x", rev)}, rev)
	}
	// The window holds revisions 7 and 8: the slow watcher needed 5.
	if b := j.take(slow, 1<<20); b.compactRev != 7 {
		t.Fatalf("slow watcher: compact revision %d, want 7 (events %v)", b.compactRev, revs(b))
	}
	if ok, compactRev, _ := j.add(newTestWatcher(j, "/x", ""), 6); ok || compactRev != 7 {
		t.Fatalf("watch from 6: ok %v compact revision %d, want refused with 7", ok, compactRev)
	}
	fresh := newTestWatcher(j, "/x", "")
	if ok, _, _ := j.add(fresh, 7); !ok {
		t.Fatal("watch from 7 refused")
	}
	j.Reset(20)
	if b := j.take(fresh, 1<<20); b.compactRev != 21 {
		t.Fatalf("after a relist: compact revision %d, want 21", b.compactRev)
	}
	if st := j.Stats(); st.Events != 0 || st.Oldest != 21 {
		t.Fatalf("after a relist: %+v, want no events, oldest 21", st)
	}
}

// TestJournalIndex: an event reaches only the watchers of its key.
func TestJournalIndex(t *testing.T) {
	j := NewJournal(100, 1<<20)
	j.Reset(1)
	watchers := map[string]*watcher{
		"key":    newTestWatcher(j, "/a/b", ""),
		"prefix": newTestWatcher(j, "/a/", kvmirror.PrefixEnd("/a/")),
		"other":  newTestWatcher(j, "/c", ""),
		"range":  newTestWatcher(j, "/a/a", "/a/c"),
		"short":  newTestWatcher(j, "/", kvmirror.PrefixEnd("/")),
	}
	for _, w := range watchers {
		j.add(w, 0)
	}
	j.Append([]kvmirror.Change{put("/a/b", 2)}, 2)
	for name, w := range watchers {
		if want := name != "other"; w.pending != want {
			t.Errorf("%s: pending %v, want %v", name, w.pending, want)
		}
	}
	j.remove(watchers["key"])
	if b := j.take(watchers["key"], 1<<20); len(b.events) != 0 {
		t.Errorf("a removed watcher got %v", revs(b))
	}
}
