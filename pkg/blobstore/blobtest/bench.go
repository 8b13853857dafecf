package blobtest

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/content"
)

// BenchSizes are the blob sizes Bench measures.
var BenchSizes = []int{1 << 10, 64 << 10}

// Bench measures s, in sub-benchmarks per size in BenchSizes:
//
//	Put/SIZE          a Put of a new blob
//	PutExisting/SIZE  a Put of a blob already stored (the no-op path)
//	Get/SIZE          a Get (read and verify) of a stored blob
//	Missing100        Missing of 100 hashes, half of them stored
//
// Hashing the new blobs is done with the timer stopped; the hashing Put
// and Get do themselves is counted.
func Bench(b *testing.B, s blobstore.Store) {
	ctx := context.Background()
	var seq uint64 // distinct blobs across sub-benchmarks and their reruns
	next := func(base []byte) (content.Hash, []byte) {
		seq++
		data := append([]byte(nil), base...)
		binary.LittleEndian.PutUint64(data, seq)
		return content.Sum(data), data
	}
	for _, size := range BenchSizes {
		_, base := Blob(uint64(size), size)
		b.Run(fmt.Sprintf("Put/%s", sizeName(size)), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				b.StopTimer()
				h, data := next(base)
				b.StartTimer()
				if err := s.Put(ctx, h, data); err != nil {
					b.Fatal(err)
				}
			}
		})
		h, data := next(base)
		if err := s.Put(ctx, h, data); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("PutExisting/%s", sizeName(size)), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := s.Put(ctx, h, data); err != nil {
					b.Fatal(err)
				}
			}
		})
		const stored = 64
		hashes := make([]content.Hash, stored)
		for i := range hashes {
			h, data := next(base)
			if err := s.Put(ctx, h, data); err != nil {
				b.Fatal(err)
			}
			hashes[i] = h
		}
		b.Run(fmt.Sprintf("Get/%s", sizeName(size)), func(b *testing.B) {
			b.SetBytes(int64(size))
			i := 0
			for b.Loop() {
				if _, err := s.Get(ctx, hashes[i%stored]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
	var mix []content.Hash
	for i := range 100 {
		h, data := next(make([]byte, 100))
		if i%2 == 0 {
			if err := s.Put(ctx, h, data); err != nil {
				b.Fatal(err)
			}
		}
		mix = append(mix, h)
	}
	b.Run("Missing100", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Missing(ctx, mix); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func sizeName(n int) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	if n%(1<<10) == 0 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
