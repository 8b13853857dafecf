package vschematest

import (
	"context"
	"fmt"
	"path"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/record"
	"github.com/topod-io/topod/pkg/topoplugin"
	"github.com/topod-io/topod/pkg/vschema"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// RecordConns returns, for vschema.StoreOptions.RecordConn, record-level
// connections to the topod of each cell. They stand in for the hook that
// topoplugin.Conn is to offer (vschema.RecordConn), talking topod's gRPC
// API directly with the plugin's record envelope; versions are
// topoplugin.Version, so they mix with the plugin's own. Only for topod
// topologies.
func (t *Topology) RecordConns(tb testing.TB) func(ctx context.Context, cell string) (vschema.RecordConn, error) {
	tb.Helper()
	if t.Impl != "topod" {
		tb.Fatalf("vschematest: record connections need topod, not %s", t.Impl)
	}
	var mu sync.Mutex
	conns := map[string]*recordConn{}
	tb.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.cc.Close()
		}
	})
	return func(ctx context.Context, cell string) (vschema.RecordConn, error) {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := conns[cell]; ok {
			return c, nil
		}
		ci, err := t.TS.GetCellInfo(ctx, cell, false)
		if err != nil {
			return nil, err
		}
		cc, err := grpc.NewClient(ci.ServerAddress,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)))
		if err != nil {
			return nil, fmt.Errorf("vschematest: dial %s: %w", ci.ServerAddress, err)
		}
		c := &recordConn{root: ci.Root, cc: cc, client: topodv1.NewTopoClient(cc)}
		conns[cell] = c
		return c, nil
	}
}

// recordConn is a vschema.RecordConn over topod's gRPC API.
type recordConn struct {
	root   string
	cc     *grpc.ClientConn
	client topodv1.TopoClient
}

func topoError(err error, p string) error {
	switch status.Code(err) {
	case codes.NotFound:
		return topo.NewError(topo.NoNode, p)
	case codes.AlreadyExists:
		return topo.NewError(topo.NodeExists, p)
	case codes.Aborted:
		return topo.NewError(topo.BadVersion, p)
	}
	return fmt.Errorf("topod %s: %w", p, err)
}

// SrvVSchemaRoot is part of vschema.RecordConn.
func (c *recordConn) SrvVSchemaRoot(ctx context.Context, filePath string) (content.Hash, bool, topo.Version, error) {
	p := path.Join(c.root, filePath)
	resp, err := c.client.Get(ctx, &topodv1.GetRequest{Path: p})
	if err != nil {
		return content.Hash{}, false, nil, topoError(err, p)
	}
	ref, err := record.Parse(resp.Contents)
	if err != nil {
		return content.Hash{}, false, nil, fmt.Errorf("%s: %w", p, err)
	}
	if ref == nil || ref.Codec != topodv1.Codec_CODEC_SRVVSCHEMA {
		return content.Hash{}, false, topoplugin.Version(resp.Version), nil
	}
	return content.Hash(ref.Root), true, topoplugin.Version(resp.Version), nil
}

// SetSrvVSchemaRoot is part of vschema.RecordConn.
func (c *recordConn) SetSrvVSchemaRoot(ctx context.Context, filePath string, enc *vschema.Encoded, version topo.Version) (topo.Version, error) {
	p := path.Join(c.root, filePath)
	v, ok := version.(topoplugin.Version)
	if !ok {
		return nil, fmt.Errorf("%s: version %v is a %T, not a topod version", p, version, version)
	}
	hashes := make([][]byte, 0, len(enc.Blobs))
	for h := range enc.Blobs {
		hashes = append(hashes, h[:])
	}
	if len(hashes) > 0 {
		missing, err := c.client.MissingBlobs(ctx, &topodv1.MissingBlobsRequest{Hashes: hashes})
		if err != nil {
			return nil, topoError(err, "blobs")
		}
		put := &topodv1.PutBlobsRequest{}
		for _, h := range missing.Missing {
			put.Blobs = append(put.Blobs, &topodv1.Blob{Hash: h, Data: enc.Blobs[content.Hash(h)]})
		}
		if len(put.Blobs) > 0 {
			if _, err := c.client.PutBlobs(ctx, put); err != nil {
				return nil, topoError(err, "blobs")
			}
		}
	}
	rec, err := proto.Marshal(&topodv1.Record{Body: &topodv1.Record_Ref{Ref: &topodv1.BlobRef{
		Codec: topodv1.Codec_CODEC_SRVVSCHEMA, Root: enc.Root[:], Size: enc.Size,
	}}})
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Update(ctx, &topodv1.UpdateRequest{Path: p, Contents: append([]byte(record.Magic), rec...), Version: int64(v)})
	if err != nil {
		return nil, topoError(err, p)
	}
	return topoplugin.Version(resp.Version), nil
}

// GetBlob is part of vschema.RecordConn.
func (c *recordConn) GetBlob(ctx context.Context, h content.Hash) ([]byte, error) {
	resp, err := c.client.GetBlob(ctx, &topodv1.GetBlobRequest{Hash: h[:]})
	if err != nil {
		return nil, topoError(err, "blob "+h.String())
	}
	return resp.Data, nil
}
