package inspect

import (
	"context"
	"sync"

	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/record"
)

// Options are what every operation shares.
type Options struct {
	// Progress, if set, is told how far an operation got: the blobs
	// fetched of a known total (when there are many, a twentieth of the way
	// at a time), or what a walk of the store did. Its calls do not
	// overlap.
	Progress func(Progress)
}

// Progress is how far an operation got.
type Progress struct {
	What   string // what is counted: "blobs", "manifest blobs"; "" for a Note alone
	Total  int    // of What to fetch
	Done   int    // fetched, failed included
	Failed int
	// Final is the last report of What.
	Final bool
	// Note, when set, says what the operation does or did (a walk of the
	// store: what it marks, how many blobs it walked).
	Note string
}

// fetcher fetches the blobs of one operation from a Source: it remembers
// their sizes, keeps the manifests (root, leaves) it is asked to keep, and
// counts what it fetches on a progress bar once the total is known.
type fetcher struct {
	src  Source
	opts Options

	mu    sync.Mutex
	sizes map[content.Hash]int
	kept  map[content.Hash][]byte
	keep  bool
	prog  *Progress // nil when not reporting
	step  int       // blobs counted at a time
	owed  int       // fetched, not yet counted
}

// progressMinBlobs is the fewest blobs to fetch that get a progress bar
// (fewer take milliseconds); a var for tests.
var progressMinBlobs = 1000

// progressSteps is how many times the bar moves, at most: in lines mode
// (not on a terminal) a line each.
const progressSteps = 20

func newFetcher(src Source, opts Options) *fetcher {
	return &fetcher{src: src, opts: opts, sizes: map[content.Hash]int{}, kept: map[content.Hash][]byte{}}
}

// keeping makes get keep what it fetches (manifests: small, asked for
// again by the decode that follows) until done is called.
func (f *fetcher) keeping() (done func()) {
	f.mu.Lock()
	f.keep = true
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.keep = false
		f.mu.Unlock()
	}
}

// start reports progress over total blobs to fetch, of which kept ones
// are already there.
func (f *fetcher) start(unit string, total int) {
	if f.opts.Progress == nil || total < progressMinBlobs {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.step = max(1, total/progressSteps)
	f.prog = &Progress{What: unit, Total: total, Done: len(f.kept)}
	f.opts.Progress(*f.prog)
}

// finish makes the last report, if reporting.
func (f *fetcher) finish() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.prog != nil {
		f.prog.Done += f.owed
		f.prog.Final = true
		f.opts.Progress(*f.prog)
	}
	f.prog, f.owed = nil, 0
}

// get is a record.Getter (and vschema's, chunk's).
func (f *fetcher) get(ctx context.Context, h content.Hash) ([]byte, error) {
	f.mu.Lock()
	if b, ok := f.kept[h]; ok {
		f.mu.Unlock()
		return b, nil
	}
	f.mu.Unlock()
	b, err := f.src.Blob(ctx, h)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if f.prog != nil {
			f.prog.Done++
			f.prog.Failed++
			f.opts.Progress(*f.prog)
		}
		return nil, err
	}
	if f.prog != nil {
		if f.owed++; f.owed >= f.step {
			f.prog.Done += f.owed
			f.owed = 0
			f.opts.Progress(*f.prog)
		}
	}
	f.sizes[h] = len(b)
	if f.keep {
		f.kept[h] = b
	}
	return b, nil
}

var _ record.Getter = (*fetcher)(nil).get

// size returns the size of a blob fetched, and whether it was.
func (f *fetcher) size(h content.Hash) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.sizes[h]
	return n, ok
}
