package attack

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/internal/certtest"
	"github.com/topod-io/topod/internal/harness"
	"github.com/topod-io/topod/pkg/authz"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/toposerver"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// shippedPolicy is the policy deploy/'s prod overlay gives topod.
const shippedPolicy = "../deploy/overlays/prod/topod-authz-policy.yaml"

// guarded is a topod with mutual TLS and an authorization policy, and the
// CA its clients' certificates are issued by.
type guarded struct {
	*target
	ca *certtest.CA
}

// withPolicy runs fn against a topod on bolt and on etcd that requires
// client certificates and checks every request against the policy file.
func withPolicy(t *testing.T, policy string, fn func(t *testing.T, g *guarded)) {
	for _, name := range []string{"bolt", "etcd"} {
		t.Run(name, func(t *testing.T) {
			ca := certtest.New(t, "attack CA")
			src, err := authz.Open(policy, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			server, err := tls.LoadX509KeyPair(ca.ServerCert, ca.ServerKey)
			if err != nil {
				t.Fatal(err)
			}
			srv := harness.StartTopod(t, openBackend(t, name), toposerver.Options{
				TLS:   &tls.Config{Certificates: []tls.Certificate{server}, ClientCAs: ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert},
				Authz: src,
			})
			g := &guarded{target: &target{name: name, srv: srv, etcd: name == "etcd"}, ca: ca}
			fn(t, g)
		})
	}
}

// component is a client certificate as deploy/ issues one to a Vitess
// component: its name as CN and its SPIFFE id.
func (g *guarded) component(t *testing.T, name string) certtest.Cert {
	return g.ca.Issue(t, name, "spiffe://topod.local/ns/topod/sa/"+name)
}

// tls is the client configuration presenting cert.
func (g *guarded) tls(cert certtest.Cert) *tls.Config {
	return &tls.Config{RootCAs: g.ca.Pool, Certificates: []tls.Certificate{cert.Pair}, ServerName: "localhost"}
}

// topo dials topod.v1 with cert.
func (g *guarded) topo(t *testing.T, cert certtest.Cert) topodv1.TopoClient {
	cc, err := grpc.NewClient(g.srv.Addr, grpc.WithTransportCredentials(credentials.NewTLS(g.tls(cert))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return topodv1.NewTopoClient(cc)
}

// etcd dials the etcd endpoint with cert.
func (g *guarded) etcd(t *testing.T, cert certtest.Cert) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{g.srv.Addr}, TLS: g.tls(cert), DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// snapshot is every key and value of the store with its version, read
// linearizably.
func snapshot(t *testing.T, c topodv1.TopoClient) map[string]string {
	t.Helper()
	resp, err := c.List(t.Context(), &topodv1.ListRequest{Prefix: "/", Linearizable: true})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range resp.Kvs {
		m[kv.Path] = fmt.Sprintf("%d:%q", kv.Version, kv.Contents)
	}
	return m
}

// topology is a small Vitess topology at deploy/'s roots: a keyspace, a
// shard, its replication graph and a tablet in cell zone1, the cell's
// serving graph.
var topology = []string{
	"/vitess/global/cells/zone1/CellInfo",
	"/vitess/global/keyspaces/commerce/Keyspace",
	"/vitess/global/keyspaces/commerce/VSchema",
	"/vitess/global/keyspaces/commerce/shards/-80/Shard",
	"/vitess/zone1/keyspaces/commerce/shards/-80/ShardReplication",
	"/vitess/zone1/keyspaces/commerce/SrvKeyspace",
	"/vitess/zone1/SrvVSchema",
	"/vitess/zone1/tablets/zone1-0000000100/Tablet",
}

// TestVtgateMayOnlyRead: under the shipped policy, a vtgate certificate is
// refused every write RPC of topod.v1 and of the etcd endpoint, each
// answering PermissionDenied naming the identity, the method and the
// path; the whole store is unchanged; each refusal is counted; and vtgate
// still reads and watches. A certificate the policy does not name may not
// even read.
func TestVtgateMayOnlyRead(t *testing.T) {
	withPolicy(t, shippedPolicy, func(t *testing.T, g *guarded) {
		ctx := t.Context()
		vtctld := g.topo(t, g.component(t, "vtctld"))
		operator := g.topo(t, g.component(t, "topod-admin"))
		for _, p := range topology {
			if _, err := vtctld.Create(ctx, &topodv1.CreateRequest{Path: p, Contents: []byte("record of " + p)}); err != nil {
				t.Fatalf("vtctld: Create %s: %v", p, err)
			}
		}
		before := snapshot(t, operator)

		vtgateCert := g.component(t, "vtgate")
		vtgate := g.topo(t, vtgateCert)
		cli := g.etcd(t, vtgateCert)
		shard := "/vitess/global/keyspaces/commerce/shards/-80"
		tablet := "/vitess/zone1/tablets/zone1-0000000100/Tablet"
		blob := []byte("a blob")
		hash := content.Sum(blob)
		streamErr := func(send func() error, recv func() error) error {
			if err := send(); err != nil {
				return err
			}
			return recv()
		}
		writes := []struct {
			method, path string
			call         func() error
		}{
			{"Create", tablet + "2", func() error {
				_, err := vtgate.Create(ctx, &topodv1.CreateRequest{Path: tablet + "2", Contents: []byte("x")})
				return err
			}},
			{"Update", tablet, func() error {
				_, err := vtgate.Update(ctx, &topodv1.UpdateRequest{Path: tablet, Contents: []byte("x")})
				return err
			}},
			{"Delete", tablet, func() error {
				_, err := vtgate.Delete(ctx, &topodv1.DeleteRequest{Path: tablet})
				return err
			}},
			{"Lock", shard + "/locks", func() error {
				s, err := vtgate.Lock(ctx)
				if err != nil {
					return err
				}
				return streamErr(func() error {
					return s.Send(&topodv1.LockRequest{Request: &topodv1.LockRequest_Acquire{Acquire: &topodv1.LockAcquire{Path: shard, Contents: "vtgate"}}})
				}, func() error { _, err := s.Recv(); return err })
			}},
			{"Campaign", "/vitess/global/elections/vtorc/locks", func() error {
				s, err := vtgate.Campaign(ctx)
				if err != nil {
					return err
				}
				return streamErr(func() error {
					return s.Send(&topodv1.CampaignRequest{Request: &topodv1.CampaignRequest_Start{Start: &topodv1.CampaignStart{Path: "/vitess/global/elections/vtorc", Id: "vtgate"}}})
				}, func() error { _, err := s.Recv(); return err })
			}},
			{"PutBlobs", "(any path)", func() error {
				_, err := vtgate.PutBlobs(ctx, &topodv1.PutBlobsRequest{Blobs: []*topodv1.Blob{{Hash: hash[:], Data: blob}}})
				return err
			}},
			{"MissingBlobs", "(any path)", func() error {
				_, err := vtgate.MissingBlobs(ctx, &topodv1.MissingBlobsRequest{Hashes: [][]byte{hash[:]}})
				return err
			}},
			{"Put", tablet, func() error { _, err := cli.Put(ctx, tablet, "x"); return err }},
			{"DeleteRange", tablet, func() error { _, err := cli.Delete(ctx, tablet); return err }},
			{"DeleteRange", "/vitess/*", func() error { _, err := cli.Delete(ctx, "/vitess/", clientv3.WithPrefix()); return err }},
			{"Txn", tablet, func() error {
				_, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(tablet), ">", 0)).Then(clientv3.OpPut(tablet, "x")).Commit()
				return err
			}},
			{"LeaseGrant", "(any path)", func() error { _, err := cli.Grant(ctx, 60); return err }},
			{"LeaseRevoke", "(any path)", func() error { _, err := cli.Revoke(ctx, 1); return err }},
			{"LeaseKeepAlive", "(any path)", func() error { _, err := cli.KeepAliveOnce(ctx, 1); return err }},
			{"Compact", "/*", func() error { _, err := cli.Compact(ctx, 1); return err }},
			{"MoveLeader", "/*", func() error { _, err := cli.MoveLeader(ctx, 1); return err }},
			{"MemberAdd", "/*", func() error { _, err := cli.MemberAdd(ctx, []string{"http://127.0.0.1:1"}); return err }},
		}
		for _, w := range writes {
			err := w.call()
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("vtgate: %s %s: %v; want PermissionDenied", w.method, w.path, err)
				continue
			}
			for _, want := range []string{"/" + w.method, "cn:vtgate", "principals: vtgate", w.path} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("vtgate: %s %s: %q does not name %q", w.method, w.path, err, want)
				}
			}
		}
		if after := snapshot(t, operator); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("the store changed under refused writes:\nbefore %v\nafter  %v", before, after)
		}
		if got := g.metric(t, "topod_authz_denied_total", "principal", "vtgate"); got != float64(len(writes)) {
			t.Errorf("refusals counted for vtgate: %v, want %d", got, len(writes))
		}

		// What vtgate does, it may still do.
		if _, err := vtgate.Get(ctx, &topodv1.GetRequest{Path: "/vitess/zone1/SrvVSchema"}); err != nil {
			t.Errorf("vtgate: Get: %v", err)
		}
		if _, err := vtgate.ListDir(ctx, &topodv1.ListDirRequest{Path: "/vitess/zone1/tablets"}); err != nil {
			t.Errorf("vtgate: ListDir: %v", err)
		}
		ws := g.watchStreamOn(t, vtgate)
		if err := ws.Send(create(1, "/vitess/zone1/SrvVSchema", false, 0)); err != nil {
			t.Fatal(err)
		}
		if msg, err := ws.Recv(); err != nil || len(msg.Updates) == 0 || msg.Updates[0].Ended {
			t.Errorf("vtgate: a watch of its SrvVSchema: %v, %v", msg, err)
		}
		if resp, err := cli.Get(ctx, "/vitess/zone1/", clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 4 {
			t.Errorf("vtgate: etcd Range of its cell: %v, err %v; want its 4 keys", resp, err)
		}
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wch := cli.Watch(wctx, "/vitess/zone1/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		if resp := <-wch; resp.Err() != nil || !resp.Created {
			t.Errorf("vtgate: etcd Watch of its cell: %v", resp.Err())
		}
		// ... but not topod's own keys, nor outside the topology.
		if _, err := vtgate.Get(ctx, &topodv1.GetRequest{Path: "/topod/gc/lock"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("vtgate: Get /topod/gc/lock: %v; want PermissionDenied", err)
		}

		stranger := g.topo(t, g.ca.Issue(t, "stranger"))
		if _, err := stranger.Get(ctx, &topodv1.GetRequest{Path: "/vitess/zone1/SrvVSchema"}); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "principals: none") {
			t.Errorf("an unknown certificate: Get: %v; want PermissionDenied naming no principal", err)
		}
	})
}

