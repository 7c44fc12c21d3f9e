package consume_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// TestMain doubles as a member process for the kill tests: with
// CONSUME_CHILD_URL set, the test binary is a member of a group that
// journals every message it handles, until it is killed.
func TestMain(m *testing.M) {
	if url := os.Getenv("CONSUME_CHILD_URL"); url != "" {
		os.Exit(child(url, os.Getenv("CONSUME_CHILD_NAME"), os.Getenv("CONSUME_CHILD_JOURNAL")))
	}
	os.Exit(m.Run())
}

func child(url, name, journalPath string) int {
	nc, js, err := eventstore.Dial(url, name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer nc.Close()
	f, err := os.OpenFile(journalPath, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg := config("killed")
	cfg.Workers = 4
	poison := os.Getenv("CONSUME_CHILD_POISON") != ""
	slowStarted := make(chan struct{})
	var slowOnce sync.Once
	if poison {
		cfg.Group, cfg.MaxUnfinished = "poisoned", 2
	}
	err = consume.Run(ctx, js, cfg, func(_ context.Context, m consume.Msg) error {
		if poison && string(m.Data) == "poison" {
			// A handler that takes its process down, once the slow message
			// runs beside it (if it may).
			select {
			case <-slowStarted:
			case <-time.After(2 * time.Second):
			}
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		// Journal first: a handling counts from when it starts to apply.
		if _, err := fmt.Fprintf(f, "%s %s %d\n", name, m.Key, m.Seq); err != nil {
			return err
		}
		if string(m.Data) == "slow" {
			slowOnce.Do(func() { close(slowStarted) })
			time.Sleep(time.Second)
		}
		time.Sleep(20 * time.Millisecond)
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// Three member processes share a backlog. The busiest is frozen (SIGSTOP)
// past PinnedTTL while it holds messages, so the others take its
// partitions; it is thawed, and then the other two are killed -9. The survivor finishes:
// every message is handled, and none before an earlier one of its key, also
// by the thawed process on its way back.
func TestFrozenThenKilledMembersKeepOrder(t *testing.T) {
	n := startParts(t)
	want := publishMany(t, n.JS, 30, 100)
	journalPath := filepath.Join(t.TempDir(), "journal")
	var procs []*testenv.Child
	for i := range 3 {
		procs = append(procs, testenv.StartChild(t,
			"CONSUME_CHILD_URL="+n.Server.URL(),
			fmt.Sprintf("CONSUME_CHILD_NAME=c%d", i),
			"CONSUME_CHILD_JOURNAL="+journalPath))
	}
	handled := func() int { return len(readJournal(t, journalPath)) }
	eventually(t, 20*time.Second, func() bool { return handled() > 200 }, "members did not start")

	// Freeze the member that has done the most so far: it surely holds
	// partitions (rendezvous hashing may leave a member without any).
	count := map[string]int{}
	for _, h := range readJournal(t, journalPath) {
		count[h.member]++
	}
	f := 0
	for i := range procs {
		if count[fmt.Sprintf("c%d", i)] > count[fmt.Sprintf("c%d", f)] {
			f = i
		}
	}
	frozen := procs[f]
	frozenName := fmt.Sprintf("c%d", f)
	frozen.Signal(t, syscall.SIGSTOP)
	at := handled()
	time.Sleep(5 * time.Second) // past PinnedTTL (3s) and the member TTL
	if handled() == at {
		t.Fatal("nobody took over the frozen member's work")
	}
	frozen.Signal(t, syscall.SIGCONT)
	time.Sleep(500 * time.Millisecond)
	killedAt := handled()
	for _, p := range procs {
		if p == frozen {
			continue
		}
		p.Kill(t)
	}
	eventually(t, 60*time.Second, func() bool {
		seen := map[uint64]bool{}
		for _, h := range readJournal(t, journalPath) {
			seen[h.seq] = true
		}
		return len(seen) == 30*100
	}, "the survivor did not finish: %d handlings", func() any { return handled() })
	hs := readJournal(t, journalPath)
	repeats := checkOrder(t, hs, want)
	by := map[string]int{}
	for _, h := range hs {
		by[h.member]++
	}
	t.Logf("%d handlings of %d messages (%d repeats, at least once); per member %v; %d after the kill",
		len(hs), 30*100, repeats, by, len(hs)-killedAt)
	if len(by) < 2 {
		t.Fatalf("one member did everything: %v", by)
	}
	after := 0
	for _, h := range hs[killedAt:] {
		if h.member == frozenName {
			after++
		}
	}
	if after < 100 {
		t.Fatalf("the thawed member handled only %d messages after the kill: the test did not exercise the take-over", after)
	}
}

// A message whose handling kills its process each time is dead-lettered
// after MaxUnfinished handlings that never ended, before anything after
// it: the process is restarted as a supervisor would, and the key's next
// message waits parked. A slow message of another key, running beside it
// when it crashes the process, is handled in the end, not dead-lettered
// with it (the server's MaxDeliver counted its deliveries alike).
func TestCrashingMessageParksItsKeyInOrder(t *testing.T) {
	n := startParts(t)
	journalPath := filepath.Join(t.TempDir(), "journal")
	slowKey := "S0" // on another worker than K1's (the child runs 4)
	for i := 1; worker(slowKey, 4) == worker("K1", 4); i++ {
		slowKey = fmt.Sprintf("S%d", i)
	}
	slow := publish(t, n.JS, slowKey, "slow")
	poison := publish(t, n.JS, "K1", "poison")
	later := publish(t, n.JS, "K1", "later")
	done := make(chan struct{})
	supervised := make(chan struct{})
	var restarts atomic.Int64
	go func() {
		defer close(supervised)
		for i := 0; ; i++ {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "CONSUME_CHILD_URL="+n.Server.URL(), fmt.Sprintf("CONSUME_CHILD_NAME=p%d", i),
				"CONSUME_CHILD_JOURNAL="+journalPath, "CONSUME_CHILD_POISON=1")
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				return
			}
			exited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(exited) }()
			select {
			case <-exited:
				restarts.Add(1)
			case <-done:
				_ = cmd.Process.Signal(syscall.SIGTERM)
				<-exited
				return
			}
		}
	}()
	defer func() { close(done); <-supervised }()

	eventually(t, 90*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		return len(dl) >= 1 && dl[0].StreamSeq == poison && len(dl[0].Parked) == 1 && dl[0].Parked[0] == later
	}, "the crashing message is not dead-lettered with the later one parked: %+v", func() any { return deadLetters(t, n.JS) })
	other := publish(t, n.JS, "K2", "fine")
	eventually(t, 15*time.Second, func() bool { return journaled(t, journalPath, other) }, "another key's message was not handled")
	slowStarts := 0
	for _, h := range readJournal(t, journalPath) {
		if h.seq == later || h.seq == poison {
			t.Fatalf("handled seq %d of K1 behind the crashing message", h.seq)
		}
		if h.seq == slow {
			slowStarts++
		}
	}
	if dl := deadLetters(t, n.JS); len(dl) != 1 || dl[0].Attempts != 2 {
		t.Fatalf("dead letters %+v, want only K1's, after 2 unfinished handlings", dl)
	}
	if restarts.Load() < 2 || slowStarts < 2 {
		t.Fatalf("%d crashes, %d handlings of the slow message: the test shows nothing", restarts.Load(), slowStarts)
	}
	t.Logf("%d crashes; the slow message started %d times", restarts.Load(), slowStarts)

	// A re-drive of it, still crashing its process, fails the same way:
	// the dead letter is stored again and the request settled, where the
	// group's members would otherwise crash on it for ever.
	before, first := restarts.Load(), deadLetters(t, n.JS)[0].At
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := consume.Redrive(ctx, n.JS, consume.DefaultDeadLetterStream, "poisoned", "K1", poison); err != nil {
		t.Fatal(err)
	}
	// Settled with the dead letter still there: it failed again (one
	// handled would have been deleted), and it keeps the time it first
	// failed, as its key stayed parked.
	sctx, scancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer scancel()
	if err := consume.Served(sctx, n.JS, consume.DefaultDeadLetterStream, "poisoned", "K1"); err != nil {
		t.Fatalf("the crashing re-drive was not settled: %v, %d crashes since", err, restarts.Load()-before)
	}
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		return len(dl) == 1 && dl[0].StreamSeq == poison && dl[0].At.Equal(first) && fmt.Sprint(dl[0].Parked) == fmt.Sprint([]uint64{later})
	}, "the crashing re-drive was not dead-lettered again: %+v, %d crashes since", func() any { return deadLetters(t, n.JS) },
		func() any { return restarts.Load() - before })
	if restarts.Load() == before {
		t.Fatal("the re-drive never took its process down: the test shows nothing")
	}
	settled := restarts.Load()
	fine := publish(t, n.JS, "K2", "fine again")
	eventually(t, 30*time.Second, func() bool { return journaled(t, journalPath, fine) }, "the group stopped after the re-drive")
	if restarts.Load() != settled {
		t.Fatalf("%d more crashes after the re-drive failed", restarts.Load()-settled)
	}
}

// journaled reports whether the journal at path has a handling of seq.
func journaled(t testing.TB, path string, seq uint64) bool {
	for _, h := range readJournal(t, path) {
		if h.seq == seq {
			return true
		}
	}
	return false
}

// worker is the worker of workers that pkg/consume gives key.
func worker(key string, workers int) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32() % uint32(workers)
}
