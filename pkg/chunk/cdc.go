package chunk

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Chunking defaults and limits.
const (
	DefaultMinSize = 16 << 10  // 16 KiB
	DefaultAvgSize = 64 << 10  // 64 KiB
	DefaultMaxSize = 256 << 10 // 256 KiB

	// MaxChunkSize is the largest chunk the format allows: Options.MaxSize
	// may not exceed it and Decode rejects a manifest listing a larger one.
	MaxChunkSize = 64 << 20

	// MaxFileSize is the largest file the codec encodes and decodes: 1 GiB.
	// A few small blobs can describe a far larger file (a manifest
	// repeating a chunk or a sub-manifest), so Decode refuses a root
	// manifest that claims more before fetching anything else.
	MaxFileSize = 1 << 30

	// normalization is FastCDC's normalization level: below AvgSize a cut
	// needs log2(AvgSize)+normalization zero bits, above it
	// log2(AvgSize)-normalization, which concentrates chunk sizes around
	// AvgSize.
	normalization = 2
)

// Options are the content-defined chunking parameters. The zero value (or
// any zero field) means the defaults: 16 KiB minimum, 64 KiB target,
// 256 KiB maximum. The parameters only affect where Encode cuts; Decode does
// not need them.
type Options struct {
	MinSize int // no chunk is shorter, except the last one
	AvgSize int // the target chunk size; a power of two
	MaxSize int // no chunk is longer
}

func (o Options) withDefaults() Options {
	if o.MinSize == 0 {
		o.MinSize = DefaultMinSize
	}
	if o.AvgSize == 0 {
		o.AvgSize = DefaultAvgSize
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	return o
}

// validate checks o after defaults are applied.
func (o Options) validate() error {
	switch {
	case o.MinSize < 1 || o.AvgSize < 1 || o.MaxSize < 1:
		return fmt.Errorf("chunk: options %+v: sizes must be positive", o)
	case o.MinSize > o.AvgSize || o.AvgSize > o.MaxSize:
		return fmt.Errorf("chunk: options %+v: want MinSize <= AvgSize <= MaxSize", o)
	case o.AvgSize&(o.AvgSize-1) != 0:
		return fmt.Errorf("chunk: options %+v: AvgSize must be a power of two", o)
	case bits.Len(uint(o.AvgSize))-1 <= normalization:
		return fmt.Errorf("chunk: options %+v: AvgSize must be at least %d", o, 2<<normalization)
	case o.MaxSize > MaxChunkSize:
		return fmt.Errorf("chunk: options %+v: MaxSize exceeds %d", o, MaxChunkSize)
	}
	return nil
}

// gear is the gear hash table: 256 pseudo-random 64-bit values, derived
// from SHA-256 so that they are fixed forever (chunk boundaries, and so
// deduplication across versions, depend on them): gear[i] is the first 8
// bytes, big-endian, of SHA-256("topod chunk gear " + decimal i).
var gear = func() (g [256]uint64) {
	for i := range g {
		sum := sha256.Sum256(fmt.Appendf(nil, "topod chunk gear %d", i))
		g[i] = binary.BigEndian.Uint64(sum[:8])
	}
	return g
}()

// cutter finds content-defined chunk boundaries with FastCDC's gear rolling
// hash and normalized chunking. The hash is fp = fp<<1 + gear[b], so its top
// bit depends on the last 64 bytes; a boundary is where the top bits of fp
// are all zero.
type cutter struct {
	min, avg, max int
	maskS, maskL  uint64 // stricter mask before avg, looser after
}

func newCutter(o Options) cutter {
	b := bits.Len(uint(o.AvgSize)) - 1 // log2(AvgSize)
	return cutter{
		min:   o.MinSize,
		avg:   o.AvgSize,
		max:   o.MaxSize,
		maskS: ^uint64(0) << (64 - (b + normalization)),
		maskL: ^uint64(0) << (64 - (b - normalization)),
	}
}

// cut returns the length of the chunk that starts data: len(data) if data
// is no longer than the minimum, otherwise a content-defined point in
// [min, max].
func (c cutter) cut(data []byte) int {
	n := len(data)
	if n <= c.min {
		return n
	}
	n = min(n, c.max)
	normal := min(c.avg, n)
	var fp uint64
	i := c.min
	for ; i < normal; i++ {
		fp = fp<<1 + gear[data[i]]
		if fp&c.maskS == 0 {
			return i + 1
		}
	}
	for ; i < n; i++ {
		fp = fp<<1 + gear[data[i]]
		if fp&c.maskL == 0 {
			return i + 1
		}
	}
	return n
}
