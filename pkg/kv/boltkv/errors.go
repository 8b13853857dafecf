package boltkv

import (
	"errors"
	"fmt"

	"github.com/topod-io/topod/pkg/kv"
)

// errEmptyKey rejects the empty key, which bbolt cannot store.
var errEmptyKey = errors.New("empty key")

// opError wraps err with the operation and the key it failed on, as the kv
// contract asks: "update /a/b: version mismatch".
func opError(op, key string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// leaseError wraps err with the operation and the lease it failed on.
func leaseError(op string, id kv.LeaseID, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s lease %d: %w", op, id, err)
}
