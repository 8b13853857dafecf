// Package fileblob is the embedded blob store: one file per blob under a
// directory, fanned out by the first two hex digits of the hash,
//
//	DIR/ab/abcdef0123...   (the full 64-digit hash)
//	DIR/tmp/               (uploads in progress)
//
// Put writes a temporary file in DIR/tmp, fsyncs it, renames it into place
// and fsyncs the fan-out directory, so a blob is either wholly present or
// absent, also across a crash. Blob files are read-only (0444): they are
// never modified, only replaced whole or removed.
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
	"time"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/content"
)

func init() {
	blobstore.Register("file", openURL)
}

const (
	tmpDir = "tmp"
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
	if err := os.MkdirAll(filepath.Join(dir, tmpDir), dirMode); err != nil {
		return nil, fmt.Errorf("fileblob: open: %w", err)
	}
	s := &Store{dir: dir}
	if err := s.removeStaleTemps(time.Now().Add(-staleTemp)); err != nil {
		return nil, fmt.Errorf("fileblob: open %s: %w", dir, err)
	}
	return s, nil
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
func (s *Store) write(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(blobMode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
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
	data, err := os.ReadFile(s.Path(h))
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
