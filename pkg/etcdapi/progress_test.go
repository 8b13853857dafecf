package etcdapi

import (
	"testing"

	"github.com/topod-io/topod/pkg/kvmirror"
)

// TestJournalNoProgressBeforeStart: a watch from a revision the journal
// has not reached (a client resuming, or watching from a read's revision,
// on a replica a few milliseconds behind) gets no progress notification
// until the journal is at its start revision less one, as etcd's
// progressIfSync answers none for a watcher whose start is past the
// member's revision. A notification at the journal's revision would take
// the watch back below its start: clientv3 resumes a watch from its last
// progress notification's revision plus one, so a watch broken after it
// would deliver again events before the revision its client asked for
// (found by the fault suite's bookmarkable check).
func TestJournalNoProgressBeforeStart(t *testing.T) {
	j := NewJournal(100, 1<<20)
	j.Reset(9)
	j.Append([]kvmirror.Change{put("/a/1", 10)}, 10)
	w := newTestWatcher(j, "/a/", kvmirror.PrefixEnd("/a/"))
	if ok, _, _ := j.add(w, 20); !ok {
		t.Fatal("add from 20: refused as compacted")
	}
	if rev, ok := j.synced([]*watcher{w}); ok {
		t.Errorf("progress at revision %d for a watch from 20, the journal at 10", rev)
	}
	j.Append(nil, 19)
	if rev, ok := j.synced([]*watcher{w}); !ok || rev != 19 {
		t.Errorf("synced = %d, %v at 19 for a watch from 20: want 19, true", rev, ok)
	}
	j.Append([]kvmirror.Change{put("/a/1", 21)}, 21)
	if rev, ok := j.synced([]*watcher{w}); ok {
		t.Errorf("progress at %d with an event pending", rev)
	}
	if b := j.take(w, 1<<20); len(b.events) != 1 || b.rev != 21 {
		t.Errorf("take = %v at %d, want /a/1@21 at 21", revs(b), b.rev)
	}
	if rev, ok := j.synced([]*watcher{w}); !ok || rev != 21 {
		t.Errorf("synced = %d, %v after the take: want 21, true", rev, ok)
	}
}
