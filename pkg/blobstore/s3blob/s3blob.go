// Package s3blob is the blob store on S3 or any S3-compatible object store
// (MinIO, Ceph RGW, ...), through github.com/minio/minio-go/v7.
//
// A blob is one object, keyed by its hash under a prefix and fanned out by
// the hash's first two hex digits:
//
//	PREFIX/ab/abcdef0123...   (the full 64-digit hash)
//	PREFIX/_topod/NAME        (meta objects: see GetMeta and PutMeta)
//
// A single PutObject stores it, which S3 makes atomic: the object appears
// whole or not at all. The upload carries the blob's SHA-256 as its
// x-amz-checksum-sha256, so a store that implements S3 checksums refuses
// bytes damaged in transit; every Get hashes what it read regardless.
//
// A blob's stored time is the object's LastModified (the S3 server's clock;
// a HEAD reports it to the second). Refresh resets it by copying the object
// onto itself with its metadata replaced (a server-side CopyObject: no data
// goes through topod), which S3 and MinIO treat as a new write. DeleteIfOlder
// is a StatObject then a RemoveObject: S3 has no delete conditional on the
// time, so a Refresh landing between the two (a few milliseconds) is lost
// and the blob deleted although the Refresh reported it present. That is
// garbage collection's residual window on S3 (see package blobgc); the file
// store has none. On a bucket with versioning enabled every refresh keeps
// a noncurrent version and a delete only adds a delete marker: use an
// unversioned bucket, or a lifecycle rule expiring noncurrent versions.
//
// Open checks, within a bounded time, that the endpoint answers, that it
// accepts the credentials and that the bucket exists and can be listed, so
// a misconfigured store fails at start with a message naming the endpoint
// and the bucket, not at the first write.
//
// It registers the "s3" scheme with package blobstore:
//
//	s3://BUCKET/PREFIX?endpoint=127.0.0.1:9000&secure=false&region=us-east-1
//
// endpoint defaults to s3.amazonaws.com, secure to true, region to what the
// server reports; checksum=false leaves out the x-amz-checksum-sha256 header
// for stores that refuse it. Credentials never go in the URL: they come from
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, or from the
// AWS-style shared credentials file named in blobstore.Options.
package s3blob

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
	"golang.org/x/sync/errgroup"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/content"
)

func init() {
	blobstore.Register("s3", openURL)
}

// Defaults for the zero fields of Config.
const (
	DefaultEndpoint    = "s3.amazonaws.com"
	DefaultMaxRetries  = 3
	DefaultConcurrency = 16
	// DialTimeout bounds each TCP connection attempt.
	DialTimeout = 5 * time.Second
	// maxPrealloc bounds the buffer Get sizes from the object's length
	// before reading it.
	maxPrealloc = 256 << 20
	// statResolution is how coarse a StatObject's LastModified may be
	// (HTTP dates are to the second): an object stated at T was stored at a
	// time in [T, T+statResolution).
	statResolution = time.Second
	// refreshedMeta is the user metadata a Refresh writes, with the time,
	// so that copying an object onto itself changes something.
	refreshedMeta = "Topod-Refreshed"
)

// Config says which bucket to use and how to reach it.
type Config struct {
	Endpoint string // host[:port]; DefaultEndpoint when empty
	Secure   bool   // HTTPS
	Region   string // empty: ask the server
	Bucket   string
	Prefix   string // key prefix, without leading or trailing slash; may be empty

	// Creds supplies the access key, secret key and session token. It is
	// required: anonymous access is refused.
	Creds *credentials.Credentials

	// Timeout bounds Open's checks; blobstore.DefaultTimeout when zero.
	Timeout time.Duration
	// MaxRetries is how many times a request is tried in all (minio-go
	// retries network errors and some S3 errors with a backoff);
	// DefaultMaxRetries when zero.
	MaxRetries int
	// Concurrency bounds the StatObject calls Missing makes at a time;
	// DefaultConcurrency when zero.
	Concurrency int
	// NoChecksum leaves out the x-amz-checksum-sha256 header on uploads,
	// for S3-compatible stores that refuse it.
	NoChecksum bool
}

// Store is a blobstore.Store on an S3 bucket.
type Store struct {
	client    *minio.Client
	core      minio.Core
	transport *http.Transport
	cfg       Config
	where     string // "bucket BUCKET/PREFIX at ENDPOINT", for errors
}

var _ blobstore.Store = (*Store)(nil)

