package blobgc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/internal/jd"
	"github.com/topod-io/topod/pkg/blobgc"
	"github.com/topod-io/topod/pkg/blobstore/fileblob"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/kv/etcdkv"
	"github.com/topod-io/topod/pkg/record"
)

// Parameters of TestCollectUnderConcurrentWrites.
const (
	// raceGrace is the collections' grace period: writers must write a
	// record within raceGrace/2 of refreshing its blobs. Under the race
	// detector on a loaded machine, refreshing, uploading a few hundred KiB
	// of fsynced blobs and writing the record takes up to ~200 ms, hence a
	// second (a real deployment has an hour for milliseconds).
	raceGrace = time.Second
	// raceWriters write concurrently, each to its own keys and to one
	// shared key.
	raceWriters = 4
	// minRaceWrites: the writers go on past raceDuration until they have
	// written this many values (up to maxRaceDuration), so that a loaded
	// machine slows the test down rather than leaving it with too little
	// to collect.
	minRaceWrites   = 60
	maxRaceDuration = 2 * time.Minute
)

// raceDuration is how long the writers run, per backend.
func raceDuration() time.Duration {
	if testing.Short() {
		return 2 * time.Second
	}
	return 6 * time.Second
}

// TestCollectUnderConcurrentWrites is the randomized test of the protocol:
// writers encode and commit SrvVSchemas (with random keyspace edits and
// reverts to earlier versions, whose blobs may meanwhile have become
// unreferenced and old) and large chunked files (new, edited, reverted,
// deleted), refreshing and uploading blobs exactly as topod does for a
// writer, while collections run back to back with a short grace period
// (and, on etcd, compactions move the history horizon). Throughout and at
// the end, every current value and every past value the backend can
// return (History) must decode: no referenced blob was ever deleted. And
// the collections must have deleted blobs, so the test is not vacuous.
func TestCollectUnderConcurrentWrites(t *testing.T) {
	base, err := proto.MarshalOptions{Deterministic: true}.Marshal(jd.JD().Sized(30).SrvVSchema())
	if err != nil {
		t.Fatal(err)
	}
	for _, be := range []struct {
		name string
		open func(t *testing.T) (kv.Backend, func(ctx context.Context) error)
	}{
		{"bolt", openBoltShortHistory},
		{"etcd", openEtcdCompacting},
	} {
		t.Run(be.name, func(t *testing.T) {
			b, compact := be.open(t)
			runRace(t, b, openStore(t), base, compact)
		})
	}
}

