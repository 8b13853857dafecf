package main

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeShowsTheDemoCommands checks that the README's quick start has
// every vschemad command `make demo` prints with its defaults, from the
// repository's root, as a line of its own (a comment after it allowed).
func TestReadmeShowsTheDemoCommands(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	c := defaultConfig()
	c.binDir = "bin"
	cmds := c.tour(func(p string) string { return p }).Commands()
	if len(cmds) == 0 {
		t.Fatal("no vschemad command")
	}
	// A line of the README, less its comment.
	lines := map[string]bool{}
	for _, l := range strings.Split(string(readme), "\n") {
		cmd, _, _ := strings.Cut(l, "   # ")
		lines[strings.TrimSpace(cmd)] = true
	}
	for _, cmd := range cmds {
		if !lines[cmd.Line] {
			t.Errorf("README.md lacks the line %q", cmd.Line)
		}
	}
}
