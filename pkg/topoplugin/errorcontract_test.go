package topoplugin

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/topoerr"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// TestErrorContract walks every Vitess topo error kind through a real topod
// (on bolt) and the plugin: each kind topod sends is provoked by the
// operation that gives it, and Vitess sees that kind (topo.IsErrType) with
// topod's status code kept (status.Code). A kind topod never sends says
// why. Every kind of topoerr.Kinds needs a row, so a kind a Vitess upgrade
// adds fails here until someone decides how it travels.
func TestErrorContract(t *testing.T) {
	b := harness.OpenBolt(t, filepath.Join(t.TempDir(), "topo.db"))
	// MaxWatches 1: a second watch is over topod's limit.
	srv := harness.StartTopod(t, b, toposerver.Options{MaxWatches: 1})
	c, err := NewConn(srv.Addr, "/vitess/global")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other, err := NewConn(srv.Addr, "/vitess/global")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := t.Context()
	if _, err := c.Create(ctx, "keyspaces/ks/Keyspace", []byte("ks")); err != nil {
		t.Fatal(err)
	}
	// held is a lock other connections wait for.
	held, err := c.Lock(ctx, "keyspaces/ks", "held")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock(ctx)

	rows := map[topo.ErrorCode]struct {
		// provoke makes topod answer the kind; nil when it never does,
		// and never says why.
		provoke func(context.Context) error
		never   string
	}{
		topo.NoNode: {provoke: func(ctx context.Context) error {
			_, _, err := c.Get(ctx, "keyspaces/missing/Keyspace")
			return err
		}},
		topo.NodeExists: {provoke: func(ctx context.Context) error {
			_, err := c.Create(ctx, "keyspaces/ks/Keyspace", []byte("again"))
			return err
		}},
		topo.BadVersion: {provoke: func(ctx context.Context) error {
			_, v, err := c.Get(ctx, "keyspaces/ks/Keyspace")
			if err != nil {
				return err
			}
			if _, err := c.Update(ctx, "keyspaces/ks/Keyspace", []byte("newer"), v); err != nil {
				return err
			}
			_, err = c.Update(ctx, "keyspaces/ks/Keyspace", []byte("from the old version"), v)
			return err
		}},
		topo.NodeNotEmpty: {never: "topod has no operation that refuses a directory for its children: Delete removes one file, as etcd2topo's does"},
		topo.Timeout: {provoke: func(ctx context.Context) error {
			// Waits for the held lock until the deadline passes.
			ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			ld, err := other.Lock(ctx, "keyspaces/ks", "waiter")
			if err == nil {
				ld.Unlock(context.Background())
			}
			return err
		}},
		topo.Interrupted: {provoke: func(ctx context.Context) error {
			// Asks topod for the held lock with a context already
			// canceled: the plugin stops waiting at once.
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			ld, err := other.Lock(ctx, "keyspaces/ks", "waiter")
			if err == nil {
				ld.Unlock(context.Background())
			}
			return err
		}},
		topo.PartialResult:            {never: "Vitess's topo.Server makes it from several reads; no topo.Conn call answers it"},
		topo.NoUpdateNeeded:           {never: "Vitess's update callbacks return it to their caller; it never reaches a topo.Conn"},
		topo.NoReadOnlyImplementation: {never: "topo.OpenServer's answer for an unknown read-only implementation; no topo.Conn call answers it"},
		topo.NoImplementation: {provoke: func(ctx context.Context) error {
			// A method this topod does not serve, as an older topod
			// would answer a newer plugin.
			err := c.cc.Invoke(ctx, "/topod.v1.Topo/NoSuchMethod", &topodv1.GetRequest{}, &topodv1.GetResponse{})
			return topoerr.FromError(err, "/vitess/global")
		}},
		topo.ResourceExhausted: {provoke: func(ctx context.Context) error {
			// The first watch takes the one topod allows.
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if _, _, err := c.Watch(wctx, "keyspaces/ks/Keyspace"); err != nil {
				return err
			}
			_, _, err := other.Watch(wctx, "keyspaces/ks/Keyspace")
			return err
		}},
	}
	for _, kind := range topoerr.Kinds {
		row, ok := rows[kind]
		name := strings.TrimRight(topo.NewError(kind, "").Error(), ": ")
		t.Run(name, func(t *testing.T) {
			if !ok {
				t.Fatalf("no row for topo error kind %d: provoke it, or say why topod never sends it", kind)
			}
			code, sent := topoerr.Code(kind)
			if row.provoke == nil {
				// topod never sends it (row.never says why); what the
				// plugin would make of it is still checked.
				if !sent {
					if err := topoerr.FromError(status.Error(codes.Unknown, "x"), "/p"); topo.IsErrType(err, kind) {
						t.Fatalf("an unknown status reads as %v, a kind with no code", kind)
					}
					return
				}
				if err := topoerr.FromError(status.Error(code, "x"), "/p"); !topo.IsErrType(err, kind) {
					t.Fatalf("a %v status reads as %v, want the kind %v (%s)", code, err, kind, row.never)
				}
				return
			}
			err := row.provoke(ctx)
			if !topo.IsErrType(err, kind) {
				t.Fatalf("got %v (%T), want a %q topo error", err, err, name)
			}
			if got := status.Code(err); got != code {
				t.Errorf("status.Code = %v, want %v: %v", got, code, err)
			}
		})
	}

	// A record that refers to a blob topod does not hold is no topo
	// error: it keeps its FAILED_PRECONDITION and says what is missing.
	t.Run("blob not stored", func(t *testing.T) {
		enc := mustEncode(t, "/vitess/global/big", bytes.Repeat([]byte("never uploaded "), 8<<10))
		_, err := c.client.Update(ctx, &topodv1.UpdateRequest{Path: "/vitess/global/big", Contents: enc})
		err = topoerr.FromError(err, "/vitess/global/big")
		var te topo.Error
		if errors.As(err, &te) {
			t.Errorf("blob not stored came back as the topo error %q: %v", te.Error(), err)
		}
		if status.Code(err) != codes.FailedPrecondition || !topoerr.IsBlobNotStored(err) {
			t.Errorf("blob not stored: %v (code %v), want FAILED_PRECONDITION with reason %s", err, status.Code(err), topoerr.BlobNotStoredReason)
		}
	})

	// A status that is no topo kind keeps its code through the plugin.
	t.Run("permission denied", func(t *testing.T) {
		reserved, err := NewConn(srv.Addr, toposerver.ReservedPrefix)
		if err != nil {
			t.Fatal(err)
		}
		defer reserved.Close()
		_, err = reserved.Create(ctx, "mine", []byte("x"))
		var te topo.Error
		if status.Code(err) != codes.PermissionDenied || errors.As(err, &te) {
			t.Errorf("Create under %s: %v (code %v), want PERMISSION_DENIED and no topo error", toposerver.ReservedPrefix, err, status.Code(err))
		}
	})
}
