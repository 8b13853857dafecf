package toposerver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/record"
	"github.com/topod-io/topod/pkg/topoerr"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Blob limits.
const (
	// MaxBlobBytes is the largest blob PutBlobs accepts.
	MaxBlobBytes = 48 << 20
	// getBlobsMessageBytes is about the most blob bytes in one GetBlobs
	// message.
	getBlobsMessageBytes = 1 << 20
	// getBlobsLoads is how many blobs one GetBlobs reads from the store at
	// once on cache misses.
	getBlobsLoads = 16
	// putBlobsConcurrency is how many blobs of a PutBlobs request are
	// written to the store at once.
	putBlobsConcurrency = 16
	// blobLoadTimeout bounds a read from the blob store on a cache miss
	// (the load is shared by every request waiting for that blob).
	blobLoadTimeout = time.Minute
)

// ServerInfo is part of topodv1.TopoServer.
func (s *Server) ServerInfo(context.Context, *topodv1.ServerInfoRequest) (*topodv1.ServerInfoResponse, error) {
	return &topodv1.ServerInfoResponse{
		InlineLimit:    int64(s.opts.InlineLimit),
		MaxRecordBytes: int64(s.opts.MaxValueBytes),
		MaxBlobBytes:   MaxBlobBytes,
	}, nil
}

// MissingBlobs is part of topodv1.TopoServer.
func (s *Server) MissingBlobs(ctx context.Context, req *topodv1.MissingBlobsRequest) (*topodv1.MissingBlobsResponse, error) {
	if err := s.refuseCount("missing blobs", len(req.Hashes), s.opts.MaxMissingBlobs, "hashes", "missing_blobs", "--max-missing-blobs"); err != nil {
		return nil, toStatus(err)
	}
	hashes := make([]content.Hash, len(req.Hashes))
	for i, b := range req.Hashes {
		h, err := hashOf(b)
		if err != nil {
			return nil, toStatus(err)
		}
		hashes[i] = h
	}
	missing, err := s.blobs.Refresh(ctx, hashes, s.refreshBefore())
	if err != nil {
		return nil, blobStatus(err)
	}
	resp := &topodv1.MissingBlobsResponse{Missing: make([][]byte, len(missing))}
	for i, h := range missing {
		resp.Missing[i] = h[:]
	}
	return resp, nil
}

// refreshBefore is the olderThan of the blob refreshes MissingBlobs and
// PutBlobs make: a blob stored before it gets a new stored time, so
// garbage collection (which deletes unreferenced blobs stored more than
// GCGrace ago) keeps it for at least GCGrace/2, long enough for the writer
// to write the record that refers to it. See package blobgc.
func (s *Server) refreshBefore() time.Time {
	return time.Now().Add(-s.opts.GCGrace / 2)
}

// PutBlobs is part of topodv1.TopoServer. Each blob is verified against its
// hash by the store before it is stored. Blobs already stored are
// refreshed as MissingBlobs does, for a client that uploads without asking
// first.
func (s *Server) PutBlobs(ctx context.Context, req *topodv1.PutBlobsRequest) (*topodv1.PutBlobsResponse, error) {
	// Their bytes are bounded by gRPC's receive limit (MaxBlobBytes + 1
	// MiB), their number here.
	if err := s.refuseCount("put blobs", len(req.Blobs), s.opts.MaxPutBlobs, "blobs", "put_blobs", "--max-put-blobs"); err != nil {
		return nil, toStatus(err)
	}
	hashes := make([]content.Hash, len(req.Blobs))
	for i, b := range req.Blobs {
		h, err := hashOf(b.Hash)
		if err != nil {
			return nil, toStatus(err)
		}
		if len(b.Data) > MaxBlobBytes {
			s.metrics.refused.WithLabelValues("blob_bytes").Inc()
			return nil, toStatus(invalid(fmt.Errorf("put blob %s: %d bytes, over the %d-byte limit", h, len(b.Data), MaxBlobBytes)))
		}
		hashes[i] = h
	}
	if _, err := s.blobs.Refresh(ctx, hashes, s.refreshBefore()); err != nil {
		return nil, blobStatus(err)
	}
	// A store like S3 takes a round trip per blob: put them
	// putBlobsConcurrency at a time (a SrvVSchema's first write is
	// thousands of pieces).
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(putBlobsConcurrency)
	for i, b := range req.Blobs {
		g.Go(func() error { return s.blobs.Put(gctx, hashes[i], b.Data) })
	}
	if err := g.Wait(); err != nil {
		return nil, blobStatus(err)
	}
	return &topodv1.PutBlobsResponse{}, nil
}

