package inspect

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/kv"
)

// Direct is a Source on a backend and a blob store themselves: for a topod
// that is down (bolt's file is held by the topod serving it), or beside
// one on etcd. It only reads.
type Direct struct {
	backend kv.Backend
	store   blobstore.Store
	name    string
}

var (
	_ Source    = (*Direct)(nil)
	_ Historian = (*Direct)(nil)
)

// NewDirect reads backend and store; name describes them for messages
// (their URLs). They stay the caller's to close.
func NewDirect(backend kv.Backend, store blobstore.Store, name string) *Direct {
	return &Direct{backend: backend, store: store, name: name}
}

// String is part of Source.
func (d *Direct) String() string { return d.name }

// Backend is the backend d reads (for Blobs).
func (d *Direct) Backend() kv.Backend { return d.backend }

// Store is the blob store d reads (for Blobs).
func (d *Direct) Store() blobstore.Store { return d.store }

// Get is part of Source.
func (d *Direct) Get(ctx context.Context, key string) (Value, error) {
	e, err := d.backend.Get(ctx, key)
	if err != nil {
		return Value{}, d.wrap(key, err)
	}
	return Value{Key: e.Key, Raw: e.Value, Version: e.ModRevision}, nil
}

// GetVersion is part of Source.
func (d *Direct) GetVersion(ctx context.Context, key string, version int64) (Value, error) {
	raw, err := d.backend.GetRevision(ctx, key, version)
	if err != nil {
		return Value{}, d.wrap(fmt.Sprintf("%s at version %d", key, version), err)
	}
	return Value{Key: key, Raw: raw, Version: version}, nil
}

// List is part of Source.
func (d *Direct) List(ctx context.Context, prefix string) ([]Value, error) {
	kvs, _, err := d.backend.List(ctx, prefix, false)
	if err != nil {
		return nil, d.wrap(prefix, err)
	}
	out := make([]Value, len(kvs))
	for i, e := range kvs {
		out[i] = Value{Key: e.Key, Raw: e.Value, Version: e.ModRevision}
	}
	return out, nil
}

// Blob is part of Source.
func (d *Direct) Blob(ctx context.Context, h content.Hash) ([]byte, error) {
	data, err := d.store.Get(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("blob store of %s: %w", d.name, err)
	}
	return data, nil
}

// History is part of Historian: the backend's retained past values of key,
// oldest first.
func (d *Direct) History(ctx context.Context, key string) ([]Value, error) {
	var out []Value
	err := d.backend.History(ctx, key, func(e kv.KV) error {
		if e.Key == key {
			out = append(out, Value{Key: e.Key, Raw: e.Value, Version: e.ModRevision})
		}
		return nil
	})
	if err != nil {
		return nil, d.wrap(key, err)
	}
	slices.SortFunc(out, func(a, b Value) int { return cmp.Compare(a.Version, b.Version) })
	return out, nil
}

// wrap turns the backend's errors into the package's, naming what was read
// and where.
func (d *Direct) wrap(what string, err error) error {
	switch {
	case errors.Is(err, kv.ErrNotFound):
		return fmt.Errorf("%s: %w in %s", what, ErrNotFound, d.name)
	case errors.Is(err, kv.ErrCompacted):
		return fmt.Errorf("%s: %w (%s)", what, ErrVersionGone, d.name)
	case strings.Contains(err.Error(), "required revision is a future revision"):
		return fmt.Errorf("%s: %w: no such version yet (%s)", what, ErrNotFound, d.name)
	}
	return fmt.Errorf("%s: %s: %w", d.name, what, err)
}
