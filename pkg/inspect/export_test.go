package inspect

// SetProgressMinBlobs sets the fewest blobs that get a progress bar, for a
// test, and returns the previous value.
func SetProgressMinBlobs(n int) int {
	old := progressMinBlobs
	progressMinBlobs = n
	return old
}
