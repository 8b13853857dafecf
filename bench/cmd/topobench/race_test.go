//go:build race

package main

// raceEnabled: the smoke test builds topod with the race detector too.
const raceEnabled = true
