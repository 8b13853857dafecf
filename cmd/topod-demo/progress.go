package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// progress shows how far a step got: a bar redrawn in place on a terminal,
// a line every tenth otherwise (make's output piped to a file, CI).
type progress struct {
	label string
	how   string // printed when the step is done
	tty   bool
	start time.Time
	drawn time.Time // last redraw of the bar
	tenth int       // last tenth printed without a terminal
}

func newProgress(label, how string) *progress {
	_, err := unix.IoctlGetTermios(int(os.Stdout.Fd()), unix.TCGETS)
	return &progress{label: label, how: how, tty: err == nil}
}

// update reports done of total; calls come from one goroutine.
func (p *progress) update(done, total int) {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	if p.tty {
		if time.Since(p.drawn) < 100*time.Millisecond && done < total {
			return
		}
		p.drawn = time.Now()
		const width = 32
		fill := width * done / total
		fmt.Printf("\r  %-17s [%s%s] %6s/%s %3d%%  %5.1fs", p.label,
			strings.Repeat("#", fill), strings.Repeat(".", width-fill),
			thousands(done), thousands(total), 100*done/total, time.Since(p.start).Seconds())
		return
	}
	// The last line is finish's.
	if tenth := 10 * done / total; tenth > p.tenth && done < total {
		p.tenth = tenth
		fmt.Printf("  %s: %s/%s (%d%%) %.1fs\n", p.label, thousands(done), thousands(total), 100*done/total, time.Since(p.start).Seconds())
	}
}

// finish completes the step's output.
func (p *progress) finish(total int) {
	if p.tty {
		p.drawn = time.Time{}
		p.update(total, total)
		fmt.Printf("  (%s)\n", p.how)
		return
	}
	fmt.Printf("  %s: %s done in %.1fs (%s)\n", p.label, thousands(total), time.Since(p.start).Seconds(), p.how)
}

// timed runs f, a step with no measure of its progress, showing the time it
// has taken so far on a terminal and at the end in any case.
func timed(label string, f func() error) error {
	_, err := unix.IoctlGetTermios(int(os.Stdout.Fd()), unix.TCGETS)
	tty := err == nil
	start := time.Now()
	fmt.Printf("  %s ... ", label)
	done := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		if !tty {
			return
		}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				fmt.Printf("\r  %s ... %.1fs", label, time.Since(start).Seconds())
			}
		}
	}()
	err = f()
	close(done)
	<-ticked
	if tty {
		fmt.Printf("\r  %s ... ", label)
	}
	if err != nil {
		fmt.Println("failed")
		return err
	}
	took := time.Since(start).Round(10 * time.Millisecond).String()
	if tty {
		took += "      " // over what the ticker wrote
	}
	fmt.Println(took)
	return nil
}
