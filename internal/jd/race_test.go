//go:build race

package jd

// raceEnabled skips the slowest single-goroutine generation checks under the
// race detector, where they take ten times as long and find nothing.
const raceEnabled = true
