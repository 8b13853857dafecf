package vschemaapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/topod-io/topod/pkg/vschemaapi/wire"
)

// TestAuditTornTail: opening the audit log recovers a torn last line: a
// whole entry missing its newline is completed; anything else is set aside
// byte for byte in <path>.torn-<offset> and the log truncated there, with
// a warning naming the offset. Appends then go on after the last whole
// entry, numbered after it. An invalid line before the last is refused,
// naming its line and offset.
func TestAuditTornTail(t *testing.T) {
	line := func(seq int64) string {
		b, _ := json.Marshal(wire.AuditEntry{Seq: seq, User: "ops", Action: "apply", Keyspace: "commerce", Result: "ok"})
		return string(b) + "\n"
	}
	two := line(1) + line(2)
	off := len(two)
	cases := []struct {
		name     string
		content  string
		wantFile string // the log after opening, before the next append
		aside    string // the bytes set aside; "" for none
		warn     string // in the log output
		seq      int64  // of the next append
		err      string // openAudit's error, if it refuses
	}{
		{"empty", "", "", "", "", 1, ""},
		{"whole", two, two, "", "", 3, ""},
		{"whole last entry without its newline", two + strings.TrimSuffix(line(3), "\n"), two + line(3), "",
			fmt.Sprintf(`the last entry had no newline (a torn write): completed" path=LOG offset=%d seq=3`, off), 4, ""},
		{"torn in the middle of an entry", two + line(3)[:40], two, line(3)[:40],
			fmt.Sprintf(`the last line is not a whole entry (a torn write): set aside and truncated" path=LOG offset=%d bytes=40 set_aside=LOG.torn-%d`, off, off), 3, ""},
		{"torn after its first byte", two + "{", two, "{", fmt.Sprintf("offset=%d bytes=1", off), 3, ""},
		{"the only line, torn", line(1)[:10], "", line(1)[:10], "offset=0 bytes=10", 1, ""},
		{"invalid last line with a newline", two + "garbage\n", two, "garbage\n", fmt.Sprintf("offset=%d bytes=8", off), 3, ""},
		{"invalid line before the last", line(1) + "garbage\n" + line(3), "", "", "", 0, fmt.Sprintf("line 2 (byte offset %d)", len(line(1)))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			a, err := OpenAudit(path, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				}})))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("open: %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			got, _ := os.ReadFile(path)
			if string(got) != c.wantFile {
				t.Errorf("log after open:\n%q\nwant\n%q", got, c.wantFile)
			}
			aside, err := os.ReadFile(fmt.Sprintf("%s.torn-%d", path, len(c.wantFile)))
			switch {
			case c.aside == "" && err == nil:
				t.Errorf("set aside %q, want nothing", aside)
			case c.aside != "" && string(aside) != c.aside:
				t.Errorf("set aside %q (%v), want %q", aside, err, c.aside)
			}
			warn := strings.ReplaceAll(c.warn, "LOG", path)
			if !strings.Contains(logs.String(), warn) || (warn == "" && logs.Len() > 0) {
				t.Errorf("log output %q, want %q", logs.String(), warn)
			}
			// The next append is a whole line after the last whole entry.
			if err := a.Append(wire.AuditEntry{User: "ops", Action: "apply", Result: "ok"}); err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			if err := a.scan(func(e *wire.AuditEntry) { seqs = append(seqs, e.Seq) }); err != nil {
				t.Fatalf("scan after the append: %v", err)
			}
			if len(seqs) == 0 || seqs[len(seqs)-1] != c.seq {
				t.Errorf("sequence numbers %v, want the last %d", seqs, c.seq)
			}
		})
	}
}
