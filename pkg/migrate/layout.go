package migrate

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"vitess.io/vitess/go/vt/topo"
)

// Layout lists the files Copy and Verify walk, as Vitess names them (a *
// is every entry of a directory). Locks, elections and other ephemeral
// entries are not topology and are not copied.
var Layout = struct{ Global, Cell []string }{
	Global: []string{
		path.Join(topo.CellsPath, "*", topo.CellInfoFile),
		path.Join(topo.CellsAliasesPath, "*", topo.CellsAliasFile),
		path.Join(topo.KeyspacesPath, "*", topo.KeyspaceFile),
		path.Join(topo.KeyspacesPath, "*", topo.VSchemaFile),
		path.Join(topo.KeyspacesPath, "*", topo.ShardsPath, "*", topo.ShardFile),
		topo.RoutingRulesFile,
		topo.ShardRoutingRulesFile,
		topo.MirrorRulesFile,
		path.Join(topo.RoutingRulesPath, topo.KeyspaceRoutingRulesPath, topo.CommonRoutingRulesFile),
		path.Join(topo.GetExternalVitessClusterDir(), "*"),
		path.Join(topo.MetadataPath, "*"),
	},
	Cell: []string{
		path.Join(topo.TabletsPath, "*", topo.TabletFile),
		path.Join(topo.KeyspacesPath, "*", topo.SrvKeyspaceFile),
		path.Join(topo.KeyspacesPath, "*", topo.ShardsPath, "*", topo.ShardReplicationFile),
		topo.SrvVSchemaFile,
	},
}

// WalkGlobal returns the paths of the files of Layout.Global in the global
// topology conn, sorted.
func WalkGlobal(ctx context.Context, conn topo.Conn) ([]string, error) {
	return walk(ctx, conn, Layout.Global)
}

// WalkCell returns the paths of the files of Layout.Cell in the cell
// topology conn, sorted.
func WalkCell(ctx context.Context, conn topo.Conn) ([]string, error) {
	return walk(ctx, conn, Layout.Cell)
}

// walk expands the patterns: a * segment is each entry of its directory, a
// last segment is a file that is there when its directory lists it.
func walk(ctx context.Context, conn topo.Conn, patterns []string) ([]string, error) {
	w := &walker{conn: conn, dirs: map[string][]string{}}
	var out []string
	for _, p := range patterns {
		files, err := w.expand(ctx, "", strings.Split(p, "/"))
		if err != nil {
			return nil, err
		}
		out = append(out, files...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// walker lists each directory once.
type walker struct {
	conn topo.Conn
	dirs map[string][]string
}

func (w *walker) list(ctx context.Context, dir string) ([]string, error) {
	if names, ok := w.dirs[dir]; ok {
		return names, nil
	}
	listPath := dir
	if listPath == "" {
		listPath = "/"
	}
	entries, err := w.conn.ListDir(ctx, listPath, false)
	if err != nil && !topo.IsErrType(err, topo.NoNode) {
		return nil, fmt.Errorf("list %s: %w", listPath, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name)
	}
	w.dirs[dir] = names
	return names, nil
}

func (w *walker) expand(ctx context.Context, dir string, segs []string) ([]string, error) {
	names, err := w.list(ctx, dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range names {
		if segs[0] != "*" && segs[0] != name {
			continue
		}
		p := path.Join(dir, name)
		if len(segs) == 1 {
			out = append(out, p)
			continue
		}
		sub, err := w.expand(ctx, p, segs[1:])
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}

// cellInfoPath is the global path of cell's CellInfo.
func cellInfoPath(cell string) string {
	return path.Join(topo.CellsPath, cell, topo.CellInfoFile)
}

// cellOfInfo returns the cell whose CellInfo is at global path p.
func cellOfInfo(p string) (string, bool) {
	parts := strings.Split(p, "/")
	if len(parts) == 3 && parts[0] == topo.CellsPath && parts[2] == topo.CellInfoFile {
		return parts[1], true
	}
	return "", false
}

// cellsOf returns the cells whose CellInfo is among global files, sorted.
func cellsOf(files []string) []string {
	var cells []string
	for _, p := range files {
		if cell, ok := cellOfInfo(p); ok {
			cells = append(cells, cell)
		}
	}
	slices.Sort(cells)
	return cells
}
