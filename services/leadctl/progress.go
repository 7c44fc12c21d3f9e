package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows how far a long job has got on stderr: a bar on a
// terminal, else a plain line at most every interval, so logs and CI
// output stay readable.
type progress struct {
	bar      *progressbar.ProgressBar
	w        io.Writer
	what     string
	total    int64
	last     time.Time
	interval time.Duration
	done     bool
}

// newProgress reports on w; a bar only when w is a terminal.
func newProgress(w io.Writer, what string, total int64) *progress {
	p := &progress{w: w, what: what, total: total, interval: time.Second}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(max(total, 1),
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("events"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

// set moves to n of total (total may grow, as a stream does).
func (p *progress) set(n, total int64, note string) {
	if p.done {
		return
	}
	if total > p.total {
		p.total = total
		if p.bar != nil {
			p.bar.ChangeMax64(total)
		}
	}
	if p.bar != nil {
		if note != "" {
			p.bar.Describe(p.what + " " + note)
		}
		_ = p.bar.Set64(min(n, p.total))
		return
	}
	if time.Since(p.last) < p.interval {
		return
	}
	p.last = time.Now()
	fmt.Fprintln(p.w, p.line(n, note))
}

func (p *progress) line(n int64, note string) string {
	s := fmt.Sprintf("%s: %d of %d", p.what, n, p.total)
	if p.total > 0 {
		s += fmt.Sprintf(" (%d%%)", min(100, n*100/p.total))
	}
	if note != "" {
		s += ", " + note
	}
	return s
}

// complete is finish for work that ended whole at n: a window that
// closed before the total it was set against (the stream's end).
func (p *progress) complete(n int64, note string) {
	p.total = n
	p.finish(n, note)
}

// finish ends the bar, or prints the last line.
func (p *progress) finish(n int64, note string) {
	if p.done {
		return
	}
	p.done = true
	if p.bar != nil {
		_ = p.bar.Finish()
		return
	}
	fmt.Fprintln(p.w, p.line(n, note))
}
