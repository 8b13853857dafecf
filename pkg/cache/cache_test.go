package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/content"
)

// blob returns a distinct value of n bytes for i, and its key.
func blob(i, n int) (content.Hash, []byte) {
	v := bytes.Repeat([]byte{byte(i)}, n)
	copy(v, fmt.Sprintf("blob-%d-", i))
	return content.Sum(v), v
}

// TestEviction runs a script of Add and Get steps against a small cache and
// checks what is cached after each step.
func TestEviction(t *testing.T) {
	type step struct {
		add  int   // blob to add (size 10), or -1
		get  int   // blob to Get, or -1
		want []int // blobs cached after the step, any order
	}
	tests := []struct {
		name     string
		maxBytes int64
		steps    []step
		evicted  uint64
	}{
		{
			name:     "fills without eviction",
			maxBytes: 30,
			steps: []step{
				{add: 0, get: -1, want: []int{0}},
				{add: 1, get: -1, want: []int{0, 1}},
				{add: 2, get: -1, want: []int{0, 1, 2}},
			},
		},
		{
			name:     "evicts least recently added",
			maxBytes: 30,
			steps: []step{
				{add: 0, get: -1, want: []int{0}},
				{add: 1, get: -1, want: []int{0, 1}},
				{add: 2, get: -1, want: []int{0, 1, 2}},
				{add: 3, get: -1, want: []int{1, 2, 3}},
				{add: 4, get: -1, want: []int{2, 3, 4}},
			},
			evicted: 2,
		},
		{
			name:     "get refreshes recency",
			maxBytes: 30,
			steps: []step{
				{add: 0, get: -1, want: []int{0}},
				{add: 1, get: -1, want: []int{0, 1}},
				{add: 2, get: -1, want: []int{0, 1, 2}},
				{add: -1, get: 0, want: []int{0, 1, 2}},
				{add: 3, get: -1, want: []int{0, 2, 3}},
				{add: 4, get: -1, want: []int{0, 3, 4}},
			},
			evicted: 2,
		},
		{
			name:     "re-add refreshes recency and does not double count",
			maxBytes: 30,
			steps: []step{
				{add: 0, get: -1, want: []int{0}},
				{add: 1, get: -1, want: []int{0, 1}},
				{add: 0, get: -1, want: []int{0, 1}},
				{add: 2, get: -1, want: []int{0, 1, 2}},
				{add: 3, get: -1, want: []int{0, 2, 3}},
			},
			evicted: 1,
		},
		{
			name:     "bound not a multiple of the size",
			maxBytes: 25,
			steps: []step{
				{add: 0, get: -1, want: []int{0}},
				{add: 1, get: -1, want: []int{0, 1}},
				{add: 2, get: -1, want: []int{1, 2}},
			},
			evicted: 1,
		},
		{
			name:     "zero bound caches nothing",
			maxBytes: 0,
			steps: []step{
				{add: 0, get: -1, want: nil},
				{add: -1, get: 0, want: nil},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.maxBytes)
			for n, s := range tt.steps {
				if s.add >= 0 {
					c.Add(blob(s.add, 10))
				}
				if s.get >= 0 {
					k, _ := blob(s.get, 10)
					c.Get(k)
				}
				for i := range 8 {
					k, _ := blob(i, 10)
					_, present := c.lru.Peek(k) // no recency change
					want := false
					for _, w := range s.want {
						want = want || w == i
					}
					if present != want {
						t.Fatalf("step %d: blob %d cached = %v, want %v", n, i, present, want)
					}
				}
				if got, want := c.Len(), len(s.want); got != want {
					t.Fatalf("step %d: Len = %d, want %d", n, got, want)
				}
				if got, want := c.Bytes(), int64(10*len(s.want)); got != want {
					t.Fatalf("step %d: Bytes = %d, want %d", n, got, want)
				}
			}
			if got := c.Stats().Evictions; got != tt.evicted {
				t.Errorf("Evictions = %d, want %d", got, tt.evicted)
			}
		})
	}
}

func TestMixedSizes(t *testing.T) {
	c := New(100)
	k0, v0 := blob(0, 40)
	k1, v1 := blob(1, 40)
	k2, v2 := blob(2, 90) // needs both others evicted
	c.Add(k0, v0)
	c.Add(k1, v1)
	c.Add(k2, v2)
	if c.Len() != 1 || c.Bytes() != 90 {
		t.Fatalf("after adding 40+40+90 into 100: Len %d Bytes %d, want 1 90", c.Len(), c.Bytes())
	}
	if _, ok := c.Get(k2); !ok {
		t.Fatal("newest value was evicted")
	}
	if s := c.Stats(); s.Evictions != 2 {
		t.Fatalf("Evictions = %d, want 2", s.Evictions)
	}
	if _, ok := c.Get(k0); ok {
		t.Fatal("oldest value was not evicted")
	}
	if _, ok := c.Get(k1); ok {
		t.Fatal("second value was not evicted")
	}
}

