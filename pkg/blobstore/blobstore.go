// Package blobstore stores immutable, content-addressed blobs: byte strings
// named by their SHA-256 digest (a content.Hash).
//
// A Store checks the content against the name in both directions: Put
// refuses data that does not hash to the name it is given (ErrHashMismatch)
// and Get hashes what it reads back and refuses to return anything that
// does not match (ErrCorrupt). A caller therefore never gets wrong content,
// only an error naming the damaged blob. Put is atomic (a concurrent reader
// sees the whole blob or no blob) and idempotent (storing a blob that is
// already there is a cheap no-op), so writers can upload the blobs a
// record will reference first, in any order and concurrently, and publish
// the record afterwards.
//
// Implementations live in subpackages and register a URL scheme with
// Register in their init function, in the manner of database/sql drivers:
//
//	import (
//		_ "github.com/topod-io/topod/pkg/blobstore/fileblob" // file:///var/lib/topod/blobs
//		_ "github.com/topod-io/topod/pkg/blobstore/s3blob"   // s3://bucket/prefix?endpoint=host:9000
//	)
//
//	store, err := blobstore.Open(ctx, rawURL, blobstore.Options{})
//
// Package blobtest holds the conformance suite every implementation passes.
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/topod-io/topod/pkg/content"
)

// Errors returned, wrapped with the operation and the blob's hash, by every
// Store. Test for them with errors.Is.
var (
	// ErrNotFound: no blob is stored under the hash.
	ErrNotFound = errors.New("blob not found")
	// ErrCorrupt: the stored bytes do not hash to the blob's name. The
	// store returns no data with it.
	ErrCorrupt = errors.New("stored blob does not match its hash")
	// ErrHashMismatch: Put was given data that does not hash to the given
	// name. Nothing was stored.
	ErrHashMismatch = errors.New("data does not match the blob hash")
	// ErrMetaConflict: PutMeta found the meta object in another state than
	// the one it was conditioned on (present when it was to be created,
	// changed or gone when it was to be replaced). Nothing was written.
	ErrMetaConflict = errors.New("meta object already exists or changed")
)

// MetaDir is where a store keeps its meta objects, beside its blobs:
// DIR/_topod/NAME in a file store, PREFIX/_topod/NAME in a bucket. It is
// not a blob's fan-out directory (two hex digits), so Walk never reports
// what is in it, and garbage collection never deletes it.
const MetaDir = "_topod"

// CheckMetaName says whether name can name a meta object: 1 to 64 of
// a-z, 0-9, '.', '_' and '-', not starting with a dot.
func CheckMetaName(name string) error {
	if name == "" || len(name) > 64 || name[0] == '.' {
		return fmt.Errorf("meta object name %q: want 1 to 64 characters of a-z, 0-9, '.', '_', '-', not starting with '.'", name)
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("meta object name %q: want 1 to 64 characters of a-z, 0-9, '.', '_', '-', not starting with '.'", name)
		}
	}
	return nil
}

// Store is a store of immutable blobs named by their content hash. All
// methods are safe for concurrent use, also by several processes sharing
// the same storage.
type Store interface {
	// Missing returns those of hashes that are not stored, in the order
	// given, each once. It checks presence only, not content.
	Missing(ctx context.Context, hashes []content.Hash) ([]content.Hash, error)

	// Put stores data under h. It fails with ErrHashMismatch, storing
	// nothing, unless content.Sum(data) == h. It is atomic: no reader ever
	// sees part of a blob. A Put of a blob already stored with the same
	// size is a cheap no-op; a stored blob of a different size (damaged) is
	// replaced. Put does not keep data. A Put of a blob already stored does
	// not change its stored time: writers that must keep it use Refresh.
	Put(ctx context.Context, h content.Hash, data []byte) error

	// Get returns the blob stored under h, having checked that it hashes
	// to h: ErrNotFound if there is none, ErrCorrupt (and no data) if the
	// stored bytes do not match. The caller owns the returned slice.
	Get(ctx context.Context, h content.Hash) ([]byte, error)

	// Delete removes the blob stored under h. Deleting a blob that is not
	// stored is not an error.
	Delete(ctx context.Context, h content.Hash) error

	// Walk calls fn for every stored blob with its size and the time it was
	// stored (or last refreshed), until fn returns an error, which Walk then
	// returns. Blobs put or deleted during the walk may or may not be seen.
	Walk(ctx context.Context, fn func(h content.Hash, size int64, modTime time.Time) error) error

	// Refresh is Missing that also keeps the blobs it finds: those of
	// hashes stored before olderThan get their stored time (the modTime
	// Walk reports) reset to now. A writer calls it (through topod's
	// MissingBlobs) before it publishes a record referring to blobs it did
	// not upload, so that garbage collection, which deletes only blobs
	// unreferenced and stored long enough ago, leaves them alone until the
	// record is there to mark them. Contents are not changed or checked.
	Refresh(ctx context.Context, hashes []content.Hash, olderThan time.Time) (missing []content.Hash, err error)

	// DeleteIfOlder deletes the blob stored under h if its stored time is
	// before before, and says whether it did. A blob not stored is not an
	// error (false). It is garbage collection's delete: the time is checked
	// again at the moment of deleting, so a blob a writer Refreshed since
	// the collector saw it stays. How exactly that check and the delete
	// exclude a concurrent Refresh depends on the store: see each
	// implementation.
	DeleteIfOlder(ctx context.Context, h content.Hash, before time.Time) (deleted bool, err error)

	// GetMeta returns the contents of the meta object name and its
	// version, an opaque token for PutMeta; ErrNotFound if there is none.
	// Meta objects are small records about the store itself (which backend
	// owns it, package blobgc), kept in MetaDir: no other method sees them.
	// name must pass CheckMetaName.
	GetMeta(ctx context.Context, name string) (data []byte, version string, err error)

	// PutMeta writes the meta object name, whole or not at all, on a
	// condition: with version "", only if there is none; otherwise only if
	// it is at version (as GetMeta returned it). Otherwise it fails with
	// ErrMetaConflict and writes nothing. Of concurrent PutMetas on the
	// same condition, at most one succeeds: a meta object is never
	// overwritten blindly (see each implementation for the guarantees of
	// the storage underneath).
	PutMeta(ctx context.Context, name string, data []byte, version string) error

	// Close releases the store's resources. The store must not be used
	// afterwards.
	Close() error
}

