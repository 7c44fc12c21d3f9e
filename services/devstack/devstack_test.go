package main

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/testenv"
)

// make run as a new user meets it: built from the checkout, every service
// up, the demo through the public APIs showing what the README promises
// (routing by territory and pool and by account owner, a lead worked to a
// won deal, a rejection back to nurture, an SLA breach escalating), the
// read side agreeing, Ctrl-C stopping everything, and a second run
// replaying the demo instead of adding to it.
func TestMakeRun(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "devstack")
	build := exec.Command("go", "build", "-o", bin, "./services/devstack")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build devstack: %v\n%s", err, out)
	}
	data := t.TempDir()
	natsPort, offset := testenv.FreePort(t), freeOffset(t)
	database := testenv.DatabaseName(t, "leadflow_devstack")
	at := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port+offset) }

	first := startStack(t, root, bin, data, natsPort, offset, database)
	out := first.waitFor(t, "go run ./services/leadctl token revoke", 4*time.Minute)
	for _, want := range []string{
		"rule europe matched; round robin of pool emea chose",      // territory, then pool
		"account orbital (domain orbit.example) is owned by dev",   // account owner
		"meeting booked, opportunity, negotiation, won EUR 45,000", // worked to a won deal
		"rejected by", "LeadRecycled: recycled: rejected by rep", // back to nurture
		"ACCEPT breached → NEXT_REP; owners dev → ",                               // the breach escalating
		"contact.email: must be a plain email address",                            // bad input, by field
		"LEADFLOW_INTAKE_ADDR=" + at(7101), "LEADFLOW_NATS_URL=nats://127.0.0.1:", // where leadctl must look
		"http://" + at(7180) + "/",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("make run's output lacks %q", want)
		}
	}
	for _, bad := range []string{"not scored yet", "not routed yet", "no escalation yet", "(replayed)"} {
		if strings.Contains(out, bad) {
			t.Errorf("make run's first output says %q", bad)
		}
	}
	leads := demoLeadLines(out)
	if len(leads) != len(demoLeads)+1 {
		t.Fatalf("demo leads printed: %v", leads)
	}
	ada := leads["ada@analytical.example"]
	if again := leads["ADA@Analytical.Example"]; again != ada {
		t.Errorf("the same person typed differently: lead %s, not ada's %s", again, ada)
	}
	token := regexp.MustCompile(`export LEADFLOW_TOKEN=(\S+)`).FindStringSubmatch(out)
	if token == nil {
		t.Fatal("no token printed")
	}
	auth := []string{"Authorization", "Bearer " + token[1]}

	// The read side tells the same story, through the printed addresses.
	testenv.Eventually(t, 30*time.Second, func() bool {
		code, body := testenv.HTTPJSON(t, "GET", "http://"+at(7205)+"/v1/leads/"+ada, "", auth...)
		return code == 200 && testenv.JSONField(body, "lead", "status") == "LEAD_STATUS_WON"
	}, "ada's lead is not WON in the projector")
	if code, page := testenv.HTTP(t, "GET", "http://"+at(7180)+"/", ""); code != 200 || !strings.Contains(page, "Leadflow") {
		t.Errorf("the dashboard: %d %.200q", code, page)
	}
	first.stop(t)
	for _, port := range []int{7101, 7105, 7205, 7180} {
		if c, err := net.DialTimeout("tcp", at(port), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still listens after Ctrl-C", at(port))
		}
	}

	// Again on the same data: the demo replays.
	second := startStack(t, root, bin, data, natsPort, offset, database)
	out = second.waitFor(t, "go run ./services/leadctl token revoke", 2*time.Minute)
	again := demoLeadLines(out)
	for email, id := range leads {
		if again[email] != id {
			t.Errorf("second run: %s is lead %s, was %s", email, again[email], id)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "CAPTURE_OUTCOME_") && !strings.Contains(line, "(replayed)") {
			t.Errorf("second run captured anew: %s", line)
		}
	}
	second.stop(t)
}

// stack is one devstack process.
type stack struct {
	cmd     *exec.Cmd
	stopped bool
	logs    string
	mu      sync.Mutex
	out     strings.Builder
	seen    chan struct{} // a line was read
	done    chan struct{} // stdout ended
}

func startStack(t *testing.T, root, bin, data string, natsPort, offset int, database string) *stack {
	t.Helper()
	s := &stack{seen: make(chan struct{}, 1), done: make(chan struct{}), logs: filepath.Join(t.TempDir(), "devstack.log")}
	logs, err := os.Create(s.logs)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "-data", data, "-nats-port", strconv.Itoa(natsPort), "-port-offset", strconv.Itoa(offset), "-database", database)
	s.cmd.Dir = root
	s.cmd.Env = append(os.Environ(), "LEADFLOW_POSTGRES_ADMIN_URL="+testenv.PostgresAdmin())
	s.cmd.Stderr = logs
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !s.stopped {
			_ = s.cmd.Process.Signal(os.Interrupt)
			_ = s.cmd.Wait()
		}
		logs.Close()
		if t.Failed() {
			b, _ := os.ReadFile(s.logs)
			t.Logf("devstack's stdout:\n%s\nits log (last 4 KB):\n%s", s.output(), b[max(0, len(b)-4096):])
		}
	})
	go func() {
		defer close(s.done)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			s.mu.Lock()
			s.out.WriteString(line)
			s.mu.Unlock()
			select {
			case s.seen <- struct{}{}:
			default:
			}
			if err != nil {
				_, _ = io.Copy(io.Discard, r)
				return
			}
		}
	}()
	return s
}

func (s *stack) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// waitFor returns the output once it holds marker.
func (s *stack) waitFor(t *testing.T, marker string, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	for {
		if out := s.output(); strings.Contains(out, marker) {
			return out
		}
		select {
		case <-s.seen:
		case <-s.done:
			if out := s.output(); strings.Contains(out, marker) {
				return out
			}
			t.Fatalf("devstack ended before printing %q", marker)
		case <-timeout:
			t.Fatalf("devstack printed no %q in %s", marker, d)
		}
	}
}

// stop is Ctrl-C: everything stops, and devstack says it went well.
func (s *stack) stop(t *testing.T) {
	t.Helper()
	s.stopped = true
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("devstack after Ctrl-C: %v", err)
		}
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		t.Fatal("devstack did not stop within 60s of Ctrl-C")
	}
}

var demoLine = regexp.MustCompile(`^\s+(\S+@\S+)\s+([0-9a-f-]{36})\s+CAPTURE_OUTCOME_`)

// demoLeadLines are the printed demo leads: email to lead id.
func demoLeadLines(out string) map[string]string {
	leads := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if m := demoLine.FindStringSubmatch(line); m != nil {
			leads[m[1]] = m[2]
		}
	}
	return leads
}

// freeOffset is a port offset that leaves every port devstack serves
// free now.
func freeOffset(t *testing.T) int {
	t.Helper()
	for range 50 {
		// Ports 17101 to 32105: below Linux's ephemeral range (32768 on),
		// where other tests' client sockets come from.
		n, err := rand.Int(rand.Reader, big.NewInt(150))
		if err != nil {
			t.Fatal(err)
		}
		offset := 10000 + int(n.Int64())*100
		free := true
		for _, port := range []int{7101, 7102, 7103, 7104, 7105, 7201, 7202, 7203, 7204, 7205, 7180} {
			lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+offset))
			if err != nil {
				free = false
				break
			}
			lis.Close()
		}
		if free {
			return offset
		}
	}
	t.Fatal("no free port range for devstack")
	return 0
}
