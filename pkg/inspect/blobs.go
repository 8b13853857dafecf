package inspect

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/topod-io/topod/pkg/blobgc"
	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/kv"
)

// BlobOptions configure Blobs.
type BlobOptions struct {
	Options
	// Grace is topod gc's --gc-grace: an unreferenced blob stored longer
	// ago than that is one the next collection deletes (Collectable).
	// Default: the grace the store's owner record names (blobgc.Owner),
	// else blobgc.DefaultGrace.
	Grace time.Duration
	// Prefix is the key prefix of the records marked from (default "/",
	// as topod gc's).
	Prefix string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Unreferenced is a stored blob no record refers to, current or past.
type Unreferenced struct {
	Hash     string    `json:"hash"`
	Size     int64     `json:"size"`
	StoredAt time.Time `json:"stored_at"`
	// Collectable: stored (or last asked about) longer ago than the grace
	// period, so the next collection deletes it.
	Collectable bool `json:"collectable"`
}

// Dangling is a record referring to a blob the store lacks (or holds
// damaged): that version of the file cannot be read.
type Dangling struct {
	Path    string `json:"path"`
	Version int64  `json:"version"`
	Hash    string `json:"hash,omitempty"`
	Error   string `json:"error"`
}

// Usage is the blob store's usage, split by whether a record refers to
// each blob.
type Usage struct {
	Store string `json:"store"`
	// Blobs and Bytes are what the store holds.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Referenced are the stored blobs a record refers to, current or a
	// past version the backend still holds (and GetVersion can read).
	Referenced      int   `json:"referenced"`
	ReferencedBytes int64 `json:"referenced_bytes"`
	// Unreferenced are the others, by hash.
	Unreferenced      []Unreferenced `json:"unreferenced"`
	UnreferencedBytes int64          `json:"unreferenced_bytes"`
	// Collectable are the unreferenced ones past the grace period.
	Collectable      int   `json:"collectable"`
	CollectableBytes int64 `json:"collectable_bytes"`
	// FutureStored is how many unreferenced blobs have a stored time more
	// than a day ahead of this clock (clock skew), left out of
	// Unreferenced.
	FutureStored int `json:"future_stored,omitempty"`
	// Grace is the grace period Collectable is judged by.
	Grace     time.Duration `json:"-"`
	GraceText string        `json:"grace"`
	// Owner is the store's owner record (which backend and root may
	// collect it, with what grace), nil if it has none yet.
	Owner *blobgc.Owner `json:"owner,omitempty"`
	// Values is how many backend values (current and past) were read,
	// Records how many of them refer to blobs.
	Values   int        `json:"values"`
	Records  int        `json:"records"`
	Dangling []Dangling `json:"dangling"`
	Took     string     `json:"took"`
}

// futureSlack is how far ahead of the clock a blob's stored time may be
// and still be listed (the store's clock may run ahead of ours).
const futureSlack = 24 * time.Hour

// errReadOnly is what the store Blobs hands the collector answers any
// write with: inspecting never changes the store.
var errReadOnly = errors.New("inspect: the blob store is read-only here")

// Blobs reports the usage of store against the records of backend: every
// stored blob, whether a record refers to it, and which do not (with
// whether topod gc would delete them now). It is blob garbage
// collection's mark and sweep (pkg/blobgc) as a dry run, on a store that
// refuses every write: nothing is deleted, no lock taken. Blobs a record
// refers to only through a past version the backend still holds count as
// referenced, as they do for the collector. name describes the store.
//
// It needs the backend and the store themselves: topod's API lists
// neither the store nor a file's past versions.
func Blobs(ctx context.Context, backend kv.Backend, store blobstore.Store, name string, opts BlobOptions) (*Usage, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// The collector checks the store's owner record (blobgc.Claim: read
	// only, in a dry run) and refuses another grace than the record's: it
	// runs with the record's, whatever grace the blobs are judged by here.
	owner, ownerGrace, err := readOwner(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("blob usage of %s: %w", name, err)
	}
	collectGrace := cmp.Or(ownerGrace, opts.Grace, blobgc.DefaultGrace)
	if opts.Grace <= 0 {
		opts.Grace = collectGrace
	}
	// A dry run lists as candidates only the unreferenced blobs older than
	// its grace; the younger ones it only counts. To list every one, the
	// collector's clock is moved ahead by its grace plus futureSlack, and
	// its ages moved back.
	shift := collectGrace + futureSlack
	ro := &readOnlyStore{Store: store}
	if opts.Progress != nil {
		ro.progress = opts.Progress
		opts.Progress(Progress{Note: fmt.Sprintf("marking the blobs of every record under %s (current and past versions), then walking %s", cmp.Or(opts.Prefix, "/"), name)})
	}
	start := time.Now()
	r, err := blobgc.Collect(ctx, backend, ro, blobgc.Options{
		Grace:  collectGrace,
		DryRun: true,
		Prefix: opts.Prefix,
		Now:    func() time.Time { return opts.Now().Add(shift) },
	})
	if err != nil {
		return nil, fmt.Errorf("blob usage of %s: %w", name, err)
	}
	u := &Usage{
		Store:           name,
		Blobs:           r.Stored,
		Bytes:           r.StoredBytes,
		ReferencedBytes: r.LiveBytes,
		FutureStored:    r.Young,
		Grace:           opts.Grace,
		GraceText:       opts.Grace.String(),
		Owner:           owner,
		Values:          r.Values,
		Records:         r.Refs,
		Unreferenced:    []Unreferenced{},
		Dangling:        []Dangling{},
		Took:            time.Since(start).Round(time.Millisecond).String(),
	}
	for _, b := range r.Candidates {
		// b.Age is from the moved clock; the stored time is the store's.
		age := b.Age - shift
		un := Unreferenced{Hash: b.Hash.String(), Size: b.Size, StoredAt: r.Start.Add(-b.Age), Collectable: age > opts.Grace}
		u.Unreferenced = append(u.Unreferenced, un)
		u.UnreferencedBytes += b.Size
		if un.Collectable {
			u.Collectable++
			u.CollectableBytes += b.Size
		}
	}
	slices.SortFunc(u.Unreferenced, func(a, b Unreferenced) int {
		return cmp.Or(a.StoredAt.Compare(b.StoredAt), cmp.Compare(a.Hash, b.Hash))
	})
	u.Referenced = r.Stored - len(r.Candidates) - r.Young
	for _, d := range r.Dangling {
		dd := Dangling{Path: d.Key, Version: d.ModRevision, Error: d.Err}
		if !d.Hash.IsZero() {
			dd.Hash = d.Hash.String()
		}
		u.Dangling = append(u.Dangling, dd)
	}
	return u, nil
}

// readOwner reads the store's owner record, if it has one, and its grace.
func readOwner(ctx context.Context, store blobstore.Store) (*blobgc.Owner, time.Duration, error) {
	data, _, err := store.GetMeta(ctx, blobgc.OwnerName)
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("owner record %s/%s: %w", blobstore.MetaDir, blobgc.OwnerName, err)
	}
	rec := &blobgc.Owner{}
	if err := json.Unmarshal(data, rec); err != nil {
		return nil, 0, fmt.Errorf("owner record %s/%s: %w", blobstore.MetaDir, blobgc.OwnerName, err)
	}
	grace, err := time.ParseDuration(rec.Grace)
	if err != nil || grace <= 0 {
		return nil, 0, fmt.Errorf("owner record %s/%s: grace %q is not a duration", blobstore.MetaDir, blobgc.OwnerName, rec.Grace)
	}
	return rec, grace, nil
}

