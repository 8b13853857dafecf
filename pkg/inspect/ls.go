package inspect

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Entry is one line of a listing: a file, or a directory with what is
// under it.
type Entry struct {
	// Name is the path relative to the directory listed; a directory's
	// ends with "/".
	Name string `json:"name"`
	Path string `json:"path"`
	Dir  bool   `json:"dir,omitempty"`
	// Files is, for a directory, how many files are under it.
	Files int `json:"files,omitempty"`
	// Type is the file's Vitess proto type, if it is one.
	Type string `json:"type,omitempty"`
	// Size is the file's contents in bytes; a directory's, the total of
	// its files'.
	Size int64 `json:"size"`
	// Stored says how a file's contents are kept.
	Stored *Stored `json:"stored,omitempty"`
	// Version is the file's version; a directory's, the highest of its
	// files'.
	Version int64 `json:"version"`
}

// Ls lists the directory dir (a backend key, "/" for everything): its
// files with their sizes, how each is stored and its version, and its
// subdirectories with how many files and bytes they hold; with recursive,
// every file under dir instead. A dir that is a file lists that file. It
// reads records only, never blobs: sizes are the records' own.
func Ls(ctx context.Context, src Source, dir string, recursive bool) ([]Entry, error) {
	// topod lists raw prefixes and takes none ending in "/" but the root:
	// list dir, keep what is under dir/.
	dir = strings.TrimSuffix(dir, "/")
	prefix := dir + "/"
	if dir == "" {
		dir = "/"
	}
	all, err := src.List(ctx, dir)
	if err != nil {
		return nil, err
	}
	values := all[:0:0]
	for _, v := range all {
		if strings.HasPrefix(v.Key, prefix) {
			values = append(values, v)
		}
	}
	if len(values) == 0 {
		if dir == "/" {
			return nil, nil // an empty store
		}
		v, err := src.Get(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("ls %s: no file or directory: %w", dir, err)
		}
		e, err := fileEntry(v, v.Key[strings.LastIndexByte(v.Key, '/')+1:])
		if err != nil {
			return nil, err
		}
		return []Entry{e}, nil
	}
	var out []Entry
	dirs := map[string]int{} // name → index in out
	for _, v := range values {
		rel := strings.TrimPrefix(v.Key, prefix)
		i := strings.IndexByte(rel, '/')
		if recursive || i < 0 {
			e, err := fileEntry(v, rel)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
			continue
		}
		name := rel[:i+1]
		st, err := parse(v)
		if err != nil {
			return nil, err
		}
		j, ok := dirs[name]
		if !ok {
			j = len(out)
			dirs[name] = j
			out = append(out, Entry{Name: name, Path: prefix + rel[:i], Dir: true})
		}
		d := &out[j]
		d.Files++
		d.Size += st.Size
		d.Version = max(d.Version, v.Version)
	}
	return out, nil
}

func fileEntry(v Value, name string) (Entry, error) {
	st, err := parse(v)
	if err != nil {
		return Entry{}, err
	}
	return Entry{Name: name, Path: v.Key, Type: TypeName(v.Key), Size: st.Size, Stored: &st, Version: v.Version}, nil
}

// WriteLs writes a listing as a table.
func WriteLs(w io.Writer, entries []Entry) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tTYPE\tSIZE\tSTORED\tVERSION")
	for _, e := range entries {
		if e.Dir {
			fmt.Fprintf(tw, "%s\tdirectory\t%s\t%s\t%d\n", e.Name, bytesString(e.Size), plural(e.Files, "file"), e.Version)
			continue
		}
		typ := e.Type
		if typ == "" {
			typ = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", e.Name, typ, bytesString(e.Size), e.Stored, e.Version)
	}
	return tw.Flush()
}