// watchStreamOn opens a WatchStream of c.
func (g *guarded) watchStreamOn(t *testing.T, c topodv1.TopoClient) grpc.BidiStreamingClient[topodv1.WatchStreamRequest, topodv1.WatchStreamResponse] {
	t.Helper()
	s, err := c.WatchStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRevokeNeedsWriteOnItsKeys: revoking an etcd lease deletes the keys
// attached to it, so it needs write on each: vschemad, which may write
// vschemas but not take keyspace locks, cannot revoke the lease behind
// vtctld's keyspace lock (lease ids are listed to any reader), and the
// lock survives; vtctld itself can.
func TestRevokeNeedsWriteOnItsKeys(t *testing.T) {
	withPolicy(t, shippedPolicy, func(t *testing.T, g *guarded) {
		ctx := t.Context()
		vtctld := g.etcd(t, g.component(t, "vtctld"))
		lease, err := vtctld.Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		lock := "/vitess/global/keyspaces/commerce/locks/vtctld"
		if _, err := vtctld.Put(ctx, lock, "vtctld's lock", clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
		vschemad := g.etcd(t, g.component(t, "vschemad"))
		_, err = vschemad.Revoke(ctx, lease.ID)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), lock) {
			t.Errorf("vschemad: Revoke of vtctld's lock lease: %v; want PermissionDenied naming %s", err, lock)
		}
		if resp, err := vtctld.Get(ctx, lock); err != nil || len(resp.Kvs) != 1 {
			t.Errorf("vtctld's lock after the refused revoke: %v, err %v", resp, err)
		}
		if _, err := vtctld.Revoke(ctx, lease.ID); err != nil {
			t.Errorf("vtctld: Revoke of its own lease: %v", err)
		}
		if resp, err := vtctld.Get(ctx, lock); err != nil || len(resp.Kvs) != 0 {
			t.Errorf("vtctld's lock after its revoke: %v, err %v", resp, err)
		}
	})
}
