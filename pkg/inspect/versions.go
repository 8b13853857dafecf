package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrNoHistory: the Source cannot list past versions (topod's API reads a
// version it is given, but does not list them).
var ErrNoHistory = errors.New("listing a file's past versions needs the backend itself (--backend, --blobs): topod's API reads a version it is given (--version N) but does not list them")

// Version is one version of a file the backend holds.
type Version struct {
	Version int64  `json:"version"`
	Current bool   `json:"current,omitempty"`
	Stored  Stored `json:"stored"`
}

// Versions lists the versions of the file at key the backend still holds,
// oldest first, the current one last (if the file exists): the versions
// GetVersion, and so Get, ReadManifest and Compare, can read.
func Versions(ctx context.Context, src Source, key string) ([]Version, error) {
	h, ok := src.(Historian)
	if !ok {
		return nil, fmt.Errorf("%s in %s: %w", key, src, ErrNoHistory)
	}
	past, err := h.History(ctx, key)
	if err != nil {
		return nil, err
	}
	cur, err := src.Get(ctx, key)
	exists := err == nil
	switch {
	case errors.Is(err, ErrNotFound) && len(past) > 0: // deleted since
	case err != nil:
		return nil, err
	default:
		past = append(past, cur)
	}
	out := make([]Version, 0, len(past))
	for i, v := range past {
		st, err := parse(v)
		if err != nil {
			return nil, err
		}
		out = append(out, Version{Version: v.Version, Stored: st, Current: exists && i == len(past)-1})
	}
	return out, nil
}

// WriteVersions writes versions as a table.
func WriteVersions(w io.Writer, versions []Version) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "VERSION\tSIZE\tSTORED\tROOT\tSTATE")
	for _, v := range versions {
		cur := "past"
		if v.Current {
			cur = "current"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.Version, bytesString(v.Stored.Size), v.Stored, dashed(v.Stored.Root), cur)
	}
	return tw.Flush()
}