// GetBlob is part of topodv1.TopoServer. Blobs are served from topod's
// cache; a miss is read from the store, which verifies it.
func (s *Server) GetBlob(ctx context.Context, req *topodv1.GetBlobRequest) (*topodv1.GetBlobResponse, error) {
	h, err := hashOf(req.Hash)
	if err != nil {
		return nil, toStatus(err)
	}
	data, err := s.getBlob(ctx, h)
	if err != nil {
		return nil, blobStatus(err)
	}
	return &topodv1.GetBlobResponse{Data: data}, nil
}

// GetBlobs is part of topodv1.TopoServer: the blobs asked for, in order,
// in messages of about getBlobsMessageBytes, reading cache misses from the
// store getBlobsLoads at a time.
func (s *Server) GetBlobs(req *topodv1.GetBlobsRequest, stream grpc.ServerStreamingServer[topodv1.GetBlobsResponse]) error {
	if err := s.refuseCount("get blobs", len(req.Hashes), s.opts.MaxGetBlobs, "hashes", "get_blobs", "--max-get-blobs"); err != nil {
		return toStatus(err)
	}
	hashes := make([]content.Hash, len(req.Hashes))
	for i, b := range req.Hashes {
		h, err := hashOf(b)
		if err != nil {
			return toStatus(err)
		}
		hashes[i] = h
	}
	ctx := stream.Context()
	// Load in windows, so a request holds at most a window of blobs the
	// cache may have evicted, and the first message leaves early.
	const window = 256
	for start := 0; start < len(hashes); start += window {
		part := hashes[start:min(start+window, len(hashes))]
		blobs := make([][]byte, len(part))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(getBlobsLoads)
		for i, h := range part {
			g.Go(func() (err error) {
				blobs[i], err = s.getBlob(gctx, h)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return blobStatus(err)
		}
		msg, size := &topodv1.GetBlobsResponse{}, 0
		for i, data := range blobs {
			if size > 0 && size+len(data) > getBlobsMessageBytes {
				if err := stream.Send(msg); err != nil {
					return err
				}
				msg, size = &topodv1.GetBlobsResponse{}, 0
			}
			msg.Blobs = append(msg.Blobs, &topodv1.Blob{Hash: req.Hashes[start+i], Data: data})
			size += len(data)
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

// getBlob returns a blob from the cache or, on a miss, the store.
func (s *Server) getBlob(ctx context.Context, h content.Hash) ([]byte, error) {
	return s.cache.GetOrLoad(ctx, h, func(ctx context.Context) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, blobLoadTimeout)
		defer cancel()
		return s.blobs.Get(ctx, h)
	})
}

// checkRecord refuses a backend value that is a malformed record, a
// reference whose root blob is not stored (blobs are uploaded before the
// record that refers to them), or one whose manifests do not parse under
// its codec (an unknown codec included).
func (s *Server) checkRecord(ctx context.Context, p string, value []byte) error {
	ref, err := record.Parse(value)
	if err != nil {
		return invalid(fmt.Errorf("write %s: %w", p, err))
	}
	if ref == nil {
		return nil
	}
	root := content.Hash(ref.Root)
	missing, err := s.blobs.Missing(ctx, []content.Hash{root})
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if len(missing) > 0 {
		return topoerr.BlobNotStored("write %s: refers to blob %s, which is not stored: upload blobs before the record", p, root)
	}
	// Its manifests must parse under its codec: the blob collector's mark
	// phase reads them, and stops at one it cannot.
	var fetchErr error
	get := func(ctx context.Context, h content.Hash) ([]byte, error) {
		b, err := s.getBlob(ctx, h)
		if err != nil && fetchErr == nil {
			fetchErr = err
		}
		return b, err
	}
	if _, err := record.Blobs(ctx, ref, get); err != nil {
		if fetchErr != nil {
			return fmt.Errorf("write %s: read its manifest: %w", p, blobStatus(fetchErr))
		}
		return invalid(fmt.Errorf("write %s: its root %s is not a %v manifest: %w", p, root, ref.Codec, err))
	}
	return nil
}

func hashOf(b []byte) (content.Hash, error) {
	if len(b) != content.Size {
		return content.Hash{}, invalid(fmt.Errorf("blob hash of %d bytes, want %d (SHA-256)", len(b), content.Size))
	}
	return content.Hash(b), nil
}

// blobStatus maps blob store errors to statuses: NotFound, DataLoss for a
// corrupt blob, InvalidArgument for data that does not match its hash.
func blobStatus(err error) error {
	switch {
	case errors.Is(err, blobstore.ErrNotFound):
		return topoerr.Status(topo.NoNode, err)
	case errors.Is(err, blobstore.ErrCorrupt):
		return status.Error(codes.DataLoss, err.Error())
	case errors.Is(err, blobstore.ErrHashMismatch):
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return toStatus(err)
}
