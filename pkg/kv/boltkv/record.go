package boltkv

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/topod-io/topod/pkg/kv"
)

// Buckets of the file (see the package comment).
var (
	bucketMeta    = []byte("meta")
	bucketKV      = []byte("kv")
	bucketHistory = []byte("history")
	bucketLeased  = []byte("leased")
	bucketDeleted = []byte("deleted")

	allBuckets = [][]byte{bucketMeta, bucketKV, bucketHistory, bucketLeased, bucketDeleted}
)

// Keys of the meta bucket, each holding a big-endian uint64.
var (
	metaRev       = []byte("rev")       // last committed revision
	metaEpoch     = []byte("epoch")     // lease epoch of the last Open
	metaCompacted = []byte("compacted") // deleted keys' history dropped up to here
)

// meta reads and writes the meta bucket's counters.
type meta struct{ b *bolt.Bucket }

func metaOf(tx *bolt.Tx) meta { return meta{tx.Bucket(bucketMeta)} }

func (m meta) get(name []byte) int64 {
	v := m.b.Get(name)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func (m meta) put(name []byte, n int64) error {
	return m.b.Put(name, be64(n))
}

func be64(n int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(n))
}

// record is one version of a key as stored in the kv and history buckets.
// A tombstone marks, in history, the revision where the key was deleted.
type record struct {
	value     []byte
	modRev    int64
	createRev int64
	// version counts the writes since the key was created: 1 for a new
	// key (etcd's Version). A record of the first format, which did not
	// keep it, reads as 1.
	version   int64
	lease     kv.LeaseID
	tombstone bool
}

// Record encoding: a flags byte, then uvarints modRev, createRev, lease
// and version, then the value, to the end. The first format
// (recordFormatV1) had no version.
const (
	flagTombstone byte = 1 << 0
	// recordFormat is the version of the encoding, in the flags' high bits.
	recordFormat   byte = 2 << 4
	recordFormatV1 byte = 1 << 4
	formatMask     byte = 0xf0
)

var errCorrupt = errors.New("corrupt record")

func (r record) encode() []byte {
	buf := make([]byte, 0, 1+4*binary.MaxVarintLen64+len(r.value))
	flags := recordFormat
	if r.tombstone {
		flags |= flagTombstone
	}
	buf = append(buf, flags)
	buf = binary.AppendUvarint(buf, uint64(r.modRev))
	buf = binary.AppendUvarint(buf, uint64(r.createRev))
	buf = binary.AppendUvarint(buf, uint64(r.lease))
	buf = binary.AppendUvarint(buf, uint64(r.version))
	return append(buf, r.value...)
}

// decodeRecord decodes buf, of either format. With withValue, the value is
// copied out of buf (bolt's memory is only valid within its transaction);
// without, it is nil.
func decodeRecord(buf []byte, withValue bool) (record, error) {
	if len(buf) < 1 {
		return record{}, errCorrupt
	}
	var fields [4]uint64
	count := len(fields)
	switch buf[0] & formatMask {
	case recordFormat:
	case recordFormatV1:
		count = 3 // no version: it reads as 1
	default:
		return record{}, errCorrupt
	}
	r := record{tombstone: buf[0]&flagTombstone != 0, version: 1}
	rest := buf[1:]
	for i := range count {
		n, size := binary.Uvarint(rest)
		if size <= 0 {
			return record{}, errCorrupt
		}
		fields[i], rest = n, rest[size:]
	}
	r.modRev, r.createRev, r.lease = int64(fields[0]), int64(fields[1]), kv.LeaseID(fields[2])
	if count == len(fields) {
		r.version = int64(fields[3])
	}
	if withValue {
		r.value = append(make([]byte, 0, len(rest)), rest...)
	}
	return r, nil
}

// kvOf returns key's state as a kv.KV.
func (r record) kvOf(key string) kv.KV {
	return kv.KV{Key: key, Value: r.value, ModRevision: r.modRev, CreateRevision: r.createRev, Version: r.version, Lease: r.lease}
}

// getRecord reads key from the kv bucket: ok false if it is missing.
func getRecord(tx *bolt.Tx, key string, withValue bool) (r record, ok bool, err error) {
	buf := tx.Bucket(bucketKV).Get([]byte(key))
	if buf == nil {
		return record{}, false, nil
	}
	r, err = decodeRecord(buf, withValue)
	if err != nil {
		return record{}, false, fmt.Errorf("key %q: %w", key, err)
	}
	return r, true, nil
}

// stored is a key's current record as a write transaction reads it: the
// decoded revisions and lease, and the encoded bytes (in bolt's memory, valid
// for the transaction), which move to history as they are.
type stored struct {
	record
	raw []byte
}

// getStored reads key's current record for a write: ok false if missing.
func getStored(tx *bolt.Tx, key string) (s stored, ok bool, err error) {
	buf := tx.Bucket(bucketKV).Get([]byte(key))
	if buf == nil {
		return stored{}, false, nil
	}
	r, err := decodeRecord(buf, false)
	if err != nil {
		return stored{}, false, fmt.Errorf("key %q: %w", key, err)
	}
	return stored{record: r, raw: buf}, true, nil
}
