// Package migrate copies a Vitess topology from one topo implementation to
// another (stock etcd2 into topod, or topod back into etcd2) and verifies
// that the destination holds what the source does.
//
// # Raw files, found with Vitess's own layout
//
// Both sides are opened as Vitess topo.Servers (topo.OpenServer) and read and
// written through their topo.Conn, the global one and each cell's
// (topo.Server.ConnForCell). The files are found by walking the paths Vitess
// itself writes, named by the topo package's constants (topo.CellsPath,
// topo.KeyspacesPath, topo.SrvVSchemaFile, ...): see [Layout]. Each file is
// copied as the bytes Vitess stored, not decoded and re-encoded through the
// typed helpers (GetShard then UpdateShardFields, ...): re-encoding could
// drop fields this Vitess does not know and would change the bytes a newer
// one wrote, and the typed helpers have side effects (CreateShard computes
// its own serving state, CreateTablet updates ShardReplication, ...). The
// one file transformed is each cell's CellInfo, whose server address and
// root must point into the destination (see [Options]).
//
// # Idempotent and resumable
//
// A file whose destination value already equals the source's (the same
// bytes, or the same proto message: topod keeps a SrvVSchema by keyspace and
// encodes it anew when read, its maps in another order) is left alone,
// so a second run copies nothing, and a run interrupted half-way is resumed
// by running it again. Files are never deleted from the destination; Verify
// reports those the source lacks.
//
// # What does not fit
//
// A file the destination refuses (stock etcd2 refuses values over etcd's
// request limit, 1.5 MiB by default: a large SrvVSchema) is reported with
// its path and the destination's error, and every other file is still
// copied.
//
// # Verify
//
// Verify walks both sides and compares every file, decoded into its Vitess
// proto type (topodata.Keyspace, vschema.SrvVSchema, ...) and compared with
// proto.Equal, or byte for byte when the path has no known type. It returns
// each difference by path.
package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"vitess.io/vitess/go/vt/topo"

	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/srvvschema"
)

// DefaultConcurrency is how many files are copied or compared at once.
const DefaultConcurrency = 16

// Options say how to map cells and how to report progress.
type Options struct {
	// CellAddress is the server address written into every destination
	// CellInfo: the destination's address (for topod, its gRPC address).
	CellAddress string
	// CellAddresses gives a cell named in it its own destination address
	// instead of CellAddress: one store per cell (each cell's topod on its
	// own etcd). Every cell named must be a cell of the source.
	CellAddresses map[string]string
	// CellRootPrefix is the directory of the destination cell roots: cell
	// C's root is CellRootPrefix + "/" + C. DefaultCellRootPrefix gives
	// the usual one, the parent of the destination's global root.
	CellRootPrefix string
	// Concurrency is how many files are copied or compared at once
	// (DefaultConcurrency if 0).
	Concurrency int
	// Progress, if set, is told how far a Copy or a Verify got: once at
	// the start, after each file, and with each file that failed. Its
	// calls do not overlap.
	Progress func(Progress)
}

// Progress is how far a Copy or a Verify got.
type Progress struct {
	Step   string // "copy" or "verify"
	Total  int    // files of the source
	Done   int    // of them, copied (or compared), failed included
	Failed int    // failed to copy, or found different
	// Failure, when set, is the file that just failed to copy, and why.
	Failure *Failure
}

// progress reports to Options.Progress; a nil *progress reports nothing.
type progress struct {
	mu     sync.Mutex
	report func(Progress)
	p      Progress
}

func newProgress(f func(Progress), step string, total int) *progress {
	if f == nil {
		return nil
	}
	r := &progress{report: f, p: Progress{Step: step, Total: total}}
	f(r.p)
	return r
}

// add counts done files, failed of them failed, failure the one that did.
func (r *progress) add(done, failed int, failure *Failure) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.p.Done += done
	r.p.Failed += failed
	p := r.p
	p.Failure = failure
	r.report(p)
}

// DefaultCellRootPrefix returns the parent of the global root globalRoot:
// with a global root of /vitess/global, cell zone1's root is /vitess/zone1.
func DefaultCellRootPrefix(globalRoot string) string {
	return path.Dir(path.Clean("/" + globalRoot))
}

