package topoplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"

	"vitess.io/vitess/go/vt/log"

	"github.com/topod-io/topod/pkg/cache"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/record"
	"github.com/topod-io/topod/pkg/srvvschema"
	"github.com/topod-io/topod/pkg/topoerr"
	topodv1 "github.com/topod-io/topod/proto/topod/v1"
)

// Batching of blob transfers. Each request is bounded by its own deadline
// (--topod-request-timeout), and a store like S3 takes round trips per
// blob: batches are bounded in blobs as well as bytes.
const (
	maxPutBatchBytes     = 16 << 20
	maxPutBatchCount     = 512
	maxMissingBatchCount = 4096
	prefetchBatch        = 4096
)

var (
	blobCacheBytes int64 = 512 << 20

	// blobCache is shared by every connection of the process, so the many
	// cells of a vtgate holding the same keyspaces keep each piece once.
	blobCacheOnce sync.Once
	blobCache     *cache.Cache
)

func sharedBlobCache() *cache.Cache {
	blobCacheOnce.Do(func() { blobCache = cache.New(blobCacheBytes) })
	return blobCache
}

// BlobStats counts what a connection fetched from and uploaded to topod's
// blob store (cache hits are not fetches).
type BlobStats struct {
	Fetches, FetchedBytes  int64
	Uploads, UploadedBytes int64
}

// blobCounters are a connection's BlobStats, updated atomically.
type blobCounters struct {
	fetches, fetchedBytes  atomic.Int64
	uploads, uploadedBytes atomic.Int64
}

// BlobStats returns what this connection fetched and uploaded so far.
func (c *Conn) BlobStats() BlobStats {
	return BlobStats{
		Fetches:       c.counters.fetches.Load(),
		FetchedBytes:  c.counters.fetchedBytes.Load(),
		Uploads:       c.counters.uploads.Load(),
		UploadedBytes: c.counters.uploadedBytes.Load(),
	}
}

// countFetch counts one blob fetched, for the connection and the process.
func (c *Conn) countFetch(size int) {
	c.counters.fetches.Add(1)
	c.counters.fetchedBytes.Add(int64(size))
	statBlobFetches.Add(1)
	statBlobFetchedBytes.Add(int64(size))
}

// serverInfo returns topod's limits, asked once per connection.
func (c *Conn) serverInfo(ctx context.Context) (*topodv1.ServerInfoResponse, error) {
	if info := c.info.Load(); info != nil {
		return info, nil
	}
	ctx, cancel, wait := c.unary(ctx)
	defer cancel()
	info, err := c.client.ServerInfo(ctx, &topodv1.ServerInfoRequest{}, wait)
	if err != nil {
		return nil, err
	}
	c.info.Store(info)
	return info, nil
}

// encode turns contents into the backend value of the file at p, uploading
// the blobs topod does not hold yet first: a reader that sees the value can
// always fetch what it refers to.
func (c *Conn) encode(ctx context.Context, p string, contents []byte) ([]byte, error) {
	info, err := c.serverInfo(ctx)
	if err != nil {
		return nil, topoerr.FromError(err, p)
	}
	enc, err := record.Encode(p, contents, int(info.InlineLimit))
	if err != nil {
		return nil, err
	}
	if len(enc.Blobs) > 0 {
		if err := c.upload(ctx, enc.Blobs); err != nil {
			return nil, fmt.Errorf("topod: write %s: %w", p, err)
		}
	}
	return enc.Value, nil
}

// upload stores the blobs topod lacks, in batches, and keeps them all in
// the local cache (the writer usually reads them back). Each request is
// bounded on its own (unary): a large file's upload takes as many
// deadlines as it takes requests.
func (c *Conn) upload(ctx context.Context, blobs map[content.Hash][]byte) error {
	hashes := make([][]byte, 0, len(blobs))
	for h, data := range blobs {
		hashes = append(hashes, h[:])
		c.blobs.Add(h, data)
	}
	var missing [][]byte
	for start := 0; start < len(hashes); start += maxMissingBatchCount {
		rctx, cancel, wait := c.unary(ctx)
		resp, err := c.client.MissingBlobs(rctx, &topodv1.MissingBlobsRequest{Hashes: hashes[start:min(start+maxMissingBatchCount, len(hashes))]}, wait)
		cancel()
		if err != nil {
			return topoerr.FromError(err, "blobs")
		}
		missing = append(missing, resp.Missing...)
	}
	batch, size := &topodv1.PutBlobsRequest{}, 0
	flush := func() error {
		if len(batch.Blobs) == 0 {
			return nil
		}
		rctx, cancel, wait := c.unary(ctx)
		_, err := c.client.PutBlobs(rctx, batch, wait)
		cancel()
		if err != nil {
			return topoerr.FromError(err, "blobs")
		}
		c.counters.uploads.Add(int64(len(batch.Blobs)))
		c.counters.uploadedBytes.Add(int64(size))
		statBlobUploads.Add(int64(len(batch.Blobs)))
		statBlobUploadedBytes.Add(int64(size))
		batch, size = &topodv1.PutBlobsRequest{}, 0
		return nil
	}
	for _, h := range missing {
		data := blobs[content.Hash(h)]
		if size > 0 && (size+len(data) > maxPutBatchBytes || len(batch.Blobs) >= maxPutBatchCount) {
			if err := flush(); err != nil {
				return err
			}
		}
		batch.Blobs = append(batch.Blobs, &topodv1.Blob{Hash: h, Data: data})
		size += len(data)
	}
	return flush()
}

