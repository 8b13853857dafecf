// Package retry is the backoff of loops that retry or reconnect:
// exponential, capped, with ±50% jitter so that clients that failed
// together (a replica died under thousands of watches) do not come back in
// the same instant, and reset once the loop makes progress. Each loop holds
// its own Backoff. It wraps cenkalti/backoff.
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Backoff is a jittered exponential backoff. It is not safe for
// concurrent use: each loop holds its own.
type Backoff struct {
	b *backoff.ExponentialBackOff
}

// New returns a backoff whose waits start around initial and double up to
// around max (each wait is the interval ±50%).
func New(initial, max time.Duration) *Backoff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         max,
	}
	b.Reset()
	return &Backoff{b: b}
}

// Next returns the next wait, and lengthens the one after it.
func (b *Backoff) Next() time.Duration { return b.b.NextBackOff() }

// Reset starts the waits from the initial interval again: the loop made
// progress.
func (b *Backoff) Reset() { b.b.Reset() }

// Wait waits for the next interval or until ctx ends (its error).
func (b *Backoff) Wait(ctx context.Context) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
