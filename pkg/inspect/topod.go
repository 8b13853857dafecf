package inspect

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/topod-io/topod/pkg/content"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// DefaultRequestTimeout bounds each request to topod.
const DefaultRequestTimeout = 30 * time.Second

// Topod is a Source on a running topod, through its gRPC API: what the
// plugin reads, records as stored and their blobs. Reads are linearizable
// (topod answers from its backend, not its in-memory mirror), so they show
// what is stored now.
type Topod struct {
	addr    string
	cc      *grpc.ClientConn
	client  topodv1.TopoClient
	timeout time.Duration
}

var _ Source = (*Topod)(nil)

// DialTopod connects to the topod at addr (host:port), over TLS with
// tlsConfig if it is not nil. It does not wait for topod: a request to an
// unreachable one fails with an error naming addr.
func DialTopod(addr string, tlsConfig *tls.Config) (*Topod, error) {
	creds := insecure.NewCredentials()
	if tlsConfig != nil {
		creds = credentials.NewTLS(tlsConfig)
	}
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		// A SrvVSchema's record is small, but a List of a large tree is
		// not: as the plugin, take what topod sends.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)),
	)
	if err != nil {
		return nil, fmt.Errorf("topod at %s: %w", addr, err)
	}
	return &Topod{addr: addr, cc: cc, client: topodv1.NewTopoClient(cc), timeout: DefaultRequestTimeout}, nil
}

// Close closes the connection.
func (t *Topod) Close() error { return t.cc.Close() }

// String is part of Source.
func (t *Topod) String() string { return "topod at " + t.addr }

// Get is part of Source.
func (t *Topod) Get(ctx context.Context, key string) (Value, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	resp, err := t.client.Get(ctx, &topodv1.GetRequest{Path: key, Linearizable: true})
	if err != nil {
		return Value{}, t.wrap(key, err)
	}
	return Value{Key: key, Raw: resp.Contents, Version: resp.Version}, nil
}

// GetVersion is part of Source.
func (t *Topod) GetVersion(ctx context.Context, key string, version int64) (Value, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	resp, err := t.client.GetVersion(ctx, &topodv1.GetVersionRequest{Path: key, Version: version})
	if err != nil {
		return Value{}, t.wrap(fmt.Sprintf("%s at version %d", key, version), err)
	}
	return Value{Key: key, Raw: resp.Contents, Version: version}, nil
}

// List is part of Source. It reads every page of the listing, all at the
// first page's revision (topod's List in pages).
func (t *Topod) List(ctx context.Context, prefix string) ([]Value, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	var out []Value
	req := &topodv1.ListRequest{Prefix: prefix, Linearizable: true, Paged: true}
	for {
		resp, err := t.client.List(ctx, req)
		if status.Code(err) == codes.NotFound {
			return nil, nil
		}
		if err != nil {
			return nil, t.wrap(prefix, err)
		}
		for _, e := range resp.Kvs {
			out = append(out, Value{Key: e.Path, Raw: e.Contents, Version: e.Version})
		}
		if len(resp.NextPageToken) == 0 {
			return out, nil
		}
		req = &topodv1.ListRequest{Prefix: prefix, Paged: true, PageToken: resp.NextPageToken}
	}
}

// Blob is part of Source.
func (t *Topod) Blob(ctx context.Context, h content.Hash) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	resp, err := t.client.GetBlob(ctx, &topodv1.GetBlobRequest{Hash: h[:]})
	if err != nil {
		return nil, t.wrap("blob "+h.String(), err)
	}
	if content.Sum(resp.Data) != h {
		return nil, fmt.Errorf("%s: blob %s: the data sent does not match its hash", t, h)
	}
	return resp.Data, nil
}

// wrap turns topod's statuses into the package's errors, naming what was
// read and where.
func (t *Topod) wrap(what string, err error) error {
	s, _ := status.FromError(err)
	switch s.Code() {
	case codes.NotFound:
		return fmt.Errorf("%s: %w in %s", what, ErrNotFound, t)
	case codes.OutOfRange:
		return fmt.Errorf("%s: %w (%s: %s)", what, ErrVersionGone, t, s.Message())
	case codes.Unavailable:
		return fmt.Errorf("%s is unreachable (reading %s): %s", t, what, s.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s did not answer within %v (reading %s)", t, t.timeout, what)
	}
	if strings.Contains(s.Message(), "future revision") {
		return fmt.Errorf("%s: %w: no such version yet (%s)", what, ErrNotFound, t)
	}
	return fmt.Errorf("%s: reading %s: %s: %s", t, what, s.Code(), s.Message())
}