// readOnlyStore is a blob store that refuses writes, counting (and
// reporting) the blobs walked.
type readOnlyStore struct {
	blobstore.Store
	progress func(Progress)
	walked   int
	bytes    int64
}

// Put is part of blobstore.Store: refused.
func (s *readOnlyStore) Put(context.Context, content.Hash, []byte) error { return errReadOnly }

// Delete is part of blobstore.Store: refused.
func (s *readOnlyStore) Delete(context.Context, content.Hash) error { return errReadOnly }

// Refresh is part of blobstore.Store: refused.
func (s *readOnlyStore) Refresh(context.Context, []content.Hash, time.Time) ([]content.Hash, error) {
	return nil, errReadOnly
}

// PutMeta is part of blobstore.Store: refused.
func (s *readOnlyStore) PutMeta(context.Context, string, []byte, string) error { return errReadOnly }

// DeleteIfOlder is part of blobstore.Store: refused.
func (s *readOnlyStore) DeleteIfOlder(context.Context, content.Hash, time.Time) (bool, error) {
	return false, errReadOnly
}

// walkReport is how many blobs walked between two progress lines.
const walkReport = 10000

// Walk is part of blobstore.Store.
func (s *readOnlyStore) Walk(ctx context.Context, fn func(h content.Hash, size int64, modTime time.Time) error) error {
	err := s.Store.Walk(ctx, func(h content.Hash, size int64, modTime time.Time) error {
		s.walked++
		s.bytes += size
		if s.progress != nil && s.walked%walkReport == 0 {
			s.progress(Progress{Note: fmt.Sprintf("walked %d blobs (%s)", s.walked, bytesString(s.bytes))})
		}
		return fn(h, size, modTime)
	})
	if s.progress != nil && err == nil {
		s.progress(Progress{Note: fmt.Sprintf("walked %d blobs (%s)", s.walked, bytesString(s.bytes))})
	}
	return err
}

