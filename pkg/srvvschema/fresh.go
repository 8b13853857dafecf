package srvvschema

import "context"

// freshReadsKey marks a context whose topology reads must be linearizable.
type freshReadsKey struct{}

// WithFreshReads returns ctx marked for linearizable topology reads: a read
// made with it must reflect every write completed before it began, by any
// client. A cell update reads the global values of the keyspaces it brings
// in step with it: correctness across vschemad replicas (see cells.go)
// rests on those reads not lagging other writers. A topology connection
// that may answer from a cache lagging other clients' writes (topod's read
// mirror) should honour the mark (FreshReads); one whose reads are
// linearizable anyway (etcd2) may ignore it.
func WithFreshReads(ctx context.Context) context.Context {
	return context.WithValue(ctx, freshReadsKey{}, true)
}

// FreshReads reports whether ctx is marked by WithFreshReads.
func FreshReads(ctx context.Context) bool {
	v, _ := ctx.Value(freshReadsKey{}).(bool)
	return v
}
