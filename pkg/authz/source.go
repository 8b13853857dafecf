package authz

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// DefaultReloadInterval is how often a Source rereads its file.
const DefaultReloadInterval = 2 * time.Second

// Source is a policy read from a file and reread when the file changes (a
// Kubernetes ConfigMap update swaps the file's symlink; polling sees it
// where inotify on the old inode would not). A file that no longer parses
// keeps the last good policy in force and is reported, never applied.
type Source struct {
	path   string
	log    *slog.Logger
	policy atomic.Pointer[Policy]
	data   []byte // the file's contents when last applied
	bad    []byte // the contents last refused, reported once
	// Loads and Errors count the policies applied and the rereads refused
	// (an unreadable or invalid file), for metrics and tests.
	Loads, Errors atomic.Int64
}

// Open reads and parses the policy at path: an error here means topod must
// not start.
func Open(path string, log *slog.Logger) (*Source, error) {
	s := &Source{path: path, log: log}
	if _, err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path is the policy file's path.
func (s *Source) Path() string { return s.path }

// Policy is the policy in force.
func (s *Source) Policy() *Policy { return s.policy.Load() }

// reload rereads the file and applies it if it changed and parses; it
// returns the contents read, for Run to report a refused change once.
func (s *Source) reload() ([]byte, error) {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return nil, fmt.Errorf("read authorization policy: %w", err)
	}
	if s.policy.Load() != nil && bytes.Equal(data, s.data) {
		return data, nil
	}
	p, err := Parse(data)
	if err != nil {
		return data, fmt.Errorf("authorization policy %s: %w", s.path, err)
	}
	s.data, s.bad = data, nil
	s.policy.Store(p)
	s.Loads.Add(1)
	return data, nil
}

// Run rereads the file every interval until ctx ends.
func (s *Source) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		loads := s.Loads.Load()
		if data, err := s.reload(); err != nil {
			if s.Errors.Load() == 0 || !bytes.Equal(data, s.bad) {
				s.log.Error("authorization policy not reloaded: the previous one stays in force", "err", err)
			}
			s.bad = data
			s.Errors.Add(1)
		} else if s.Loads.Load() != loads {
			s.log.Info("authorization policy reloaded", "path", s.path)
		}
	}
}
