package boltkv

import (
	"bytes"
	"errors"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/topod-io/topod/pkg/kv"
)

// keyRange is the key or keys a Compare, Range or Delete of a transaction
// is about, with etcd's range_end conventions: end "" is key alone, "\x00"
// every key from key on, anything else the keys in [key, end).
type keyRange struct{ key, end string }

func (r keyRange) single() bool  { return r.end == "" }
func (r keyRange) fromKey() bool { return r.end == "\x00" }

// contains says whether k is one of r's keys.
func (r keyRange) contains(k string) bool {
	switch {
	case r.single():
		return k == r.key
	case r.fromKey():
		return k >= r.key
	}
	return k >= r.key && k < r.end
}

// errStopScan ends a scanCurrent early; scanCurrent then returns nil.
var errStopScan = errors.New("stop scan")

// scanCurrent calls fn with the current record of every key in r, in key
// order (its value only withValue). fn must not write to the kv bucket. It
// stops at fn's first error and returns it, or nil for errStopScan.
func scanCurrent(tx *bolt.Tx, r keyRange, withValue bool, fn func(key string, rec record) error) error {
	if r.single() {
		rec, ok, err := getRecord(tx, r.key, withValue)
		if err != nil || !ok {
			return err
		}
		if err := fn(r.key, rec); err != nil && !errors.Is(err, errStopScan) {
			return err
		}
		return nil
	}
	end := []byte(r.end)
	c := tx.Bucket(bucketKV).Cursor()
	for k, v := c.Seek([]byte(r.key)); k != nil && (r.fromKey() || bytes.Compare(k, end) < 0); k, v = c.Next() {
		rec, err := decodeRecord(v, withValue)
		if err != nil {
			return err
		}
		if err := fn(string(k), rec); err != nil {
			if errors.Is(err, errStopScan) {
				return nil
			}
			return err
		}
	}
	return nil
}

// rangeCurrent returns the current state of r's keys, sorted by key;
// without withValue, their values are nil.
func rangeCurrent(tx *bolt.Tx, r keyRange, withValue bool) ([]kv.KV, error) {
	var kvs []kv.KV
	err := scanCurrent(tx, r, withValue, func(key string, rec record) error {
		kvs = append(kvs, rec.kvOf(key))
		return nil
	})
	return kvs, err
}

// rangeAt returns r's keys as they were at revision rev, which is at most
// the current one, sorted by key; without withValue, their values are nil.
// The keys there were at rev are the current keys of r and those deleted
// since (the deleted bucket, from rev on); each is read as of rev, from its
// current record if it has not changed since, else from its history. If
// the history of a key is gone (a revision at or below the meta
// "compacted" one, or pruned history), it fails with kv.ErrCompacted.
func rangeAt(tx *bolt.Tx, r keyRange, rev int64, withValue bool) ([]kv.KV, error) {
	if rev <= metaOf(tx).get(metaCompacted) {
		return nil, kv.ErrCompacted
	}
	h := history{tx: tx, b: tx.Bucket(bucketHistory)}
	var (
		kvs  []kv.KV
		past []string // keys whose state at rev is in their history
	)
	err := scanCurrent(tx, r, withValue, func(key string, rec record) error {
		if rec.modRev <= rev {
			kvs = append(kvs, rec.kvOf(key))
		} else {
			past = append(past, key)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if r.single() {
		if len(kvs) == 0 && len(past) == 0 {
			past = []string{r.key} // missing now: it may have existed at rev
		}
	} else {
		past = append(past, deletedSince(tx, r, rev)...)
	}
	for _, key := range past {
		rec, err := h.recordAt(key, rev, withValue)
		if errors.Is(err, kv.ErrNotFound) {
			continue // created after rev, or deleted at rev
		}
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", key, err)
		}
		kvs = append(kvs, rec.kvOf(key))
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].Key < kvs[j].Key })
	return kvs, nil
}

// deletedSince returns the keys of r deleted after rev that are missing
// now, each once.
func deletedSince(tx *bolt.Tx, r keyRange, rev int64) []string {
	var keys []string
	seen := map[string]bool{}
	kvb := tx.Bucket(bucketKV)
	c := tx.Bucket(bucketDeleted).Cursor()
	for k, _ := c.Seek(be64(rev + 1)); k != nil; k, _ = c.Next() {
		if len(k) < 8 {
			continue
		}
		key := string(k[8:])
		if seen[key] || !r.contains(key) {
			continue
		}
		seen[key] = true
		if kvb.Get(k[8:]) == nil {
			keys = append(keys, key)
		}
	}
	return keys
}
