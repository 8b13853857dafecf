package boltkv

import (
	"bytes"
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/topod-io/topod/pkg/kv"
)

// writeTx is one write transaction at one revision: the changes it makes to
// the buckets and the events they produce, published once it commits.
type writeTx struct {
	tx      *bolt.Tx
	rev     int64
	kv      *bolt.Bucket
	leased  *bolt.Bucket
	deleted *bolt.Bucket
	history history
	events  []kv.Event
}

func (b *Backend) newWriteTx(tx *bolt.Tx, rev int64) *writeTx {
	return &writeTx{
		tx:      tx,
		rev:     rev,
		kv:      tx.Bucket(bucketKV),
		leased:  tx.Bucket(bucketLeased),
		deleted: tx.Bucket(bucketDeleted),
		history: history{tx: tx, b: tx.Bucket(bucketHistory), perKey: b.opts.HistoryPerKey, deletedRetention: b.opts.DeletedRetention},
	}
}

// put writes key = value at w.rev, attached to lease (0: none). old is the
// key's current record, if it exists: the key keeps its CreateRevision, its
// Version goes up by one and it leaves old's lease for lease (a caller
// that keeps the lease passes old.lease). A new key is at Version 1.
func (w *writeTx) put(key string, value []byte, lease kv.LeaseID, old *stored) error {
	createRev, version := w.rev, int64(1)
	if old != nil {
		createRev, version = old.createRev, old.version+1
		if err := w.history.keepRaw(key, old.modRev, old.raw); err != nil {
			return err
		}
	}
	r := record{value: value, modRev: w.rev, createRev: createRev, version: version, lease: lease}
	if err := w.kv.Put([]byte(key), r.encode()); err != nil {
		return err
	}
	if old != nil && old.lease != 0 && old.lease != lease {
		if err := w.leased.Delete(leasedKey(old.lease, key)); err != nil {
			return err
		}
	}
	if lease != 0 && (old == nil || old.lease != lease) {
		if err := w.leased.Put(leasedKey(lease, key), nil); err != nil {
			return err
		}
	}
	if old != nil {
		if err := w.history.prune(key); err != nil {
			return err
		}
	}
	r.value = bytes.Clone(value)
	w.events = append(w.events, kv.Event{Type: kv.Put, KV: r.kvOf(key)})
	return nil
}

// del deletes key, whose current record is old, at w.rev.
func (w *writeTx) del(key string, old stored) error {
	if err := w.history.keepRaw(key, old.modRev, old.raw); err != nil {
		return err
	}
	if err := w.history.keep(key, record{modRev: w.rev, tombstone: true}); err != nil {
		return err
	}
	if err := w.kv.Delete([]byte(key)); err != nil {
		return err
	}
	if old.lease != 0 {
		if err := w.leased.Delete(leasedKey(old.lease, key)); err != nil {
			return err
		}
	}
	if err := w.deleted.Put(append(be64(w.rev), key...), nil); err != nil {
		return err
	}
	if err := w.history.prune(key); err != nil {
		return err
	}
	w.events = append(w.events, kv.Event{Type: kv.Delete, KV: kv.KV{Key: key, ModRevision: w.rev}})
	return nil
}

// deleteLeased deletes every key attached to one of leases, or to any
// lease at all when leases is nil.
func (w *writeTx) deleteLeased(leases []kv.LeaseID) error {
	var prefixes [][]byte
	if leases == nil {
		prefixes = [][]byte{nil}
	}
	for _, id := range leases {
		prefixes = append(prefixes, leasedPrefix(id))
	}
	for _, prefix := range prefixes {
		// Collect first: deleting moves the cursor.
		var keys []string
		c := w.leased.Cursor()
		k, _ := c.First()
		if prefix != nil {
			k, _ = c.Seek(prefix)
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, string(k[8:]))
		}
		for _, key := range keys {
			old, ok, err := getStored(w.tx, key)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := w.del(key, old); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish records the revision and drops the history of keys deleted long
// enough ago. It is the last step of a transaction that changed something.
func (w *writeTx) finish() error {
	if err := w.history.dropDeleted(w.deleted, w.rev); err != nil {
		return err
	}
	return metaOf(w.tx).put(metaRev, w.rev)
}

// leasedKey is the leased bucket's key for key attached to lease.
func leasedKey(lease kv.LeaseID, key string) []byte {
	return append(leasedPrefix(lease), key...)
}

func leasedPrefix(lease kv.LeaseID) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(lease))
}
