package topoplugin

import (
	"context"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/srvvschema"
	"github.com/topod-io/topod/pkg/topoerr"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// ListDir is part of topo.Conn.
func (c *Conn) ListDir(ctx context.Context, dirPath string, full bool) ([]topo.DirEntry, error) {
	p, err := c.fullPath(dirPath)
	if err != nil {
		return nil, err
	}
	ctx, cancel, wait := c.unary(ctx)
	defer cancel()
	resp, err := c.client.ListDir(ctx, &topodv1.ListDirRequest{Path: p, Full: full, MinRevision: c.seen.Load(), Linearizable: srvvschema.FreshReads(ctx)}, wait)
	if err != nil {
		return nil, topoerr.FromError(err, p)
	}
	out := make([]topo.DirEntry, len(resp.Entries))
	for i, e := range resp.Entries {
		out[i] = topo.DirEntry{Name: e.Name}
		if full {
			// topo.DirEntryType's zero value is TypeDirectory: only full
			// listings carry a type.
			out[i].Type = topo.TypeFile
			if e.Type == topodv1.DirEntryType_DIR_ENTRY_TYPE_DIRECTORY {
				out[i].Type = topo.TypeDirectory
			}
			out[i].Ephemeral = e.Ephemeral
		}
	}
	return out, nil
}
