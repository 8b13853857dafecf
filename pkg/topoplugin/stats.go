package topoplugin

import (
	"sync/atomic"

	"vitess.io/vitess/go/stats"
)

// The plugin's figures for the whole process, published through Vitess's
// stats package: a vtgate, vttablet or vtctld shows them in /debug/vars
// and, under its own prefix, in /metrics (vtgate_topod_blob_fetches...).
var (
	statBlobFetches       = stats.NewCounter("TopodBlobFetches", "Blobs the topod plugin fetched from topod (blob cache misses).")
	statBlobFetchedBytes  = stats.NewCounter("TopodBlobFetchedBytes", "Bytes of the blobs the topod plugin fetched from topod.")
	statBlobUploads       = stats.NewCounter("TopodBlobUploads", "Blobs the topod plugin uploaded to topod.")
	statBlobUploadedBytes = stats.NewCounter("TopodBlobUploadedBytes", "Bytes of the blobs the topod plugin uploaded to topod.")
	statStreamReconnects  = stats.NewCounter("TopodWatchStreamReconnects", "Times the topod plugin opened a watch stream again after one broke (or could not be opened), its watches resumed.")
	statUnreadable        = stats.NewCounter("TopodWatchUnreadableChanges", "Attempts to deliver a watched change whose contents could not be read (a blob missing, damaged or not fetched): the watcher keeps its last value and the change is tried again.")
	// watchesOpen counts the watches on the process's watch streams.
	watchesOpen atomic.Int64
)

func init() {
	stats.NewGaugeFunc("TopodWatches", "Topo watches open through topod.", watchesOpen.Load)
	stats.NewGaugeFunc("TopodBlobCacheBytes", "Bytes held by the topod plugin's blob cache.", func() int64 { return sharedBlobCache().Stats().Bytes })
	stats.NewGaugeFunc("TopodBlobCacheEntries", "Blobs held by the topod plugin's blob cache.", func() int64 { return int64(sharedBlobCache().Stats().Entries) })
	stats.NewCounterFunc("TopodBlobCacheHits", "Lookups of the topod plugin's blob cache that found the blob.", func() int64 { return int64(sharedBlobCache().Stats().Hits) })
	stats.NewCounterFunc("TopodBlobCacheMisses", "Lookups of the topod plugin's blob cache that did not.", func() int64 { return int64(sharedBlobCache().Stats().Misses) })
}
