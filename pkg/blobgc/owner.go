package blobgc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/kv"
)

// A collection deletes every blob the records of its backend do not refer
// to. Pointed at a blob store another backend also uses (a second etcd
// cluster, a bolt file and an etcd, two bolt files), it deletes that
// backend's blobs; run with a grace shorter than a writer's, it deletes
// blobs the writer is about to name. Neither is visible from the backend,
// so the blob store keeps a record of who may collect it, written on first
// use and checked by every collection and every topod that serves it:
//
//	BLOBS/_topod/owner.json  {"owner": "<backend id><root>", "grace": "1h0m0s", ...}
//
// The backend id is 32 random hex digits kept in the backend itself, at
// IDKey, created by the first topod or collection that needs it. It
// travels with the backend's data (an etcd snapshot restored, a bolt file
// copied) and nothing else has it. etcd's cluster id would not do: it is a
// hash of the initial cluster's peer URLs and token, so two clusters
// started with the same flags (the defaults, or one manifest applied in
// two namespaces) share it. The root is the prefix the collection marks
// from ("/", every record, unless topod gc --prefix narrows it): a
// collection marking from less than the whole backend deletes the blobs of
// the records outside its root.

// IDKey is the backend key holding the backend's id (see the package
// documentation of the owner record, owner.go).
const IDKey = "/topod/id"

// OwnerName is the name of the blob store meta object holding the owner
// record (blobstore.Store.GetMeta): MetaDir/owner.json in the store.
const OwnerName = "owner.json"

// Errors of Claim, wrapped with the records compared; test with errors.Is.
var (
	// ErrOwnerMismatch: the blob store's owner record names another
	// backend (or root).
	ErrOwnerMismatch = errors.New("blob store owned by another backend")
	// ErrGraceMismatch: the blob store's owner record names another grace.
	ErrGraceMismatch = errors.New("blob store kept with another gc grace")
	// ErrBadOwnerRecord: the owner record cannot be read as one.
	ErrBadOwnerRecord = errors.New("blob store owner record unreadable")
	// ErrBadBackendID: the backend's IDKey holds something that is not an
	// id.
	ErrBadBackendID = errors.New("backend id unreadable")
)

// Owner is the owner record of a blob store.
type Owner struct {
	// Owner is the backend id followed by the root (a key prefix starting
	// with "/"): the records whose collections may delete the store's
	// blobs.
	Owner string `json:"owner"`
	// Grace is the grace period (time.Duration's notation) every topod
	// serving the store and every collection of it uses.
	Grace string `json:"grace"`
	// Backend describes the backend, for people (its URL; the etcd
	// cluster id).
	Backend string `json:"backend,omitempty"`
	// Created is when the record was written; CreatedBy by which process
	// (host and pid), TopodVersion by which build.
	Created      time.Time `json:"created"`
	CreatedBy    string    `json:"created_by,omitempty"`
	TopodVersion string    `json:"topod_version,omitempty"`
	// Previous is the record a takeover replaced, in one line.
	Previous string `json:"previous,omitempty"`
}

// String describes the record in one line.
func (o *Owner) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "owner %q, grace %s", o.Owner, o.Grace)
	if o.Backend != "" {
		fmt.Fprintf(&b, ", backend %s", o.Backend)
	}
	fmt.Fprintf(&b, ", written %s", o.Created.UTC().Format(time.RFC3339))
	if o.CreatedBy != "" {
		fmt.Fprintf(&b, " by %s", o.CreatedBy)
	}
	if o.TopodVersion != "" {
		fmt.Fprintf(&b, ", topod %s", o.TopodVersion)
	}
	return b.String()
}

// ClaimOptions say who claims a blob store, and how.
type ClaimOptions struct {
	// Root is the key prefix collections mark from; default "/".
	Root string
	// Grace is the collections' grace period; default DefaultGrace.
	Grace time.Duration
	// Backend describes the backend in a record Claim writes.
	Backend string
	// Takeover, if set, is the owner (Owner.Owner, as an error of Claim
	// printed it) of a record Claim may replace with this backend's owner
	// and Grace: the store is moving to this backend, or the deployment's
	// grace is changing (Takeover is then this backend's own owner). A
	// record naming any other owner is still refused.
	Takeover string
	// ReadOnly checks and writes nothing: no backend id is created, and a
	// missing record is not an error (Claimed.Absent). For dry runs.
	ReadOnly bool
	// Now is the clock of the record's Created; default time.Now.
	Now func() time.Time
}

