package inspect

import (
	"context"
	"io"
	"sync"

	"github.com/topod-io/topod/internal/progress"
	"github.com/topod-io/topod/pkg/content"
	"github.com/topod-io/topod/pkg/record"
)

// Options are what every operation shares.
type Options struct {
	// Progress receives progress (blobs fetched, the store walked) in
	// ProgressMode (internal/progress: auto, bar, lines, none). Nil: none.
	Progress     io.Writer
	ProgressMode string
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
	bar   *progress.Progress
	step  int // blobs counted on the bar at a time
	owed  int // fetched, not yet counted on the bar
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

// start shows progress over total blobs to fetch, of which kept ones are
// already there.
func (f *fetcher) start(unit string, total int) {
	if f.opts.Progress == nil || f.opts.ProgressMode == progress.None || total < progressMinBlobs {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.step = max(1, total/progressSteps)
	f.bar = progress.New(f.opts.Progress, f.opts.ProgressMode, unit, total, len(f.kept))
}

// finish ends the progress bar, if any.
func (f *fetcher) finish() {
	f.mu.Lock()
	bar, owed := f.bar, f.owed
	f.bar, f.owed = nil, 0
	f.mu.Unlock()
	if bar != nil {
		bar.Add(owed, 0)
		bar.Finish()
	}
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
		if f.bar != nil {
			f.bar.Add(0, 1)
		}
		return nil, err
	}
	if f.bar != nil {
		if f.owed++; f.owed >= f.step {
			f.bar.Add(f.owed, 0)
			f.owed = 0
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
