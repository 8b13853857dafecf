// Package progress reports how far a long command got: a bar redrawn in
// place when it writes to a terminal, a line per step otherwise (output
// piped to a file, CI). `vschemad import` and `topod migrate` use it.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
)

// Modes a Bar can draw in.
const (
	Auto  = "auto"  // Bar on a terminal, Lines otherwise
	Bar   = "bar"   // one line redrawn in place (at most every 100 ms)
	Lines = "lines" // a line per update
	None  = "none"  // nothing
)

// Progress counts the items of a job done (or failed) out of a total, and
// draws that in its mode. Its methods are safe for concurrent use.
type Progress struct {
	w    io.Writer
	mode string
	unit string // what the items are, e.g. "keyspaces"
	mu   sync.Mutex

	total, done, failed int
	start, lastDraw     time.Time
}

// New starts reporting total items, of which already are done, to w in mode
// (Auto: Bar if w is a terminal, else Lines); unit names the items.
func New(w io.Writer, mode, unit string, total, already int) *Progress {
	if mode == Auto || mode == "" {
		mode = Lines
		if f, ok := w.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
			mode = Bar
		}
	}
	p := &Progress{w: w, mode: mode, unit: unit, total: total, done: already, start: time.Now()}
	p.draw(true)
	return p
}

// Add counts done items done and failed items failed.
func (p *Progress) Add(done, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += done + failed
	p.failed += failed
	p.draw(false)
}

// Note prints a message without breaking the bar.
func (p *Progress) Note(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == Bar {
		fmt.Fprintf(p.w, "\r\033[K%s\n", msg)
		p.draw(true)
		return
	}
	if p.mode != None {
		fmt.Fprintln(p.w, msg)
	}
}

// Finish draws the final state and ends the bar's line.
func (p *Progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw(true)
	if p.mode == Bar {
		fmt.Fprintln(p.w)
	}
}

func (p *Progress) draw(force bool) {
	now := time.Now()
	if p.mode == None || (!force && p.mode == Bar && now.Sub(p.lastDraw) < 100*time.Millisecond && p.done < p.total) {
		return
	}
	p.lastDraw = now
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.done) / float64(p.total)
	}
	elapsed := now.Sub(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.done) / elapsed
	}
	eta := ""
	if rate > 0 && p.done < p.total {
		eta = fmt.Sprintf(", eta %v", time.Duration(float64(p.total-p.done)/rate*float64(time.Second)).Round(time.Second))
	}
	switch p.mode {
	case Bar:
		const width = 30
		n := int(pct / 100 * width)
		bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
		if n > 0 && n < width {
			bar = bar[:n-1] + ">" + bar[n:]
		}
		fmt.Fprintf(p.w, "\r\033[K[%s] %d/%d %s %3.0f%%, %d failed, %.0f/s%s", bar, p.done, p.total, p.unit, pct, p.failed, rate, eta)
	case Lines:
		fmt.Fprintf(p.w, "%d/%d %s (%.0f%%), %d failed, %.0f/s%s\n", p.done, p.total, p.unit, pct, p.failed, rate, eta)
	}
}
