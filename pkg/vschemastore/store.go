package vschemastore

// This file is the vschema service over a Vitess topology (any
// topo.Server: topod, etcd2, ...): read, validate, write a keyspace's
// vschema in the global topology, then bring every cell's SrvVSchema in
// step by changing only that keyspace's piece (cells.go).

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"
	"vitess.io/vitess/go/vt/sqlparser"
	"vitess.io/vitess/go/vt/topo"

	"github.com/topod-io/topod/pkg/retry"
	"github.com/topod-io/topod/pkg/srvvschema"
)

// Errors of Store operations, wrapped with the operation and the path.
var (
	// ErrNotFound: the keyspace has no vschema, or the version is gone.
	ErrNotFound = errors.New("not found")
	// ErrNoKeyspace: the keyspace does not exist in the topology (create it
	// first, as vtctld requires).
	ErrNoKeyspace = errors.New("keyspace does not exist")
	// ErrVersionMismatch: the If-Match version is not the current one.
	ErrVersionMismatch = errors.New("version mismatch")
	// ErrBadRequest: the request is not well-formed (bad names, bad
	// versions, a keyspace twice in one batch).
	ErrBadRequest = errors.New("bad request")
	// ErrContention: a compare-and-set lost to other writers every time it
	// was tried; nothing was written by it.
	ErrContention = errors.New("too much contention")
)

// maxAttempts bounds the compare-and-set retries of one write; between
// attempts, the loop's backoff waits a little longer each time (about 6 s
// in all).
const maxAttempts = 40

// casBackoff is the backoff of one compare-and-set loop: 1 ms doubling up
// to 200 ms, jittered (package retry), so that writers that collided do not
// collide again, and a topology read cache that lags a moment catches up.
func casBackoff() *retry.Backoff { return retry.New(time.Millisecond, 200*time.Millisecond) }

// pause waits before attempt (from 0, which does not wait) of a
// compare-and-set loop.
func pause(ctx context.Context, wait *retry.Backoff, attempt int) error {
	if attempt <= 0 {
		return ctx.Err()
	}
	return wait.Wait(ctx)
}

// StoreOptions adjust a Store.
type StoreOptions struct {
	// Parser parses the SQL bits of vschemas (defaults, sequences); by
	// default one for Vitess's default MySQL version.
	Parser *sqlparser.Parser
	// RecordConn, if set, returns the record-level connection of a cell,
	// for the topod fast path (fast.go); it returns nil when the cell's
	// topology has none, and the portable path is used.
	RecordConn func(ctx context.Context, cell string) (RecordConn, error)
	// CellRoundTimeout bounds one round of updates of a cell's SrvVSchema
	// (DefaultCellRoundTimeout if 0): a cell whose store does not answer
	// within it is reported failed, and the other cells are not held up.
	CellRoundTimeout time.Duration
}

// DefaultCellRoundTimeout is the default Options.CellRoundTimeout: long
// enough to rebuild a JD-scale SrvVSchema whole, short enough that a write
// answers while a cell's store is down.
const DefaultCellRoundTimeout = time.Minute

// Store reads and writes vschemas and rules in a Vitess topology and keeps
// the cells' SrvVSchemas in step. It is safe for concurrent use; writes of
// one keyspace are serialised within the process and compare-and-set
// against other processes.
type Store struct {
	ts     *topo.Server
	parser *sqlparser.Parser
	opts   StoreOptions

	seed  maphash.Seed
	locks [256]sync.Mutex // keyspace locks, striped by name

	cellsMu sync.Mutex
	cells   map[string]*cellSyncer

	manifests sync.Map // cell -> *srvvschema.Manifest last written or read (fast path)
}

// NewStore returns a Store on ts.
func NewStore(ts *topo.Server, opts StoreOptions) (*Store, error) {
	if opts.Parser == nil {
		p, err := sqlparser.New(sqlparser.Options{})
		if err != nil {
			return nil, fmt.Errorf("vschema: new store: sql parser: %w", err)
		}
		opts.Parser = p
	}
	if opts.CellRoundTimeout <= 0 {
		opts.CellRoundTimeout = DefaultCellRoundTimeout
	}
	return &Store{ts: ts, parser: opts.Parser, opts: opts, seed: maphash.MakeSeed(), cells: map[string]*cellSyncer{}}, nil
}

// Topo returns the topology server.
func (s *Store) Topo() *topo.Server { return s.ts }

