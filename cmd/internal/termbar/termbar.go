// Package termbar shows how far a command's long step got, for the
// commands only (library code reports progress through callbacks of its
// own and draws nothing): on a terminal a bar redrawn in place
// (github.com/schollz/progressbar), otherwise (output piped to a file, CI)
// a line at each tenth of the way and one at the end.
package termbar

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// The modes of a Bar, as the commands' --progress flags name them.
const (
	Auto  = "auto"  // Bar on a terminal, Lines otherwise
	Bar   = "bar"   // one line redrawn in place
	Lines = "lines" // a line every tenth of the way
	None  = "none"  // nothing
)

// CheckMode returns the error of a mode that is not one of the above,
// naming flag.
func CheckMode(flag, mode string) error {
	switch mode {
	case Auto, Bar, Lines, None:
		return nil
	}
	return fmt.Errorf("%s %q: want auto, bar, lines or none", flag, mode)
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Progress is one step's progress: items done (failed ones included) of a
// total. Its methods are safe for concurrent use.
type Progress struct {
	w     io.Writer
	label string
	mode  string
	start time.Time

	mu                  sync.Mutex
	bar                 *progressbar.ProgressBar // in mode Bar
	total, done, failed int
	tenth               int // the last tenth a line was written at, in mode Lines
}

// New starts showing label's progress over total items on w, in mode
// (Auto: Bar if w is a terminal, else Lines).
func New(w io.Writer, mode, label string, total int) *Progress {
	if mode == Auto || mode == "" {
		mode = Lines
		if IsTerminal(w) {
			mode = Bar
		}
	}
	p := &Progress{w: w, label: label, mode: mode, total: total, start: time.Now()}
	if mode == Bar {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(label),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
	return p
}

// Set shows done items of the total, failed of them failed.
func (p *Progress) Set(done, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.failed = done, failed
	switch p.mode {
	case Bar:
		if failed > 0 {
			p.bar.Describe(fmt.Sprintf("%s (%d failed)", p.label, failed))
		}
		_ = p.bar.Set(done)
	case Lines:
		if p.total > 0 && done < p.total {
			if tenth := 10 * done / p.total; tenth > p.tenth {
				p.tenth = tenth
				p.line()
			}
		}
	}
}

// Note writes a message without breaking the bar.
func (p *Progress) Note(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.mode {
	case Bar:
		_ = p.bar.Clear()
		fmt.Fprintln(p.w, msg)
		_ = p.bar.RenderBlank()
	case Lines:
		fmt.Fprintln(p.w, msg)
	}
}

// Finish ends the step's output: the bar's line, or the last line.
func (p *Progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.mode {
	case Bar:
		if p.done >= p.total {
			_ = p.bar.Finish()
		} else {
			_ = p.bar.Exit()
		}
		fmt.Fprintln(p.w)
	case Lines:
		p.line()
	}
}

func (p *Progress) line() {
	pct := 100
	if p.total > 0 {
		pct = 100 * p.done / p.total
	}
	fmt.Fprintf(p.w, "%s: %d/%d (%d%%), %d failed, %.1fs\n", p.label, p.done, p.total, pct, p.failed, time.Since(p.start).Seconds())
}
