//go:build !race

package jd

const raceEnabled = false
