package etcdkv

// Rewatches returns how many times b's watches were re-established after
// etcd ended them.
func Rewatches(b *Backend) int64 { return b.rewatches.Load() }
