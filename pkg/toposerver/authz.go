package toposerver

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	etcdpb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/pkg/authz"
	"github.com/topod-io/topod/pkg/etcdapi"
	"github.com/topod-io/topod/pkg/kv"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// accesses is what a topod.v1 request needs from the authorization policy,
// and whether req is one of topod.v1's requests. Locks and elections need
// write on the directory their files live in (<path>/locks); blobs, which
// have no path, need read (to get) or write (to upload, or to ask which
// are missing, which keeps them alive) anywhere.
func accesses(req any) ([]authz.Access, bool) {
	read := func(p string) []authz.Access { return []authz.Access{{Role: authz.Read, Key: p}} }
	readDir := func(p string) []authz.Access {
		return []authz.Access{{Role: authz.Read, Key: dirPrefix(p), Prefix: true}}
	}
	write := func(p string) []authz.Access { return []authz.Access{{Role: authz.Write, Key: p}} }
	anywhere := func(r authz.Role) []authz.Access { return []authz.Access{{Role: r, Anywhere: true}} }
	switch r := req.(type) {
	case *topodv1.GetRequest:
		return read(r.Path), true
	case *topodv1.GetVersionRequest:
		return read(r.Path), true
	case *topodv1.ListDirRequest:
		return readDir(r.Path), true
	case *topodv1.ListRequest:
		return []authz.Access{{Role: authz.Read, Key: r.Prefix, Prefix: true}}, true
	case *topodv1.WatchStreamRequest:
		if c := r.GetCreate(); c != nil {
			if c.Recursive {
				return readDir(c.Path), true
			}
			return read(c.Path), true
		}
		return nil, true
	case *topodv1.GetLeaderRequest:
		return readDir(r.Path), true
	case *topodv1.WatchLeaderRequest:
		return readDir(r.Path), true
	case *topodv1.CreateRequest:
		return write(r.Path), true
	case *topodv1.UpdateRequest:
		return write(r.Path), true
	case *topodv1.DeleteRequest:
		return write(r.Path), true
	case *topodv1.LockRequest:
		if a := r.GetAcquire(); a != nil {
			return write(path.Join(a.Path, locksDir)), true
		}
		return nil, true
	case *topodv1.CampaignRequest:
		if s := r.GetStart(); s != nil {
			return write(path.Join(s.Path, locksDir)), true
		}
		return nil, true
	case *topodv1.ServerInfoRequest, *topodv1.GetBlobRequest, *topodv1.GetBlobsRequest:
		return anywhere(authz.Read), true
	case *topodv1.MissingBlobsRequest, *topodv1.PutBlobsRequest:
		return anywhere(authz.Write), true
	}
	return nil, false
}

// authorizer checks every request against the policy in force; an
// unknown request needs admin over everything.
type authorizer struct {
	policy *authz.Source
	denied func(method, principal string)
	// leaseKeys lists the keys attached to a lease: revoking it deletes
	// them, so an etcd LeaseRevoke needs write on each.
	leaseKeys func(ctx context.Context, id int64) ([]string, error)
}

// check answers PermissionDenied, naming the client, the method, the path
// and the role it lacks, unless the policy allows every access req needs.
func (a *authorizer) check(ctx context.Context, method string, req any) error {
	if strings.HasPrefix(method, "/grpc.health.v1.Health/") {
		return nil
	}
	acc, ok := accesses(req)
	if !ok {
		if acc, ok = etcdapi.Accesses(req); !ok {
			acc = []authz.Access{{Role: authz.Admin, Key: "/", Prefix: true}}
		}
	}
	if r, ok := req.(*etcdpb.LeaseRevokeRequest); ok {
		keys, err := a.leaseKeys(ctx, r.ID)
		if err != nil {
			return toStatus(fmt.Errorf("authorize %s of lease %x: list its keys: %w", method, r.ID, err))
		}
		for _, k := range keys {
			acc = append(acc, authz.Access{Role: authz.Write, Key: k})
		}
	}
	// topod's own keys are for admins only, even to read.
	for _, x := range acc {
		if !x.Anywhere && strings.HasPrefix(x.Key+"/", ReservedPrefix) {
			acc = append(acc, authz.Access{Role: authz.Admin, Key: x.Key, Prefix: x.Prefix})
		}
	}
	names := authz.NamesFromContext(ctx)
	pol := a.policy.Policy()
	for _, x := range acc {
		ok, principals := pol.Allows(names, x)
		if ok {
			continue
		}
		who := "none"
		if len(principals) > 0 {
			who = strings.Join(principals, ",")
		}
		a.denied(method, who)
		client := "a client without a certificate"
		if len(names) > 0 {
			client = strings.Join(names, " ")
		}
		return status.Errorf(codes.PermissionDenied, "%s denied to %s (principals: %s): it needs %s on %s, which policy %s does not grant",
			method, client, who, x.Role, x, a.policy.Path())
	}
	return nil
}

func (a *authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &authorizedStream{ServerStream: ss, a: a, method: info.FullMethod})
}

// authorizedStream checks each message a client sends on a stream: a watch
// created, a lock acquired. A denied message ends the stream with the
// denial.
type authorizedStream struct {
	grpc.ServerStream
	a      *authorizer
	method string
}

func (s *authorizedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.a.check(s.Context(), s.method, m)
}

// leaseKeys lists the keys attached to lease id; none if it is gone.
func (s *Server) leaseKeys(ctx context.Context, id int64) ([]string, error) {
	st, err := s.backend.LeaseTimeToLive(ctx, kv.LeaseID(id), true)
	if errors.Is(err, kv.ErrLeaseNotFound) {
		return nil, nil
	}
	return st.Keys, err
}