// CellInfo returns the destination CellInfo of cell, whose source CellInfo
// is src: src with the server address and root of the destination.
func (o Options) CellInfo(cell string, src *topodatapb.CellInfo) *topodatapb.CellInfo {
	ci := proto.Clone(src).(*topodatapb.CellInfo)
	ci.ServerAddress = o.CellAddress
	if addr, ok := o.CellAddresses[cell]; ok {
		ci.ServerAddress = addr
	}
	ci.Root = path.Join(o.CellRootPrefix, cell)
	return ci
}

// File is one topology file: the cell whose topology holds it
// (topo.GlobalCell for the global one) and its path under that root.
type File struct {
	Cell string
	Path string
}

func (f File) String() string { return f.Cell + ":" + f.Path }

// Failure is a file that could not be copied.
type Failure struct {
	File File
	Err  error
}

// Report is what a Copy did.
type Report struct {
	Files     int       // files found in the source
	Created   int       // created in the destination
	Updated   int       // overwritten in the destination (their bytes differed)
	Unchanged int       // already identical in the destination
	Vanished  int       // deleted from the source while the copy ran
	Failed    []Failure // not copied, sorted by file
}

// Copied is the number of files written to the destination.
func (r *Report) Copied() int { return r.Created + r.Updated }

// Summary is a one-line account of the report.
func (r *Report) Summary() string {
	return fmt.Sprintf("%d files: %d created, %d updated, %d unchanged, %d vanished from the source, %d failed",
		r.Files, r.Created, r.Updated, r.Unchanged, r.Vanished, len(r.Failed))
}

// Copy copies the topology of from into to: the global files first (the
// cells' CellInfos mapped by opts), then each cell's. Files that fail are
// reported in the Report's Failed and the rest copied; the error is
// non-nil if the source could not be walked, the context ended, or a file
// failed.
func Copy(ctx context.Context, from, to *topo.Server, opts Options) (*Report, error) {
	if opts.CellAddress == "" || opts.CellRootPrefix == "" {
		return nil, errors.New("migrate: the destination cell address and cell root prefix are required")
	}
	ctx = srvvschema.WithFreshReads(ctx)
	w, err := walkSource(ctx, from, to)
	if err != nil {
		return nil, err
	}
	srcGlobal, dstGlobal, global, cells, perCell, total := w.srcGlobal, w.dstGlobal, w.global, w.cells, w.perCell, w.total
	for cell := range opts.CellAddresses {
		if !slices.Contains(cells, cell) {
			return nil, fmt.Errorf("migrate: cell %q has a destination address of its own but is not a cell of the source (cells: %s)", cell, strings.Join(cells, ", "))
		}
	}
	c := &copier{opts: opts, report: &Report{Files: total}, prog: newProgress(opts.Progress, "copy", total)}
	// The global files, CellInfos included, before the cells: a cell's
	// destination connection comes from its destination CellInfo.
	if err := c.copyAll(ctx, srcGlobal, dstGlobal, topo.GlobalCell, global); err != nil {
		return c.report, err
	}
	for _, cell := range cells {
		files := perCell[cell]
		if f := (File{topo.GlobalCell, cellInfoPath(cell)}); c.failed(f) {
			c.fail(File{cell, ""}, fmt.Errorf("skipped the cell's %d files: its CellInfo was not copied", len(files)), len(files))
			continue
		}
		src, err := from.ConnForCell(ctx, cell)
		if err != nil {
			return c.report, fmt.Errorf("migrate: source cell %s: %w", cell, err)
		}
		dst, err := to.ConnForCell(ctx, cell)
		if err != nil {
			c.fail(File{cell, ""}, fmt.Errorf("destination cell: %w", err), len(files))
			continue
		}
		if err := c.copyAll(ctx, src, dst, cell, files); err != nil {
			return c.report, err
		}
	}
	sort.Slice(c.report.Failed, func(i, j int) bool {
		return c.report.Failed[i].File.String() < c.report.Failed[j].File.String()
	})
	if n := len(c.report.Failed); n > 0 {
		return c.report, fmt.Errorf("migrate: %d files not copied", n)
	}
	return c.report, nil
}

// sourceFiles is the source's files, found by walkSource, and the global
// connections of both sides.
type sourceFiles struct {
	srcGlobal, dstGlobal topo.Conn
	global               []string            // the source's global files
	cells                []string            // the source's cells
	perCell              map[string][]string // each cell's files
	total                int                 // files in all
}

