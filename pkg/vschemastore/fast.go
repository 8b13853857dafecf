package vschemastore

// This file is the topod fast path of a cell update. topod stores a
// SrvVSchema as this package's encoding (a root, 256 leaves, one piece per
// keyspace) behind a small record; with record-level access the update
// never assembles, unmarshals or re-encodes the other keyspaces: it loads
// the manifest once (cached afterwards), re-encodes the changed keyspaces
// with EncodeEdit, uploads their pieces, one leaf each and the root, and
// compare-and-sets the record.

import (
	"context"
	"errors"
	"fmt"

	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/srvvschema"
)

// RecordConn is record-level access to a cell's topology, for the fast
// path: what a topod topo connection can offer beyond topo.Conn. File paths
// are relative to the cell's root, as in topo.Conn. Versions are those of
// the cell's topo.Conn, and errors are topo errors (topo.NoNode,
// topo.BadVersion) as topo.Conn returns them.
type RecordConn interface {
	// SrvVSchemaRoot returns the version of the file and, if it is stored
	// as an encoding of this package, its root (encoded true); a file
	// stored otherwise (inline, chunked) has encoded false.
	SrvVSchemaRoot(ctx context.Context, filePath string) (root content.Hash, encoded bool, version topo.Version, err error)
	// SetSrvVSchemaRoot stores those of enc.Blobs the blob store lacks, then
	// sets the file to the encoding named enc.Root (enc.Size bytes
	// assembled) if its version is still version; it returns the new
	// version.
	SetSrvVSchemaRoot(ctx context.Context, filePath string, enc *srvvschema.Encoded, version topo.Version) (topo.Version, error)
	// GetBlob returns the blob named h (the caller verifies it).
	GetBlob(ctx context.Context, h content.Hash) ([]byte, error)
}

// errNoFastPath: the cell offers no fast path, or its SrvVSchema is not
// stored as an encoding; use the portable path.
var errNoFastPath = errors.New("no fast path")

// recordConn returns the cell's RecordConn, or nil.
func (s *Store) recordConn(ctx context.Context, cell string) (RecordConn, error) {
	if s.opts.RecordConn == nil {
		return nil, nil
	}
	return s.opts.RecordConn(ctx, cell)
}

// manifest returns the manifest named root, from the cache of the cell's
// last one or loaded through rc.
func (s *Store) manifest(ctx context.Context, cell string, root content.Hash, rc RecordConn) (*srvvschema.Manifest, error) {
	if m, ok := s.manifests.Load(cell); ok && m.(*srvvschema.Manifest).Root() == root {
		return m.(*srvvschema.Manifest), nil
	}
	m, err := srvvschema.LoadManifest(ctx, root, srvvschema.Getter(rc.GetBlob))
	if err != nil {
		return nil, err
	}
	s.manifests.Store(cell, m)
	return m, nil
}

// updateCellFast is the fast path of updateCell: errNoFastPath if the cell
// has none, errConflict if the record changed since it was read.
func (s *Store) updateCellFast(ctx context.Context, cell string, keys syncKeys, r *CellResult) error {
	rc, err := s.recordConn(ctx, cell)
	if err != nil {
		return fmt.Errorf("record connection: %w", err)
	}
	if rc == nil {
		return errNoFastPath
	}
	root, encoded, ver, err := rc.SrvVSchemaRoot(ctx, topo.SrvVSchemaFile)
	if topo.IsErrType(err, topo.NoNode) || (err == nil && !encoded) {
		return errNoFastPath
	}
	if err != nil {
		return fmt.Errorf("read %s record: %w", topo.SrvVSchemaFile, err)
	}
	m, err := s.manifest(ctx, cell, root, rc)
	if err != nil {
		return fmt.Errorf("%s: %w", topo.SrvVSchemaFile, err)
	}
	edit, err := s.readEdit(ctx, keys)
	if err != nil {
		return err
	}
	enc, err := srvvschema.EncodeEdit(m, edit)
	if err != nil {
		return err
	}
	if enc.Root == root {
		r.Mode, r.Version = ModeUnchanged, versionString(ver)
		return nil
	}
	nv, err := rc.SetSrvVSchemaRoot(ctx, topo.SrvVSchemaFile, enc, ver)
	if topo.IsErrType(err, topo.BadVersion) || topo.IsErrType(err, topo.NoNode) {
		return errConflict
	}
	if err != nil {
		return fmt.Errorf("write %s record: %w", topo.SrvVSchemaFile, err)
	}
	s.manifests.Store(cell, enc.Manifest)
	r.Mode, r.Version = ModeManifest, versionString(nv)
	return nil
}

// cellKeyspaceFast returns keyspace name's piece of the cell's SrvVSchema
// through the fast path: the manifest (cached) and one piece. ok is false
// when the cell has no fast path or no such keyspace.
func (s *Store) cellKeyspaceFast(ctx context.Context, cell, name string) (*vschemapb.Keyspace, bool, error) {
	rc, err := s.recordConn(ctx, cell)
	if err != nil || rc == nil {
		return nil, false, err
	}
	root, encoded, _, err := rc.SrvVSchemaRoot(ctx, topo.SrvVSchemaFile)
	if err != nil || !encoded {
		return nil, false, err
	}
	m, err := s.manifest(ctx, cell, root, rc)
	if err != nil {
		return nil, false, err
	}
	return srvvschema.FetchKeyspace(ctx, srvvschema.Getter(rc.GetBlob), m, name)
}
