package fileblob

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/blobstore/blobtest"
	"github.com/topod-io/topod/pkg/content"
)

// age sets blob h's stored time to t.
func age(t *testing.T, s *Store, h content.Hash, at time.Time) {
	t.Helper()
	if err := os.Chtimes(s.Path(h), at, at); err != nil {
		t.Fatal(err)
	}
}

func modTime(t *testing.T, s *Store, h content.Hash) time.Time {
	t.Helper()
	info, err := os.Stat(s.Path(h))
	if err != nil {
		t.Fatal(err)
	}
	return info.ModTime()
}

// TestRefreshAged: Refresh resets the time of a blob stored before
// olderThan to now, and leaves a younger one alone.
func TestRefreshAged(t *testing.T) {
	ctx := t.Context()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	old, dOld := blobtest.Blob(1, 10)
	young, dYoung := blobtest.Blob(2, 10)
	for h, d := range map[content.Hash][]byte{old: dOld, young: dYoung} {
		if err := s.Put(ctx, h, d); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	age(t, s, old, now.Add(-2*time.Hour))
	age(t, s, young, now.Add(-10*time.Minute))
	missing, err := s.Refresh(ctx, []content.Hash{old, young}, now.Add(-30*time.Minute))
	if err != nil || len(missing) != 0 {
		t.Fatalf("Refresh = %v, %v", missing, err)
	}
	if got := modTime(t, s, old); got.Before(now) {
		t.Errorf("blob stored 2h ago, refreshed with olderThan 30m ago: time %v, want now", got)
	}
	if got := modTime(t, s, young); !got.Equal(now.Add(-10 * time.Minute)) {
		t.Errorf("blob stored 10m ago, refreshed with olderThan 30m ago: time %v, want unchanged", got)
	}
}

// TestDeleteIfOlderLeavesNothing: a deleted blob leaves nothing in gc/.
func TestDeleteIfOlderLeavesNothing(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, data := blobtest.Blob(1, 10)
	if err := s.Put(ctx, h, data); err != nil {
		t.Fatal(err)
	}
	age(t, s, h, time.Now().Add(-2*time.Hour))
	if deleted, err := s.DeleteIfOlder(ctx, h, time.Now().Add(-time.Hour)); err != nil || !deleted {
		t.Fatalf("DeleteIfOlder = %v, %v; want deleted", deleted, err)
	}
	if left, err := os.ReadDir(filepath.Join(dir, gcDir)); err != nil || len(left) != 0 {
		t.Fatalf("gc/ after a delete: %v, %v; want empty", left, err)
	}
}

// TestOpenRestoresCollected: a blob a crash left in gc/ is put back by
// Open, and Get finds it there in the meantime.
func TestOpenRestoresCollected(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, data := blobtest.Blob(1, 10)
	if err := s.Put(ctx, h, data); err != nil {
		t.Fatal(err)
	}
	collected := filepath.Join(dir, gcDir, h.String()+".99.1")
	if err := os.Rename(s.Path(h), collected); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(dir, gcDir, "not-a-blob")
	if err := os.WriteFile(stray, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, h); err != nil || string(got) != string(data) {
		t.Fatalf("Get of a blob in gc/ = %d bytes, %v", len(got), err)
	}
	if m, err := s.Missing(ctx, []content.Hash{h}); err != nil || len(m) != 1 {
		t.Fatalf("Missing of a blob in gc/ = %v, %v; want it missing", m, err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path(h)); err != nil {
		t.Fatalf("blob not back in place after Open: %v", err)
	}
	if _, err := os.Stat(collected); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("gc/ file still there after Open: %v", err)
	}
	if _, err := os.Stat(stray); err != nil {
		t.Fatalf("Open removed a file of gc/ that is not a blob: %v", err)
	}
}

// TestDeleteIfOlderRacesRefresh runs DeleteIfOlder against Refresh on an
// old blob, many times: whenever Refresh reports the blob present, it must
// still be there afterwards. This is the guarantee garbage collection gives
// a writer that asked MissingBlobs and skipped the upload.
func TestDeleteIfOlderRacesRefresh(t *testing.T) {
	ctx := t.Context()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h, data := blobtest.Blob(1, 1000)
	if err := s.Put(ctx, h, data); err != nil {
		t.Fatal(err)
	}
	rounds := 2000
	if testing.Short() {
		rounds = 200
	}
	var deletedRounds, keptRounds int
	for i := range rounds {
		now := time.Now()
		age(t, s, h, now.Add(-2*time.Hour))
		var (
			wg      sync.WaitGroup
			deleted bool
			missing []content.Hash
			delErr  error
			refErr  error
		)
		wg.Go(func() { deleted, delErr = s.DeleteIfOlder(ctx, h, now.Add(-time.Hour)) })
		wg.Go(func() { missing, refErr = s.Refresh(ctx, []content.Hash{h}, now.Add(-30*time.Minute)) })
		wg.Wait()
		if delErr != nil || refErr != nil {
			t.Fatalf("round %d: DeleteIfOlder: %v; Refresh: %v", i, delErr, refErr)
		}
		_, getErr := s.Get(ctx, h)
		if len(missing) == 0 && getErr != nil {
			t.Fatalf("round %d: Refresh reported the blob present, DeleteIfOlder = %v, then Get: %v", i, deleted, getErr)
		}
		if getErr != nil && !errors.Is(getErr, blobstore.ErrNotFound) {
			t.Fatalf("round %d: Get: %v", i, getErr)
		}
		if deleted {
			deletedRounds++
		} else {
			keptRounds++
		}
		if getErr != nil { // the writer uploads what Refresh reported missing
			if err := s.Put(ctx, h, data); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d rounds: deleted in %d, kept in %d", rounds, deletedRounds, keptRounds)
	if deletedRounds == 0 || keptRounds == 0 {
		t.Errorf("the race was not exercised both ways: deleted in %d rounds, kept in %d", deletedRounds, keptRounds)
	}
}
