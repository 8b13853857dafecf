package vschemaapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/topod-io/topod/pkg/vschemaapi/wire"
)

// AuditFile is vschemad's AuditLog: an append-only file of JSON lines
// (wire.AuditEntry), each append synced to disk before the write it
// records goes on. A write whose outcome line cannot be appended leaves its
// intent line without one; the next OpenAudit records that outcome as
// unknown. Its methods are safe for concurrent use.
type AuditFile struct {
	path string

	mu      sync.Mutex
	f       *os.File
	seq     int64
	size    int64              // of the file after the last complete append
	pending map[int64]struct{} // intents without an outcome yet
	broken  error              // a failed append that could not be undone: no more appends
}

// OpenAudit opens (creating) the audit log at path, recovers a torn last
// line (recoverTail), finds its last sequence number, and resolves the
// intents left without an outcome by a previous run with an outcome
// "unknown" (logged).
func OpenAudit(path string, log *slog.Logger) (*AuditFile, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	a := &AuditFile{path: path, f: f, pending: map[int64]struct{}{}}
	if err := a.recoverTail(log); err != nil {
		f.Close()
		return nil, err
	}
	intents := map[int64]wire.AuditEntry{}
	err = a.scan(func(e *wire.AuditEntry) {
		a.seq = max(a.seq, e.Seq)
		switch {
		case e.Result == wire.ResultIntent:
			intents[e.Seq] = *e
		case e.Intent != 0:
			delete(intents, e.Intent)
		}
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	if a.size, err = f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	var unknown []wire.AuditEntry
	for _, seq := range slices.Sorted(maps.Keys(intents)) {
		e := intents[seq]
		log.Warn("audit log: a write was begun but its outcome was never recorded: recorded as unknown",
			"intent_seq", seq, "action", e.Action, "keyspace", e.Keyspace, "rules", e.Rules, "cell", e.Cell, "user", e.User, "time", e.Time)
		e.Intent, e.Seq, e.Time = seq, 0, time.Now().UTC()
		e.Result = wire.ResultUnknown
		e.Error = "vschemad stopped, or could not write to the audit log, between this write's intent and its outcome: whether it was made is not recorded; read the topology"
		unknown = append(unknown, e)
	}
	if len(unknown) > 0 {
		if err := a.Append(unknown...); err != nil {
			f.Close()
			return nil, err
		}
	}
	return a, nil
}

// recoverTail makes the file end with a complete line. A last line without
// its newline that is a whole entry gets the newline. Otherwise a last line
// that is not a whole entry (a write torn by a crash or a full disk, with
// or without its newline) is set aside, byte for byte, in
// <path>.torn-<offset>, and the log truncated at that offset, with a
// warning naming both: nothing is dropped silently, and the entry it may
// hold is kept for a reader. An invalid line before the last is not a
// tear: scan refuses it.
func (a *AuditFile) recoverTail(log *slog.Logger) error {
	st, err := a.f.Stat()
	if err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	size := st.Size()
	if size == 0 {
		return nil
	}
	// Find the start of the last line, reading backwards.
	end := size // of the last line, its newline excluded
	last := make([]byte, 1)
	if _, err := a.f.ReadAt(last, size-1); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	terminated := last[0] == '\n'
	if terminated {
		end--
	}
	start := int64(0)
	buf := make([]byte, 64<<10)
	for pos := end; pos > 0 && start == 0; {
		n := min(int64(len(buf)), pos)
		pos -= n
		if _, err := a.f.ReadAt(buf[:n], pos); err != nil {
			return fmt.Errorf("audit log %s: %w", a.path, err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			start = pos + int64(i) + 1
		}
	}
	line := make([]byte, end-start)
	if _, err := a.f.ReadAt(line, start); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	var e wire.AuditEntry
	whole := len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &e) == nil
	switch {
	case whole && terminated:
		return nil
	case whole:
		if _, err := a.f.Write([]byte{'\n'}); err != nil {
			return fmt.Errorf("audit log %s: complete the last line: %w", a.path, err)
		}
		if err := a.f.Sync(); err != nil {
			return fmt.Errorf("audit log %s: complete the last line: %w", a.path, err)
		}
		log.Warn("audit log: the last entry had no newline (a torn write): completed", "path", a.path, "offset", start, "seq", e.Seq)
		return nil
	}
	aside := fmt.Sprintf("%s.torn-%d", a.path, start)
	torn := make([]byte, size-start)
	if _, err := a.f.ReadAt(torn, start); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	if err := writeSynced(aside, torn); err != nil {
		return fmt.Errorf("audit log %s: a torn last line at byte offset %d: set it aside: %w", a.path, start, err)
	}
	if err := a.f.Truncate(start); err != nil {
		return fmt.Errorf("audit log %s: a torn last line at byte offset %d, set aside in %s: truncate: %w", a.path, start, aside, err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("audit log %s: truncate at byte offset %d: %w", a.path, start, err)
	}
	log.Warn("audit log: the last line is not a whole entry (a torn write): set aside and truncated",
		"path", a.path, "offset", start, "bytes", len(torn), "set_aside", aside)
	return nil
}

// writeSynced writes data to a new file (never over one) and syncs it.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// Append writes entries (numbering them: their Seq is set) and syncs the
// file. On a failure it truncates the file back to where it was, so that a
// torn line is not followed by the next; if that fails too, every later
// append fails (writes stop) until a restart recovers the tail.
func (a *AuditFile) Append(entries ...wire.AuditEntry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.broken != nil {
		return fmt.Errorf("audit log %s: no appends since an earlier failure: %w", a.path, a.broken)
	}
	var buf []byte
	seq := a.seq
	for i := range entries {
		seq++
		entries[i].Seq = seq
		line, err := json.Marshal(entries[i])
		if err != nil {
			return fmt.Errorf("audit log %s: marshal: %w", a.path, err)
		}
		buf = append(append(buf, line...), '\n')
	}
	_, err := a.f.Write(buf)
	if err == nil {
		err = a.f.Sync()
	}
	if err != nil {
		err = fmt.Errorf("audit log %s: append: %w", a.path, err)
		if terr := a.f.Truncate(a.size); terr != nil {
			a.broken = errors.Join(err, fmt.Errorf("truncate back to %d bytes: %w", a.size, terr))
		}
		return err
	}
	a.seq, a.size = seq, a.size+int64(len(buf))
	for _, e := range entries {
		switch {
		case e.Result == wire.ResultIntent:
			a.pending[e.Seq] = struct{}{}
		case e.Intent != 0:
			delete(a.pending, e.Intent)
		}
	}
	return nil
}

// Begin appends the intent lines of a write about to be made, one per
// entry (Result set to intent), and sets their Seq.
func (a *AuditFile) Begin(intents []wire.AuditEntry) error {
	for i := range intents {
		intents[i].Result = wire.ResultIntent
	}
	return a.Append(intents...)
}

// scan calls use with each entry, oldest first.
func (a *AuditFile) scan(use func(*wire.AuditEntry)) error {
	f, err := os.Open(a.path)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var off int64
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		start := off
		off += int64(len(b)) + 1
		if len(b) == 0 {
			continue
		}
		var e wire.AuditEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("audit log %s: line %d (byte offset %d): %w", a.path, line, start, err)
		}
		use(&e)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	return nil
}

// Read returns the last limit entries that keep accepts, newest first;
// intents that have an outcome are left out (the outcome has all they
// had).
func (a *AuditFile) Read(keep func(*wire.AuditEntry) bool, limit int) ([]wire.AuditEntry, error) {
	a.mu.Lock()
	pending := make(map[int64]struct{}, len(a.pending))
	for seq := range a.pending {
		pending[seq] = struct{}{}
	}
	a.mu.Unlock()
	ring := make([]wire.AuditEntry, 0, min(limit, 1024))
	next := 0
	err := a.scan(func(e *wire.AuditEntry) {
		if e.Result == wire.ResultIntent {
			if _, ok := pending[e.Seq]; !ok {
				return
			}
		}
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
	out := make([]wire.AuditEntry, 0, len(ring))
	for i := range ring {
		out = append(out, ring[(next+len(ring)-1-i)%len(ring)])
	}
	return out, nil
}

// Close closes the file.
func (a *AuditFile) Close() error { return a.f.Close() }
