package fileblob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/topod-io/topod/pkg/blobstore"
	"github.com/topod-io/topod/pkg/content"
)

// metaLock is the file in DIR/_topod/ that PutMeta locks (flock) while it
// replaces a meta object.
const metaLock = ".lock"

// MetaPath returns the file that holds (or would hold) meta object name.
func (s *Store) MetaPath(name string) string {
	return filepath.Join(s.dir, blobstore.MetaDir, name)
}

// metaVersion is a meta object's version: the SHA-256 of its contents.
func metaVersion(data []byte) string { return content.Sum(data).String() }

// GetMeta implements blobstore.Store: it reads DIR/_topod/NAME. The
// version is the hash of the contents.
func (s *Store) GetMeta(ctx context.Context, name string) ([]byte, string, error) {
	if err := blobstore.CheckMetaName(name); err != nil {
		return nil, "", fmt.Errorf("get meta: %w", err)
	}
	path := s.MetaPath(name)
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("get meta %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("get meta %s: %w", path, blobstore.ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("get meta: %w", err)
	}
	return data, metaVersion(data), nil
}

// PutMeta implements blobstore.Store. The contents are written to a
// temporary file (fsynced) in DIR/tmp first. A create then links it to
// DIR/_topod/NAME: link(2) fails if the name exists and never replaces it,
// so of concurrent creators exactly one wins, across processes too. A
// replace takes an exclusive flock(2) of DIR/_topod/.lock, checks the
// current file's hash against version and renames the temporary file over
// it: replaces exclude each other by the lock, and a create cannot slip in
// because the file exists throughout (nothing removes meta objects). The
// directory is fsynced after the write.
func (s *Store) PutMeta(ctx context.Context, name string, data []byte, version string) error {
	if err := blobstore.CheckMetaName(name); err != nil {
		return fmt.Errorf("put meta: %w", err)
	}
	path := s.MetaPath(name)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put meta %s: %w", path, err)
	}
	if err := s.putMeta(path, data, version); err != nil {
		return fmt.Errorf("put meta %s: %w", path, err)
	}
	return nil
}

func (s *Store) putMeta(path string, data []byte, version string) error {
	dir := filepath.Dir(path)
	switch err := os.Mkdir(dir, dirMode); {
	case err == nil:
		if err := syncDir(s.dir); err != nil { // the new directory's entry
			return err
		}
	case !errors.Is(err, fs.ErrExist):
		return err
	}
	tmp, err := s.writeTemp(filepath.Base(path), data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // linked (or renamed) by then, or left over
	if version == "" {
		err := os.Link(tmp, path)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("exists: %w", blobstore.ErrMetaConflict)
		}
		if err != nil {
			return err
		}
		return syncDir(dir)
	}
	unlock, err := lockFile(filepath.Join(dir, metaLock))
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("gone, want version %s: %w", version, blobstore.ErrMetaConflict)
	}
	if err != nil {
		return err
	}
	if v := metaVersion(cur); v != version {
		return fmt.Errorf("at version %s, want %s: %w", v, version, blobstore.ErrMetaConflict)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// lockFile takes an exclusive flock of path, creating it, and returns the
// function that releases it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}