// Claimed is what Claim found and did.
type Claimed struct {
	// Record is the store's owner record now (nil if Absent).
	Record *Owner
	// Created: there was none, Claim wrote it. TakenOver: Claim replaced
	// Previous. Absent: there is none (ReadOnly).
	Created, TakenOver, Absent bool
	Previous                   *Owner
	// TakeoverUnneeded: ClaimOptions.Takeover was set but the record
	// already names this backend and grace (the flag can go).
	TakeoverUnneeded bool
}

// claimAttempts bounds how often Claim starts over when the record changed
// under it (a concurrent first use or takeover).
const claimAttempts = 5

// Claim checks that store belongs to backend's collections under opts.Root
// with opts.Grace, as its owner record says, and writes that record if the
// store has none (first use). It fails with ErrOwnerMismatch or
// ErrGraceMismatch, naming both sides, when the record says otherwise (and
// opts.Takeover does not name its owner), ErrBadOwnerRecord when the record
// cannot be read. It never overwrites a record unless told to by
// opts.Takeover, and then only the record it read (a conditional write):
// of two topods claiming a new store at once, one writes the record and
// the other checks against it.
func Claim(ctx context.Context, backend kv.Backend, store blobstore.Store, opts ClaimOptions) (*Claimed, error) {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if !strings.HasPrefix(opts.Root, "/") {
		return nil, fmt.Errorf("claim blob store: root %q does not start with /", opts.Root)
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	for range claimAttempts {
		c, err := claimOnce(ctx, backend, store, opts)
		if !errors.Is(err, blobstore.ErrMetaConflict) {
			return c, err
		}
	}
	return nil, fmt.Errorf("claim blob store: owner record %s/%s changed %d times while being claimed: %w", blobstore.MetaDir, OwnerName, claimAttempts, blobstore.ErrMetaConflict)
}

// claimOnce is one attempt of Claim; ErrMetaConflict means start over.
func claimOnce(ctx context.Context, backend kv.Backend, store blobstore.Store, opts ClaimOptions) (*Claimed, error) {
	id, err := BackendID(ctx, backend, !opts.ReadOnly)
	if err != nil {
		return nil, fmt.Errorf("claim blob store: %w", err)
	}
	want := ""
	if id != "" {
		want = id + opts.Root
	}
	data, version, err := store.GetMeta(ctx, OwnerName)
	if errors.Is(err, blobstore.ErrNotFound) {
		if opts.ReadOnly {
			return &Claimed{Absent: true}, nil
		}
		rec := newRecord(want, opts)
		if err := putRecord(ctx, store, rec, ""); err != nil {
			return nil, err
		}
		return &Claimed{Record: rec, Created: true}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim blob store: read owner record: %w", err)
	}
	rec, grace, err := parseRecord(data)
	if err != nil {
		return nil, err
	}
	if rec.Owner == want && grace == opts.Grace {
		return &Claimed{Record: rec, TakeoverUnneeded: opts.Takeover != ""}, nil
	}
	if opts.Takeover != "" && rec.Owner == opts.Takeover && want != "" && !opts.ReadOnly {
		next := newRecord(want, opts)
		next.Previous = rec.String()
		if err := putRecord(ctx, store, next, version); err != nil {
			return nil, err
		}
		return &Claimed{Record: next, TakenOver: true, Previous: rec}, nil
	}
	mine := fmt.Sprintf("%q", want)
	if want == "" {
		mine = "none yet (" + IDKey + " is not set: this backend never claimed a blob store)"
	}
	if opts.Backend != "" {
		mine += " (" + opts.Backend + ")"
	}
	if rec.Owner != want && id != "" && strings.HasPrefix(rec.Owner, id) {
		return nil, fmt.Errorf("%w: the store's owner record %s/%s says %s; this collection's root is %q (owner %q). "+
			"A collection marking from part of the backend deletes the blobs of the records outside it: collect from the root the record names; "+
			"to change it, take the store over once (topod --blob-owner-takeover=%s)",
			ErrOwnerMismatch, blobstore.MetaDir, OwnerName, rec, opts.Root, want, rec.Owner)
	}
	if rec.Owner != want {
		hint := ""
		if opts.Takeover != "" {
			hint = fmt.Sprintf("; the takeover asked for names owner %q, not the store's", opts.Takeover)
		}
		return nil, fmt.Errorf("%w: the store's owner record %s/%s says %s; this backend and root are %s%s. "+
			"A collection here would delete every blob only the other backend's records refer to, and its collections would delete this backend's. "+
			"Give this backend a blob store of its own (another bucket or prefix, another directory); "+
			"if the other backend is retired and this one replaces it on the same blobs, or the root is to change, take the store over once (topod --blob-owner-takeover=%s)",
			ErrOwnerMismatch, blobstore.MetaDir, OwnerName, rec, mine, hint, rec.Owner)
	}
	return nil, fmt.Errorf("%w: the store's owner record %s/%s says grace %v (%s); this topod's --gc-grace is %v. "+
		"Every topod serving the store and every topod gc must use the same grace: a writer keeps the blobs it is about to name for half its grace, and a collection with a shorter grace deletes them. "+
		"Run with --gc-grace %v; to change the deployment's grace, see topod's README (a takeover: --blob-owner-takeover=%s)",
		ErrGraceMismatch, blobstore.MetaDir, OwnerName, grace, rec, opts.Grace, grace, rec.Owner)
}

func newRecord(owner string, opts ClaimOptions) *Owner {
	host, _ := os.Hostname()
	return &Owner{
		Owner:        owner,
		Grace:        opts.Grace.String(),
		Backend:      opts.Backend,
		Created:      opts.Now().UTC().Truncate(time.Second),
		CreatedBy:    fmt.Sprintf("host %s pid %d", host, os.Getpid()),
		TopodVersion: buildVersion(),
	}
}

// putRecord writes rec, on the condition version (see PutMeta). A
// conflict is returned as is: Claim starts over.
func putRecord(ctx context.Context, store blobstore.Store, rec *Owner, version string) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("claim blob store: %w", err)
	}
	data = append(data, '\n')
	if err := store.PutMeta(ctx, OwnerName, data, version); err != nil {
		if errors.Is(err, blobstore.ErrMetaConflict) {
			return err
		}
		return fmt.Errorf("claim blob store: write owner record: %w", err)
	}
	// Read it back: on a store that ignored the write's condition, a
	// concurrent claim written since shows here (and Claim starts over,
	// then refuses it), narrowing the race to the instant between the
	// two writes.
	got, _, err := store.GetMeta(ctx, OwnerName)
	if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		return fmt.Errorf("claim blob store: read back owner record: %w", err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("owner record changed right after it was written: %w", blobstore.ErrMetaConflict)
	}
	return nil
}

