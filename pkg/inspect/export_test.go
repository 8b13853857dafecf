package inspect

import "github.com/topod-io/topod/pkg/blobstore"

// SetProgressMinBlobs sets the fewest blobs that get a progress bar, for a
// test, and returns the previous value.
func SetProgressMinBlobs(n int) int {
	old := progressMinBlobs
	progressMinBlobs = n
	return old
}

// ReadOnlyStore is the store Blobs hands the collector.
func ReadOnlyStore(s blobstore.Store) blobstore.Store { return &readOnlyStore{Store: s} }
