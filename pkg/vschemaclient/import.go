package vschemaclient

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	vschemapb "vitess.io/vitess/go/vt/proto/vschema"

	"github.com/topod-io/topod/pkg/vschemaapi/wire"
)

// ImportOptions say how Import sends the keyspaces.
type ImportOptions struct {
	BatchSize   int    // keyspaces per request
	BatchBytes  int    // largest request body (bytes of JSON); a batch is cut before it
	Concurrency int    // requests in flight
	Journal     string // journal of applied keyspaces, to resume; "" for JournalFile(src)
	Restart     bool   // ignore the journal: apply every keyspace again
	DryRun      bool   // validate only
	Strict      bool   // refuse unknown vindex parameters
	Retries     int    // retries of a batch after a server or network error
	// Progress, if set, is told how far the import got: once at the
	// start and after each batch. Its calls do not overlap.
	Progress func(ImportProgress)
}

// ImportProgress is how far an import got.
type ImportProgress struct {
	Total  int // keyspaces in the source
	Done   int // of them, applied, found unchanged, skipped (in the journal) or failed
	Failed int
	// Retry, when set, says why a batch is about to be sent again (a
	// server or network error); the counts are as before.
	Retry string
}

// DefaultImportOptions are `vschemad import`'s defaults.
var DefaultImportOptions = ImportOptions{
	BatchSize:   100,
	BatchBytes:  8 << 20,
	Concurrency: 4,
	Retries:     3,
}

// ImportResult is what an import did.
type ImportResult struct {
	Source    string
	DryRun    bool
	Keyspaces int // in the source
	Written   int // changed (would have been, in a dry run)
	Unchanged int
	Skipped   int               // in the journal with the same content
	Failed    map[string]string // keyspace -> why
	Warnings  []string          // the server's, about the keyspaces it accepted
	// Retried says why each batch sent again was (a server or network
	// error), and RetriedKeyspaces how many keyspaces those batches held.
	// A batch whose first try was applied although its answer was lost
	// counts its keyspaces as unchanged on the retry.
	Retried          []string
	RetriedKeyspaces int
	// CellsNote is the server's note when the topology has no cell: no
	// SrvVSchema was updated.
	CellsNote string
	Took      time.Duration
}

// JournalFile is the default journal of an import of src: beside it.
func JournalFile(src string) string {
	return strings.TrimSuffix(src, string(filepath.Separator)) + ".vschemad-journal"
}

// importItem is one keyspace to import.
type importItem struct {
	name  string
	file  string // where it came from
	data  []byte
	hash  string
	deps  []string
	level int
}

// readImportSource reads the keyspaces of a directory or tar file.
func readImportSource(src string) ([]*importItem, error) {
	st, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	items := map[string]*importItem{}
	add := func(file string, data []byte) error {
		name, ok := keyspaceOfFile(file)
		if !ok {
			return nil
		}
		if prev, dup := items[name]; dup {
			return fmt.Errorf("keyspace %s twice: %s and %s", name, prev.file, file)
		}
		sum := sha256.Sum256(data)
		items[name] = &importItem{name: name, file: file, data: data, hash: hex.EncodeToString(sum[:])}
		return nil
	}
	if st.IsDir() {
		err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && p != src && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(p, ".json") {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			return add(filepath.ToSlash(rel), data)
		})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", src, err)
		}
	} else {
		if err := readTar(src, add); err != nil {
			return nil, fmt.Errorf("read %s: %w", src, err)
		}
	}
	out := slices.Collect(maps.Values(items))
	slices.SortFunc(out, func(a, b *importItem) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// keyspaceOfFile names the keyspace of a file: KS.json, or KS/vschema.json.
func keyspaceOfFile(file string) (string, bool) {
	base := path.Base(file)
	if strings.HasPrefix(base, ".") || !strings.HasSuffix(base, ".json") {
		return "", false
	}
	name := strings.TrimSuffix(base, ".json")
	if name == "vschema" {
		dir := path.Base(path.Dir(file))
		if dir == "." || dir == "/" {
			return "", false
		}
		name = dir
	}
	return name, true
}

func readTar(file string, add func(string, []byte) error) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	if strings.HasSuffix(file, ".gz") || strings.HasSuffix(file, ".tgz") {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		defer gz.Close()
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, 1<<30))
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		if err := add(name, data); err != nil {
			return err
		}
	}
}

// journal records the keyspaces applied: "name<TAB>sha256<TAB>version".
type journal struct {
	mu   sync.Mutex
	f    *os.File
	done map[string]string // name -> hash
}

