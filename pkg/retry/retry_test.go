package retry_test

import (
	"context"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/retry"
)

// TestWaitsGrowCappedAndJittered: waits double from about the initial
// interval to about the cap (each within ±50%), Reset starts again, and
// many loops that fail together do not wait alike: a thousand watches
// reconnecting after the same failure spread out.
func TestWaitsGrowCappedAndJittered(t *testing.T) {
	tests := []struct {
		name          string
		initial, max  time.Duration
		steps         int
		wantLastAbout time.Duration
	}{
		{"grows", 100 * time.Millisecond, 10 * time.Second, 4, 800 * time.Millisecond},
		{"capped", 50 * time.Millisecond, 2 * time.Second, 20, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := retry.New(tt.initial, tt.max)
			var last time.Duration
			for range tt.steps {
				last = b.Next()
			}
			if last < tt.wantLastAbout/2 || last > tt.wantLastAbout*3/2 {
				t.Fatalf("wait %d = %v, want %v ±50%%", tt.steps, last, tt.wantLastAbout)
			}
			b.Reset()
			if first := b.Next(); first < tt.initial/2 || first > tt.initial*3/2 {
				t.Fatalf("after Reset, wait = %v, want %v ±50%%", first, tt.initial)
			}
		})
	}
	// A thousand loops failing at once: their first waits spread over the
	// ±50% window rather than coinciding.
	const n = 1000
	distinct := map[time.Duration]bool{}
	lo, hi := time.Hour, time.Duration(0)
	for range n {
		d := retry.New(time.Second, time.Minute).Next()
		distinct[d.Truncate(time.Millisecond)] = true
		lo, hi = min(lo, d), max(hi, d)
	}
	if len(distinct) < n/2 || hi-lo < 800*time.Millisecond {
		t.Fatalf("1,000 first waits: %d distinct (ms), spread %v..%v: not jittered", len(distinct), lo, hi)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := retry.New(time.Hour, time.Hour).Wait(ctx); err != context.Canceled {
		t.Fatalf("Wait on a canceled context = %v", err)
	}
	if err := retry.New(time.Millisecond, time.Millisecond).Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
}