// Options configures Open beyond what the URL says. The zero value is
// ready to use.
type Options struct {
	// CredentialsFile is an AWS-style shared credentials file (INI, as
	// ~/.aws/credentials) to take S3 credentials from. When empty, S3
	// credentials come from the environment: AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY and, optionally, AWS_SESSION_TOKEN.
	CredentialsFile string
	// CredentialsProfile is the profile to read from CredentialsFile;
	// empty means $AWS_PROFILE, or "default".
	CredentialsProfile string
	// Timeout bounds the checks Open makes against a remote store
	// (reachable, credentials accepted, bucket present and readable).
	// Zero means 10 seconds.
	Timeout time.Duration
}

// DefaultTimeout is the Options.Timeout used when it is zero.
const DefaultTimeout = 10 * time.Second

// An Opener opens the store a URL of its scheme names. u is never nil and
// its Scheme is lower-case.
type Opener func(ctx context.Context, u *url.URL, opts Options) (Store, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// knownSchemes names the package that registers each scheme topod has, for
// the error Open returns when that package is not linked in.
var knownSchemes = map[string]string{
	"file": "github.com/topod-io/topod/pkg/blobstore/fileblob",
	"s3":   "github.com/topod-io/topod/pkg/blobstore/s3blob",
}

// Register makes a store implementation available to Open under scheme
// (compared case-insensitively). It panics if scheme is registered twice or
// open is nil.
func Register(scheme string, open Opener) {
	scheme = strings.ToLower(scheme)
	registryMu.Lock()
	defer registryMu.Unlock()
	if open == nil {
		panic("blobstore: Register " + scheme + " with a nil Opener")
	}
	if _, dup := registry[scheme]; dup {
		panic("blobstore: Register called twice for scheme " + scheme)
	}
	registry[scheme] = open
}

// Schemes returns the registered schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	s := make([]string, 0, len(registry))
	for k := range registry {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// Open opens the store rawURL names, with the implementation registered for
// its scheme, for example
//
//	file:///var/lib/topod/blobs
//	s3://BUCKET/PREFIX?endpoint=127.0.0.1:9000&secure=false&region=us-east-1
//
// A remote store is checked before Open returns (see Options.Timeout), so a
// bad address, bad credentials or a missing bucket fail here, not at the
// first write.
func Open(ctx context.Context, rawURL string, opts Options) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's error quotes the input; it carries no secrets we
		// could redact better (credentials never belong in the URL).
		return nil, fmt.Errorf("blobstore: open: %w", err)
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("blobstore: open %q: no scheme: want a URL such as file:///var/lib/topod/blobs or s3://bucket/prefix", u.Redacted())
	}
	scheme := strings.ToLower(u.Scheme)
	u.Scheme = scheme
	registryMu.RLock()
	open := registry[scheme]
	registryMu.RUnlock()
	if open == nil {
		if pkg, ok := knownSchemes[scheme]; ok {
			return nil, fmt.Errorf("blobstore: open %q: scheme %q is not linked into this program: import _ %q", u.Redacted(), scheme, pkg)
		}
		return nil, fmt.Errorf("blobstore: open %q: unknown scheme %q (registered: %s)", u.Redacted(), scheme, strings.Join(Schemes(), ", "))
	}
	s, err := open(ctx, u, opts)
	if err != nil {
		return nil, fmt.Errorf("blobstore: open %s: %w", u.Redacted(), err)
	}
	return s, nil
}