// openBoltShortHistory opens a bolt backend that keeps 3 past versions
// per key: older ones become unreturnable, and their blobs collectable.
func openBoltShortHistory(t *testing.T) (kv.Backend, func(context.Context) error) {
	b, err := boltkv.Open(filepath.Join(t.TempDir(), "topo.db"), boltkv.Options{NoSync: true, HistoryPerKey: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, nil
}

// openEtcdCompacting opens etcd and returns a function that compacts its
// history, keeping the last 40 revisions: older values become
// unreturnable, and their blobs collectable.
func openEtcdCompacting(t *testing.T) (kv.Backend, func(context.Context) error) {
	c := harness.StartEtcd(t, 1)
	b, err := etcdkv.Open(context.Background(), c.Endpoints(), etcdkv.Options{Logger: c.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, func(ctx context.Context) error {
		rev, err := c.Revision(ctx)
		if err != nil || rev <= 40 {
			return err
		}
		return c.Compact(ctx, rev-40)
	}
}

// valueID names one value of one key.
type valueID struct {
	key string
	rev int64
}

// verdicts collects the values found unreadable, and the values written
// late: more than Grace/2 after their writer's last refresh, when the
// machine stalled the writer (say a CAS took 700 ms under load). The
// protocol promises nothing for a late value, so a late value found
// unreadable is excused; any other is a failure of the collector. They are
// judged at the end, as a value is known to be late only once its write
// returns.
type verdicts struct {
	mu         sync.Mutex
	unreadable map[valueID]string
	late       map[valueID]bool
}

func (v *verdicts) addUnreadable(id valueID, why string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.unreadable[id]; !ok {
		v.unreadable[id] = why
	}
}

func (v *verdicts) addLate(id valueID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.late[id] = true
}

// failures returns the unreadable values that were not written late.
func (v *verdicts) failures() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for id, why := range v.unreadable {
		if !v.late[id] {
			out = append(out, fmt.Sprintf("%s at version %d: %s", id.key, id.rev, why))
		}
	}
	slices.Sort(out)
	return out
}

// raceStats counts what happened, for the log and the non-vacuity check.
type raceStats struct {
	writes, reverts, deletes, conflicts, rerefreshed, late atomic.Int64
	collections, deleted, kept                             atomic.Int64
	overtaken                                              atomic.Int64 // collections whose mark a compaction overtook
	checks, checkedValues                                  atomic.Int64
	maxCommit                                              atomic.Int64 // longest refresh-to-commit, ns
}

func runRace(t *testing.T, b kv.Backend, s *fileblob.Store, base []byte, compact func(context.Context) error) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		st   raceStats
		wg   sync.WaitGroup
		errs = make(chan error, 100)
		v    = &verdicts{unreadable: map[valueID]string{}, late: map[valueID]bool{}}
	)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
		cancel()
	}

	// Collections, back to back.
	wg.Go(func() {
		for ctx.Err() == nil {
			r, err := blobgc.Collect(ctx, b, s, blobgc.Options{Grace: raceGrace})
			if errors.Is(err, kv.ErrCompacted) && len(r.Deleted) == 0 {
				// The mark's replay of etcd's history was overtaken by
				// compaction (every 300 ms here) too often, as happens on
				// a loaded machine: it ends deleting nothing, and the next
				// collection starts over.
				st.overtaken.Add(1)
				continue
			}
			if err != nil {
				if ctx.Err() == nil {
					fail(fmt.Errorf("collect: %w", err))
				}
				return
			}
			st.collections.Add(1)
			st.deleted.Add(int64(len(r.Deleted)))
			st.kept.Add(int64(r.Kept))
			for _, d := range r.Dangling {
				v.addUnreadable(valueID{d.Key, d.ModRevision}, "collection found it dangling: "+d.Err)
			}
			sleep(ctx, 20*time.Millisecond)
		}
	})
	// Checks: every value the backend can return decodes.
	wg.Go(func() {
		for ctx.Err() == nil {
			if err := checkAll(ctx, b, s, &st, v); err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				return
			}
			sleep(ctx, 200*time.Millisecond)
		}
	})
	if compact != nil {
		wg.Go(func() {
			for ctx.Err() == nil {
				sleep(ctx, 300*time.Millisecond)
				if err := compact(ctx); err != nil && ctx.Err() == nil {
					fail(fmt.Errorf("compact: %w", err))
					return
				}
			}
		})
	}
	writers := make([]*raceWriter, raceWriters)
	for i := range writers {
		writers[i] = newRaceWriter(i, b, s, base, &st, v)
	}
	var ww sync.WaitGroup
	start := time.Now()
	enough := func() bool {
		run := time.Since(start)
		return run > maxRaceDuration || (run > raceDuration() && st.writes.Load() >= minRaceWrites)
	}
	for _, w := range writers {
		ww.Go(func() {
			for ctx.Err() == nil && !enough() {
				if err := w.step(ctx); err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("writer %d: %w", w.id, err))
					}
					return
				}
			}
		})
	}
	ww.Wait()
	// Compact the history the last writes superseded, then let the
	// collections run on a quiet store past the grace period, so that
	// everything unreferenced becomes old and goes.
	if compact != nil {
		if err := compact(ctx); err != nil && ctx.Err() == nil {
			fail(fmt.Errorf("compact: %w", err))
		}
	}
	sleep(ctx, raceGrace+300*time.Millisecond)
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// The final check, on a quiet store, after one more collection.
	final := context.Background()
	r, err := blobgc.Collect(final, b, s, blobgc.Options{Grace: raceGrace})
	if err != nil {
		t.Fatalf("final collection: %v", err)
	}
	for _, d := range r.Dangling {
		v.addUnreadable(valueID{d.Key, d.ModRevision}, "collection found it dangling: "+d.Err)
	}
	st.deleted.Add(int64(len(r.Deleted)))
	if err := checkAll(final, b, s, &st, v); err != nil {
		t.Fatal(err)
	}
	for _, f := range v.failures() {
		t.Errorf("referenced blob deleted: %s", f)
	}
	t.Logf("%d writes (%d reverts, %d deletes, %d CAS conflicts, %d refreshed again after a slow upload, %d late), longest refresh-to-commit %v; "+
		"%d collections deleted %d blobs, kept %d refreshed candidates (%d more overtaken by compaction); %d checks of %d values; store holds %d blobs",
		st.writes.Load(), st.reverts.Load(), st.deletes.Load(), st.conflicts.Load(), st.rerefreshed.Load(), st.late.Load(),
		time.Duration(st.maxCommit.Load()), st.collections.Load(), st.deleted.Load(), st.kept.Load(), st.overtaken.Load(),
		st.checks.Load(), st.checkedValues.Load(), r.Stored)
	if st.deleted.Load() == 0 {
		t.Fatal("no collection deleted anything: the test is vacuous")
	}
	if st.reverts.Load() == 0 || st.collections.Load() < 3 {
		t.Fatalf("too little happened: %d reverts, %d collections", st.reverts.Load(), st.collections.Load())
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// checkAll decodes every current value and every past value the backend
// can return. A past value that fails is a failure only if the backend can
// still return it afterwards (it may have been pruned or compacted away,
// and its blobs rightly collected, in between).
func checkAll(ctx context.Context, b kv.Backend, s *fileblob.Store, st *raceStats, v *verdicts) error {
	check := func(e kv.KV) error {
		st.checkedValues.Add(1)
		if _, err := record.Decode(ctx, e.Value, s.Get); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			still, gerr := b.GetRevision(ctx, e.Key, e.ModRevision)
			if gerr != nil || !bytes.Equal(still, e.Value) {
				return nil // no longer returnable
			}
			v.addUnreadable(valueID{e.Key, e.ModRevision}, "still returnable, does not decode: "+err.Error())
		}
		return nil
	}
	kvs, _, err := b.List(ctx, "/", false)
	if err != nil {
		return err
	}
	for _, e := range kvs {
		if err := check(e); err != nil {
			return err
		}
	}
	if err := b.History(ctx, "/", check); err != nil && !errors.Is(err, kv.ErrCompacted) {
		return err
	}
	st.checks.Add(1)
	return nil
}

