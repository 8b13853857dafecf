package boltkv

import (
	"fmt"
	"testing"
)

// BenchmarkUpdate measures one unconditional Update of a 1 KiB value, with
// and without fsync.
func BenchmarkUpdate(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("NoSync=%v", noSync), func(b *testing.B) {
			be, _ := openTest(b, Options{NoSync: noSync})
			value := make([]byte, 1<<10)
			ctx := b.Context()
			b.SetBytes(int64(len(value)))
			i := 0
			for b.Loop() {
				if _, err := be.Update(ctx, fmt.Sprintf("/bench/%d", i%1000), value, 0); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkUpdateCAS measures compare-and-set updates of one key.
func BenchmarkUpdateCAS(b *testing.B) {
	be, _ := openTest(b, Options{NoSync: true})
	ctx := b.Context()
	value := make([]byte, 1<<10)
	rev, err := be.Create(ctx, "/bench", value, 0)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if rev, err = be.Update(ctx, "/bench", value, rev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet measures Get of a 1 KiB value among 1000 keys, in parallel.
func BenchmarkGet(b *testing.B) {
	be, _ := openTest(b, Options{NoSync: true})
	ctx := b.Context()
	value := make([]byte, 1<<10)
	for i := range 1000 {
		if _, err := be.Update(ctx, fmt.Sprintf("/bench/%d", i), value, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := be.Get(ctx, fmt.Sprintf("/bench/%d", i%1000)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
