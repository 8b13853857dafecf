// Package fileblob is the embedded blob store: one file per blob under a
// directory, fanned out by the first two hex digits of the hash,
//
//	DIR/ab/abcdef0123...   (the full 64-digit hash)
//	DIR/tmp/               (uploads in progress)
//	DIR/gc/                (blobs garbage collection is deleting)
//	DIR/_topod/            (meta objects: see GetMeta and PutMeta)
//
// Put writes a temporary file in DIR/tmp, fsyncs it, renames it into place
// and fsyncs the fan-out directory, so a blob is either wholly present or
// absent, also across a crash. Blob files are read-only (0444): their
// contents are never modified, only replaced whole or removed.
//
// A blob's stored time is its file's modification time. Refresh resets it
// with os.Chtimes and then checks that the file is still in place.
// DeleteIfOlder never removes a blob file where it stands: it renames it
// into DIR/gc/ first, checks the time of the renamed file, and renames it
// back if a Refresh reached it, so a Refresh that reports a blob present
// (its Chtimes preceded its check, which preceded the rename) is always seen
// by the delete, and a Refresh after the rename finds the blob missing (the
// writer then uploads it again). The delete therefore never removes a blob
// a concurrent Refresh reported present: there is no window. Get looks in
// DIR/gc/ when a blob is not in place, for the instant a blob being
// restored is away, and Open puts back whatever a crash left in DIR/gc/.
//
// It registers the "file" scheme with package blobstore:
// file:///var/lib/topod/blobs.
package fileblob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/content"
)

func init() {
	blobstore.Register("file", openURL)
}

const (
	tmpDir = "tmp"
	gcDir  = "gc"
	// staleTemp is the age after which Open removes a temporary file left
	// in tmp/ by a crashed Put.
	staleTemp = time.Hour
	blobMode  = 0o444
	dirMode   = 0o755
)

// Store is a blobstore.Store keeping blobs as files under a directory.
type Store struct {
	dir string
}

var _ blobstore.Store = (*Store)(nil)

// openURL opens file:///abs/path (file://localhost/abs/path is accepted
// too). Query parameters are refused: there are none.
func openURL(_ context.Context, u *url.URL, _ blobstore.Options) (blobstore.Store, error) {
	if u.Opaque != "" {
		return nil, fmt.Errorf("file URL must be file:///absolute/path, got file:%s", u.Opaque)
	}
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("file URL must be file:///absolute/path (three slashes), got host %q", u.Host)
	}
	if u.RawQuery != "" {
		return nil, fmt.Errorf("file URL takes no parameters, got %q", u.RawQuery)
	}
	if u.Path == "" {
		return nil, errors.New("file URL has no path")
	}
	return Open(u.Path)
}

// Open opens the store in dir, creating dir and its tmp/ subdirectory if
// needed, and removes temporary files more than an hour old that crashed
// Puts left behind.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("fileblob: open: empty directory name")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("fileblob: open %s: %w", dir, err)
	}
	for _, sub := range []string{tmpDir, gcDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), dirMode); err != nil {
			return nil, fmt.Errorf("fileblob: open: %w", err)
		}
	}
	s := &Store{dir: dir}
	if err := s.removeStaleTemps(time.Now().Add(-staleTemp)); err != nil {
		return nil, fmt.Errorf("fileblob: open %s: %w", dir, err)
	}
	if err := s.restoreCollected(); err != nil {
		return nil, fmt.Errorf("fileblob: open %s: %w", dir, err)
	}
	return s, nil
}

// restoreCollected puts the blobs in DIR/gc/ back in place: a delete that
// did not finish (a crash) is undone, and the next collection decides
// again. A delete running concurrently in another process then finds its
// file gone and keeps the blob.
func (s *Store) restoreCollected() error {
	entries, err := os.ReadDir(filepath.Join(s.dir, gcDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		name, _, _ := strings.Cut(e.Name(), ".")
		h, err := content.Parse(name)
		if err != nil {
			continue
		}
		if err := s.restore(filepath.Join(s.dir, gcDir, e.Name()), h); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("restore blob %s from %s: %w", h, gcDir, err)
		}
	}
	return nil
}

