package boltkv

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/topod-io/topod/pkg/kv"
)

// history keeps superseded versions of keys, and delete tombstones, in the
// history bucket, keyed by historyKey(key, modRev): all the entries of one
// key are adjacent and ordered by revision, so "the value as of rev" is the
// last entry at or before rev. The current version lives in the kv bucket
// only.
//
// Each key keeps its perKey latest entries. When older ones are pruned, a
// marker at revision 0 records it: a revision before the retained entries is
// then ErrCompacted rather than ErrNotFound. The whole history of a key that
// stays deleted for deletedRetention revisions is dropped, and the meta
// "compacted" revision raised to the delete: revisions up to it may have
// lost history for any key.
type history struct {
	tx               *bolt.Tx
	b                *bolt.Bucket
	perKey           int
	deletedRetention int64
}

// historyPrefix is what every history key of key starts with: the key's
// length, then the key, so that no other key's entries share it.
func historyPrefix(key string) []byte {
	buf := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(key)+8), uint64(len(key)))
	return append(buf, key...)
}

func historyKey(key string, rev int64) []byte {
	return binary.BigEndian.AppendUint64(historyPrefix(key), uint64(rev))
}

// keep adds r, a version of key, to its history.
func (h history) keep(key string, r record) error {
	return h.keepRaw(key, r.modRev, r.encode())
}

// keepRaw adds the encoded record of key at modRev to its history.
func (h history) keepRaw(key string, modRev int64, raw []byte) error {
	return h.b.Put(historyKey(key, modRev), raw)
}

// prune drops key's oldest entries beyond the perKey latest, leaving the
// compaction marker in their place.
func (h history) prune(key string) error {
	prefix := historyPrefix(key)
	var revs [][]byte
	c := h.b.Cursor()
	for k, _ := c.Seek(historyKey(key, 1)); k != nil && isHistoryOf(k, prefix); k, _ = c.Next() {
		revs = append(revs, bytes.Clone(k)) // bolt's memory: copy before writing
	}
	if len(revs) <= h.perKey {
		return nil
	}
	drop := revs[:len(revs)-h.perKey]
	for _, k := range drop {
		if err := h.b.Delete(k); err != nil {
			return err
		}
	}
	last := drop[len(drop)-1]
	return h.b.Put(historyKey(key, 0), last[len(last)-8:])
}

// parseHistoryKey splits a history bucket key into the topo key and the
// revision: ok is false for a key not in historyKey's format.
func parseHistoryKey(k []byte) (key string, rev int64, ok bool) {
	n, size := binary.Uvarint(k)
	if size <= 0 || n > uint64(len(k)) || uint64(len(k)-size) != n+8 {
		return "", 0, false
	}
	return string(k[size : size+int(n)]), int64(binary.BigEndian.Uint64(k[len(k)-8:])), true
}

// isHistoryOf says whether k, a history bucket key, is an entry of the key
// whose historyPrefix is prefix.
func isHistoryOf(k, prefix []byte) bool {
	return len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix)
}

// at returns key's value as of rev, for a key whose current version, if
// any, is newer than rev.
func (h history) at(key string, rev int64) ([]byte, error) {
	r, err := h.recordAt(key, rev, true)
	return r.value, err
}

// recordAt returns key's record as of rev (its value only withValue), for
// a key whose current version, if any, is newer than rev: kv.ErrNotFound if
// the key did not exist then, kv.ErrCompacted if that history is gone.
func (h history) recordAt(key string, rev int64, withValue bool) (record, error) {
	prefix := historyPrefix(key)
	c := h.b.Cursor()
	k, v := c.Seek(historyKey(key, rev+1))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil || !isHistoryOf(k, prefix) {
		// No entry at or before rev, and none pruned: the key did not exist
		// then, unless its whole history was dropped after a delete.
		if rev <= metaOf(h.tx).get(metaCompacted) {
			return record{}, kv.ErrCompacted
		}
		return record{}, kv.ErrNotFound
	}
	if binary.BigEndian.Uint64(k[len(k)-8:]) == 0 {
		// The compaction marker: entries at or before rev were pruned.
		return record{}, kv.ErrCompacted
	}
	r, err := decodeRecord(v, withValue)
	if err != nil {
		return record{}, fmt.Errorf("history of %q: %w", key, err)
	}
	if r.tombstone {
		return record{}, kv.ErrNotFound
	}
	return r, nil
}

// dropDeleted drops the history of keys deleted at least deletedRetention
// revisions before rev that have not been written since, a few per call so
// that no write pays for a backlog at once.
func (h history) dropDeleted(deleted *bolt.Bucket, rev int64) error {
	const perWrite = 16
	horizon := rev - h.deletedRetention
	var done [][]byte
	compacted := int64(0)
	c := deleted.Cursor()
	for k, _ := c.First(); k != nil && len(done) < perWrite; k, _ = c.Next() {
		delRev := int64(binary.BigEndian.Uint64(k[:8]))
		if delRev > horizon {
			break
		}
		done = append(done, bytes.Clone(k))
		key := string(k[8:])
		current, err := h.stillDeletedAt(key, delRev)
		if err != nil {
			return err
		}
		if !current {
			continue
		}
		if err := h.dropAll(key); err != nil {
			return err
		}
		compacted = delRev
	}
	for _, k := range done {
		if err := deleted.Delete(k); err != nil {
			return err
		}
	}
	m := metaOf(h.tx)
	if compacted > m.get(metaCompacted) {
		return m.put(metaCompacted, compacted)
	}
	return nil
}

// stillDeletedAt says whether key's last change is its delete at delRev.
func (h history) stillDeletedAt(key string, delRev int64) (bool, error) {
	if _, ok, err := getRecord(h.tx, key, false); err != nil || ok {
		return false, err
	}
	prefix := historyPrefix(key)
	c := h.b.Cursor()
	k, _ := c.Seek(historyKey(key, delRev+1))
	if k != nil && isHistoryOf(k, prefix) {
		return false, nil // deleted again later: that delete will drop it
	}
	return true, nil
}

// dropAll deletes every history entry of key, marker included.
func (h history) dropAll(key string) error {
	prefix := historyPrefix(key)
	var keys [][]byte
	c := h.b.Cursor()
	for k, _ := c.Seek(historyKey(key, 0)); k != nil && isHistoryOf(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := h.b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