// walkSource opens the global topologies of from and to, and walks the
// global topology of from and each of its cells.
func walkSource(ctx context.Context, from, to *topo.Server) (*sourceFiles, error) {
	w := &sourceFiles{perCell: map[string][]string{}}
	var err error
	if w.srcGlobal, err = from.ConnForCell(ctx, topo.GlobalCell); err != nil {
		return nil, fmt.Errorf("migrate: source global topology: %w", err)
	}
	if w.dstGlobal, err = to.ConnForCell(ctx, topo.GlobalCell); err != nil {
		return nil, fmt.Errorf("migrate: destination global topology: %w", err)
	}
	if w.global, err = WalkGlobal(ctx, w.srcGlobal); err != nil {
		return nil, fmt.Errorf("migrate: walk the source global topology: %w", err)
	}
	w.cells = cellsOf(w.global)
	w.total = len(w.global)
	for _, cell := range w.cells {
		conn, err := from.ConnForCell(ctx, cell)
		if err != nil {
			return nil, fmt.Errorf("migrate: source cell %s: %w", cell, err)
		}
		files, err := WalkCell(ctx, conn)
		if err != nil {
			return nil, fmt.Errorf("migrate: walk the source cell %s: %w", cell, err)
		}
		w.perCell[cell] = files
		w.total += len(files)
	}
	return w, nil
}

// copier copies files and keeps the report.
type copier struct {
	opts   Options
	prog   *progress
	mu     sync.Mutex
	report *Report
}

func (c *copier) failed(f File) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.report.Failed, func(x Failure) bool { return x.File == f })
}

// fail records a failure standing for n files.
func (c *copier) fail(f File, err error, n int) {
	fl := Failure{File: f, Err: err}
	c.mu.Lock()
	c.report.Failed = append(c.report.Failed, fl)
	c.mu.Unlock()
	c.prog.add(n, n, &fl)
}

func (c *copier) copyAll(ctx context.Context, src, dst topo.Conn, cell string, files []string) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency(c.opts))
	for _, p := range files {
		g.Go(func() error {
			f := File{cell, p}
			out, err := c.copyFile(gctx, src, dst, f)
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				c.fail(f, err, 1)
				return nil
			}
			c.mu.Lock()
			switch out {
			case created:
				c.report.Created++
			case updated:
				c.report.Updated++
			case unchanged:
				c.report.Unchanged++
			case vanished:
				c.report.Vanished++
			}
			c.mu.Unlock()
			c.prog.add(1, 0, nil)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("migrate: copy %s: %w", cell, err)
	}
	return ctx.Err()
}

type outcome int

const (
	created outcome = iota
	updated
	unchanged
	vanished
)

// copyFile copies one file, mapping a CellInfo.
func (c *copier) copyFile(ctx context.Context, src, dst topo.Conn, f File) (outcome, error) {
	data, _, err := src.Get(ctx, f.Path)
	if topo.IsErrType(err, topo.NoNode) {
		return vanished, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the source: %w", err)
	}
	if f.Cell == topo.GlobalCell {
		if cell, ok := cellOfInfo(f.Path); ok {
			if data, err = c.mapCellInfo(cell, data); err != nil {
				return 0, err
			}
		}
	}
	for attempt := 0; ; attempt++ {
		cur, version, err := dst.Get(ctx, f.Path)
		switch {
		case topo.IsErrType(err, topo.NoNode):
			_, err := dst.Create(ctx, f.Path, data)
			if topo.IsErrType(err, topo.NodeExists) && attempt == 0 {
				continue // created meanwhile: compare again
			}
			if err != nil {
				return 0, fmt.Errorf("create in the destination: %w", err)
			}
			return created, nil
		case err != nil:
			return 0, fmt.Errorf("read the destination: %w", err)
		case bytes.Equal(cur, data) || differ(f.Path, data, cur) == "":
			// Equal as Vitess reads them: topod stores a SrvVSchema by
			// keyspace and encodes it anew, in another map order.
			return unchanged, nil
		}
		if cell, ok := cellOfInfo(f.Path); ok && f.Cell == topo.GlobalCell {
			// Never repoint a cell that already exists elsewhere.
			return 0, fmt.Errorf("the destination already has cell %s at %s; the migration maps it to %s: remove that cell or choose the cell root prefix accordingly",
				cell, describeCellInfo(cur), describeCellInfo(data))
		}
		if _, err := dst.Update(ctx, f.Path, data, version); err != nil {
			if topo.IsErrType(err, topo.BadVersion) && attempt == 0 {
				continue
			}
			return 0, fmt.Errorf("update in the destination: %w", err)
		}
		return updated, nil
	}
}

