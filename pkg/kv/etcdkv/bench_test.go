package etcdkv_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/topod-io/topod/internal/harness"
)

// valueSizes are the record sizes benchmarked: a small topo record, and the
// inline limit (32 KiB) of the design.
var valueSizes = []int{256, 32 << 10}

// parallelism is the number of client goroutines per CPU in the parallel
// benchmarks: many concurrent callers, as topod serving many vtgates.
const parallelism = 8

func BenchmarkGet(b *testing.B) {
	c := harness.StartEtcd(b, 1)
	be := open(b, c)
	ctx := context.Background()
	for _, size := range valueSizes {
		key := fmt.Sprintf("/bench/get/%d", size)
		if _, err := be.Update(ctx, key, make([]byte, size), 0); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := be.Get(ctx, key); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("%dB/parallel", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.SetParallelism(parallelism)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := be.Get(ctx, key); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkUpdate(b *testing.B) {
	c := harness.StartEtcd(b, 1)
	be := open(b, c)
	ctx := context.Background()
	for _, size := range valueSizes {
		value := make([]byte, size)
		b.Run(fmt.Sprintf("%dB/unconditional", size), func(b *testing.B) {
			key := fmt.Sprintf("/bench/update/%d", size)
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := be.Update(ctx, key, value, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("%dB/version", size), func(b *testing.B) {
			key := fmt.Sprintf("/bench/cas/%d", size)
			rev, err := be.Update(ctx, key, value, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			for b.Loop() {
				if rev, err = be.Update(ctx, key, value, rev); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("%dB/parallel", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.SetParallelism(parallelism)
			b.RunParallel(func(pb *testing.PB) {
				// One key per goroutine: concurrent writes, no contention.
				key := fmt.Sprintf("/bench/parallel/%d/%p", size, pb)
				for pb.Next() {
					if _, err := be.Update(ctx, key, value, 0); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