func TestOversize(t *testing.T) {
	ctx := context.Background()
	c := New(100)
	small, smallV := blob(1, 50)
	c.Add(small, smallV)

	big, bigV := blob(2, 101)
	c.Add(big, bigV)
	if _, ok := c.Get(big); ok {
		t.Fatal("Add cached a value larger than the bound")
	}
	var loads int
	for range 2 {
		got, err := c.GetOrLoad(ctx, big, func(context.Context) ([]byte, error) {
			loads++
			return bigV, nil
		})
		if err != nil || !bytes.Equal(got, bigV) {
			t.Fatalf("GetOrLoad(oversize) = %d bytes, %v; want the value", len(got), err)
		}
	}
	if loads != 2 {
		t.Fatalf("oversize value loaded %d times, want 2 (never cached)", loads)
	}
	if _, ok := c.Get(small); !ok || c.Bytes() != 50 {
		t.Fatalf("an oversize value evicted others: Bytes = %d", c.Bytes())
	}

	exact, exactV := blob(3, 100)
	c.Add(exact, exactV)
	if _, ok := c.Get(exact); !ok || c.Len() != 1 {
		t.Fatalf("a value of exactly the bound should be cached alone; Len = %d", c.Len())
	}
}

func TestGetOrLoadErrors(t *testing.T) {
	ctx := context.Background()
	errBoom := errors.New("boom")
	k, v := blob(7, 64)
	tests := []struct {
		name    string
		load    func(context.Context) ([]byte, error)
		wantErr error
	}{
		{"loader error", func(context.Context) ([]byte, error) { return nil, errBoom }, errBoom},
		{"corrupt value", func(context.Context) ([]byte, error) { return []byte("not it"), nil }, ErrCorrupt},
		{"nil value for a non-empty key", func(context.Context) ([]byte, error) { return nil, nil }, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(1 << 10)
			_, err := c.GetOrLoad(ctx, k, tt.load)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("GetOrLoad error = %v, want %v", err, tt.wantErr)
			}
			if c.Len() != 0 {
				t.Fatal("a failed load was cached")
			}
			// The error is not cached: the next call loads again.
			got, err := c.GetOrLoad(ctx, k, func(context.Context) ([]byte, error) { return v, nil })
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("retry after error: %d bytes, %v", len(got), err)
			}
			want := Stats{Misses: 2, Loads: 2, LoadErrors: 1, Entries: 1, Bytes: 64}
			if s := c.Stats(); s != want {
				t.Fatalf("Stats = %+v, want %+v", s, want)
			}
		})
	}
}

func TestStats(t *testing.T) {
	ctx := context.Background()
	c := New(25)
	k0, v0 := blob(0, 10)
	k1, v1 := blob(1, 10)
	k2, v2 := blob(2, 10)
	load := func(v []byte) func(context.Context) ([]byte, error) {
		return func(context.Context) ([]byte, error) { return v, nil }
	}
	c.Get(k0)                      // miss
	c.Add(k0, v0)                  //
	c.Get(k0)                      // hit
	c.GetOrLoad(ctx, k1, load(v1)) // miss, load
	c.GetOrLoad(ctx, k1, load(v1)) // hit
	c.GetOrLoad(ctx, k2, load(v2)) // miss, load, evicts k0
	c.Get(k0)                      // miss
	want := Stats{Hits: 2, Misses: 4, Loads: 2, Evictions: 1, Entries: 2, Bytes: 20}
	if s := c.Stats(); s != want {
		t.Fatalf("Stats = %+v, want %+v", s, want)
	}
}

// TestConcurrent has many goroutines GetOrLoad a few keys at once, and checks
// that each key was loaded exactly once and every caller got its value. Run it
// with -race.
func TestConcurrent(t *testing.T) {
	const (
		keys       = 16
		goroutines = 64
		rounds     = 50
	)
	c := New(1 << 20)
	var loads [keys]atomic.Int32
	release := make(chan struct{})
	ctx := context.Background()

	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			<-release
			for r := range rounds {
				i := (g + r) % keys
				k, v := blob(i, 1000)
				got, err := c.GetOrLoad(ctx, k, func(context.Context) ([]byte, error) {
					loads[i].Add(1)
					time.Sleep(time.Millisecond) // widen the window for sharing
					return v, nil
				})
				if err != nil {
					errs <- fmt.Errorf("goroutine %d round %d: %v", g, r, err)
					return
				}
				if !bytes.Equal(got, v) {
					errs <- fmt.Errorf("goroutine %d round %d: wrong value for key %d", g, r, i)
					return
				}
				// Mix in plain reads and redundant adds.
				if _, ok := c.Get(k); !ok {
					errs <- fmt.Errorf("goroutine %d round %d: key %d not cached after load", g, r, i)
					return
				}
				c.Add(k, v)
			}
		})
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range keys {
		if n := loads[i].Load(); n != 1 {
			t.Errorf("key %d loaded %d times, want 1", i, n)
		}
	}
	s := c.Stats()
	if s.Loads != keys || s.Entries != keys || s.Bytes != keys*1000 || s.Evictions != 0 {
		t.Errorf("Stats = %+v", s)
	}
	if calls := uint64(goroutines * rounds * 2); s.Hits+s.Misses != calls {
		t.Errorf("Hits+Misses = %d, want %d", s.Hits+s.Misses, calls)
	}
}

