package topodtest

import (
	"context"
	"testing"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kv/boltkv"
	"github.com/topod-io/topod/pkg/kv/etcdkv"
)

// OpenBolt opens a bolt backend in file, closed when the test ends.
func OpenBolt(tb testing.TB, file string) kv.Backend {
	tb.Helper()
	b, err := boltkv.Open(file, boltkv.Options{})
	if err != nil {
		tb.Fatalf("topodtest: open bolt: %v", err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

// OpenEtcd opens an etcd backend on endpoints, closed when the test ends.
func OpenEtcd(tb testing.TB, endpoints []string) kv.Backend {
	tb.Helper()
	b, err := etcdkv.Open(context.Background(), endpoints, etcdkv.Options{})
	if err != nil {
		tb.Fatalf("topodtest: open etcd: %v", err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}