// Parser returns the SQL parser used for validation.
func (s *Store) Parser() *sqlparser.Parser { return s.parser }

// vschemaPath is the global topology path of a keyspace's vschema.
func vschemaPath(keyspace string) string {
	return path.Join(topo.KeyspacesPath, keyspace, topo.VSchemaFile)
}

func (s *Store) global(ctx context.Context) (topo.Conn, error) {
	return s.ts.ConnForCell(ctx, topo.GlobalCell)
}

// lockKeyspaces locks the keyspaces' stripes in order and returns the
// unlock.
func (s *Store) lockKeyspaces(names []string) func() {
	idx := make([]int, 0, len(names))
	for _, n := range names {
		idx = append(idx, int(maphash.String(s.seed, n)%uint64(len(s.locks))))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		s.locks[i].Lock()
	}
	return func() {
		for _, i := range slices.Backward(idx) {
			s.locks[i].Unlock()
		}
	}
}

// versionString is a topo.Version as the API shows it ("" for none).
func versionString(v topo.Version) string {
	if v == nil {
		return ""
	}
	return v.String()
}

// ParseVersion parses a version as the API shows it: the decimal revision
// of topod and etcd2 (other topologies' versions are not numbers and have
// no history).
func ParseVersion(v string) (int64, error) {
	n, err := strconv.ParseInt(strings.Trim(v, `" `), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: version %q is not a positive integer", ErrBadRequest, v)
	}
	return n, nil
}

// matches reports whether the If-Match condition ifMatch ("" for none, "*"
// for any existing version, else a version) holds for current (nil if
// there is no file).
func matches(ifMatch string, current topo.Version) bool {
	ifMatch = strings.TrimPrefix(strings.TrimSpace(ifMatch), "W/")
	switch ifMatch = strings.Trim(ifMatch, `"`); ifMatch {
	case "":
		return true
	case "*":
		return current != nil
	default:
		return current != nil && current.String() == ifMatch
	}
}

// GetKeyspace returns the vschema of keyspace name and its version.
func (s *Store) GetKeyspace(ctx context.Context, name string) (*vschemapb.Keyspace, string, error) {
	if err := ValidateKeyspaceName(name); err != nil {
		return nil, "", fmt.Errorf("vschema: get %s: %w: %w", name, ErrBadRequest, err)
	}
	ks, v, err := s.readKeyspace(ctx, name)
	if err != nil {
		return nil, "", err
	}
	if ks == nil {
		return nil, "", fmt.Errorf("vschema: get %s: %w: keyspace %s has no vschema", vschemaPath(name), ErrNotFound, name)
	}
	return ks, versionString(v), nil
}

// readKeyspace returns the vschema of a keyspace (nil if it has none) and
// its version.
func (s *Store) readKeyspace(ctx context.Context, name string) (*vschemapb.Keyspace, topo.Version, error) {
	conn, err := s.global(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("vschema: read %s: %w", vschemaPath(name), err)
	}
	data, v, err := conn.Get(ctx, vschemaPath(name))
	if topo.IsErrType(err, topo.NoNode) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("vschema: read %s: %w", vschemaPath(name), err)
	}
	ks := &vschemapb.Keyspace{}
	if err := ks.UnmarshalVT(data); err != nil {
		return nil, nil, fmt.Errorf("vschema: read %s: unmarshal: %w", vschemaPath(name), err)
	}
	return ks, v, nil
}

