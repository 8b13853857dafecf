package main

import (
	"fmt"
	"os"
	"time"

	"github.com/topod-io/topod/cmd/internal/termbar"
)

// progress shows how far a step got on stdout (termbar: a bar on a
// terminal, a line every tenth otherwise, make's output piped to a file or
// CI), then how it was done.
type progress struct {
	label string
	how   string // printed when the step is done
	bar   *termbar.Progress
}

func newProgress(label, how string) *progress {
	return &progress{label: label, how: how}
}

// update reports done of total.
func (p *progress) update(done, total int) {
	if p.bar == nil {
		p.bar = termbar.New(os.Stdout, termbar.Auto, "  "+p.label, total)
	}
	p.bar.Set(done, 0)
}

// finish completes the step's output.
func (p *progress) finish(total int) {
	p.update(total, total)
	p.bar.Finish()
	fmt.Printf("  (%s)\n", p.how)
}

// timed runs f, a step with no measure of its progress, showing the time it
// has taken so far on a terminal and at the end in any case.
func timed(label string, f func() error) error {
	tty := termbar.IsTerminal(os.Stdout)
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
	err := f()
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
