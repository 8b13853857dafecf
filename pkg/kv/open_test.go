package kv_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/topod-io/topod/pkg/kv"
	_ "github.com/topod-io/topod/pkg/kv/boltkv"
	_ "github.com/topod-io/topod/pkg/kv/etcdkv"
)

// TestOpen: a --backend URL opens the backend its scheme registered; a bad
// one, or an etcd nobody answers at, fails at once with a message naming
// what is wrong.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		url  string
		want string // "" for success
	}{
		{"bolt://" + filepath.Join(dir, "abs.db"), ""},
		{"zk://127.0.0.1:2181", `unknown scheme "zk" (want bolt or etcd)`},
		{"/var/lib/topod/topo.db", "want bolt:///path/to/topo.db or etcd://host:port"},
		{"bolt://", "no bolt file path"},
		{"etcd://", "no etcd endpoints"},
		{"etcd://127.0.0.1:1", "127.0.0.1:1"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			start := time.Now()
			b, err := kv.Open(ctx, tc.url, kv.OpenOptions{})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				b.Close()
				return
			}
			if err == nil {
				b.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %v to fail", d)
			}
		})
	}
}
