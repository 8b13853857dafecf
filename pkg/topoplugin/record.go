package topoplugin

import (
	"context"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/record"
	"github.com/topod-io/topod/pkg/srvvschema"
	"github.com/topod-io/topod/pkg/topoerr"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// The record-level access below lets a writer that keeps a SrvVSchema's
// manifest (vschemad) change one keyspace by uploading that keyspace's
// piece, one leaf and the root, and setting the record, without the whole
// file ever being assembled, marshalled or split (vschemastore.RecordConn).

// SrvVSchemaRoot returns the version of the SrvVSchema file at filePath
// and, if it is stored with the per-keyspace codec, its root.
func (c *Conn) SrvVSchemaRoot(ctx context.Context, filePath string) (content.Hash, bool, topo.Version, error) {
	p, err := c.fullPath(filePath)
	if err != nil {
		return content.Hash{}, false, nil, err
	}
	ctx, cancel, wait := c.unary(ctx)
	defer cancel()
	resp, err := c.client.Get(ctx, &topodv1.GetRequest{Path: p, MinRevision: c.seen.Load()}, wait)
	if err != nil {
		return content.Hash{}, false, nil, topoerr.FromError(err, p)
	}
	c.observe(resp.Version)
	ref, err := record.Parse(resp.Contents)
	if err != nil {
		return content.Hash{}, false, nil, err
	}
	if ref == nil || ref.Codec != topodv1.Codec_CODEC_SRVVSCHEMA {
		return content.Hash{}, false, Version(resp.Version), nil
	}
	return content.Hash(ref.Root), true, Version(resp.Version), nil
}

// SetSrvVSchemaRoot uploads the blobs of enc topod lacks, then sets the
// file at filePath to the encoding named enc.Root if it is still at
// version (nil: unconditionally).
func (c *Conn) SetSrvVSchemaRoot(ctx context.Context, filePath string, enc *srvvschema.Encoded, version topo.Version) (topo.Version, error) {
	p, err := c.fullPath(filePath)
	if err != nil {
		return nil, err
	}
	v, err := versionOf(version)
	if err != nil {
		return nil, err
	}
	if err := c.upload(ctx, enc.Blobs); err != nil {
		return nil, err
	}
	value, err := record.RefValue(topodv1.Codec_CODEC_SRVVSCHEMA, enc.Root, enc.Size)
	if err != nil {
		return nil, err
	}
	return c.update(ctx, p, value, v)
}

// GetBlob returns a blob, from the connection's cache or topod.
func (c *Conn) GetBlob(ctx context.Context, h content.Hash) ([]byte, error) {
	return c.getBlob(ctx, h)
}