// TestConcurrentEvicting runs concurrent loads of more data than fits, so
// loads, hits and evictions interleave; with -race it checks the locking, and
// afterwards the byte accounting.
func TestConcurrentEvicting(t *testing.T) {
	c := New(10_000)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for r := range 500 {
				k, v := blob((g*7+r)%40, 500+(r%7)*100)
				got, err := c.GetOrLoad(ctx, k, func(context.Context) ([]byte, error) { return v, nil })
				if err != nil || !bytes.Equal(got, v) {
					t.Errorf("GetOrLoad: %d bytes, %v", len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
	var sum int64
	c.mu.Lock()
	for _, v := range c.lru.Values() {
		sum += int64(len(v))
	}
	c.mu.Unlock()
	s := c.Stats()
	if sum != s.Bytes || s.Bytes > 10_000 {
		t.Fatalf("Bytes = %d, sum of values = %d, bound 10000", s.Bytes, sum)
	}
	if s.Evictions == 0 {
		t.Fatalf("expected evictions, Stats = %+v", s)
	}
}

// TestWaiterCancel checks that a caller whose context ends stops waiting,
// while the shared load goes on for the other callers and is cached.
func TestWaiterCancel(t *testing.T) {
	c := New(1 << 10)
	k, v := blob(3, 100)
	started := make(chan struct{})
	unblock := make(chan struct{})
	var loadErr atomic.Value
	load := func(ctx context.Context) ([]byte, error) {
		close(started)
		<-unblock
		if err := ctx.Err(); err != nil {
			loadErr.Store(err)
		}
		return v, nil
	}

	ctx1, cancel1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(ctx1, k, load)
		done1 <- err
	}()
	<-started
	done2 := make(chan []byte, 1)
	go func() {
		got, err := c.GetOrLoad(context.Background(), k, func(context.Context) ([]byte, error) {
			t.Error("second caller ran its own load")
			return nil, nil
		})
		if err != nil {
			t.Error(err)
		}
		done2 <- got
	}()

	cancel1()
	if err := <-done1; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", err)
	}
	close(unblock)
	if got := <-done2; !bytes.Equal(got, v) {
		t.Fatal("second caller got the wrong value")
	}
	if err := loadErr.Load(); err != nil {
		t.Fatalf("load saw its context cancelled: %v", err)
	}
	if _, ok := c.Get(k); !ok {
		t.Fatal("value of the shared load was not cached")
	}
}

func BenchmarkGetHit(b *testing.B) {
	c := New(1 << 30)
	const n = 1024
	keys := make([]content.Hash, n)
	for i := range n {
		k, v := blob(i, 4096)
		c.Add(k, v)
		keys[i] = k
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok := c.Get(keys[i%n]); !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkGetHitParallel(b *testing.B) {
	c := New(1 << 30)
	const n = 1024
	keys := make([]content.Hash, n)
	for i := range n {
		k, v := blob(i, 4096)
		c.Add(k, v)
		keys[i] = k
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Get(keys[i%n])
			i++
		}
	})
}

// BenchmarkGetOrLoad measures GetOrLoad over a key set twice the size of the
// cache, picked at random, so about half the calls miss, load a 4 KiB value
// (hashing it) and evict.
func BenchmarkGetOrLoad(b *testing.B) {
	const n, size = 2048, 4096
	c := New(n / 2 * size)
	keys := make([]content.Hash, n)
	vals := make([][]byte, n)
	for i := range n {
		keys[i], vals[i] = blob(i, size)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	order := make([]int, 1<<16)
	for i := range order {
		order[i] = rng.IntN(n)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		j := order[i%len(order)]
		if _, err := c.GetOrLoad(ctx, keys[j], func(context.Context) ([]byte, error) { return vals[j], nil }); err != nil {
			b.Fatal(err)
		}
	}
	s := c.Stats()
	b.ReportMetric(float64(s.Misses)/float64(s.Hits+s.Misses), "miss/op")
}

func BenchmarkGetOrLoadHit(b *testing.B) {
	c := New(1 << 30)
	k, v := blob(1, 4096)
	c.Add(k, v)
	ctx := context.Background()
	load := func(context.Context) ([]byte, error) { return v, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.GetOrLoad(ctx, k, load); err != nil {
			b.Fatal(err)
		}
	}
}