// parseRecord parses an owner record and its grace.
func parseRecord(data []byte) (*Owner, time.Duration, error) {
	bad := func(why string, err error) (*Owner, time.Duration, error) {
		if err != nil {
			why += ": " + err.Error()
		}
		return nil, 0, fmt.Errorf("%w: %s/%s (%d bytes) %s. It is topod's record of which backend's collections may delete the store's blobs: "+
			"restore it from a copy, or, if this backend is the only one using the store, remove it and let topod write it again",
			ErrBadOwnerRecord, blobstore.MetaDir, OwnerName, len(data), why)
	}
	rec := &Owner{}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(rec); err != nil {
		return bad("is not JSON", err)
	}
	if dec.More() {
		return bad("has more than one JSON value", nil)
	}
	if !isOwner(rec.Owner) {
		return bad(fmt.Sprintf("names no valid owner (%q)", rec.Owner), nil)
	}
	grace, err := time.ParseDuration(rec.Grace)
	if err != nil || grace <= 0 {
		return bad(fmt.Sprintf("names no valid grace (%q)", rec.Grace), nil)
	}
	return rec, grace, nil
}

// isOwner says whether s is a backend id followed by a root.
func isOwner(s string) bool {
	return len(s) > idLen && isID(s[:idLen]) && s[idLen] == '/'
}

// idLen is the length of a backend id: 128 random bits in hex.
const idLen = 32

func isID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// BackendID returns backend's id, the value of IDKey, creating it (128
// random bits, in hex) if create is set and it is missing; without create,
// a missing id is "". Of concurrent creators one writes it and every one
// returns it.
func BackendID(ctx context.Context, backend kv.Backend, create bool) (string, error) {
	got, err := backend.Get(ctx, IDKey)
	if errors.Is(err, kv.ErrNotFound) && create {
		var b [idLen / 2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("backend id: %w", err)
		}
		_, err = backend.Create(ctx, IDKey, []byte(hex.EncodeToString(b[:])), 0)
		if err != nil && !errors.Is(err, kv.ErrExists) {
			return "", fmt.Errorf("backend id: create %s: %w", IDKey, err)
		}
		got, err = backend.Get(ctx, IDKey)
	}
	switch {
	case errors.Is(err, kv.ErrNotFound) && !create:
		return "", nil
	case err != nil:
		return "", fmt.Errorf("backend id: read %s: %w", IDKey, err)
	case !isID(string(got.Value)):
		return "", fmt.Errorf("%w: %s holds %q, not %d hex digits", ErrBadBackendID, IDKey, truncate(got.Value, 80), idLen)
	}
	return string(got.Value), nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// buildVersion is the running binary's module version and VCS revision,
// as far as the build recorded them.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + dirty
	}
	return strings.TrimSpace(v)
}
