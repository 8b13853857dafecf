package topoplugin

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/srvvschema"
	"github.com/topod-io/topod/pkg/topoerr"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Create is part of topo.Conn.
func (c *Conn) Create(ctx context.Context, filePath string, contents []byte) (topo.Version, error) {
	p, err := c.fullPath(filePath)
	if err != nil {
		return nil, err
	}
	value, err := c.encode(ctx, p, contents)
	if err != nil {
		return nil, err
	}
	ctx, cancel, wait := c.unary(ctx)
	defer cancel()
	resp, err := c.client.Create(ctx, &topodv1.CreateRequest{Path: p, Contents: value}, wait)
	if err != nil {
		return nil, topoerr.FromError(err, p)
	}
	c.observe(resp.Version)
	return Version(resp.Version), nil
}

// Update is part of topo.Conn.
func (c *Conn) Update(ctx context.Context, filePath string, contents []byte, version topo.Version) (topo.Version, error) {
	p, err := c.fullPath(filePath)
	if err != nil {
		return nil, err
	}
	v, err := versionOf(version)
	if err != nil {
		return nil, err
	}
	value, err := c.encode(ctx, p, contents)
	if err != nil {
		return nil, err
	}
	return c.update(ctx, p, value, v)
}

// update sets the backend value of the file at p if it is at version v (0:
// unconditionally), after its blobs are uploaded.
func (c *Conn) update(ctx context.Context, p string, value []byte, v int64) (topo.Version, error) {
	ctx, cancel, wait := c.unary(ctx)
	defer cancel()
	resp, err := c.client.Update(ctx, &topodv1.UpdateRequest{Path: p, Contents: value, Version: v}, wait)
	if err != nil {
		return nil, topoerr.FromError(err, p)
	}
	c.observe(resp.Version)
	return Version(resp.Version), nil
}

// Get is part of topo.Conn.
func (c *Conn) Get(ctx context.Context, filePath string) ([]byte, topo.Version, error) {
	p, err := c.fullPath(filePath)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel, wait := c.unary(ctx)
	defer cancel()
	resp, err := c.client.Get(ctx, &topodv1.GetRequest{Path: p, MinRevision: c.seen.Load(), Linearizable: srvvschema.FreshReads(ctx)}, wait)
	if err != nil {
		return nil, nil, topoerr.FromError(err, p)
	}
	c.observe(resp.Version)
	contents, err := c.decode(ctx, p, resp.Contents)
	if err != nil {
		return nil, nil, err
	}
	return contents, Version(resp.Version), nil
}

// GetVersion is part of topo.Conn.
func (c *Conn) GetVersion(ctx context.Context, filePath string, version int64) ([]byte, error) {
	p, err := c.fullPath(filePath)
	if err != nil {
		return nil, err
	}
	ctx, cancel, wait := c.unary(ctx)
	defer cancel()
	resp, err := c.client.GetVersion(ctx, &topodv1.GetVersionRequest{Path: p, Version: version}, wait)
	if err != nil {
		return nil, topoerr.FromError(err, p)
	}
	return c.decode(ctx, p, resp.Contents)
}

// listRestarts is how many times List starts over from the first page
// when topod no longer holds the revision of the listing (OutOfRange: etcd
// compacted it between two pages) before it gives up.
const listRestarts = 3

// List is part of topo.Conn. It asks for pages and follows them to the
// last: the pages of one listing are read at one revision, so the answer
// is one snapshot, as an unpaged List's (topod of earlier releases
// answers whole, in one message).
func (c *Conn) List(ctx context.Context, filePathPrefix string) ([]topo.KVInfo, error) {
	p, err := c.fullPath(filePathPrefix)
	if err != nil {
		return nil, err
	}
	for restarts := 0; ; restarts++ {
		out, again, err := c.list(ctx, p)
		switch {
		case err == nil:
			return out, nil
		case !again:
			return []topo.KVInfo{}, err
		case restarts == listRestarts:
			return []topo.KVInfo{}, fmt.Errorf("%w (listed from the first page %d times)", err, restarts+1)
		}
	}
}

// list reads every page of the listing of prefix p. again says that a
// later page's revision was gone: the listing may start over.
func (c *Conn) list(ctx context.Context, p string) (out []topo.KVInfo, again bool, err error) {
	req := &topodv1.ListRequest{Prefix: p, MinRevision: c.seen.Load(), Linearizable: srvvschema.FreshReads(ctx), Paged: true}
	for {
		resp, err := c.listPage(ctx, req)
		if err != nil {
			return nil, req.PageToken != nil && status.Code(err) == codes.OutOfRange, topoerr.FromError(err, p)
		}
		for _, e := range resp.Kvs {
			contents, err := c.decode(ctx, e.Path, e.Contents)
			if err != nil {
				return nil, false, err
			}
			out = append(out, topo.KVInfo{Key: []byte(e.Path), Value: contents, Version: Version(e.Version)})
			c.observe(e.Version)
		}
		if len(resp.NextPageToken) == 0 {
			return out, false, nil
		}
		req = &topodv1.ListRequest{Prefix: p, Paged: true, PageToken: resp.NextPageToken}
	}
}

// listPage asks for one page, within its own deadline when the caller set
// none.
func (c *Conn) listPage(ctx context.Context, req *topodv1.ListRequest) (*topodv1.ListResponse, error) {
	ctx, cancel, wait := c.unary(ctx)
	defer cancel()
	return c.client.List(ctx, req, wait)
}

// Delete is part of topo.Conn.
func (c *Conn) Delete(ctx context.Context, filePath string, version topo.Version) error {
	p, err := c.fullPath(filePath)
	if err != nil {
		return err
	}
	v, err := versionOf(version)
	if err != nil {
		return err
	}
	ctx, cancel, wait := c.unary(ctx)
	defer cancel()
	resp, err := c.client.Delete(ctx, &topodv1.DeleteRequest{Path: p, Version: v}, wait)
	if err != nil {
		return topoerr.FromError(err, p)
	}
	// Reads ask for at least the delete's revision: the connection never
	// reads back what it deleted, whichever replica answers.
	c.observe(resp.Revision)
	return nil
}