// restore renames the collected file back to blob h's place. A blob put
// there meanwhile has the same contents: replacing it is harmless.
func (s *Store) restore(collected string, h content.Hash) error {
	path := s.Path(h)
	if err := os.Mkdir(filepath.Dir(path), dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Rename(collected, path)
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Path returns the file that holds (or would hold) blob h.
func (s *Store) Path(h content.Hash) string {
	name := h.String()
	return filepath.Join(s.dir, name[:2], name)
}

func (s *Store) removeStaleTemps(before time.Time) error {
	entries, err := os.ReadDir(filepath.Join(s.dir, tmpDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if info.ModTime().Before(before) {
			if err := os.Remove(filepath.Join(s.dir, tmpDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove stale temporary file: %w", err)
			}
		}
	}
	return nil
}

// Missing implements blobstore.Store with one stat per distinct hash.
func (s *Store) Missing(ctx context.Context, hashes []content.Hash) ([]content.Hash, error) {
	var missing []content.Hash
	seen := make(map[content.Hash]bool, len(hashes))
	for _, h := range hashes {
		if seen[h] {
			continue
		}
		seen[h] = true
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("missing blobs: %w", err)
		}
		_, err := os.Stat(s.Path(h))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, h)
		case err != nil:
			return nil, fmt.Errorf("missing blobs: stat blob %s: %w", h, err)
		}
	}
	return missing, nil
}

// Refresh implements blobstore.Store: a stat per distinct hash, and for a
// blob stored before olderThan, os.Chtimes to now and a second stat that
// checks the file was not moved away meanwhile by DeleteIfOlder (in which
// case the blob is reported missing).
func (s *Store) Refresh(ctx context.Context, hashes []content.Hash, olderThan time.Time) ([]content.Hash, error) {
	var missing []content.Hash
	seen := make(map[content.Hash]bool, len(hashes))
	for _, h := range hashes {
		if seen[h] {
			continue
		}
		seen[h] = true
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("refresh blobs: %w", err)
		}
		present, err := s.refresh(h, olderThan)
		if err != nil {
			return nil, fmt.Errorf("refresh blobs: %w", err)
		}
		if !present {
			missing = append(missing, h)
		}
	}
	return missing, nil
}

// refresh refreshes one blob and says whether it is stored.
func (s *Store) refresh(h content.Hash, olderThan time.Time) (bool, error) {
	path := s.Path(h)
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat blob %s: %w", h, err)
	}
	if !info.ModTime().Before(olderThan) {
		return true, nil
	}
	now := time.Now()
	err = os.Chtimes(path, now, now)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("refresh blob %s: %w", h, err)
	}
	// Chtimes may have reached the file just as DeleteIfOlder moved it to
	// gc/: only a file still (or again) in place counts.
	_, err = os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat blob %s: %w", h, err)
	}
	return true, nil
}

// collectSeq names the files DeleteIfOlder moves to gc/, so that two
// deletes of one blob (two processes) never share a file.
var collectSeq atomic.Int64

// DeleteIfOlder implements blobstore.Store. The blob file is renamed into
// DIR/gc/ under a name of its own, its time checked there (a Refresh that
// reported the blob present changed it before the rename), and it is then
// removed, or renamed back if it turned out fresh. See the package
// documentation for why no concurrent Refresh is lost.
func (s *Store) DeleteIfOlder(ctx context.Context, h content.Hash, before time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("delete blob %s: %w", h, err)
	}
	path := s.Path(h)
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete blob %s: %w", h, err)
	}
	if !info.ModTime().Before(before) {
		return false, nil
	}
	collected := filepath.Join(s.dir, gcDir, fmt.Sprintf("%s.%d.%d", h, os.Getpid(), collectSeq.Add(1)))
	err = os.Rename(path, collected)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // deleted by someone else meanwhile
	}
	if err != nil {
		return false, fmt.Errorf("delete blob %s: %w", h, err)
	}
	info, err = os.Stat(collected)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil // put back by another process's Open
	case err != nil || !info.ModTime().Before(before):
		// Refreshed after the first look (or unreadable): keep it.
		if rerr := s.restore(collected, h); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return false, fmt.Errorf("delete blob %s: put back: %w", h, rerr)
		}
		if err != nil {
			return false, fmt.Errorf("delete blob %s: %w", h, err)
		}
		return false, nil
	}
	err = os.Remove(collected)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // put back by another process's Open
	}
	if err != nil {
		return false, fmt.Errorf("delete blob %s: %w", h, err)
	}
	return true, nil
}

