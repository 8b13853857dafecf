package etcdkv

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/topod-io/topod/pkg/kv"
)

// This file holds the reads and writes of single keys and listings. Every
// conditional write is one etcd transaction; the revision a write returns is
// the revision of the transaction's response header, which is the
// ModRevision the write gave the key.

// Get returns key's current state, or kv.ErrNotFound.
func (b *Backend) Get(ctx context.Context, key string) (kv.KV, error) {
	const op = "get"
	if err := b.checkOpen(op, key); err != nil {
		return kv.KV{}, err
	}
	resp, err := b.cli.Get(ctx, key)
	if err != nil {
		return kv.KV{}, b.wrap(op, key, err)
	}
	if len(resp.Kvs) == 0 {
		return kv.KV{}, fail(op, key, kv.ErrNotFound)
	}
	return fromEtcd(resp.Kvs[0]), nil
}

// GetRevision returns key's value at revision rev: kv.ErrNotFound if it did
// not exist then, kv.ErrCompacted if etcd compacted that revision away.
func (b *Backend) GetRevision(ctx context.Context, key string, rev int64) ([]byte, error) {
	op := fmt.Sprintf("get at revision %d", rev)
	if err := b.checkOpen(op, key); err != nil {
		return nil, err
	}
	resp, err := b.cli.Get(ctx, key, clientv3.WithRev(rev))
	if err != nil {
		return nil, b.wrap(op, key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fail(op, key, kv.ErrNotFound)
	}
	return resp.Kvs[0].Value, nil
}

// List returns the keys starting with prefix (a raw byte prefix), sorted by
// key, and the revision the listing was read at.
func (b *Backend) List(ctx context.Context, prefix string, keysOnly bool) ([]kv.KV, int64, error) {
	const op = "list"
	if err := b.checkOpen(op, prefix); err != nil {
		return nil, 0, err
	}
	opts := []clientv3.OpOption{
		clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend),
	}
	if keysOnly {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	resp, err := b.cli.Get(ctx, prefix, opts...)
	if err != nil {
		return nil, 0, b.wrap(op, prefix, err)
	}
	kvs := make([]kv.KV, len(resp.Kvs))
	for i, ekv := range resp.Kvs {
		kvs[i] = fromEtcd(ekv)
		if keysOnly {
			kvs[i].Value = nil
		}
	}
	return kvs, resp.Header.Revision, nil
}

// Create writes key if it has never been created or was deleted since
// (etcd's CreateRevision is 0), attached to lease if lease is not 0.
func (b *Backend) Create(ctx context.Context, key string, value []byte, lease kv.LeaseID) (int64, error) {
	const op = "create"
	if err := b.checkOpen(op, key); err != nil {
		return 0, err
	}
	var opts []clientv3.OpOption
	if lease != 0 {
		opts = append(opts, clientv3.WithLease(clientv3.LeaseID(lease)))
	}
	resp, err := b.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(value), opts...)).
		Commit()
	if err != nil {
		return 0, b.wrap(op, key, err)
	}
	if !resp.Succeeded {
		return 0, fail(op, key, kv.ErrExists)
	}
	return resp.Header.Revision, nil
}

// Update writes key: unconditionally with version 0 (creating it if
// missing), otherwise only over ModRevision == version (kv.ErrBadVersion if
// the key is at another version or missing). An existing key keeps its
// lease, as in the bolt backend: a plain etcd Put would detach it.
func (b *Backend) Update(ctx context.Context, key string, value []byte, version int64) (int64, error) {
	const op = "update"
	if err := b.checkOpen(op, key); err != nil {
		return 0, err
	}
	if version == 0 {
		rev, err := b.put(ctx, key, string(value))
		return rev, b.wrap(op, key, err)
	}
	resp, err := b.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", version)).
		Then(clientv3.OpPut(key, string(value), clientv3.WithIgnoreLease())).
		Commit()
	if err != nil {
		return 0, b.wrap(op, key, err)
	}
	if !resp.Succeeded {
		return 0, fail(op, key, kv.ErrBadVersion)
	}
	return resp.Header.Revision, nil
}

// put writes key unconditionally, keeping the lease of an existing key. etcd
// can do either "keep the lease" (which fails on a missing key) or "create",
// not both in one request without sending the value twice, so put tries the
// first and falls back to the second, until one of them applies.
func (b *Backend) put(ctx context.Context, key, value string) (int64, error) {
	for {
		resp, err := b.cli.Put(ctx, key, value, clientv3.WithIgnoreLease())
		if err == nil {
			return resp.Header.Revision, nil
		}
		if !errors.Is(err, rpctypes.ErrKeyNotFound) {
			return 0, err
		}
		tresp, err := b.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, value)).
			Commit()
		if err != nil {
			return 0, err
		}
		if tresp.Succeeded {
			return tresp.Header.Revision, nil
		}
		// Created in between: keep that key's lease.
	}
}

// Delete removes key: kv.ErrNotFound if it is missing; with version != 0,
// kv.ErrBadVersion if the key is at another version. A failed conditional
// delete reads the key in the same transaction to tell the two apart. It
// returns the revision of the delete.
func (b *Backend) Delete(ctx context.Context, key string, version int64) (int64, error) {
	const op = "delete"
	if err := b.checkOpen(op, key); err != nil {
		return 0, err
	}
	if version == 0 {
		resp, err := b.cli.Delete(ctx, key)
		if err != nil {
			return 0, b.wrap(op, key, err)
		}
		if resp.Deleted == 0 {
			return 0, fail(op, key, kv.ErrNotFound)
		}
		return resp.Header.Revision, nil
	}
	resp, err := b.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", version)).
		Then(clientv3.OpDelete(key)).
		Else(clientv3.OpGet(key, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return 0, b.wrap(op, key, err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	if len(resp.Responses) == 1 {
		if get := resp.Responses[0].GetResponseRange(); get != nil && get.Count == 0 {
			return 0, fail(op, key, kv.ErrNotFound)
		}
	}
	return 0, fail(op, key, kv.ErrBadVersion)
}

// fromEtcd converts an etcd key-value.
func fromEtcd(ekv *mvccpb.KeyValue) kv.KV {
	return kv.KV{
		Key:            string(ekv.Key),
		Value:          ekv.Value,
		ModRevision:    ekv.ModRevision,
		CreateRevision: ekv.CreateRevision,
		Version:        ekv.Version,
		Lease:          kv.LeaseID(ekv.Lease),
	}
}
