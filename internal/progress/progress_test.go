package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgress renders the bar and the lines.
func TestProgress(t *testing.T) {
	var bar, lines, none bytes.Buffer
	pb := New(&bar, Bar, "keyspaces", 10, 0)
	pl := New(&lines, Lines, "keyspaces", 10, 2)
	pn := New(&none, None, "keyspaces", 10, 0)
	for range 4 {
		pb.Add(2, 0)
		pl.Add(2, 0)
		pn.Add(2, 0)
		time.Sleep(110 * time.Millisecond)
	}
	pb.Add(1, 1)
	pb.Finish()
	pl.Finish()
	pn.Finish()
	if !contains(bar.String(), "\r\033[K[", "] 10/10 keyspaces 100%, 1 failed") || strings.Count(bar.String(), "\n") != 1 {
		t.Fatalf("bar: %q", bar.String())
	}
	if !contains(lines.String(), "2/10 keyspaces (20%)", "10/10 keyspaces (100%)") || strings.Contains(lines.String(), "\r") {
		t.Fatalf("lines: %q", lines.String())
	}
	if none.Len() != 0 {
		t.Fatalf("none: %q", none.String())
	}
	// A buffer is not a terminal.
	var auto bytes.Buffer
	New(&auto, Auto, "files", 1, 0).Finish()
	if strings.Contains(auto.String(), "\r") {
		t.Fatalf("auto on a buffer drew a bar: %q", auto.String())
	}
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
