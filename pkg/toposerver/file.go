package toposerver

import (
	"context"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/kvmirror"
	"github.com/topod-io/topod/pkg/topoerr"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Create is part of topodv1.TopoServer.
func (s *Server) Create(ctx context.Context, req *topodv1.CreateRequest) (*topodv1.CreateResponse, error) {
	if err := s.checkWrite(ctx, req.Path, req.Contents); err != nil {
		return nil, toStatus(err)
	}
	rev, err := s.backend.Create(ctx, req.Path, req.Contents, 0)
	if err != nil {
		return nil, toStatus(err)
	}
	s.awaitMirror(ctx, req.Path, rev)
	return &topodv1.CreateResponse{Version: rev}, nil
}

// Update is part of topodv1.TopoServer.
func (s *Server) Update(ctx context.Context, req *topodv1.UpdateRequest) (*topodv1.UpdateResponse, error) {
	if err := s.checkWrite(ctx, req.Path, req.Contents); err != nil {
		return nil, toStatus(err)
	}
	if req.Version < 0 {
		return nil, toStatus(invalid(fmt.Errorf("update %s: negative version %d", req.Path, req.Version)))
	}
	rev, err := s.backend.Update(ctx, req.Path, req.Contents, req.Version)
	if err != nil {
		return nil, toStatus(err)
	}
	s.awaitMirror(ctx, req.Path, rev)
	return &topodv1.UpdateResponse{Version: rev}, nil
}

// Get is part of topodv1.TopoServer. Files under a mirrored prefix are read
// from memory once the mirror has reached the backend's current revision
// (a linearizable read, as etcd2topo's: consistentRev) and the client's
// min_revision.
func (s *Server) Get(ctx context.Context, req *topodv1.GetRequest) (*topodv1.GetResponse, error) {
	if err := checkPath(req.Path, false); err != nil {
		return nil, toStatus(err)
	}
	if m := s.mirrorFor(req.Path); m != nil && !req.Linearizable {
		got, found, ok, err := m.Get(ctx, req.Path, s.consistentRev(ctx, m, req.MinRevision))
		if err != nil {
			return nil, toStatus(fmt.Errorf("get %s: %w", req.Path, err))
		}
		s.metrics.cacheRead("get", ok)
		if ok && !found {
			return nil, toStatus(fmt.Errorf("get %s: %w", req.Path, kv.ErrNotFound))
		}
		if ok {
			return &topodv1.GetResponse{Contents: got.Value, Version: got.ModRevision}, nil
		}
	}
	got, err := s.backend.Get(ctx, req.Path)
	if err != nil {
		return nil, toStatus(err)
	}
	return &topodv1.GetResponse{Contents: got.Value, Version: got.ModRevision}, nil
}

// GetVersion is part of topodv1.TopoServer.
func (s *Server) GetVersion(ctx context.Context, req *topodv1.GetVersionRequest) (*topodv1.GetVersionResponse, error) {
	if err := checkPath(req.Path, false); err != nil {
		return nil, toStatus(err)
	}
	if req.Version <= 0 {
		return nil, toStatus(invalid(fmt.Errorf("get %s at version %d: versions start at 1", req.Path, req.Version)))
	}
	value, err := s.backend.GetRevision(ctx, req.Path, req.Version)
	if err != nil {
		return nil, toStatus(err)
	}
	return &topodv1.GetVersionResponse{Contents: value}, nil
}

// List is part of topodv1.TopoServer. Like etcd2topo it matches the raw
// prefix and answers NotFound when nothing matches. A paged request is
// answered a page at a time (listPage); one that is not (plugins of
// earlier releases) whole, up to the largest message topod sends.
func (s *Server) List(ctx context.Context, req *topodv1.ListRequest) (*topodv1.ListResponse, error) {
	if err := checkPath(req.Prefix, true); err != nil {
		return nil, toStatus(err)
	}
	if req.Paged || req.Limit != 0 || len(req.PageToken) > 0 {
		return s.listPaged(ctx, req)
	}
	minRev := req.MinRevision
	if req.Linearizable {
		minRev = -1
	}
	kvs, rev, err := s.listAt(ctx, "list", req.Prefix, false, minRev)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(kvs) == 0 {
		return nil, toStatus(fmt.Errorf("list %s: %w", req.Prefix, kv.ErrNotFound))
	}
	resp := listResponse(kvs, rev)
	if size := proto.Size(resp); size > s.opts.MaxSendMsgBytes {
		s.metrics.refused.WithLabelValues("list_bytes").Inc()
		return nil, topoerr.Errorf(topo.ResourceExhausted, "list %s: %d files, %d bytes, over the %d-byte message limit (--max-send-msg-bytes); a topod plugin of this release or later lists it in pages", req.Prefix, len(kvs), size, s.opts.MaxSendMsgBytes)
	}
	return resp, nil
}

func listResponse(kvs []kv.KV, rev int64) *topodv1.ListResponse {
	resp := &topodv1.ListResponse{Kvs: make([]*topodv1.KeyValue, len(kvs)), Revision: rev}
	for i, e := range kvs {
		resp.Kvs[i] = &topodv1.KeyValue{Path: e.Key, Contents: e.Value, Version: e.ModRevision}
	}
	return resp
}

// Delete is part of topodv1.TopoServer.
func (s *Server) Delete(ctx context.Context, req *topodv1.DeleteRequest) (*topodv1.DeleteResponse, error) {
	if err := checkPath(req.Path, false); err != nil {
		return nil, toStatus(err)
	}
	if err := checkWritable(req.Path); err != nil {
		return nil, err
	}
	if req.Version < 0 {
		return nil, toStatus(invalid(fmt.Errorf("delete %s: negative version %d", req.Path, req.Version)))
	}
	rev, err := s.backend.Delete(ctx, req.Path, req.Version)
	if err != nil {
		return nil, toStatus(err)
	}
	s.awaitMirror(ctx, req.Path, rev)
	return &topodv1.DeleteResponse{Revision: rev}, nil
}

// list reads the keys under prefix from the mirror covering it, once that
// has reached the backend's current revision and minRev, else (and always
// for minRev -1) from the backend.
func (s *Server) list(ctx context.Context, op, prefix string, keysOnly bool, minRev int64) ([]kv.KV, error) {
	kvs, _, err := s.listAt(ctx, op, prefix, keysOnly, minRev)
	return kvs, err
}

// listAt is list, with the revision the keys reflect.
func (s *Server) listAt(ctx context.Context, op, prefix string, keysOnly bool, minRev int64) ([]kv.KV, int64, error) {
	if m := s.mirrorFor(prefix); m != nil && minRev >= 0 {
		end := kvmirror.PrefixEnd(prefix)
		if end == "" {
			end = "\x00" // every key
		}
		kvs, rev, ok, err := m.Range(ctx, prefix, end, keysOnly, s.consistentRev(ctx, m, minRev))
		if err != nil {
			return nil, 0, fmt.Errorf("%s %s: %w", op, prefix, err)
		}
		s.metrics.cacheRead(op, ok)
		if ok {
			return kvs, rev, nil
		}
	}
	return s.backend.List(ctx, prefix, keysOnly)
}

// consistentRev is the revision a read from m must reflect to be
// linearizable: the backend's current revision, confirmed for a batch of
// reads at once (kvmirror.Sync), and at least minRev. When the mirror
// cannot confirm it (the backend unreachable, the mirror behind), it is a
// revision no mirror serves, so the read goes to the backend, which
// answers or fails as etcd would.
func (s *Server) consistentRev(ctx context.Context, m *kvmirror.Mirror, minRev int64) int64 {
	sctx, cancel := context.WithTimeout(ctx, consistentReadWait)
	defer cancel()
	rev, err := m.Sync(sctx)
	if err != nil {
		s.log.Debug("read from the backend: the mirror could not confirm the backend's revision", "mirror", m.Prefix(), "err", err)
		return math.MaxInt64
	}
	return max(rev, minRev)
}

// checkWrite validates a write: its path, its size, and, for a record that
// refers to blobs, that they were uploaded first.
func (s *Server) checkWrite(ctx context.Context, p string, value []byte) error {
	if err := checkPath(p, false); err != nil {
		return err
	}
	if err := checkWritable(p); err != nil {
		return err
	}
	return s.checkContents(ctx, p, value)
}

// checkContents checks a value written at p: a file's, a lock file's or
// an election participant's: its size, and, if it is a record, that it is
// well formed and its blobs are there.
func (s *Server) checkContents(ctx context.Context, p string, value []byte) error {
	if err := s.checkValue(p, value); err != nil {
		return err
	}
	return s.checkRecord(ctx, p, value)
}
