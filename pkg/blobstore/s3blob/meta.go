package s3blob

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"github.com/topod-io/topod/pkg/blobstore"
)

// maxMetaBytes bounds what GetMeta reads: meta objects are small records.
const maxMetaBytes = 1 << 20

// MetaKey returns the object key of meta object name.
func (s *Store) MetaKey(name string) string {
	if s.cfg.Prefix == "" {
		return blobstore.MetaDir + "/" + name
	}
	return s.cfg.Prefix + "/" + blobstore.MetaDir + "/" + name
}

// GetMeta implements blobstore.Store: a GetObject of PREFIX/_topod/NAME.
// The version is the object's ETag.
func (s *Store) GetMeta(ctx context.Context, name string) ([]byte, string, error) {
	if err := blobstore.CheckMetaName(name); err != nil {
		return nil, "", fmt.Errorf("get meta: %w", err)
	}
	key := s.MetaKey(name)
	body, info, _, err := s.core.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if isNotFound(err) {
		return nil, "", fmt.Errorf("get meta: %w", s.objErr("get", key, blobstore.ErrNotFound))
	}
	if err != nil {
		return nil, "", fmt.Errorf("get meta: %w", s.objErr("get", key, err))
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, maxMetaBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("get meta: %w", s.objErr("read", key, err))
	}
	if len(data) > maxMetaBytes {
		return nil, "", fmt.Errorf("get meta: %w", s.objErr("read", key, fmt.Errorf("over %d bytes: not a meta object", maxMetaBytes)))
	}
	if info.ETag == "" {
		return nil, "", fmt.Errorf("get meta: %w", s.objErr("get", key, fmt.Errorf("the store returned no ETag")))
	}
	return data, info.ETag, nil
}

// PutMeta implements blobstore.Store with one conditional PutObject: a
// create sends If-None-Match: *, a replace If-Match: "version" (the
// ETag), and the store answers 412 Precondition Failed (or 409
// ConditionalRequestConflict, AWS's answer to concurrent conditional
// writes) when the condition does not hold. MinIO and AWS S3 (since
// 2024) honor both headers; a store that ignores them turns PutMeta into
// a blind overwrite, which S3-compatible stores must not be trusted not to
// do: see package blobgc for how the owner record narrows that race. A
// request whose answer was lost and that minio-go retried may report a
// conflict for a write it did make: callers read the object back.
func (s *Store) PutMeta(ctx context.Context, name string, data []byte, version string) error {
	if err := blobstore.CheckMetaName(name); err != nil {
		return fmt.Errorf("put meta: %w", err)
	}
	key := s.MetaKey(name)
	opts := minio.PutObjectOptions{
		ContentType:      "application/json",
		DisableMultipart: true,
		SendContentMd5:   true,
	}
	if version == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(version)
	}
	_, err := s.client.PutObject(ctx, s.cfg.Bucket, key, bytes.NewReader(data), int64(len(data)), opts)
	switch code := minio.ToErrorResponse(err).Code; {
	case err == nil:
		return nil
	case code == minio.PreconditionFailed || code == "ConditionalRequestConflict":
		what := "exists"
		if version != "" {
			what = "not at version " + version
		}
		return fmt.Errorf("put meta: %w", s.objErr("put", key, fmt.Errorf("%s: %w", what, blobstore.ErrMetaConflict)))
	case version != "" && isNotFound(err):
		return fmt.Errorf("put meta: %w", s.objErr("put", key, fmt.Errorf("gone, want version %s: %w", version, blobstore.ErrMetaConflict)))
	default:
		return fmt.Errorf("put meta: %w", s.objErr("put", key, err))
	}
}