// raceWriter is one writer: its own SrvVSchema cell and files, plus a key
// all writers fight over, with the contents it wrote before (to revert to).
type raceWriter struct {
	id    int
	rng   *rand.Rand
	w     *writer
	st    *raceStats
	v     *verdicts
	srv   *vschemapb.SrvVSchema
	past  map[string][][]byte // key → contents written, oldest first
	files []string
}

func newRaceWriter(id int, b kv.Backend, s *fileblob.Store, base []byte, st *raceStats, v *verdicts) *raceWriter {
	srv := &vschemapb.SrvVSchema{}
	if err := proto.Unmarshal(base, srv); err != nil {
		panic(err)
	}
	return &raceWriter{
		id:   id,
		rng:  rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano()))),
		w:    &writer{backend: b, store: s, grace: raceGrace},
		st:   st,
		v:    v,
		srv:  srv,
		past: map[string][][]byte{},
	}
}

// step makes one random change.
func (rw *raceWriter) step(ctx context.Context) error {
	srvKey := fmt.Sprintf("/cells/w%d/SrvVSchema", rw.id)
	switch n := rw.rng.IntN(100); {
	case n < 30: // edit a keyspace of the SrvVSchema
		rw.editKeyspace()
		contents, err := proto.MarshalOptions{Deterministic: true}.Marshal(rw.srv)
		if err != nil {
			return err
		}
		return rw.commit(ctx, srvKey, contents)
	case n < 55: // revert a key to one of its earlier contents
		keys := slices.Sorted(maps.Keys(rw.past))
		if len(keys) == 0 {
			return nil
		}
		key := keys[rw.rng.IntN(len(keys))]
		versions := rw.past[key]
		rw.st.reverts.Add(1)
		return rw.commit(ctx, key, versions[rw.rng.IntN(len(versions))])
	case n < 75: // a new large file, or an edit of one
		key := fmt.Sprintf("/files/w%d/f%d", rw.id, rw.rng.IntN(4))
		contents := randomBytes(rw.rng, 64<<10+rw.rng.IntN(400<<10))
		if versions := rw.past[key]; len(versions) > 0 && rw.rng.IntN(2) == 0 {
			// Edit the last version in place: most chunks stay shared.
			contents = bytes.Clone(versions[len(versions)-1])
			off := rw.rng.IntN(len(contents))
			copy(contents[off:], randomBytes(rw.rng, 1000))
		}
		return rw.commit(ctx, key, contents)
	case n < 90: // the key every writer fights over
		return rw.commit(ctx, "/files/shared", randomBytes(rw.rng, 40<<10+rw.rng.IntN(100<<10)))
	default: // delete a file
		key := fmt.Sprintf("/files/w%d/f%d", rw.id, rw.rng.IntN(4))
		_, err := rw.w.backend.Delete(ctx, key, 0)
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		rw.st.deletes.Add(1)
		return err
	}
}

