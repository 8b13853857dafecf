package fleet

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestForward(t *testing.T) {
	for _, tc := range []struct {
		name   string
		read   bool // the reader takes every value
		cancel bool // the context ends before the sender is done
	}{
		{"reader takes all", true, false},
		{"reader gone, context canceled", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var running atomic.Int64
			in := make(chan int, 2)
			out := forward(ctx, &running, in)
			if running.Load() != 1 {
				t.Fatalf("%d forwarders running, want 1", running.Load())
			}
			if tc.cancel {
				cancel()
			}
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				for i := range 20 { // more than the channels hold
					in <- i
				}
				close(in)
			}()
			if tc.read {
				n := 0
				for v := range out {
					if v != n {
						t.Fatalf("got %d, want %d", v, n)
					}
					n++
				}
				if n != 20 {
					t.Fatalf("got %d values, want 20", n)
				}
			}
			select {
			case <-sent:
			case <-time.After(10 * time.Second):
				t.Fatal("the sender is blocked: the forwarder stopped reading")
			}
			for deadline := time.Now().Add(10 * time.Second); running.Load() != 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the forwarder did not end after its input closed")
				}
			}
		})
	}
}