// Put implements blobstore.Store.
func (s *Store) Put(ctx context.Context, h content.Hash, data []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put blob %s: %w", h, err)
	}
	if got := content.Sum(data); got != h {
		return fmt.Errorf("put blob %s: %d bytes hash to %s: %w", h, len(data), got, blobstore.ErrHashMismatch)
	}
	path := s.Path(h)
	if info, err := os.Stat(path); err == nil && info.Mode().IsRegular() && info.Size() == int64(len(data)) {
		return nil // already stored
	}
	if err := s.write(path, data); err != nil {
		return fmt.Errorf("put blob %s: %w", h, err)
	}
	return nil
}

// write stores data at path atomically and durably: temp file, fsync,
// rename, fsync of the directory.
func (s *Store) write(path string, data []byte) error {
	tmp, err := s.writeTemp(filepath.Base(path), data)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// writeTemp writes data to a new read-only file in DIR/tmp, named after
// base, fsynced, and returns its path.
func (s *Store) writeTemp(base string, data []byte) (_ string, err error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), base+".*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return "", err
	}
	if err := f.Chmod(blobMode); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return tmp, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return d.Close()
}

// Get implements blobstore.Store.
func (s *Store) Get(ctx context.Context, h content.Hash) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get blob %s: %w", h, err)
	}
	data, err := s.read(h)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get blob %s: %w", h, blobstore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get blob %s: %w", h, err)
	}
	if got := content.Sum(data); got != h {
		return nil, fmt.Errorf("get blob %s: file %s holds %d bytes hashing to %s: %w", h, s.Path(h), len(data), got, blobstore.ErrCorrupt)
	}
	return data, nil
}

// read reads blob h's file. When it is not in place, it may be in gc/ for
// an instant, being checked by DeleteIfOlder before it is put back: read
// looks there, then in place once more.
func (s *Store) read(h content.Hash) ([]byte, error) {
	data, err := os.ReadFile(s.Path(h))
	if !errors.Is(err, fs.ErrNotExist) {
		return data, err
	}
	collected, _ := filepath.Glob(filepath.Join(s.dir, gcDir, h.String()+".*"))
	for _, p := range collected {
		if data, err := os.ReadFile(p); err == nil {
			return data, nil
		}
	}
	return os.ReadFile(s.Path(h))
}

// Delete implements blobstore.Store. It does not remove the (possibly
// empty) fan-out directory: a later Put would recreate it.
func (s *Store) Delete(ctx context.Context, h content.Hash) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete blob %s: %w", h, err)
	}
	if err := os.Remove(s.Path(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", h, err)
	}
	return nil
}

// Walk implements blobstore.Store, in hash order. Files whose names are not
// blob hashes in their right fan-out directory are skipped.
func (s *Store) Walk(ctx context.Context, fn func(h content.Hash, size int64, modTime time.Time) error) error {
	fanouts, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("walk blobs: %w", err)
	}
	for _, d := range fanouts {
		if !d.IsDir() || len(d.Name()) != 2 || !isLowerHex(d.Name()) {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(s.dir, d.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("walk blobs: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if !e.Type().IsRegular() || !strings.HasPrefix(name, d.Name()) || !isLowerHex(name) {
				continue
			}
			h, err := content.Parse(name)
			if err != nil {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted meanwhile
			}
			if err != nil {
				return fmt.Errorf("walk blobs: %w", err)
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("walk blobs: %w", err)
			}
			if err := fn(h, info.Size(), info.ModTime()); err != nil {
				return err
			}
		}
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Close implements blobstore.Store. A file store holds no resources.
func (s *Store) Close() error { return nil }