func (c *copier) mapCellInfo(cell string, data []byte) ([]byte, error) {
	ci := &topodatapb.CellInfo{}
	if err := proto.Unmarshal(data, ci); err != nil {
		return nil, fmt.Errorf("decode the source CellInfo: %w", err)
	}
	out, err := proto.Marshal(c.opts.CellInfo(cell, ci))
	if err != nil {
		return nil, fmt.Errorf("encode the destination CellInfo: %w", err)
	}
	return out, nil
}

func describeCellInfo(data []byte) string {
	ci := &topodatapb.CellInfo{}
	if err := proto.Unmarshal(data, ci); err != nil {
		return fmt.Sprintf("(undecodable: %v)", err)
	}
	return fmt.Sprintf("root %q on %q", ci.Root, ci.ServerAddress)
}

func concurrency(o Options) int {
	if o.Concurrency > 0 {
		return o.Concurrency
	}
	return DefaultConcurrency
}

// Difference is a file that differs between source and destination.
type Difference struct {
	File File
	// What says how: "missing in the destination", "only in the
	// destination", or "differs" followed by both values.
	What string
}

func (d Difference) String() string { return d.File.String() + ": " + d.What }

// Verify compares the topology of from with that of to, CellInfos mapped by
// opts, and returns every difference, sorted by file. The error is for
// what could not be read.
func Verify(ctx context.Context, from, to *topo.Server, opts Options) ([]Difference, error) {
	ctx = srvvschema.WithFreshReads(ctx)
	w, err := walkSource(ctx, from, to)
	if err != nil {
		return nil, err
	}
	srcGlobal, dstGlobal, global, cells, perCell, total := w.srcGlobal, w.dstGlobal, w.global, w.cells, w.perCell, w.total
	dstFiles, err := WalkGlobal(ctx, dstGlobal)
	if err != nil {
		return nil, fmt.Errorf("migrate: walk the destination global topology: %w", err)
	}
	v := &verifier{opts: opts, prog: newProgress(opts.Progress, "verify", total)}
	if err := v.compareAll(ctx, srcGlobal, dstGlobal, topo.GlobalCell, global, dstFiles); err != nil {
		return nil, err
	}
	dstCells := cellsOf(dstFiles)
	for _, cell := range cells {
		srcFiles := perCell[cell]
		if !slices.Contains(dstCells, cell) {
			for _, p := range srcFiles {
				v.add(File{cell, p}, "missing in the destination (the cell is)")
			}
			continue
		}
		src, err := from.ConnForCell(ctx, cell)
		if err != nil {
			return nil, fmt.Errorf("migrate: source cell %s: %w", cell, err)
		}
		dst, err := to.ConnForCell(ctx, cell)
		if err != nil {
			return nil, fmt.Errorf("migrate: destination cell %s: %w", cell, err)
		}
		dstFiles, err := WalkCell(ctx, dst)
		if err != nil {
			return nil, fmt.Errorf("migrate: walk the destination cell %s: %w", cell, err)
		}
		if err := v.compareAll(ctx, src, dst, cell, srcFiles, dstFiles); err != nil {
			return nil, err
		}
	}
	sort.Slice(v.diffs, func(i, j int) bool { return v.diffs[i].File.String() < v.diffs[j].File.String() })
	return v.diffs, nil
}

type verifier struct {
	opts  Options
	prog  *progress
	mu    sync.Mutex
	diffs []Difference
}

// add records a difference; a file of the source counts as done (and
// failed) in the progress.
func (v *verifier) add(f File, what string) {
	v.mu.Lock()
	v.diffs = append(v.diffs, Difference{File: f, What: what})
	v.mu.Unlock()
	if what != onlyInDestination {
		v.prog.add(1, 1, nil)
	}
}

const onlyInDestination = "only in the destination"

