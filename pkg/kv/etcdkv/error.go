package etcdkv

import (
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/topod-io/topod/pkg/kv"
)

// kvErrors are the etcd errors that have a kv meaning. Any other etcd error
// ("etcdserver: request is too large", "etcdserver: no leader", ...) is
// passed on wrapped, with etcd's message.
var kvErrors = []struct {
	etcd, kv error
}{
	{rpctypes.ErrCompacted, kv.ErrCompacted},
	{rpctypes.ErrLeaseNotFound, kv.ErrLeaseNotFound},
}

// wrap names the operation and the key (or lease) in err, and maps etcd's
// errors onto package kv's: "update /a/b: version mismatch". After Close
// every failure is kv.ErrClosed: the client's own errors then only say that
// its connection is closing.
func (b *Backend) wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if b.closed.Load() {
		return fmt.Errorf("%s %s: %w", op, key, kv.ErrClosed)
	}
	for _, m := range kvErrors {
		if errors.Is(err, m.etcd) {
			return fmt.Errorf("%s %s: %w", op, key, m.kv)
		}
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// fail returns the kv error for op on key: "delete /a/b: key not found".
func fail(op, key string, kvErr error) error {
	return fmt.Errorf("%s %s: %w", op, key, kvErr)
}

// checkOpen returns kv.ErrClosed, wrapped, once the backend is closed.
func (b *Backend) checkOpen(op, key string) error {
	if b.closed.Load() {
		return fail(op, key, kv.ErrClosed)
	}
	return nil
}
