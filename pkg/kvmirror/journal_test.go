package kvmirror_test

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/kvmirror"
)

// recordingJournal keeps what a mirror tells its journal.
type recordingJournal struct {
	mu      sync.Mutex
	resets  []int64
	changes []kvmirror.Change
	// appended is signaled (capacity 1) on every Append.
	appended chan struct{}
}

func (j *recordingJournal) Reset(rev int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.resets = append(j.resets, rev)
}

func (j *recordingJournal) Append(changes []kvmirror.Change, _ int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.changes = append(j.changes, changes...)
	select {
	case j.appended <- struct{}{}:
	default:
	}
}

func (j *recordingJournal) snapshot() ([]int64, []kvmirror.Change) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]int64(nil), j.resets...), append([]kvmirror.Change(nil), j.changes...)
}

// TestJournal: the journal gets the events of the listing's own revision
// when the backend still has them, every later event with the key's
// previous state, and one Reset per listing; on a bolt file reopened
// (whose history starts at the open), the mirror watches after the
// listing instead of listing again and again.
func TestJournal(t *testing.T) {
	for _, reopened := range []bool{false, true} {
		t.Run(map[bool]string{false: "history held", true: "history starts at the open"}[reopened], func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "topo.db")
			b, err := boltkv.Open(file, boltkv.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			listed, err := b.Create(t.Context(), "/a", []byte("1"), 0)
			if err != nil {
				t.Fatal(err)
			}
			if reopened {
				b.Close()
				if b, err = boltkv.Open(file, boltkv.Options{NoSync: true}); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { b.Close() })
			j := &recordingJournal{appended: make(chan struct{}, 1)}
			m := run(t, b, kvmirror.Options{Journal: j})
			rev, err := b.Update(t.Context(), "/a", []byte("2"), 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.WaitRev(t.Context(), rev); err != nil {
				t.Fatal(err)
			}
			timeout := time.After(10 * time.Second)
			var resets []int64
			var changes []kvmirror.Change
			for {
				resets, changes = j.snapshot()
				if len(changes) > 0 && changes[len(changes)-1].KV.ModRevision == rev {
					break
				}
				select {
				case <-j.appended:
				case <-timeout:
					t.Fatalf("the journal never got the update at %d: events %d, resets %v", rev, len(changes), resets)
				}
			}
			if len(resets) != 1 {
				t.Fatalf("resets %v, want one listing", resets)
			}
			want := []int64{rev}
			if !reopened {
				want = []int64{listed, rev} // the listing's own revision too
			}
			var got []int64
			for _, c := range changes {
				got = append(got, c.KV.ModRevision)
			}
			if len(got) != len(want) || got[len(got)-1] != rev || got[0] != want[0] {
				t.Fatalf("journal events at %v, want %v", got, want)
			}
			last := changes[len(changes)-1]
			if !last.PrevKnown || string(last.Prev.Value) != "1" {
				t.Errorf("update's previous state %+v (known %v), want the value 1", last.Prev, last.PrevKnown)
			}
		})
	}
}
