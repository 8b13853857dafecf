package vschemaapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// AuditEntry is one line of the audit log: a write, who made it, when, and
// what it changed.
type AuditEntry struct {
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
	User       string    `json:"user"`
	Remote     string    `json:"remote,omitempty"`
	Action     string    `json:"action"` // apply, delete, rollback, import, rules, rebuild
	Keyspace   string    `json:"keyspace,omitempty"`
	Rules      string    `json:"rules,omitempty"` // the rules kind, for action rules
	Cell       string    `json:"cell,omitempty"`  // for action rebuild
	OldVersion string    `json:"old_version,omitempty"`
	NewVersion string    `json:"new_version,omitempty"`
	Summary    string    `json:"summary"`
	Result     string    `json:"result"` // ok, or error (written, but not every cell updated)
	Error      string    `json:"error,omitempty"`
}

// auditLog is an append-only file of JSON lines, one per write, synced to
// disk before the write is acknowledged.
type auditLog struct {
	path string

	mu  sync.Mutex
	f   *os.File
	seq int64
}

// openAudit opens (creating) the audit log at path and finds its last
// sequence number.
func openAudit(path string) (*auditLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	a := &auditLog{path: path, f: f}
	if err := a.scan(func(e *AuditEntry) { a.seq = max(a.seq, e.Seq) }); err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

// append writes entries (numbering them) and syncs the file.
func (a *auditLog) append(entries ...AuditEntry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var buf []byte
	for _, e := range entries {
		a.seq++
		e.Seq = a.seq
		line, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("audit log %s: marshal: %w", a.path, err)
		}
		buf = append(append(buf, line...), '\n')
	}
	if _, err := a.f.Write(buf); err != nil {
		return fmt.Errorf("audit log %s: write: %w", a.path, err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("audit log %s: sync: %w", a.path, err)
	}
	return nil
}

// scan calls use with each entry, oldest first.
func (a *auditLog) scan(use func(*AuditEntry)) error {
	f, err := os.Open(a.path)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("audit log %s: line %d: %w", a.path, line, err)
		}
		use(&e)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	return nil
}

// read returns the last limit entries that keep accepts, newest first.
func (a *auditLog) read(keep func(*AuditEntry) bool, limit int) ([]AuditEntry, error) {
	ring := make([]AuditEntry, 0, min(limit, 1024))
	next := 0
	err := a.scan(func(e *AuditEntry) {
		if !keep(e) {
			return
		}
		if len(ring) < limit {
			ring = append(ring, *e)
			return
		}
		ring[next] = *e
		next = (next + 1) % limit
	})
	if err != nil {
		return nil, err
	}
	out := make([]AuditEntry, 0, len(ring))
	for i := range ring {
		out = append(out, ring[(next+len(ring)-1-i)%len(ring)])
	}
	return out, nil
}

func (a *auditLog) Close() error { return a.f.Close() }
