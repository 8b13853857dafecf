package kvmirror_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.uber.org/zap"

	"github.com/topod-io/topod/internal/freeport"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/kv/etcdkv"
	"github.com/topod-io/topod/pkg/kvmirror"
)

// TestStaleMirrorStopsServing: a mirror cut off from etcd (its connection
// goes through a proxy that holds everything, both ways, as TCP does
// across a partition) stops answering reads once
// etcd has not confirmed it current for MaxStaleness, instead of answering
// the value it holds while another client has written a newer one; it
// serves again, the newer value, once the connection is back. (The fault
// suite found a replica cut off from etcd answering 4.8 s stale.)
func TestStaleMirrorStopsServing(t *testing.T) {
	c := harness.StartEtcd(t, 1)
	ctx := t.Context()
	direct, err := etcdkv.Open(ctx, c.Endpoints(), etcdkv.Options{Logger: c.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	port, err := freeport.Pick(1)
	if err != nil {
		t.Fatal(err)
	}
	p := proxy.NewServer(proxy.ServerConfig{Logger: zap.NewNop(),
		From: url.URL{Scheme: "tcp", Host: fmt.Sprintf("127.0.0.1:%d", port[0])},
		To:   url.URL{Scheme: "tcp", Host: strings.TrimPrefix(c.Endpoints()[0], "http://")}})
	<-p.Ready()
	t.Cleanup(func() { p.Close() })
	cut, err := etcdkv.Open(ctx, []string{fmt.Sprintf("127.0.0.1:%d", port[0])}, etcdkv.Options{Logger: c.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cut.Close() })

	const bound = 300 * time.Millisecond
	m := run(t, cut, kvmirror.Options{MaxStaleness: bound})
	rev, err := direct.Update(ctx, "/k", []byte("v1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitRev(ctx, rev); err != nil {
		t.Fatal(err)
	}
	// Idle, the mirror keeps being confirmed current (by progress
	// notifications: nothing is written) and serves.
	idleSince := m.Stats().Confirmed
	waitFor(t, "a confirmation three bounds into the idle time", func() bool {
		return m.Stats().Confirmed.After(idleSince.Add(3 * bound))
	})
	waitFor(t, "the idle mirror to serve v1", func() bool {
		e, found, ok, err := m.Get(ctx, "/k", 0)
		return err == nil && ok && found && string(e.Value) == "v1"
	})

	p.PauseTx()
	p.PauseRx()
	if _, err := direct.Update(ctx, "/k", []byte("v2"), 0); err != nil {
		t.Fatal(err)
	}
	waitServing(t, m, false)
	if e, _, ok, _ := m.Get(ctx, "/k", 0); ok {
		t.Fatalf("a mirror cut off from etcd answered %q", e.Value)
	}

	p.UnpauseTx()
	p.UnpauseRx()
	waitFor(t, "the mirror to serve v2 after the cut", func() bool {
		e, _, ok, err := m.Get(ctx, "/k", 0)
		return err == nil && ok && string(e.Value) == "v2"
	})
}

// waitFor polls cond until it holds, failing after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitServing waits until the mirror's Serving is want.
func waitServing(t *testing.T, m *kvmirror.Mirror, want bool) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the mirror's serving to be %v", want), func() bool { return m.Stats().Serving == want })
}