// decode returns the contents of the file at p from its backend value,
// fetching the blobs it refers to that the cache does not hold: first its
// manifests, then the rest in batches (prefetch), then it assembles the
// file from the cache.
func (c *Conn) decode(ctx context.Context, p string, value []byte) ([]byte, error) {
	if ref, err := record.Parse(value); err == nil && ref != nil {
		c.prefetch(ctx, ref)
	}
	// c.blobs admits only checked blobs (GetOrLoad hashes what it loads,
	// receiveBlobs what it adds): decoding does not hash them again.
	contents, err := record.DecodeChecked(ctx, value, c.getBlob)
	if err != nil {
		return nil, fmt.Errorf("topod: read %s: %w", p, err)
	}
	return contents, nil
}

// prefetch loads into the cache the blobs ref reaches that it lacks, in
// GetBlobs batches: a SrvVSchema's leaves once its root is in, then every
// piece. It is only a shortcut: what it could not fetch (a missing or
// corrupt blob, a topod that predates GetBlobs) the decoder fetches one by
// one and reports precisely.
func (c *Conn) prefetch(ctx context.Context, ref *topodv1.BlobRef) {
	if ref.Codec == topodv1.Codec_CODEC_SRVVSCHEMA {
		root, err := c.getBlob(ctx, content.Hash(ref.Root))
		if err != nil {
			return
		}
		leaves, err := srvvschema.LeafHashes(root)
		if err != nil || c.fetchMissing(ctx, leaves) != nil {
			return
		}
	}
	hashes, err := record.Blobs(ctx, ref, c.getBlob)
	if err != nil {
		return
	}
	_ = c.fetchMissing(ctx, hashes)
}

// fetchMissing loads the blobs of hashes the cache lacks with GetBlobs, in
// batches of prefetchBatch. One or none missing (the usual one-keyspace
// change) is left to the decoder.
func (c *Conn) fetchMissing(ctx context.Context, hashes []content.Hash) error {
	var missing [][]byte
	for _, h := range hashes {
		if _, ok := c.blobs.Get(h); !ok {
			missing = append(missing, h[:])
		}
	}
	if len(missing) < 2 {
		return nil
	}
	for start := 0; start < len(missing); start += prefetchBatch {
		// Each batch is bounded on its own, as upload's requests are.
		rctx, cancel, wait := c.unary(ctx)
		stream, err := c.client.GetBlobs(rctx, &topodv1.GetBlobsRequest{Hashes: missing[start:min(start+prefetchBatch, len(missing))]}, wait)
		if err == nil {
			err = c.receiveBlobs(stream)
		}
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// receiveBlobs adds the blobs of a GetBlobs stream to the cache, each
// verified against its hash.
func (c *Conn) receiveBlobs(stream grpc.ServerStreamingClient[topodv1.GetBlobsResponse]) error {
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, b := range msg.Blobs {
			if len(b.Hash) != content.Size {
				return fmt.Errorf("topod sent a blob hash of %d bytes", len(b.Hash))
			}
			h := content.Hash(b.Hash)
			if got := content.Sum(b.Data); got != h {
				return fmt.Errorf("blob %s: %w: topod sent %d bytes hashing to %s", h, cache.ErrCorrupt, len(b.Data), got)
			}
			c.blobs.Add(h, b.Data)
			c.countFetch(len(b.Data))
		}
	}
}

// getBlob returns a blob from the connection's cache, or fetches it from
// topod.
// Concurrent misses on one blob share one fetch; the cache verifies what
// comes back and keeps nothing that does not match its hash.
func (c *Conn) getBlob(ctx context.Context, h content.Hash) ([]byte, error) {
	return c.blobs.GetOrLoad(ctx, h, func(ctx context.Context) ([]byte, error) {
		ctx, cancel, wait := c.unary(ctx)
		defer cancel()
		resp, err := c.client.GetBlob(ctx, &topodv1.GetBlobRequest{Hash: h[:]}, wait)
		if err != nil {
			return nil, topoerr.FromError(err, "blob "+h.String())
		}
		c.countFetch(len(resp.Data))
		return resp.Data, nil
	})
}

// logDecodeError reports a watched file that could not be read: the watcher
// keeps its last good value.
func logDecodeError(p string, err error) {
	log.Error("topod: watch: keeping the last good value", slog.String("path", p), slog.Any("err", err))
}