// WriteText writes the usage for a person: the totals, then a table of
// the unreferenced blobs and one of the dangling references.
func (u *Usage) WriteText(w io.Writer, now time.Time) error {
	fmt.Fprintf(w, "store:         %s\n", u.Store)
	if u.Owner != nil {
		fmt.Fprintf(w, "owner:         %s, grace %s (%s)\n", u.Owner.Owner, u.Owner.Grace, u.Owner.Backend)
	} else {
		fmt.Fprintln(w, "owner:         none recorded yet")
	}
	fmt.Fprintf(w, "stored:        %s, %s\n", plural(u.Blobs, "blob"), bytesString(u.Bytes))
	fmt.Fprintf(w, "referenced:    %s, %s (by %s among %s, current and past)\n", plural(u.Referenced, "blob"), bytesString(u.ReferencedBytes), plural(u.Records, "record"), plural(u.Values, "value"))
	fmt.Fprintf(w, "unreferenced:  %s, %s; %d of them (%s) stored over %v ago: topod gc --gc-grace %v would delete those\n",
		plural(len(u.Unreferenced)+u.FutureStored, "blob"), bytesString(u.UnreferencedBytes), u.Collectable, bytesString(u.CollectableBytes), u.Grace, u.Grace)
	if u.FutureStored > 0 {
		fmt.Fprintf(w, "               %d more with a stored time over %v ahead of this clock (not listed)\n", u.FutureStored, futureSlack)
	}
	fmt.Fprintf(w, "dangling:      %s to blobs not stored\n", plural(len(u.Dangling), "reference"))
	if len(u.Unreferenced) > 0 {
		fmt.Fprintln(w)
		tw := newTable(w)
		fmt.Fprintln(tw, "UNREFERENCED BLOB\tBYTES\tSTORED\tGC")
		for _, b := range u.Unreferenced {
			gc := "kept (within grace)"
			if b.Collectable {
				gc = "would delete"
			}
			fmt.Fprintf(tw, "%s\t%d\t%v ago\t%s\n", b.Hash, b.Size, now.Sub(b.StoredAt).Round(time.Second), gc)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(u.Dangling) > 0 {
		fmt.Fprintln(w)
		tw := newTable(w)
		fmt.Fprintln(tw, "DANGLING PATH\tVERSION\tBLOB\tERROR")
		for _, d := range u.Dangling {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", d.Path, d.Version, dashed(d.Hash), d.Error)
		}
		return tw.Flush()
	}
	return nil
}

func dashed(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
