package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Child is the test binary run again as a process of its own, which the
// package's TestMain turns into the service when its env says so. Only a
// real process can be killed -9 at a crash point: no deferred code runs
// and its connections drop as they would in production.
type Child struct {
	cmd   *exec.Cmd
	lines chan string   // stdout, a line at a time; closed at EOF
	stop  chan struct{} // closed by kill: the reader stops waiting to send
	read  chan struct{} // closed once the reader returned
	once  sync.Once
}

// StartChild runs os.Args[0] with no tests and env added to the
// environment, its stderr on ours. The child is killed and waited for when
// the test ends.
func StartChild(t testing.TB, env ...string) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Unread lines wait here; a child that prints more is held at its
	// next write, as its lines are only ever a few.
	c := &Child{cmd: cmd, lines: make(chan string, 16), stop: make(chan struct{}), read: make(chan struct{})}
	go func() {
		defer close(c.read)
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case c.lines <- sc.Text():
			case <-c.stop:
				return
			}
		}
	}()
	t.Cleanup(func() { _ = c.kill() })
	return c
}

// Next waits up to timeout for the child's next stdout line that starts
// with prefix, skipping others, and returns the rest of it. It fails the
// test when the child prints none in time or exits first.
func (c *Child) Next(t testing.TB, prefix string, timeout time.Duration) string {
	t.Helper()
	want := "line"
	if prefix != "" {
		want = fmt.Sprintf("line starting %q", prefix)
	}
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("the child exited before printing a %s", want)
			}
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return rest
			}
		case <-deadline:
			t.Fatalf("the child printed no %s within %v", want, timeout)
		}
	}
}

// Signal sends sig to the child, as SIGSTOP freezes it.
func (c *Child) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// Kill kills the child with SIGKILL and waits for it to exit. Later calls
// do nothing.
func (c *Child) Kill(t testing.TB) {
	t.Helper()
	if err := c.kill(); err != nil {
		t.Fatal(err)
	}
}

func (c *Child) kill() (err error) {
	c.once.Do(func() {
		err = c.cmd.Process.Signal(syscall.SIGKILL)
		close(c.stop)
		<-c.read // Wait closes stdout: read it to EOF first
		_ = c.cmd.Wait()
	})
	return err
}