// ParseURL turns an s3:// URL (see the package documentation) and the
// credential options into a Config.
func ParseURL(u *url.URL, opts blobstore.Options) (Config, error) {
	if !strings.EqualFold(u.Scheme, "s3") {
		return Config{}, fmt.Errorf("not an s3 URL: scheme %q", u.Scheme)
	}
	if u.User != nil {
		return Config{}, errors.New("s3 URL must not carry credentials: use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a credentials file")
	}
	if u.Opaque != "" || u.Host == "" {
		return Config{}, errors.New("s3 URL has no bucket: want s3://BUCKET/PREFIX")
	}
	cfg := Config{
		Endpoint: DefaultEndpoint,
		Secure:   true,
		Bucket:   u.Host,
		Prefix:   strings.Trim(u.Path, "/"),
		Timeout:  opts.Timeout,
	}
	for key, vals := range u.Query() {
		if len(vals) != 1 {
			return Config{}, fmt.Errorf("s3 URL parameter %q given %d times", key, len(vals))
		}
		v := vals[0]
		switch key {
		case "endpoint":
			if v == "" || strings.Contains(v, "/") {
				return Config{}, fmt.Errorf("s3 URL parameter endpoint=%q: want host or host:port", v)
			}
			cfg.Endpoint = v
		case "secure":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Config{}, fmt.Errorf("s3 URL parameter secure=%q: want true or false", v)
			}
			cfg.Secure = b
		case "region":
			cfg.Region = v
		case "checksum":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Config{}, fmt.Errorf("s3 URL parameter checksum=%q: want true or false", v)
			}
			cfg.NoChecksum = !b
		default:
			return Config{}, fmt.Errorf("s3 URL has unknown parameter %q (known: endpoint, secure, region, checksum)", key)
		}
	}
	if opts.CredentialsFile != "" {
		cfg.Creds = credentials.NewFileAWSCredentials(opts.CredentialsFile, opts.CredentialsProfile)
	} else {
		cfg.Creds = credentials.NewEnvAWS()
	}
	return cfg, nil
}

func openURL(ctx context.Context, u *url.URL, opts blobstore.Options) (blobstore.Store, error) {
	cfg, err := ParseURL(u, opts)
	if err != nil {
		return nil, err
	}
	credSource := "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
	if opts.CredentialsFile != "" {
		credSource = fmt.Sprintf("credentials file %s", opts.CredentialsFile)
		if opts.CredentialsProfile != "" {
			credSource += fmt.Sprintf(" (profile %s)", opts.CredentialsProfile)
		}
	}
	if err := checkCreds(cfg.Creds); err != nil {
		return nil, fmt.Errorf("s3 credentials from %s: %w", credSource, err)
	}
	return Open(ctx, cfg)
}

// checkCreds reads the credentials once, so that a missing file or an
// empty key fails clearly before any request.
func checkCreds(c *credentials.Credentials) error {
	if c == nil {
		return errors.New("no credentials given")
	}
	v, err := c.Get()
	if err != nil {
		return err
	}
	if v.AccessKeyID == "" || v.SecretAccessKey == "" {
		return errors.New("no access key and secret key found")
	}
	return nil
}

// Open connects to the bucket cfg names and checks, within cfg.Timeout,
// that it is reachable, accepts the credentials, exists and can be listed.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	cfg.Prefix = strings.Trim(cfg.Prefix, "/")
	if cfg.Timeout <= 0 {
		cfg.Timeout = blobstore.DefaultTimeout
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	scheme := "http"
	if cfg.Secure {
		scheme = "https"
	}
	where := fmt.Sprintf("bucket %q (prefix %q) at %s://%s", cfg.Bucket, cfg.Prefix, scheme, cfg.Endpoint)
	if err := s3utils.CheckValidBucketName(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("s3 %s: %w", where, err)
	}
	if err := checkCreds(cfg.Creds); err != nil {
		return nil, fmt.Errorf("s3 %s: credentials: %w", where, err)
	}
	tr, err := minio.DefaultTransport(cfg.Secure)
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", where, err)
	}
	tr.DialContext = (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      cfg.Creds,
		Secure:     cfg.Secure,
		Region:     cfg.Region,
		Transport:  tr,
		MaxRetries: cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", where, err)
	}
	s := &Store{client: client, core: minio.Core{Client: client}, transport: tr, cfg: cfg, where: where}
	if err := s.check(ctx); err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("s3 %s: %w", where, err)
	}
	return s, nil
}

