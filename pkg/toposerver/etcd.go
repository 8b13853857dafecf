package toposerver

import (
	"context"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/kv"
	"github.com/topod-io/topod/pkg/record"
)

// Defaults of the etcd endpoint's watch window (etcdapi.Journal).
const (
	DefaultEtcdWatchWindowEvents = 100000
	DefaultEtcdWatchWindowBytes  = 256 << 20
)

// assembledEntries bounds the cache of reassembled values: a few large
// files (a cell's SrvVSchema) changing at once.
const assembledEntries = 16

// etcdValues keeps the etcd endpoint's values as the plugin keeps files:
// contents over the inline limit as blobs (record.Encode), uploaded before
// the record that refers to them is written, and reassembled from topod's
// blob cache on reads. The last values reassembled are kept by their root
// (a record names its contents), so a change that many etcd clients watch
// or read is reassembled once, not once per client.
type etcdValues struct {
	s         *Server
	assembled *lru.Cache[string, []byte]
	loads     singleflight.Group
}

func newEtcdValues(s *Server) *etcdValues {
	c, _ := lru.New[string, []byte](assembledEntries) // only fails for a size below 1
	return &etcdValues{s: s, assembled: c}
}

// Encode is part of etcdapi.Values.
func (v *etcdValues) Encode(ctx context.Context, key string, contents []byte) ([]byte, error) {
	enc, err := record.Encode(key, contents, v.s.opts.InlineLimit)
	if err != nil {
		return nil, err
	}
	if len(enc.Blobs) == 0 {
		return enc.Value, nil
	}
	hashes := make([]content.Hash, 0, len(enc.Blobs))
	for h := range enc.Blobs {
		hashes = append(hashes, h)
	}
	missing, err := v.s.blobs.Refresh(ctx, hashes, v.s.refreshBefore())
	if err != nil {
		return nil, fmt.Errorf("put %s: blobs: %w", key, err)
	}
	for _, h := range missing {
		if err := v.s.blobs.Put(ctx, h, enc.Blobs[h]); err != nil {
			return nil, fmt.Errorf("put %s: blob %s: %w", key, h, err)
		}
	}
	return enc.Value, nil
}

// Decode is part of etcdapi.Values. The contents returned are shared:
// callers must not modify them.
func (v *etcdValues) Decode(ctx context.Context, key string, value []byte) ([]byte, error) {
	ref, err := record.Parse(value)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if ref == nil {
		return record.DecodeChecked(ctx, value, v.s.getBlob)
	}
	name := fmt.Sprintf("%d/%x/%d", ref.Codec, ref.Root, ref.Size)
	if contents, ok := v.assembled.Get(name); ok {
		return contents, nil
	}
	got, err, _ := v.loads.Do(name, func() (any, error) {
		// Shared by every caller asking meanwhile: not bounded by this
		// one's context (each blob read is bounded by blobLoadTimeout).
		contents, err := record.DecodeChecked(context.WithoutCancel(ctx), value, v.s.getBlob)
		if err == nil {
			v.assembled.Add(name, contents)
		}
		return contents, err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return got.([]byte), nil
}

func (b countingBackend) Txn(ctx context.Context, t kv.Txn) (kv.TxnResult, error) {
	b.count("txn")
	return b.Backend.Txn(ctx, t)
}

func (b countingBackend) CurrentRevision(ctx context.Context) (int64, error) {
	b.count("current_revision")
	return b.Backend.CurrentRevision(ctx)
}

func (b countingBackend) GrantLease(ctx context.Context, id kv.LeaseID, ttl time.Duration) (kv.LeaseID, time.Duration, error) {
	b.count("grant")
	return b.Backend.GrantLease(ctx, id, ttl)
}

func (b countingBackend) RenewLease(ctx context.Context, id kv.LeaseID) (time.Duration, error) {
	b.count("renew")
	return b.Backend.RenewLease(ctx, id)
}

func (b countingBackend) RevokeLease(ctx context.Context, id kv.LeaseID) error {
	b.count("revoke")
	return b.Backend.RevokeLease(ctx, id)
}

func (b countingBackend) LeaseTimeToLive(ctx context.Context, id kv.LeaseID, keys bool) (kv.LeaseStatus, error) {
	b.count("lease_time_to_live")
	return b.Backend.LeaseTimeToLive(ctx, id, keys)
}

func (b countingBackend) ListLeases(ctx context.Context) ([]kv.LeaseID, error) {
	b.count("list_leases")
	return b.Backend.ListLeases(ctx)
}
