//go:build !race

package vschemaclient_test

const raceEnabled = false
