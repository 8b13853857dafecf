//go:build race

package vschemaclient_test

// raceEnabled skips the JD-scale import under the race detector, where it
// takes ten times as long; the same code paths run at small scale.
const raceEnabled = true