// GetKeyspaceAt returns the vschema of keyspace name at version (from the
// topology's GetVersion: topod and etcd keep old versions until compacted).
func (s *Store) GetKeyspaceAt(ctx context.Context, name, version string) (*vschemapb.Keyspace, error) {
	if err := ValidateKeyspaceName(name); err != nil {
		return nil, fmt.Errorf("vschema: get %s at %s: %w: %w", name, version, ErrBadRequest, err)
	}
	v, err := ParseVersion(version)
	if err != nil {
		return nil, fmt.Errorf("vschema: get %s at %s: %w", vschemaPath(name), version, err)
	}
	conn, err := s.global(ctx)
	if err != nil {
		return nil, fmt.Errorf("vschema: get %s at %d: %w", vschemaPath(name), v, err)
	}
	data, err := conn.GetVersion(ctx, vschemaPath(name), v)
	if topo.IsErrType(err, topo.NoNode) {
		return nil, fmt.Errorf("vschema: get %s at %d: %w: no such version (never written, deleted at that version, or compacted)", vschemaPath(name), v, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("vschema: get %s at %d: %w", vschemaPath(name), v, err)
	}
	ks := &vschemapb.Keyspace{}
	if err := ks.UnmarshalVT(data); err != nil {
		return nil, fmt.Errorf("vschema: get %s at %d: unmarshal: %w", vschemaPath(name), v, err)
	}
	return ks, nil
}

// keyspaceExists reports whether the keyspace's record exists, as vtctld's
// ApplyVSchema requires.
func (s *Store) keyspaceExists(ctx context.Context, name string) (bool, error) {
	_, err := s.ts.GetKeyspace(ctx, name)
	switch {
	case err == nil:
		return true, nil
	case topo.IsErrType(err, topo.NoNode):
		return false, nil
	default:
		return false, fmt.Errorf("vschema: read keyspace %s: %w", name, err)
	}
}

// resolve is the Resolver of validation: keyspaces from the global
// topology.
func (s *Store) resolve(ctx context.Context, name string) (*vschemapb.Keyspace, bool, error) {
	exists, err := s.keyspaceExists(ctx, name)
	if err != nil || !exists {
		return nil, exists, err
	}
	ks, _, err := s.readKeyspace(ctx, name)
	return ks, true, err
}

// Change is a new vschema for a keyspace, or its deletion.
type Change struct {
	Keyspace string
	// VSchema is the new vschema; nil deletes the keyspace's vschema.
	VSchema *vschemapb.Keyspace
	// IfMatch, if set, is the version the change is based on ("*": any
	// existing version): the change fails with ErrVersionMismatch if the
	// current version is another.
	IfMatch string
}

// ApplyOptions adjust Apply.
type ApplyOptions struct {
	// DryRun validates and diffs without writing.
	DryRun bool
	// Strict makes unknown vindex parameters errors.
	Strict bool
}

// KeyspaceResult is the outcome of one Change.
type KeyspaceResult struct {
	Keyspace   string        `json:"keyspace"`
	OldVersion string        `json:"old_version,omitempty"`
	NewVersion string        `json:"new_version,omitempty"`
	Changed    bool          `json:"changed"`
	Written    bool          `json:"written"`
	Diff       *KeyspaceDiff `json:"diff"`
	// Old is the vschema before the change (nil if none); not serialised.
	Old *vschemapb.Keyspace `json:"-"`
}

// CellResult is the outcome of updating one cell's SrvVSchema.
type CellResult struct {
	Cell    string `json:"cell"`
	Version string `json:"version,omitempty"`
	// Mode is how the cell was updated: "unchanged", "splice" (the
	// portable path), "manifest" (the topod fast path) or "create" (the
	// cell had no SrvVSchema: built whole, as RebuildSrvVSchema would).
	Mode     string `json:"mode,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	Error    string `json:"error,omitempty"`
}

// ApplyResult is the outcome of Apply.
type ApplyResult struct {
	DryRun     bool             `json:"dry_run"`
	Validation *Validation      `json:"validation"`
	Keyspaces  []KeyspaceResult `json:"keyspaces"`
	// Cells are the cells' updates: nil (absent from the JSON) when the
	// cells were not reached (a dry run, a refusal), empty ([]) when the
	// topology has no cell (NoCells).
	Cells []CellResult `json:"cells,omitzero"`
	// NoCells: the cells were to be updated but the topology has none (no
	// cell registered yet): the write is complete in the global topology
	// and no SrvVSchema was updated, there being none (NoCellsNote).
	NoCells bool `json:"no_cells,omitempty"`
}

// NoCellsNote explains a write's NoCells: what it means, and how a cell
// registered later gets its SrvVSchema.
const NoCellsNote = "no cell is registered in the topology: no cell's SrvVSchema was updated, there being none; " +
	"a cell registered later (vtctldclient AddCellInfo) gets its SrvVSchema whole on the next write, or by a rebuild of that cell"

// Write is one file a write request wrote to the global topology.
type Write struct {
	Keyspace string    `json:"keyspace,omitempty"` // a keyspace's vschema
	Rules    RulesKind `json:"rules,omitempty"`    // or a rules file
	Path     string    `json:"path"`               // the file, in the global topology
	Version  string    `json:"version,omitempty"`  // its new version (none once deleted)
	Deleted  bool      `json:"deleted,omitempty"`
}

func (w Write) String() string {
	what := "keyspace " + w.Keyspace
	if w.Rules != "" {
		what = string(w.Rules)
	}
	if w.Deleted {
		return fmt.Sprintf("%s: %s deleted", what, w.Path)
	}
	return fmt.Sprintf("%s: %s version %s", what, w.Path, w.Version)
}

// PartialError is the error of a write request that failed after writing
// part of its change to the global topology (a batch's first keyspaces, a
// vschema or rules before their cells): those writes stand, nothing is
// undone. Writes names them; Err is the failure, which errors.Is and
// errors.As see through.
type PartialError struct {
	Writes []Write
	Err    error
}

func (e *PartialError) Error() string {
	parts := make([]string, len(e.Writes))
	for i, w := range e.Writes {
		parts[i] = w.String()
	}
	return fmt.Sprintf("%v (already written to the global topology, and not undone: %s)", e.Err, strings.Join(parts, "; "))
}

func (e *PartialError) Unwrap() error { return e.Err }

// partial returns err as a *PartialError if writes were made before it.
func partial(err error, writes []Write) error {
	if err == nil || len(writes) == 0 {
		return err
	}
	return &PartialError{Writes: writes, Err: err}
}

// CellError is returned when the global topology was written but some
// cells' SrvVSchema could not be brought in step (the result says which);
// applying again, or rebuilding the cell, repairs them.
type CellError struct {
	Cells []CellResult
}

func (e *CellError) Error() string {
	var parts []string
	for _, c := range e.Cells {
		if c.Error != "" {
			parts = append(parts, fmt.Sprintf("cell %s: %s", c.Cell, c.Error))
		}
	}
	return "vschema: written to the global topology, but the SrvVSchema of " + strings.Join(parts, "; ")
}

// Apply validates changes (every vschema, with the keyspaces they refer
// to) and, unless opts.DryRun, writes each keyspace's vschema in the
// global topology (compare-and-set), then updates that keyspace's piece in
// every cell's SrvVSchema (none, and NoCells in the result, when the
// topology has no cell). Nothing is written if any change is invalid
// (*ValidationError), names a keyspace that does not exist (ErrNoKeyspace)
// or fails its If-Match (ErrVersionMismatch). The result is returned with
// most errors, as far as it got; an error after some keyspaces were
// written is a *PartialError naming them.
func (s *Store) Apply(ctx context.Context, changes []Change, opts ApplyOptions) (*ApplyResult, error) {
	res := &ApplyResult{DryRun: opts.DryRun, Validation: &Validation{}}
	if len(changes) == 0 {
		return res, fmt.Errorf("vschema: apply: %w: no keyspace", ErrBadRequest)
	}
	names := make([]string, 0, len(changes))
	batch := map[string]*vschemapb.Keyspace{}
	for _, c := range changes {
		if err := ValidateKeyspaceName(c.Keyspace); err != nil {
			res.Validation.errorf(Problem{Keyspace: c.Keyspace, Code: CodeBadName}, "%v", err)
			return res, &ValidationError{Validation: res.Validation}
		}
		if slices.Contains(names, c.Keyspace) {
			return res, fmt.Errorf("vschema: apply: %w: keyspace %s twice", ErrBadRequest, c.Keyspace)
		}
		names = append(names, c.Keyspace)
		if c.VSchema != nil {
			batch[c.Keyspace] = c.VSchema
		}
	}
	// The keyspaces are locked for the global writes; the cell updates do
	// not need it (cells.go), and run unlocked so that writers of one
	// keyspace share cell rounds.
	unlock := sync.OnceFunc(s.lockKeyspaces(names))
	defer unlock()

	// Every keyspace written must exist, as vtctld requires.
	for _, c := range changes {
		if c.VSchema == nil {
			continue
		}
		exists, err := s.keyspaceExists(ctx, c.Keyspace)
		if err != nil {
			return res, fmt.Errorf("vschema: apply %s: %w", c.Keyspace, err)
		}
		if !exists {
			res.Validation.errorf(Problem{Keyspace: c.Keyspace, Code: CodeUnknownKeyspace},
				"keyspace %s does not exist in the topology (create it first, e.g. vtctldclient CreateKeyspace %s)", c.Keyspace, c.Keyspace)
		}
	}
	if len(batch) > 0 {
		v, err := ValidateKeyspaces(ctx, s.parser, batch, s.resolve, ValidateOptions{Strict: opts.Strict})
		if err != nil {
			return res, fmt.Errorf("vschema: apply: %w", err)
		}
		res.Validation.merge(v)
	}

	// The current versions, for If-Match and the diffs.
	res.Keyspaces = make([]KeyspaceResult, len(changes))
	for i, c := range changes {
		old, ver, err := s.readKeyspace(ctx, c.Keyspace)
		if err != nil {
			return res, err
		}
		r := &res.Keyspaces[i]
		r.Keyspace, r.OldVersion, r.Old = c.Keyspace, versionString(ver), old
		r.Diff = DiffKeyspaces(old, c.VSchema)
		r.Changed = !r.Diff.Empty()
		if !matches(c.IfMatch, ver) {
			return res, fmt.Errorf("vschema: apply %s: %w: If-Match %s, current version %q", vschemaPath(c.Keyspace), ErrVersionMismatch, c.IfMatch, versionString(ver))
		}
		if c.VSchema == nil && old == nil {
			return res, fmt.Errorf("vschema: delete %s: %w: keyspace %s has no vschema", vschemaPath(c.Keyspace), ErrNotFound, c.Keyspace)
		}
	}
	if !res.Validation.OK() {
		return res, &ValidationError{Validation: res.Validation}
	}
	if opts.DryRun {
		return res, nil
	}

	// Write the global topology, keyspace by keyspace.
	var writeErr error
	var synced []string
	for i, c := range changes {
		r := &res.Keyspaces[i]
		if err := s.writeKeyspace(ctx, c, r); err != nil {
			writeErr = err
			break
		}
		synced = append(synced, c.Keyspace)
	}
	unlock()
	// Then the cells, for what was written (and what was already equal:
	// applying again repairs a cell left behind).
	if len(synced) > 0 {
		cells, err := s.syncCells(ctx, syncKeys{keyspaces: synced})
		res.Cells = cells
		res.NoCells = err == nil && len(cells) == 0
		if writeErr == nil {
			writeErr = err
		}
	}
	if writeErr != nil {
		writeErr = partial(writeErr, res.Writes())
	}
	return res, writeErr
}

// Writes returns what r wrote to the global topology: the vschema of each
// keyspace written (or deleted), in r's order.
func (r *ApplyResult) Writes() []Write {
	if r == nil {
		return nil
	}
	var writes []Write
	for _, k := range r.Keyspaces {
		if k.Written {
			writes = append(writes, Write{Keyspace: k.Keyspace, Path: vschemaPath(k.Keyspace), Version: k.NewVersion, Deleted: k.Diff.Deleted})
		}
	}
	return writes
}

// writeKeyspace writes one change to the global topology, compare-and-set
// on the version it read, retrying on a concurrent write unless the change
// has an If-Match.
func (s *Store) writeKeyspace(ctx context.Context, c Change, r *KeyspaceResult) error {
	conn, err := s.global(ctx)
	if err != nil {
		return fmt.Errorf("vschema: write %s: %w", vschemaPath(c.Keyspace), err)
	}
	p := vschemaPath(c.Keyspace)
	var data []byte
	if c.VSchema != nil {
		if data, err = c.VSchema.MarshalVT(); err != nil {
			return fmt.Errorf("vschema: write %s: marshal: %w", p, err)
		}
	}
	wait := casBackoff()
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if err := pause(ctx, wait, attempt); err != nil {
			return fmt.Errorf("vschema: write %s: %w", p, err)
		}
		old, ver, err := s.readKeyspace(ctx, c.Keyspace)
		if err != nil {
			return err
		}
		if !matches(c.IfMatch, ver) {
			return fmt.Errorf("vschema: write %s: %w: If-Match %s, current version %q", p, ErrVersionMismatch, c.IfMatch, versionString(ver))
		}
		if v := versionString(ver); attempt > 0 || v != r.OldVersion {
			// Someone else wrote since: the diff is against what they wrote.
			r.OldVersion, r.Old = v, old
			r.Diff = DiffKeyspaces(old, c.VSchema)
			r.Changed = !r.Diff.Empty()
		}
		var nv topo.Version
		switch {
		case c.VSchema == nil && old == nil:
			return fmt.Errorf("vschema: delete %s: %w: keyspace %s has no vschema", p, ErrNotFound, c.Keyspace)
		case !r.Changed:
			r.NewVersion = versionString(ver)
			return nil
		case c.VSchema == nil:
			err = conn.Delete(ctx, p, ver)
		case old == nil:
			nv, err = conn.Create(ctx, p, data)
		default:
			nv, err = conn.Update(ctx, p, data, ver)
		}
		if topo.IsErrType(err, topo.BadVersion) || topo.IsErrType(err, topo.NodeExists) || topo.IsErrType(err, topo.NoNode) {
			if c.IfMatch != "" {
				return fmt.Errorf("vschema: write %s: %w: changed concurrently since version %q", p, ErrVersionMismatch, versionString(ver))
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("vschema: write %s: %w", p, err)
		}
		r.Written, r.NewVersion = true, versionString(nv)
		return nil
	}
	return fmt.Errorf("vschema: write %s: %w: written by others during each of %d attempts; try again", p, ErrContention, maxAttempts)
}

// syncCells brings every cell's SrvVSchema in step for keys, concurrently.
// A topology without cells has none to bring in step: the result is then
// empty, not nil, and no error.
func (s *Store) syncCells(ctx context.Context, keys syncKeys) ([]CellResult, error) {
	cells, err := s.cellNames(ctx)
	if err != nil {
		return nil, fmt.Errorf("vschema: cells not updated: %w", err)
	}
	out := make([]CellResult, len(cells))
	var wg sync.WaitGroup
	for i, cell := range cells {
		wg.Go(func() {
			out[i] = s.syncer(cell).sync(ctx, keys)
		})
	}
	wg.Wait()
	failed := slices.ContainsFunc(out, func(c CellResult) bool { return c.Error != "" })
	if failed {
		return out, &CellError{Cells: out}
	}
	return out, nil
}

// BuildSrvVSchema returns the SrvVSchema that Vitess's
// topo.Server.RebuildSrvVSchema would write in every cell: every keyspace
// of the global topology with its vschema (an empty one if it has none),
// and the routing, shard routing, keyspace routing and mirror rules. It
// reads every keyspace: it is only used for a cell that has no SrvVSchema
// yet, and for RebuildCell.
func (s *Store) BuildSrvVSchema(ctx context.Context) (*vschemapb.SrvVSchema, error) {
	names, err := s.ts.GetKeyspaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("vschema: build SrvVSchema: list keyspaces: %w", err)
	}
	values := make([]*vschemapb.Keyspace, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i, name := range names {
		g.Go(func() error {
			ks, _, err := s.readKeyspace(gctx, name)
			if ks == nil {
				ks = &vschemapb.Keyspace{}
			}
			values[i] = ks
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("vschema: build SrvVSchema: %w", err)
	}
	srv, err := s.readRules(ctx)
	if err != nil {
		return nil, fmt.Errorf("vschema: build SrvVSchema: %w", err)
	}
	srv.Keyspaces = make(map[string]*vschemapb.Keyspace, len(names))
	for i, name := range names {
		srv.Keyspaces[name] = values[i]
	}
	return srv, nil
}

// readRules returns the four rules as RebuildSrvVSchema puts them in a
// SrvVSchema: routing, shard routing and mirror rules empty when absent,
// keyspace routing rules unset when absent.
func (s *Store) readRules(ctx context.Context) (*vschemapb.SrvVSchema, error) {
	srv := &vschemapb.SrvVSchema{}
	var err error
	if srv.RoutingRules, err = s.ts.GetRoutingRules(ctx); err != nil {
		return nil, fmt.Errorf("read routing rules: %w", err)
	}
	if srv.ShardRoutingRules, err = s.ts.GetShardRoutingRules(ctx); err != nil {
		return nil, fmt.Errorf("read shard routing rules: %w", err)
	}
	if srv.KeyspaceRoutingRules, err = s.ts.GetKeyspaceRoutingRules(ctx); err != nil {
		return nil, fmt.Errorf("read keyspace routing rules: %w", err)
	}
	if srv.MirrorRules, err = s.ts.GetMirrorRules(ctx); err != nil {
		return nil, fmt.Errorf("read mirror rules: %w", err)
	}
	return srv, nil
}

// servingValue returns what RebuildSrvVSchema would put in a SrvVSchema for
// keyspace name: its vschema; an empty one if it has none but the keyspace
// exists (its directory has anything in it); nil (absent) otherwise.
func (s *Store) servingValue(ctx context.Context, name string) (*vschemapb.Keyspace, error) {
	ks, _, err := s.readKeyspace(ctx, name)
	if err != nil || ks != nil {
		return ks, err
	}
	conn, err := s.global(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := conn.ListDir(ctx, path.Join(topo.KeyspacesPath, name), false)
	switch {
	case topo.IsErrType(err, topo.NoNode) || (err == nil && len(entries) == 0):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("vschema: list %s: %w", path.Join(topo.KeyspacesPath, name), err)
	}
	return &vschemapb.Keyspace{}, nil
}

// GetCellSrvVSchema returns a cell's SrvVSchema, assembled.
func (s *Store) GetCellSrvVSchema(ctx context.Context, cell string) (*vschemapb.SrvVSchema, error) {
	srv, err := s.ts.GetSrvVSchema(ctx, cell)
	if topo.IsErrType(err, topo.NoNode) {
		return nil, fmt.Errorf("vschema: cell %s: %w: no SrvVSchema (or no such cell)", cell, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("vschema: cell %s: read SrvVSchema: %w", cell, err)
	}
	return srv, nil
}

// GetCellSrvVSchemaBytes returns a cell's SrvVSchema as stored (marshalled)
// and its version.
func (s *Store) GetCellSrvVSchemaBytes(ctx context.Context, cell string) ([]byte, string, error) {
	conn, err := s.ts.ConnForCell(ctx, cell)
	if topo.IsErrType(err, topo.NoNode) {
		return nil, "", fmt.Errorf("vschema: cell %s: %w: no such cell", cell, ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("vschema: cell %s: %w", cell, err)
	}
	data, v, err := conn.Get(ctx, topo.SrvVSchemaFile)
	if topo.IsErrType(err, topo.NoNode) {
		return nil, "", fmt.Errorf("vschema: cell %s: %w: no SrvVSchema", cell, ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("vschema: cell %s: read SrvVSchema: %w", cell, err)
	}
	return data, versionString(v), nil
}

// GetCellKeyspace returns keyspace name's piece of a cell's SrvVSchema,
// what vtgates of that cell serve for it.
func (s *Store) GetCellKeyspace(ctx context.Context, cell, name string) (*vschemapb.Keyspace, error) {
	if err := ValidateKeyspaceName(name); err != nil {
		return nil, fmt.Errorf("vschema: cell %s keyspace %s: %w: %w", cell, name, ErrBadRequest, err)
	}
	if ks, ok, err := s.cellKeyspaceFast(ctx, cell, name); err == nil && ok {
		return ks, nil
	}
	data, _, err := s.GetCellSrvVSchemaBytes(ctx, cell)
	if err != nil {
		return nil, err
	}
	ks, ok, err := srvvschema.FindKeyspace(data, name)
	if err != nil {
		return nil, fmt.Errorf("vschema: cell %s: %w", cell, err)
	}
	if !ok {
		return nil, fmt.Errorf("vschema: cell %s: %w: keyspace %s is not in the SrvVSchema", cell, ErrNotFound, name)
	}
	return ks, nil
}

// RebuildCell rewrites a cell's SrvVSchema whole from the global topology,
// as RebuildSrvVSchema does, but compare-and-set: the repair for a cell
// left behind. It reads every keyspace.
func (s *Store) RebuildCell(ctx context.Context, cell string) (CellResult, error) {
	r := s.syncer(cell).sync(ctx, syncKeys{rebuild: true})
	if r.Error != "" {
		return r, &CellError{Cells: []CellResult{r}}
	}
	return r, nil
}

// Cells returns the names of the topology's cells, sorted; an empty list
// when none is registered.
func (s *Store) Cells(ctx context.Context) ([]string, error) {
	cells, err := s.cellNames(ctx)
	if err != nil {
		return nil, fmt.Errorf("vschema: %w", err)
	}
	return cells, nil
}

// cellNames lists the cells registered in the global topology, sorted.
// A topology without cells has no cells directory: listing it answers
// NoNode, which Vitess's GetCellInfoNames (used here, as by Vitess's
// RebuildKeyspace and SrvKeyspace updates) turns into no cells; the list
// is then empty, not nil. (GetKnownCells, which RebuildSrvVSchema uses,
// returns the NoNode error instead.)
func (s *Store) cellNames(ctx context.Context) ([]string, error) {
	cells, err := s.ts.GetCellInfoNames(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", topo.CellsPath, err)
	}
	if cells == nil {
		cells = []string{}
	}
	slices.Sort(cells)
	return cells, nil
}