func openJournal(file string, restart bool) (*journal, error) {
	j := &journal{done: map[string]string{}}
	if !restart {
		if data, err := os.ReadFile(file); err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if f := strings.Split(line, "\t"); len(f) >= 2 {
					j.done[f[0]] = f[1]
				}
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("journal: %w", err)
		}
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if restart {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(file, flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j.f = f
	return j, nil
}

func (j *journal) record(items []*importItem, versions map[string]string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	var b strings.Builder
	for _, it := range items {
		fmt.Fprintf(&b, "%s\t%s\t%s\n", it.name, it.hash, versions[it.name])
		j.done[it.name] = it.hash
	}
	if _, err := j.f.WriteString(b.String()); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return j.f.Sync()
}

// importer runs an import.
type importer struct {
	c    *Client
	opts ImportOptions
	j    *journal

	mu    sync.Mutex
	res   *ImportResult
	done  int // keyspaces done, for the progress
	fatal error
}

// Import applies the vschemas of many keyspaces: a directory, or a tar file
// (.tar, .tar.gz, .tgz), holding KEYSPACE.json or KEYSPACE/vschema.json files.
//
// Keyspaces are sent in batches, several at a time, those referred to by
// others' sequences and reference tables first. What was applied is recorded
// in a journal: importing the same source again resumes, skipping the
// keyspaces already applied with the same content. A keyspace the server
// refuses is counted in the result's Failed, with why, and the rest go on;
// the server validates, the client only reads the files (and so reports a
// file that is not JSON itself). The error is one that stopped the import
// (the source unreadable, the token refused); the result says how far it
// got.
func Import(ctx context.Context, c *Client, src string, opts ImportOptions) (*ImportResult, error) {
	if opts.BatchSize < 1 || opts.Concurrency < 1 || opts.BatchBytes < 1 {
		return nil, errors.New("import: batch size, batch bytes and concurrency must be positive")
	}
	if opts.Journal == "" {
		opts.Journal = JournalFile(src)
	}
	start := time.Now()
	items, err := readImportSource(src)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("import %s: it holds no KEYSPACE.json or KEYSPACE/vschema.json", src)
	}
	res := &ImportResult{Source: src, DryRun: opts.DryRun, Keyspaces: len(items), Failed: map[string]string{}}
	im := &importer{c: c, opts: opts, res: res}
	if !opts.DryRun {
		if im.j, err = openJournal(opts.Journal, opts.Restart); err != nil {
			return nil, err
		}
		defer im.j.f.Close()
	}

	// Skip what the journal has, parse the rest, order by references.
	var todo []*importItem
	byName := map[string]*importItem{}
	for _, it := range items {
		if im.j != nil && im.j.done[it.name] == it.hash {
			res.Skipped++
			continue
		}
		ks := &vschemapb.Keyspace{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(it.data, ks); err != nil {
			res.Failed[it.name] = fmt.Sprintf("%s: malformed vschema JSON: %v", it.file, err)
			continue
		}
		it.deps = references(it.name, ks)
		todo = append(todo, it)
		byName[it.name] = it
	}
	levels := levelize(todo, byName)

	im.done = res.Skipped + len(res.Failed)
	im.report("")
	for _, level := range levels {
		if err := im.runLevel(ctx, level); err != nil {
			res.Took = time.Since(start)
			return res, err
		}
	}
	res.Took = time.Since(start)
	return res, nil
}

// report tells opts.Progress how far the import got; im.mu is held, or
// there is one goroutine.
func (im *importer) report(retry string) {
	if im.opts.Progress != nil {
		im.opts.Progress(ImportProgress{Total: im.res.Keyspaces, Done: im.done, Failed: len(im.res.Failed), Retry: retry})
	}
}

// references returns the keyspaces that ks (the vschema of keyspace name)
// refers to through auto-increment sequences and reference tables'
// sources, which must be applied first for ks to validate: the names
// qualified with another keyspace (keyspace.table, either part quoted in
// backticks). It only orders the import; the server checks the references
// itself, and a keyspace sent too early is refused, to be sent again.
func references(name string, ks *vschemapb.Keyspace) []string {
	seen := map[string]bool{}
	for _, t := range ks.GetTables() {
		for _, ref := range []string{t.GetAutoIncrement().GetSequence(), t.GetSource()} {
			if q := qualifier(ref); q != "" && q != name {
				seen[q] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// qualifier returns the keyspace of a qualified table name, or "".
func qualifier(table string) string {
	if rest, ok := strings.CutPrefix(table, "`"); ok {
		q, after, ok := strings.Cut(rest, "`")
		if !ok || !strings.HasPrefix(after, ".") {
			return ""
		}
		return q
	}
	q, _, ok := strings.Cut(table, ".")
	if !ok {
		return ""
	}
	return q
}

// levelize orders items so that each comes in a level after the keyspaces
// of the import it refers to (those outside the import must exist already).
func levelize(items []*importItem, byName map[string]*importItem) [][]*importItem {
	const visiting = -1
	var level func(it *importItem) int
	level = func(it *importItem) int {
		if it.level != 0 {
			if it.level == visiting {
				return 0 // a cycle: the server will say
			}
			return it.level
		}
		it.level = visiting
		l := 1
		for _, d := range it.deps {
			if dep, ok := byName[d]; ok {
				l = max(l, level(dep)+1)
			}
		}
		it.level = l
		return l
	}
	var out [][]*importItem
	for _, it := range items {
		l := level(it)
		for len(out) < l {
			out = append(out, nil)
		}
		out[l-1] = append(out[l-1], it)
	}
	return out
}

// runLevel sends one level's keyspaces, in batches, concurrently.
func (im *importer) runLevel(ctx context.Context, items []*importItem) error {
	var live []*importItem
	for _, it := range items {
		// A keyspace whose dependency failed would fail too.
		if dep := slices.IndexFunc(it.deps, func(d string) bool { _, f := im.res.Failed[d]; return f }); dep >= 0 {
			im.fail([]*importItem{it}, fmt.Sprintf("keyspace %s, which it refers to, failed", it.deps[dep]))
			continue
		}
		live = append(live, it)
	}
	batches := make(chan []*importItem)
	go func() {
		defer close(batches)
		var b []*importItem
		size := 0
		for _, it := range live {
			if len(b) > 0 && (len(b) >= im.opts.BatchSize || size+len(it.data) > im.opts.BatchBytes) {
				select {
				case batches <- b:
				case <-ctx.Done():
					return
				}
				b, size = nil, 0
			}
			b = append(b, it)
			size += len(it.data) + len(it.name) + 8
		}
		if len(b) > 0 {
			select {
			case batches <- b:
			case <-ctx.Done():
			}
		}
	}()
	var wg sync.WaitGroup
	for range im.opts.Concurrency {
		wg.Go(func() {
			for b := range batches {
				if im.fatalErr() != nil {
					continue
				}
				im.send(ctx, b)
			}
		})
	}
	wg.Wait()
	if err := im.fatalErr(); err != nil {
		return err
	}
	return ctx.Err()
}

func (im *importer) fatalErr() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.fatal
}

func (im *importer) fail(items []*importItem, why string) {
	im.mu.Lock()
	defer im.mu.Unlock()
	for _, it := range items {
		im.res.Failed[it.name] = why
	}
	im.done += len(items)
	im.report("")
}

// send applies a batch: keyspaces the server refuses are dropped (and
// reported) and the rest sent again; a batch too large is split; server and
// network errors are retried.
func (im *importer) send(ctx context.Context, items []*importItem) {
	opts := WriteOptions{DryRun: im.opts.DryRun, Strict: im.opts.Strict}
	retries := 0
	for len(items) > 0 {
		batch := map[string]json.RawMessage{}
		for _, it := range items {
			batch[it.name] = it.data
		}
		res, err := im.c.ApplyVSchemas(ctx, batch, opts)
		if err == nil {
			im.applied(items, res)
			return
		}
		var ae *APIError
		switch {
		case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
			im.mu.Lock()
			if im.fatal == nil {
				im.fatal = err
			}
			im.mu.Unlock()
			return
		case errors.As(err, &ae) && ae.Status == http.StatusRequestEntityTooLarge && len(items) > 1:
			half := len(items) / 2
			im.send(ctx, items[:half])
			items = items[half:]
			continue
		case errors.As(err, &ae) && (ae.Status == http.StatusBadRequest || ae.Status == http.StatusNotFound) && ae.Validation != nil:
			bad := map[string][]string{}
			for _, p := range ae.Validation.Errors {
				bad[p.Keyspace] = append(bad[p.Keyspace], p.String())
			}
			var keep []*importItem
			for _, it := range items {
				if why, ok := bad[it.name]; ok {
					im.fail([]*importItem{it}, strings.Join(why, "; "))
				} else {
					keep = append(keep, it)
				}
			}
			if len(keep) == len(items) {
				im.fail(items, ae.Error())
				return
			}
			items = keep
			continue
		case errors.As(err, &ae) && ae.Status/100 == 4:
			im.fail(items, ae.Error())
			return
		}
		// A server or network error: the writes are idempotent, try again.
		if retries >= im.opts.Retries || ctx.Err() != nil {
			im.fail(items, err.Error())
			return
		}
		retries++
		why := fmt.Sprintf("a batch of %d after: %v", len(items), err)
		im.mu.Lock()
		im.res.Retried = append(im.res.Retried, why)
		im.res.RetriedKeyspaces += len(items)
		im.report("retrying " + why)
		im.mu.Unlock()
		select {
		case <-time.After(time.Duration(retries) * time.Second):
		case <-ctx.Done():
		}
	}
}

// applied records an applied batch.
func (im *importer) applied(items []*importItem, res *wire.ApplyResponse) {
	versions := map[string]string{}
	written := 0
	for _, k := range res.Keyspaces {
		versions[k.Keyspace] = k.NewVersion
		if k.Written || (res.DryRun && k.Changed) {
			written++
		}
	}
	if im.j != nil {
		if err := im.j.record(items, versions); err != nil {
			im.mu.Lock()
			if im.fatal == nil {
				im.fatal = err
			}
			im.mu.Unlock()
		}
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	im.res.Written += written
	im.res.Unchanged += len(items) - written
	if res.NoCells {
		im.res.CellsNote = res.CellsNote
	}
	if res.Validation != nil {
		for _, w := range res.Validation.Warnings {
			im.res.Warnings = append(im.res.Warnings, w.String())
		}
	}
	im.done += len(items)
	im.report("")
}
