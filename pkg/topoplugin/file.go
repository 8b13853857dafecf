package topoplugin

import (
	"context"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/vschema"
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
		return nil, convertError(err, p)
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
		return nil, convertError(err, p)
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
	resp, err := c.client.Get(ctx, &topodv1.GetRequest{Path: p, MinRevision: c.seen.Load(), Linearizable: vschema.FreshReads(ctx)}, wait)
	if err != nil {
		return nil, nil, convertError(err, p)
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
		return nil, convertError(err, p)
	}
	return c.decode(ctx, p, resp.Contents)
}

// List is part of topo.Conn.
func (c *Conn) List(ctx context.Context, filePathPrefix string) ([]topo.KVInfo, error) {
	p, err := c.fullPath(filePathPrefix)
	if err != nil {
		return nil, err
	}
	ctx, cancel, wait := c.unary(ctx)
	defer cancel()
	resp, err := c.client.List(ctx, &topodv1.ListRequest{Prefix: p, MinRevision: c.seen.Load(), Linearizable: vschema.FreshReads(ctx)}, wait)
	if err != nil {
		return []topo.KVInfo{}, convertError(err, p)
	}
	out := make([]topo.KVInfo, len(resp.Kvs))
	for i, e := range resp.Kvs {
		contents, err := c.decode(ctx, e.Path, e.Contents)
		if err != nil {
			return []topo.KVInfo{}, err
		}
		out[i] = topo.KVInfo{Key: []byte(e.Path), Value: contents, Version: Version(e.Version)}
		c.observe(e.Version)
	}
	return out, nil
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
		return convertError(err, p)
	}
	// Reads ask for at least the delete's revision: the connection never
	// reads back what it deleted, whichever replica answers.
	c.observe(resp.Revision)
	return nil
}
