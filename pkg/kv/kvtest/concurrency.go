package kvtest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/topod-io/topod/pkg/kv"
)

// checkConcurrentCAS: goroutines incrementing one counter with
// read-modify-write and Update(version), retrying on ErrBadVersion, lose no
// update; every successful write gets its own revision.
func checkConcurrentCAS(t *testing.T, e *env) {
	const workers, increments = 8, 25
	k := e.key("counter")
	mustCreate(t, e, k, "0", 0)

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		revs = map[int64]bool{}
	)
	for range workers {
		wg.Go(func() {
			for done := 0; done < increments; {
				cur, err := e.b.Get(ctx(t), k)
				if err != nil {
					t.Errorf("Get: %v", err)
					return
				}
				n, err := strconv.Atoi(string(cur.Value))
				if err != nil {
					t.Errorf("counter value %q: %v", cur.Value, err)
					return
				}
				rev, err := e.b.Update(ctx(t), k, []byte(strconv.Itoa(n+1)), cur.ModRevision)
				if errors.Is(err, kv.ErrBadVersion) {
					continue
				}
				if err != nil {
					t.Errorf("Update: %v", err)
					return
				}
				mu.Lock()
				if revs[rev] {
					t.Errorf("two updates returned revision %d", rev)
				}
				revs[rev] = true
				mu.Unlock()
				done++
			}
		})
	}
	wg.Wait()
	if got := string(mustGet(t, e, k).Value); got != strconv.Itoa(workers*increments) {
		t.Fatalf("counter = %s after %d increments: lost updates", got, workers*increments)
	}
}

// checkLargeValue: a 1 MiB value round-trips through Create, Get, List,
// Update and GetRevision.
func checkLargeValue(t *testing.T, e *env) {
	const size = 1 << 20
	v1, v2 := make([]byte, size), make([]byte, size)
	_, _ = rand.Read(v1)
	_, _ = rand.Read(v2)
	k := e.key("large")

	r1, err := e.b.Create(ctx(t), k, v1, 0)
	if err != nil {
		t.Fatalf("Create(1 MiB): %v", err)
	}
	if got := mustGet(t, e, k); !bytes.Equal(got.Value, v1) {
		t.Fatalf("Get(1 MiB) returned %d bytes, not the value written", len(got.Value))
	}
	if _, err := e.b.Update(ctx(t), k, v2, r1); err != nil {
		t.Fatalf("Update(1 MiB): %v", err)
	}
	kvs, _, err := e.b.List(ctx(t), e.prefix, false)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(kvs) != 1 || !bytes.Equal(kvs[0].Value, v2) {
		t.Fatalf("List did not return the 1 MiB value written")
	}
	old, err := e.b.GetRevision(ctx(t), k, r1)
	if err != nil {
		t.Fatalf("GetRevision(1 MiB): %v", err)
	}
	if !bytes.Equal(old, v1) {
		t.Fatalf("GetRevision returned %d bytes, not the first value", len(old))
	}
}
