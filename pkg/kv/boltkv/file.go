package boltkv

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/topod-io/topod/pkg/kv"
)

// Get returns key's current state, or kv.ErrNotFound.
func (b *Backend) Get(ctx context.Context, key string) (kv.KV, error) {
	if err := ctx.Err(); err != nil {
		return kv.KV{}, opError("get", key, err)
	}
	var got kv.KV
	err := b.read(func(tx *bolt.Tx) error {
		r, ok, err := getRecord(tx, key, true)
		if err != nil {
			return err
		}
		if !ok {
			return kv.ErrNotFound
		}
		got = r.kvOf(key)
		return nil
	})
	return got, opError("get", key, err)
}

// GetRevision returns key's value as of revision rev: kv.ErrNotFound if it
// did not exist then, kv.ErrCompacted if that history was pruned. A rev
// beyond the current revision reads the current value.
func (b *Backend) GetRevision(ctx context.Context, key string, rev int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, opError("get revision", key, err)
	}
	var value []byte
	err := b.read(func(tx *bolt.Tx) error {
		if rev <= 0 {
			return kv.ErrNotFound
		}
		cur, ok, err := getStored(tx, key)
		if err != nil {
			return err
		}
		if ok && cur.modRev <= rev {
			r, err := decodeRecord(cur.raw, true)
			value = r.value
			return err
		}
		value, err = history{tx: tx, b: tx.Bucket(bucketHistory)}.at(key, rev)
		return err
	})
	return value, opError("get revision", key, err)
}

// List returns every key starting with prefix, sorted, and the revision
// the listing reflects. keysOnly leaves Value nil.
func (b *Backend) List(ctx context.Context, prefix string, keysOnly bool) ([]kv.KV, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, opError("list", prefix, err)
	}
	var (
		kvs []kv.KV
		rev int64
	)
	err := b.read(func(tx *bolt.Tx) error {
		rev = metaOf(tx).get(metaRev)
		p := []byte(prefix)
		c := tx.Bucket(bucketKV).Cursor()
		k, v := c.First()
		if len(p) > 0 {
			k, v = c.Seek(p)
		}
		for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			r, err := decodeRecord(v, !keysOnly)
			if err != nil {
				return err
			}
			kvs = append(kvs, r.kvOf(string(k)))
		}
		return nil
	})
	if err != nil {
		return nil, 0, opError("list", prefix, err)
	}
	return kvs, rev, nil
}

// Create writes key if it does not exist (kv.ErrExists otherwise), attached
// to lease if lease is not 0 (kv.ErrLeaseNotFound if it has ended).
func (b *Backend) Create(ctx context.Context, key string, value []byte, lease kv.LeaseID) (int64, error) {
	if err := checkWrite(ctx, key); err != nil {
		return 0, opError("create", key, err)
	}
	rev, err := b.write(func(w *writeTx) error {
		if lease != 0 && !b.leases.alive(lease) {
			return leaseError("attach to", lease, kv.ErrLeaseNotFound)
		}
		_, ok, err := getStored(w.tx, key)
		if err != nil {
			return err
		}
		if ok {
			return kv.ErrExists
		}
		return w.put(key, value, lease, nil)
	})
	return rev, opError("create", key, err)
}

// Update writes key: unconditionally with version 0 (creating it if
// missing), else only if its ModRevision is version (kv.ErrBadVersion). An
// existing key keeps its lease; its Version goes up by one.
func (b *Backend) Update(ctx context.Context, key string, value []byte, version int64) (int64, error) {
	if err := checkWrite(ctx, key); err != nil {
		return 0, opError("update", key, err)
	}
	rev, err := b.write(func(w *writeTx) error {
		old, ok, err := getStored(w.tx, key)
		if err != nil {
			return err
		}
		if version != 0 && (!ok || old.modRev != version) {
			return kv.ErrBadVersion
		}
		if !ok {
			return w.put(key, value, 0, nil)
		}
		return w.put(key, value, old.lease, &old)
	})
	return rev, opError("update", key, err)
}

// Delete removes key: kv.ErrNotFound if it is missing, kv.ErrBadVersion if
// version is not 0 and not the key's ModRevision. It returns the revision of
// the delete.
func (b *Backend) Delete(ctx context.Context, key string, version int64) (int64, error) {
	if err := checkWrite(ctx, key); err != nil {
		return 0, opError("delete", key, err)
	}
	rev, err := b.write(func(w *writeTx) error {
		old, ok, err := getStored(w.tx, key)
		if err != nil {
			return err
		}
		if !ok {
			return kv.ErrNotFound
		}
		if version != 0 && old.modRev != version {
			return kv.ErrBadVersion
		}
		return w.del(key, old)
	})
	return rev, opError("delete", key, err)
}

// checkWrite rejects a write before it queues for the write lock.
func checkWrite(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if key == "" {
		return errEmptyKey
	}
	return nil
}

// historyBatch bounds how many history entries History reads in one read
// transaction: fn runs outside any transaction, so that a slow consumer
// (garbage collection fetching blobs) never holds one open, which would keep
// bbolt from growing its file under writers.
const historyBatch = 512

// History calls fn with every superseded value of every key starting with
// prefix that GetRevision can still return (tombstones and pruned versions
// excluded). It scans the whole history bucket, whose entries are ordered by
// key length first, in batches of read transactions; entries added during
// the scan may or may not be visited.
func (b *Backend) History(ctx context.Context, prefix string, fn func(kv.KV) error) error {
	var after []byte // the last bucket key visited
	for {
		if err := ctx.Err(); err != nil {
			return opError("history", prefix, err)
		}
		var batch []kv.KV
		err := b.read(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketHistory).Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
			for n := 0; k != nil && n < historyBatch; k, v = c.Next() {
				n++
				after = bytes.Clone(k)
				key, rev, ok := parseHistoryKey(k)
				if !ok || rev == 0 || !strings.HasPrefix(key, prefix) {
					continue // a compaction marker, or another key
				}
				r, err := decodeRecord(v, true)
				if err != nil {
					return fmt.Errorf("history of %q at revision %d: %w", key, rev, err)
				}
				if !r.tombstone {
					batch = append(batch, r.kvOf(key))
				}
			}
			if k == nil {
				after = nil // the end of the bucket
			}
			return nil
		})
		if err != nil {
			return opError("history", prefix, err)
		}
		for _, e := range batch {
			if err := fn(e); err != nil {
				return err
			}
		}
		if after == nil {
			return nil
		}
	}
}
