package toposerver

import (
	"context"
	"fmt"
	"strings"

	"github.com/topod-io/topod/pkg/kv"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// ListDir is part of topodv1.TopoServer. Directories are implicit: the
// entries of a directory are the first path segments of the keys under it,
// as in etcd2topo. An entry is ephemeral when the first key seen under it is
// held by a lease (lock files, election participants).
func (s *Server) ListDir(ctx context.Context, req *topodv1.ListDirRequest) (*topodv1.ListDirResponse, error) {
	if err := checkPath(req.Path, true); err != nil {
		return nil, toStatus(err)
	}
	minRev := req.MinRevision
	if req.Linearizable {
		minRev = -1
	}
	entries, err := s.listDir(ctx, req.Path, req.Full, minRev)
	if err != nil {
		return nil, toStatus(err)
	}
	return &topodv1.ListDirResponse{Entries: entries}, nil
}

// listDir lists dir from memory when a mirror covers it and has reached
// minRev; minRev -1 reads the backend (locks decide on what the backend says).
func (s *Server) listDir(ctx context.Context, dir string, full bool, minRev int64) ([]*topodv1.DirEntry, error) {
	prefix := dirPrefix(dir)
	kvs, err := s.list(ctx, "list_dir", prefix, true, minRev)
	if err != nil {
		return nil, err
	}
	if len(kvs) == 0 {
		return nil, fmt.Errorf("list directory %s: %w", dir, kv.ErrNotFound)
	}
	var entries []*topodv1.DirEntry
	for _, e := range kvs {
		name := strings.TrimPrefix(e.Key, prefix)
		typ := topodv1.DirEntryType_DIR_ENTRY_TYPE_FILE
		if i := strings.IndexByte(name, '/'); i >= 0 {
			name = name[:i]
			typ = topodv1.DirEntryType_DIR_ENTRY_TYPE_DIRECTORY
		}
		if n := len(entries); n > 0 && entries[n-1].Name == name {
			continue
		}
		entry := &topodv1.DirEntry{Name: name}
		if full {
			entry.Type = typ
			entry.Ephemeral = e.Lease != 0
		}
		entries = append(entries, entry)
	}
	return entries, nil
}