// editKeyspace changes one random keyspace: adds a table (a copy of one of
// its tables under a new name) or drops one.
func (rw *raceWriter) editKeyspace() {
	names := slices.Sorted(maps.Keys(rw.srv.Keyspaces))
	ks := rw.srv.Keyspaces[names[rw.rng.IntN(len(names))]]
	tables := slices.Sorted(maps.Keys(ks.Tables))
	if len(tables) > 1 && rw.rng.IntN(2) == 0 {
		delete(ks.Tables, tables[rw.rng.IntN(len(tables))])
		return
	}
	if ks.Tables == nil {
		ks.Tables = map[string]*vschemapb.Table{}
	}
	tbl := &vschemapb.Table{}
	if len(tables) > 0 {
		tbl = proto.Clone(ks.Tables[tables[rw.rng.IntN(len(tables))]]).(*vschemapb.Table)
	}
	ks.Tables[fmt.Sprintf("t_w%d_%d", rw.id, rw.rng.Uint32())] = tbl
}

// commit writes contents at key with compare-and-set, as a client does:
// encode; refresh the blobs and upload the missing ones (MissingBlobs,
// PutBlobs); write the record over the version read. Its side of the
// protocol is to write the record within Grace/2 of its last refresh.
func (rw *raceWriter) commit(ctx context.Context, key string, contents []byte) error {
	enc, err := record.Encode(key, contents, record.DefaultInlineLimit)
	if err != nil {
		return err
	}
	var written valueID
	for attempt := 0; ; attempt++ {
		if attempt == 10 {
			return fmt.Errorf("commit %s: too many attempts", key)
		}
		cur, err := rw.w.backend.Get(ctx, key)
		version := cur.ModRevision
		if errors.Is(err, kv.ErrNotFound) {
			version = -1
		} else if err != nil {
			return err
		}
		// Refresh and upload; if that took long (uploads are fsynced),
		// refresh again, which finds everything present: the writer's
		// Grace/2 runs from its last refresh.
		var refreshed time.Time
		for range 5 {
			refreshed = time.Now()
			if err := rw.w.upload(ctx, enc); err != nil {
				return err
			}
			if time.Since(refreshed) <= raceGrace/4 {
				break
			}
			rw.st.rerefreshed.Add(1)
		}
		var rev int64
		if version < 0 {
			rev, err = rw.w.backend.Create(ctx, key, enc.Value, 0)
		} else {
			rev, err = rw.w.backend.Update(ctx, key, enc.Value, version)
		}
		took := time.Since(refreshed)
		for {
			prev := rw.st.maxCommit.Load()
			if int64(took) <= prev || rw.st.maxCommit.CompareAndSwap(prev, int64(took)) {
				break
			}
		}
		if errors.Is(err, kv.ErrBadVersion) || errors.Is(err, kv.ErrExists) {
			rw.st.conflicts.Add(1)
			continue
		}
		if err != nil {
			return err
		}
		written = valueID{key, rev}
		if took > raceGrace/2 {
			rw.st.late.Add(1)
			rw.v.addLate(written)
		}
		break
	}
	rw.st.writes.Add(1)
	versions := append(rw.past[key], contents)
	if len(versions) > 12 {
		versions = versions[1:]
	}
	rw.past[key] = versions
	// Read back what was just written.
	if _, err := record.Decode(ctx, enc.Value, rw.w.store.Get); err != nil && ctx.Err() == nil {
		rw.v.addUnreadable(written, "unreadable right after it was written: "+err.Error())
	}
	return nil
}
