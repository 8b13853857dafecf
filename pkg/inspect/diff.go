package inspect

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Ref names a SrvVSchema: a path and a version (0: the current one).
type Ref struct {
	Key     string
	Version int64
}

func (r Ref) String() string {
	if r.Version == 0 {
		return r.Key
	}
	return fmt.Sprintf("%s at version %d", r.Key, r.Version)
}

// Side is one of the SrvVSchemas compared.
type Side struct {
	Path      string `json:"path"`
	Version   int64  `json:"version"`
	Root      string `json:"root"`
	Size      int64  `json:"size"`
	Keyspaces int    `json:"keyspaces"`
	// Computed: stored inline; Root is the root the codec would give it.
	Computed bool `json:"computed,omitempty"`
}

// Change is a keyspace (or part) that differs.
type Change struct {
	Name string `json:"name"`
	// Change is "added", "removed" or "changed".
	Change   string `json:"change"`
	FromHash string `json:"from_hash,omitempty"`
	FromSize int64  `json:"from_size,omitempty"`
	ToHash   string `json:"to_hash,omitempty"`
	ToSize   int64  `json:"to_size,omitempty"`
}

// Diff is what differs between two SrvVSchemas, keyspace by keyspace.
type Diff struct {
	From Side `json:"from"`
	To   Side `json:"to"`
	// Keyspaces are the keyspaces added, removed or changed, by name.
	Keyspaces []Change `json:"keyspaces"`
	// Parts are the routing rules and other non-keyspace fields that
	// differ.
	Parts []Change `json:"parts"`
	// Unchanged is how many keyspaces both have the same.
	Unchanged int `json:"unchanged_keyspaces"`
}

// Empty says whether the two are the same.
func (d *Diff) Empty() bool { return len(d.Keyspaces) == 0 && len(d.Parts) == 0 }

// Compare compares two SrvVSchemas keyspace by keyspace: two versions of
// one (within the backend's history, see the package documentation), or
// two cells'. A keyspace's vschema is one piece named by its hash, so a
// keyspace changed exactly when its piece's hash did; only the manifests
// (root and leaves) are fetched, never the pieces.
func Compare(ctx context.Context, src Source, from, to Ref, opts Options) (*Diff, error) {
	a, err := ReadManifest(ctx, src, from.Key, from.Version, opts)
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", from, err)
	}
	b, err := ReadManifest(ctx, src, to.Key, to.Version, opts)
	if err != nil {
		return nil, fmt.Errorf("to %s: %w", to, err)
	}
	d := &Diff{From: side(a), To: side(b)}
	d.Keyspaces, d.Unchanged = comparePieces(a.Keyspaces, b.Keyspaces)
	d.Parts, _ = comparePieces(a.Parts, b.Parts)
	return d, nil
}

func side(m *Manifest) Side {
	return Side{Path: m.Path, Version: m.Version, Root: m.Root, Size: m.Size, Keyspaces: len(m.Keyspaces), Computed: m.Computed}
}

// comparePieces compares two lists of pieces sorted by name.
func comparePieces(from, to []Piece) (changes []Change, same int) {
	changes = []Change{}
	for len(from) > 0 || len(to) > 0 {
		switch {
		case len(to) == 0 || (len(from) > 0 && from[0].Name < to[0].Name):
			changes = append(changes, Change{Name: from[0].Name, Change: "removed", FromHash: from[0].Hash, FromSize: from[0].Size})
			from = from[1:]
		case len(from) == 0 || to[0].Name < from[0].Name:
			changes = append(changes, Change{Name: to[0].Name, Change: "added", ToHash: to[0].Hash, ToSize: to[0].Size})
			to = to[1:]
		default:
			if from[0].Hash != to[0].Hash {
				changes = append(changes, Change{Name: to[0].Name, Change: "changed",
					FromHash: from[0].Hash, FromSize: from[0].Size, ToHash: to[0].Hash, ToSize: to[0].Size})
			} else {
				same++
			}
			from, to = from[1:], to[1:]
		}
	}
	slices.SortStableFunc(changes, func(a, b Change) int { return strings.Compare(a.Name, b.Name) })
	return changes, same
}

// WriteText writes the diff for a person: both sides, then a table of
// what differs.
func (d *Diff) WriteText(w io.Writer) error {
	for _, s := range []struct {
		label string
		side  Side
	}{{"from", d.From}, {"to", d.To}} {
		note := ""
		if s.side.Computed {
			note = " (inline; root as the codec would store it)"
		}
		fmt.Fprintf(w, "%-5s %s version %d: %s, %s, root %s%s\n", s.label, s.side.Path, s.side.Version, plural(s.side.Keyspaces, "keyspace"), bytesString(s.side.Size), s.side.Root, note)
	}
	if d.Empty() {
		_, err := fmt.Fprintf(w, "no difference: %s the same\n", plural(d.Unchanged, "keyspace"))
		return err
	}
	fmt.Fprintf(w, "differ: %s (%d the same), %s\n\n", plural(len(d.Keyspaces), "keyspace"), d.Unchanged, plural(len(d.Parts), "other part"))
	tw := newTable(w)
	fmt.Fprintln(tw, "KEYSPACE\tCHANGE\tFROM BYTES\tTO BYTES\tFROM HASH\tTO HASH")
	row := func(c Change) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Change, orDash(c.FromHash, c.FromSize), orDash(c.ToHash, c.ToSize), short(c.FromHash), short(c.ToHash))
	}
	for _, c := range d.Keyspaces {
		row(c)
	}
	if len(d.Parts) > 0 {
		fmt.Fprintln(tw, "\t\t\t\t\t")
		fmt.Fprintln(tw, "PART\tCHANGE\tFROM BYTES\tTO BYTES\tFROM HASH\tTO HASH")
		for _, c := range d.Parts {
			row(c)
		}
	}
	return tw.Flush()
}

func orDash(hash string, size int64) string {
	if hash == "" {
		return "-"
	}
	return fmt.Sprint(size)
}

// short is a hash's first 12 characters (--json has them whole), "-" for
// none.
func short(s string) string {
	switch {
	case s == "":
		return "-"
	case len(s) > 12:
		return s[:12]
	}
	return s
}