// check lists at most one key under the prefix: that needs the endpoint
// to answer, the credentials to be valid and the bucket to exist and be
// readable, and its error codes tell which failed.
func (s *Store) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	exists, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err == nil && !exists {
		return errors.New("bucket does not exist")
	}
	if err == nil {
		err = s.listOne(ctx)
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("no answer within %v: %w", s.cfg.Timeout, err)
	}
	var urlErr *url.Error
	switch code := minio.ToErrorResponse(err).Code; {
	case code == "" && errors.As(err, &urlErr):
		return fmt.Errorf("cannot reach the endpoint: %w", err)
	case code == "":
		return fmt.Errorf("bucket check failed: %w", err)
	case code == "NoSuchBucket":
		return errors.New("bucket does not exist")
	case code == "InvalidAccessKeyId":
		return fmt.Errorf("access key refused (unknown to the server): %w", err)
	case code == "SignatureDoesNotMatch":
		return fmt.Errorf("credentials refused (wrong secret key): %w", err)
	case code == "AccessDenied":
		return fmt.Errorf("access denied: wrong credentials, or no permission to list the bucket: %w", err)
	default:
		return fmt.Errorf("bucket check failed (%s): %w", code, err)
	}
}

func (s *Store) listOne(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the lister goroutine after the first page
	prefix := ""
	if s.cfg.Prefix != "" {
		prefix = s.cfg.Prefix + "/"
	}
	for obj := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, MaxKeys: 1}) {
		return obj.Err
	}
	return nil
}

// Key returns the object key of blob h.
func (s *Store) Key(h content.Hash) string {
	name := h.String()
	if s.cfg.Prefix == "" {
		return name[:2] + "/" + name
	}
	return s.cfg.Prefix + "/" + name[:2] + "/" + name
}

// Bucket returns the store's bucket.
func (s *Store) Bucket() string { return s.cfg.Bucket }

// Client returns the minio-go client the store uses.
func (s *Store) Client() *minio.Client { return s.client }

// objErr wraps an error of a request about key with where it went.
func (s *Store) objErr(op, key string, err error) error {
	return fmt.Errorf("s3 %s %q in %s: %w", op, key, s.where, err)
}

func isNotFound(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == minio.NoSuchKey || code == "NotFound"
}

// stat returns the size of the object holding h, or -1 when there is none.
func (s *Store) stat(ctx context.Context, h content.Hash) (int64, error) {
	info, err := s.statInfo(ctx, h)
	if err != nil || info == nil {
		return -1, err
	}
	return info.Size, nil
}

// statInfo returns the object holding h, or nil when there is none.
func (s *Store) statInfo(ctx context.Context, h content.Hash) (*minio.ObjectInfo, error) {
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, s.Key(h), minio.StatObjectOptions{})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, s.objErr("stat", s.Key(h), err)
	}
	return &info, nil
}

// Missing implements blobstore.Store: one StatObject per distinct hash,
// Config.Concurrency at a time.
func (s *Store) Missing(ctx context.Context, hashes []content.Hash) ([]content.Hash, error) {
	missing, err := s.each(ctx, hashes, func(ctx context.Context, h content.Hash) (bool, error) {
		size, err := s.stat(ctx, h)
		return size >= 0, err
	})
	if err != nil {
		return nil, fmt.Errorf("missing blobs: %w", err)
	}
	return missing, nil
}

// Refresh implements blobstore.Store: one StatObject per distinct hash and,
// for an object older than olderThan, a CopyObject of it onto itself with
// replaced metadata, which gives it a new LastModified. An object deleted
// between the two is reported missing.
func (s *Store) Refresh(ctx context.Context, hashes []content.Hash, olderThan time.Time) ([]content.Hash, error) {
	missing, err := s.each(ctx, hashes, func(ctx context.Context, h content.Hash) (bool, error) {
		info, err := s.statInfo(ctx, h)
		if err != nil || info == nil {
			return false, err
		}
		if !info.LastModified.Before(olderThan) {
			return true, nil
		}
		return s.touch(ctx, h)
	})
	if err != nil {
		return nil, fmt.Errorf("refresh blobs: %w", err)
	}
	return missing, nil
}

// touch copies blob h's object onto itself, replacing its metadata, and
// says whether it was there to copy.
func (s *Store) touch(ctx context.Context, h content.Hash) (bool, error) {
	key := s.Key(h)
	_, err := s.client.CopyObject(ctx,
		minio.CopyDestOptions{
			Bucket:          s.cfg.Bucket,
			Object:          key,
			ReplaceMetadata: true,
			UserMetadata:    map[string]string{refreshedMeta: time.Now().UTC().Format(time.RFC3339Nano)},
			ContentType:     "application/octet-stream",
		},
		minio.CopySrcOptions{Bucket: s.cfg.Bucket, Object: key})
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("refresh blob %s: %w", h, s.objErr("copy", key, err))
	}
	return true, nil
}

