package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestHealth asks a running topod's health service (SERVING), and a
// port nobody serves (an error naming the address).
func TestHealth(t *testing.T) {
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv := newRootCommand()
	srv.SetArgs([]string{"--listen", addr, "--data-dir", filepath.Join(t.TempDir(), "data"), "--log-level", "warn"})
	done := make(chan error, 1)
	go func() { done <- srv.ExecuteContext(ctx) }()
	defer func() { cancel(); <-done }()

	for _, tc := range []struct {
		name    string
		address string
		ok      bool
	}{
		{"serving", addr, true},
		{"nobody", freeAddr(t), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			for deadline := time.Now().Add(10 * time.Second); ; {
				cmd := newHealthCommand()
				cmd.SetArgs([]string{"--address", tc.address, "--timeout", "1s"})
				err = cmd.ExecuteContext(t.Context())
				if err == nil || !tc.ok || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if (err == nil) != tc.ok {
				t.Fatalf("topod health --address %s = %v, want ok %v", tc.address, err, tc.ok)
			}
		})
	}
}