func (v *verifier) compareAll(ctx context.Context, src, dst topo.Conn, cell string, srcFiles, dstFiles []string) error {
	inDst := map[string]bool{}
	for _, p := range dstFiles {
		inDst[p] = true
	}
	for _, p := range srcFiles {
		delete(inDst, p)
	}
	for p := range inDst {
		v.add(File{cell, p}, onlyInDestination)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency(v.opts))
	for _, p := range srcFiles {
		g.Go(func() error {
			f := File{cell, p}
			what, err := v.compare(gctx, src, dst, f)
			if err != nil {
				return fmt.Errorf("migrate: verify %s: %w", f, err)
			}
			if what != "" {
				v.add(f, what)
			} else {
				v.prog.add(1, 0, nil)
			}
			return nil
		})
	}
	return g.Wait()
}

// compare returns how file f differs, or "" if it does not.
func (v *verifier) compare(ctx context.Context, src, dst topo.Conn, f File) (string, error) {
	want, _, err := src.Get(ctx, f.Path)
	if topo.IsErrType(err, topo.NoNode) {
		return "", nil // deleted since the walk
	}
	if err != nil {
		return "", fmt.Errorf("read the source: %w", err)
	}
	got, _, err := dst.Get(ctx, f.Path)
	if topo.IsErrType(err, topo.NoNode) {
		return "missing in the destination", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the destination: %w", err)
	}
	if cell, ok := cellOfInfo(f.Path); ok && f.Cell == topo.GlobalCell {
		ci := &topodatapb.CellInfo{}
		if err := proto.Unmarshal(want, ci); err != nil {
			return "", fmt.Errorf("decode the source CellInfo: %w", err)
		}
		if want, err = proto.Marshal(v.opts.CellInfo(cell, ci)); err != nil {
			return "", err
		}
	}
	return differ(f.Path, want, got), nil
}

// differ compares the values of a file at p, decoded into their type when
// the path has one, and says how they differ ("" if they do not).
func differ(p string, want, got []byte) string {
	msg := messageFor(p)
	if msg == nil {
		if bytes.Equal(want, got) {
			return ""
		}
		return fmt.Sprintf("differs: source %d bytes, destination %d bytes", len(want), len(got))
	}
	w, g := msg.ProtoReflect().New().Interface(), msg.ProtoReflect().New().Interface()
	werr, gerr := proto.Unmarshal(want, w), proto.Unmarshal(got, g)
	switch {
	case werr != nil || gerr != nil:
		if bytes.Equal(want, got) {
			return ""
		}
		return fmt.Sprintf("differs: source %d bytes (decode: %v), destination %d bytes (decode: %v)", len(want), werr, len(got), gerr)
	case proto.Equal(w, g):
		return ""
	}
	return fmt.Sprintf("differs: source %s, destination %s", brief(w, len(want)), brief(g, len(got)))
}

// brief is a value in text form, cut short when long.
func brief(m proto.Message, size int) string {
	const max = 300
	s := prototext.MarshalOptions{}.Format(m)
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("(%d bytes) {%s}", size, s)
}

// messageFor returns an empty message of the type Vitess stores at p, or
// nil.
func messageFor(p string) proto.Message {
	dir, name := path.Split(p)
	switch name {
	case topo.CellInfoFile:
		return &topodatapb.CellInfo{}
	case topo.CellsAliasFile:
		return &topodatapb.CellsAlias{}
	case topo.KeyspaceFile:
		return &topodatapb.Keyspace{}
	case topo.ShardFile:
		return &topodatapb.Shard{}
	case topo.VSchemaFile:
		return &vschemapb.Keyspace{}
	case topo.ShardReplicationFile:
		return &topodatapb.ShardReplication{}
	case topo.TabletFile:
		return &topodatapb.Tablet{}
	case topo.SrvVSchemaFile:
		return &vschemapb.SrvVSchema{}
	case topo.SrvKeyspaceFile:
		return &topodatapb.SrvKeyspace{}
	case topo.RoutingRulesFile:
		return &vschemapb.RoutingRules{}
	case topo.ShardRoutingRulesFile:
		return &vschemapb.ShardRoutingRules{}
	case topo.MirrorRulesFile:
		return &vschemapb.MirrorRules{}
	case topo.CommonRoutingRulesFile:
		if path.Clean(dir) == path.Join(topo.RoutingRulesPath, topo.KeyspaceRoutingRulesPath) {
			return &vschemapb.KeyspaceRoutingRules{}
		}
	}
	if path.Clean(dir) == topo.GetExternalVitessClusterDir() {
		return &topodatapb.ExternalVitessCluster{}
	}
	return nil
}