// each runs present for every distinct hash, Config.Concurrency at a
// time, and returns those it found absent, in the order given.
func (s *Store) each(ctx context.Context, hashes []content.Hash, present func(context.Context, content.Hash) (bool, error)) ([]content.Hash, error) {
	var uniq []content.Hash
	seen := make(map[content.Hash]bool, len(hashes))
	for _, h := range hashes {
		if !seen[h] {
			seen[h] = true
			uniq = append(uniq, h)
		}
	}
	absent := make([]bool, len(uniq))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.Concurrency)
	for i, h := range uniq {
		g.Go(func() error {
			ok, err := present(gctx, h)
			if err != nil {
				return err
			}
			absent[i] = !ok
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var missing []content.Hash
	for i, h := range uniq {
		if absent[i] {
			missing = append(missing, h)
		}
	}
	return missing, nil
}

// Put implements blobstore.Store: a StatObject, then, unless an object of
// the right size is there, one PutObject.
func (s *Store) Put(ctx context.Context, h content.Hash, data []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put blob %s: %w", h, err)
	}
	if got := content.Sum(data); got != h {
		return fmt.Errorf("put blob %s: %d bytes hash to %s: %w", h, len(data), got, blobstore.ErrHashMismatch)
	}
	size, err := s.stat(ctx, h)
	if err != nil {
		return fmt.Errorf("put blob %s: %w", h, err)
	}
	if size == int64(len(data)) {
		return nil // already stored
	}
	key := s.Key(h)
	opts := minio.PutObjectOptions{
		ContentType:      "application/octet-stream",
		DisableMultipart: true, // one request: atomic, and checked whole by the checksum
	}
	if !s.cfg.NoChecksum {
		opts.UserMetadata = map[string]string{"X-Amz-Checksum-Sha256": base64.StdEncoding.EncodeToString(h[:])}
	}
	_, err = s.client.PutObject(ctx, s.cfg.Bucket, key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		return fmt.Errorf("put blob %s: %w", h, s.objErr("put", key, err))
	}
	return nil
}

// Get implements blobstore.Store.
func (s *Store) Get(ctx context.Context, h content.Hash) ([]byte, error) {
	key := s.Key(h)
	body, info, _, err := s.core.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if isNotFound(err) {
		return nil, fmt.Errorf("get blob %s: %w", h, blobstore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get blob %s: %w", h, s.objErr("get", key, err))
	}
	defer body.Close()
	var buf bytes.Buffer
	if info.Size > 0 && info.Size <= maxPrealloc {
		buf.Grow(int(info.Size))
	}
	if _, err := buf.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("get blob %s: %w", h, s.objErr("read", key, err))
	}
	data := buf.Bytes()
	if got := content.Sum(data); got != h {
		return nil, fmt.Errorf("get blob %s: object %q in %s holds %d bytes hashing to %s: %w", h, key, s.where, len(data), got, blobstore.ErrCorrupt)
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// Delete implements blobstore.Store.
func (s *Store) Delete(ctx context.Context, h content.Hash) error {
	key := s.Key(h)
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, key, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete blob %s: %w", h, s.objErr("delete", key, err))
	}
	return nil
}

// DeleteIfOlder implements blobstore.Store: a StatObject, then a
// RemoveObject if the object was stored before before (allowing for the
// stat's one-second resolution). A Refresh between the two is lost: see the
// package documentation.
func (s *Store) DeleteIfOlder(ctx context.Context, h content.Hash, before time.Time) (bool, error) {
	info, err := s.statInfo(ctx, h)
	if err != nil {
		return false, fmt.Errorf("delete blob %s: %w", h, err)
	}
	if info == nil || !info.LastModified.Add(statResolution).Before(before) {
		return false, nil
	}
	if err := s.Delete(ctx, h); err != nil {
		return false, err
	}
	return true, nil
}

// Walk implements blobstore.Store with a recursive listing of the prefix,
// in key order. Keys that are not blobs in their right fan-out "directory"
// are skipped.
func (s *Store) Walk(ctx context.Context, fn func(h content.Hash, size int64, modTime time.Time) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the lister goroutine when fn stops the walk
	prefix := ""
	if s.cfg.Prefix != "" {
		prefix = s.cfg.Prefix + "/"
	}
	for obj := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return fmt.Errorf("walk blobs in %s: %w", s.where, obj.Err)
		}
		rest := strings.TrimPrefix(obj.Key, prefix)
		fan, name, ok := strings.Cut(rest, "/")
		if !ok || len(fan) != 2 || !strings.HasPrefix(name, fan) || strings.ToLower(name) != name {
			continue
		}
		h, err := content.Parse(name)
		if err != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("walk blobs in %s: %w", s.where, err)
		}
		if err := fn(h, obj.Size, obj.LastModified); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("walk blobs in %s: %w", s.where, err)
	}
	return nil
}

// Close implements blobstore.Store: it closes idle connections.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}
