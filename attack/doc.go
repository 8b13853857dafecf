// Package attack holds tests that act as a misbehaving or hostile client
// against a real topod, on etcd and on bolt: floods of watches on a stream
// that is never read, watches resuming from revisions far ahead, locks
// asking for leases of decades, oversized requests. Each asserts the
// refusal (its status code and the limit it names), that topod's memory
// and etcd's watcher count stay bounded, and that nothing changed.
//
// The package is tests only; nothing imports it.
package attack
