package consume_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/nats-io/nats.go"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// Three members share a backlog: each handles some partitions, every message
// is handled, and each key in order.
func TestMembersShareWorkInOrder(t *testing.T) {
	n := startParts(t)
	var j journal
	for i := range 3 {
		_, js := n.Connect(t)
		member := fmt.Sprintf("m%d", i)
		start(t, js, config("share"), func(_ context.Context, m consume.Msg) error {
			time.Sleep(time.Millisecond)
			j.add(member, m)
			return nil
		})
	}
	// All three have joined and seen each other: the partitions are split.
	eventually(t, 10*time.Second, func() bool { return members(t, n.JS, "share") == 3 }, "members did not join")
	time.Sleep(1500 * time.Millisecond)
	want := publishMany(t, n.JS, 40, 25)
	// Later messages arrive while they run.
	more := publishMany(t, n.JS, 40, 5)
	for k, s := range more {
		want[k] = append(want[k], s...)
	}
	// Until every message was handled once: a count would also count the
	// repeats of a hand-over and stop while a message is still on its way.
	eventually(t, 30*time.Second, func() bool { return handledAll(j.all(), want) }, "handled %d of %d", j.len(), 40*30)
	time.Sleep(200 * time.Millisecond) // a duplicate would show up now
	// Delivery is at least once: a member starved of CPU past its lease
	// hands a partition back and may repeat what was running. Order and
	// completeness hold regardless.
	hs := j.all()
	if r := checkOrder(t, hs, want); r > 0 {
		t.Logf("%d repeats (a lease was lost under load)", r)
	}
	by := map[string]int{}
	for _, h := range hs {
		by[h.member]++
	}
	if len(by) < 2 {
		t.Fatalf("one member did everything: %v", by)
	}
	t.Logf("handled per member: %v", by)
}

func TestTransientFailureIsRetried(t *testing.T) {
	n := startParts(t)
	seq := publish(t, n.JS, "K1", "x")
	var calls atomic.Int32
	done := make(chan struct{})
	start(t, n.JS, config("retry"), func(_ context.Context, m consume.Msg) error {
		if calls.Add(1) < 3 {
			return errors.New("flaky")
		}
		if m.Seq == seq {
			close(done)
		}
		return nil
	})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("never succeeded")
	}
	if dl := deadLetters(t, n.JS); len(dl) != 0 {
		t.Fatalf("dead letters after a transient failure: %+v", dl)
	}
}

// A server restart fails every handler that calls it, for longer than a
// message's attempts last; it dead-letters nothing: the attempts that
// failed for the server do not count, and every message is handled once it
// is back.
func TestServerRestartDeadLettersNothing(t *testing.T) {
	n := startParts(t)
	publishMany(t, n.JS, 20, 1)
	cfg := config("outage")
	cfg.Attempts = 2
	gate := make(chan struct{})
	var handled sync.Map
	var failed, waiting atomic.Int32
	start(t, n.JS, cfg, func(ctx context.Context, m consume.Msg) error {
		waiting.Add(1)
		<-gate
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, err := n.JS.Stream(ctx, parts); err != nil {
			failed.Add(1)
			return fmt.Errorf("read stream: %w", err)
		}
		handled.Store(m.Seq, true)
		return nil
	})
	eventually(t, 10*time.Second, func() bool { return waiting.Load() >= 10 }, "handlers never started")
	// Take the server away under the workers' held messages.
	u, err := url.Parse(n.Server.URL())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	n.Server.Shutdown()
	close(gate)
	time.Sleep(2 * time.Second) // far past 2 attempts with fastBackoff
	srv, err := natsserver.Start(natsserver.Config{Dir: n.Dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	n.Server = srv
	eventually(t, 30*time.Second, func() bool {
		count := 0
		handled.Range(func(any, any) bool { count++; return true })
		return count == 20
	}, "not every message was handled after the restart")
	if failed.Load() <= int32(cfg.Attempts) {
		t.Fatalf("only %d attempts failed during the outage: it did not outlast the attempts", failed.Load())
	}
	if dl := deadLetters(t, n.JS); len(dl) != 0 {
		t.Fatalf("dead letters after a server restart: %+v", dl)
	}
}

// A write that finds no stream to answer it (in a cluster, the stream's
// leader died with its node and the next is not elected yet; the client
// stays connected to another node) fails for the server, not the message:
// it dead-letters nothing, however long it lasts, and goes on once the
// stream answers again. Here the stream appears only later.
func TestWriteWithoutStreamLeaderDeadLettersNothing(t *testing.T) {
	writesFailUntilTheStreamAnswers(t, startParts(t), "leaderless", time.Second)
}

// A write nobody answers in its time (on a cluster, a stream whose
// replicas elect or catch up after a node died: its subscriptions stay,
// but no leader answers) fails for the server, not the message: it
// dead-letters nothing, however long it lasts. Here a plain subscriber
// stands for the leaderless stream until the stream appears.
func TestUnansweredWriteDeadLettersNothing(t *testing.T) {
	n := startParts(t)
	if _, err := n.Conn.SubscribeSync("out.>"); err != nil {
		t.Fatal(err)
	}
	writesFailUntilTheStreamAnswers(t, n, "unanswered", 100*time.Millisecond)
}

// writesFailUntilTheStreamAnswers runs a group whose handler writes each
// message to out.<key> within timeout, while no stream takes out.>, until
// every message failed more often than its attempts allow; then it makes
// the stream and checks that every message is handled and none was
// dead-lettered.
func writesFailUntilTheStreamAnswers(t *testing.T, n *testenv.NATS, group string, timeout time.Duration) {
	t.Helper()
	publishMany(t, n.JS, 10, 1)
	cfg := config(group)
	cfg.Attempts = 2
	var handled, failed atomic.Int32
	start(t, n.JS, cfg, func(ctx context.Context, m consume.Msg) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if _, err := n.JS.Publish(ctx, "out."+keyOf(m.Subject), nil); err != nil {
			failed.Add(1)
			return fmt.Errorf("publish: %w", err)
		}
		handled.Add(1)
		return nil
	})
	eventually(t, 30*time.Second, func() bool {
		if dl := deadLetters(t, n.JS); len(dl) != 0 {
			t.Fatalf("dead letters while no stream answered: %+v", dl)
		}
		return failed.Load() >= int32(10*(cfg.Attempts+2))
	}, "the writes did not fail without their stream")
	if handled.Load() != 0 {
		t.Fatalf("%d writes were answered without their stream", handled.Load())
	}
	if _, err := n.JS.CreateStream(context.Background(), jetstream.StreamConfig{Name: "OUT", Subjects: []string{"out.>"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool { return handled.Load() == 10 }, "handled %d of 10 once the stream answered", handled.Load())
	if dl := deadLetters(t, n.JS); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// A handler whose read of the stream does not yet show the message
// (eventstore.ErrBehind: on a cluster, a stream leader behind the consumer)
// waits for the read to catch up however many attempts that takes: a lag
// is the server's, not the message's, and dead-letters nothing.
func TestReadBehindDeadLettersNothing(t *testing.T) {
	n := startParts(t)
	seq := publish(t, n.JS, "K1", "x")
	cfg := config("behind")
	cfg.Attempts = 2
	var calls atomic.Int32
	done := make(chan struct{})
	start(t, n.JS, cfg, func(_ context.Context, m consume.Msg) error {
		if calls.Add(1) <= int32(3*cfg.Attempts) {
			return eventstore.Behind(m.Subject, m.Seq-1, m.Seq)
		}
		if m.Seq == seq {
			close(done)
		}
		return nil
	})
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("not handled after %d calls", calls.Load())
	}
	if dl := deadLetters(t, n.JS); len(dl) != 0 {
		t.Fatalf("dead letters after reads that were behind: %+v", dl)
	}
}

// A message that keeps failing is dead-lettered and parks its key: the key's
// later messages wait, other keys go on. A re-drive once the cause is fixed
// handles the dead one and then the parked ones, in order, also when the
// group was restarted in between.
func TestDeadLetterParksKeyUntilRedrive(t *testing.T) {
	n := startParts(t)
	var broken atomic.Bool
	broken.Store(true)
	var j journal
	poison := publish(t, n.JS, "K1", "poison")
	h := func(_ context.Context, m consume.Msg) error {
		if m.Seq == poison && broken.Load() {
			return errors.New("cannot handle yet")
		}
		j.add("m", m)
		return nil
	}
	run := start(t, n.JS, config("park"), h)
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 1 }, "no dead letter")
	later1 := publish(t, n.JS, "K1", "later1")
	other := publish(t, n.JS, "K2", "other")
	eventually(t, 10*time.Second, func() bool { return j.len() == 1 }, "other key not handled")
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		return len(dl) == 1 && len(dl[0].Parked) == 1
	}, "later message not parked")
	if hs := j.all(); hs[0].seq != other {
		t.Fatalf("handled %+v, want only seq %d of K2", hs, other)
	}

	// Parking survives a restart of the group.
	if err := run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	start(t, n.JS, config("park"), h)
	later2 := publish(t, n.JS, "K1", "later2")
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		return len(dl) == 1 && len(dl[0].Parked) == 2
	}, "message after restart not parked")
	dl := deadLetters(t, n.JS)[0]
	if dl.Group != "park" || dl.Key != "K1" || dl.StreamSeq != poison || dl.Error != "cannot handle yet" ||
		fmt.Sprint(dl.Parked) != fmt.Sprint([]uint64{later1, later2}) {
		t.Fatalf("dead letter %+v", dl)
	}

	broken.Store(false)
	if err := consume.Redrive(context.Background(), n.JS, consume.DefaultDeadLetterStream, "park", "K1", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return j.len() == 4 }, "handled %d after re-drive", j.len())
	var got []uint64
	for _, h := range j.all()[1:] {
		got = append(got, h.seq)
	}
	if fmt.Sprint(got) != fmt.Sprint([]uint64{poison, later1, later2}) {
		t.Fatalf("after re-drive handled %v, want %v", got, []uint64{poison, later1, later2})
	}
	eventually(t, 5*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 0 }, "dead letter left")
	after := publish(t, n.JS, "K1", "after")
	eventually(t, 10*time.Second, func() bool { return j.len() == 5 }, "key still parked")
	if last := j.all()[4]; last.seq != after {
		t.Fatalf("last handled %d, want %d", last.seq, after)
	}
	err := consume.Redrive(context.Background(), n.JS, consume.DefaultDeadLetterStream, "park", "K1", 0)
	if !errors.Is(err, consume.ErrNotFound) {
		t.Fatalf("re-drive of nothing: %v", err)
	}
}

// A group whose re-drive consumer is deleted under it (by hand, or by its
// stream provisioned again) makes it again: a re-drive asked afterwards is
// served without a restart.
func TestRedriveConsumerDeletedIsMadeAgain(t *testing.T) {
	n := startParts(t)
	var broken atomic.Bool
	broken.Store(true)
	var j journal
	poison := publish(t, n.JS, "K1", "poison")
	h := func(_ context.Context, m consume.Msg) error {
		if m.Seq == poison && broken.Load() {
			return errors.New("cannot handle yet")
		}
		j.add("m", m)
		return nil
	}
	start(t, n.JS, config("gone"), h)
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 1 }, "no dead letter")
	later := publish(t, n.JS, "K1", "later")
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		return len(dl) == 1 && len(dl[0].Parked) == 1
	}, "later message not parked")
	if err := n.JS.DeleteConsumer(context.Background(), consume.DefaultDeadLetterStream, "gone_redrive"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // a pull or two meet no consumer
	broken.Store(false)
	if err := consume.Redrive(context.Background(), n.JS, consume.DefaultDeadLetterStream, "gone", "K1", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() bool { return j.len() == 2 }, "re-drive not served: handled %d", j.len())
	if hs := j.all(); hs[0].seq != poison || hs[1].seq != later {
		t.Fatalf("after re-drive handled %+v, want %d then %d", hs, poison, later)
	}
}

// Skip drops the dead message and releases the parked ones; a parked one
// that fails becomes the new dead letter with the rest still behind it.
func TestSkipAndFailingRelease(t *testing.T) {
	n := startParts(t)
	bad := map[uint64]bool{}
	var mu sync.Mutex
	var j journal
	s1 := publish(t, n.JS, "K1", "1")
	s2 := publish(t, n.JS, "K1", "2")
	s3 := publish(t, n.JS, "K1", "3")
	mu.Lock()
	bad[s1], bad[s2] = true, true
	mu.Unlock()
	start(t, n.JS, config("skip"), func(_ context.Context, m consume.Msg) error {
		mu.Lock()
		defer mu.Unlock()
		if bad[m.Seq] {
			return consume.Permanent(errors.New("bad"))
		}
		j.add("m", m)
		return nil
	})
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		return len(dl) == 1 && dl[0].StreamSeq == s1 && len(dl[0].Parked) == 2
	}, "s1 dead with two parked: %+v", deadLetters(t, n.JS))
	if err := consume.Skip(context.Background(), n.JS, consume.DefaultDeadLetterStream, "skip", "K1", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		return len(dl) == 1 && dl[0].StreamSeq == s2 && fmt.Sprint(dl[0].Parked) == fmt.Sprint([]uint64{s3})
	}, "s2 dead with s3 parked: %+v", deadLetters(t, n.JS))
	// The skip was of s1 only: served again a moment later, it once
	// skipped s2 as well and handled s3.
	time.Sleep(2500 * time.Millisecond)
	if dl := deadLetters(t, n.JS); len(dl) != 1 || dl[0].StreamSeq != s2 || fmt.Sprint(dl[0].Parked) != fmt.Sprint([]uint64{s3}) {
		t.Fatalf("after the skip settled: %+v, want s2 dead with s3 parked", dl)
	}
	if j.len() != 0 {
		t.Fatalf("handled %+v behind a dead letter", j.all())
	}
	mu.Lock()
	bad[s2] = false
	mu.Unlock()
	if err := consume.Redrive(context.Background(), n.JS, consume.DefaultDeadLetterStream, "skip", "K1", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return j.len() == 2 }, "release")
	if hs := j.all(); hs[0].seq != s2 || hs[1].seq != s3 {
		t.Fatalf("released %+v", hs)
	}
}

// A request that names its dead message acts on that one only. A name
// that is not the dead letter any more is refused at once; a request
// stored while it was, and served after another message took its place
// (a re-drive that failed again), does nothing.
func TestRequestActsOnTheDeadLetterItNames(t *testing.T) {
	n := startParts(t)
	s1 := publish(t, n.JS, "K1", "1")
	s2 := publish(t, n.JS, "K1", "2")
	publish(t, n.JS, "K1", "3")
	var j journal
	h := func(_ context.Context, m consume.Msg) error {
		if m.Seq == s1 {
			return consume.Permanent(errors.New("bad"))
		}
		j.add("m", m)
		return nil
	}
	run := start(t, n.JS, config("named"), h)
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		return len(dl) == 1 && dl[0].StreamSeq == s1 && len(dl[0].Parked) == 2
	}, "s1 dead with two parked: %+v", func() any { return deadLetters(t, n.JS) })
	if err := run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	err := consume.Skip(context.Background(), n.JS, consume.DefaultDeadLetterStream, "named", "K1", s2)
	if !errors.Is(err, consume.ErrOtherDeadLetter) {
		t.Fatalf("skip naming s2 while s1 is dead: %v, want ErrOtherDeadLetter", err)
	}
	if err := consume.Skip(context.Background(), n.JS, consume.DefaultDeadLetterStream, "named", "K1", s1); err != nil {
		t.Fatal(err)
	}
	// Before it is served, s2 takes s1's place as the dead letter, as a
	// failed re-drive of it would leave things.
	entry := nats.NewMsg("deadletter.entry.named.K1")
	for k, v := range map[string]string{"Lf-Dl-Stream": parts, "Lf-Dl-Subject": subject("K1"), "Lf-Dl-Stream-Seq": strconv.FormatUint(s2, 10),
		"Lf-Dl-Partition": strconv.Itoa(partitionOf("K1")), "Lf-Dl-Error": "bad", "Lf-Dl-Attempts": "5", "Lf-Dl-Time": time.Now().UTC().Format(time.RFC3339Nano)} {
		entry.Header.Set(k, v)
	}
	if _, err := n.JS.PublishMsg(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	start(t, n.JS, config("named"), h)
	eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := n.JS.Consumer(ctx, consume.DefaultDeadLetterStream, "named_redrive")
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.Delivered.Consumer > 0 && ci.NumPending == 0 && ci.NumAckPending == 0
	}, "the request was not served")
	if dl := deadLetters(t, n.JS); len(dl) != 1 || dl[0].StreamSeq != s2 || j.len() != 0 {
		t.Fatalf("after a skip of s1 served with s2 dead: dead letters %+v, handled %+v; want s2 still dead, nothing handled", dl, j.all())
	}
}

// Handlers back up far past PinnedTTL while a second member joins and takes
// half the partitions: order holds and every message is handled.
func TestBackpressureAndRebalanceKeepOrder(t *testing.T) {
	n := startParts(t)
	want := publishMany(t, n.JS, 20, 60)
	var j journal
	slow := func(member string) consume.Handler { return slowly(&j, member) }
	cfg := config("slow")
	cfg.Workers = 1 // 1,200 messages × 3 ms: a backlog of 3.6 s against a 3 s PinnedTTL
	_, js1 := n.Connect(t)
	start(t, js1, cfg, slow("a"))
	eventually(t, 10*time.Second, func() bool { return j.len() > 100 }, "a never started")
	_, js2 := n.Connect(t)
	start(t, js2, cfg, slow("b"))
	eventually(t, 60*time.Second, func() bool { return handledAll(j.all(), want) }, "handled %d of 1200", j.len())
	time.Sleep(200 * time.Millisecond)
	hs := j.all()
	if r := checkOrder(t, hs, want); r > 0 {
		t.Logf("%d repeats (a lease was lost under load)", r)
	}
	by := map[string]int{}
	for _, h := range hs {
		by[h.member]++
	}
	if by["b"] == 0 {
		t.Fatalf("the second member got nothing: %v", by)
	}
	t.Logf("handled per member: %v", by)
}

// A member whose hand-back the server may not have got (its naks went
// with a dropped connection) leaves the pin to lapse: what it held expires
// first and comes back before any new message. It used to unpin anyway,
// and the next owner handled a lead's later messages before them (seen in
// TestBackpressureAndRebalanceKeepOrder on a loaded machine, after a
// "broken pipe").
func TestLostHandBackKeepsOrder(t *testing.T) {
	n := startParts(t)
	want := publishMany(t, n.JS, 20, 100) // more a partition than a member holds
	var j journal
	slow := func(member string) consume.Handler { return slowly(&j, member) }
	cfg := config("lost")
	// What is held expires an AckWait after the hand-back; the pin lapses
	// PinnedTTL after the last pull. A wide margin, for a loaded machine.
	cfg.Workers, cfg.PinnedTTL = 1, 6*time.Second
	_, js1 := n.Connect(t)
	start(t, js1, cfg, slow("a"))
	eventually(t, 10*time.Second, func() bool { return j.len() > 50 }, "a never started")
	defer consume.LoseHandBacks()()
	_, js2 := n.Connect(t)
	start(t, js2, cfg, slow("b"))
	eventually(t, 60*time.Second, func() bool { return handledAll(j.all(), want) }, "handled %d of 2000", j.len())
	checkOrder(t, j.all(), want)
	by := map[string]int{}
	for _, h := range j.all() {
		by[h.member]++
	}
	if by["b"] == 0 {
		t.Fatalf("the second member got nothing: %v", by)
	}
}

// slowly journals each message as member's after 3 ms of work.
func slowly(j *journal, member string) consume.Handler {
	return func(_ context.Context, m consume.Msg) error {
		time.Sleep(3 * time.Millisecond)
		j.add(member, m)
		return nil
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	n := startParts(t)
	h := func(context.Context, consume.Msg) error { return nil }
	// An accepted config runs until ctx ends and then returns nil: bound it
	// so that fails fast instead of at the package timeout.
	run := func(cfg consume.Config) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return consume.Run(ctx, n.JS, cfg, h)
	}
	for name, mutate := range map[string]func(*consume.Config){
		"no stream":         func(c *consume.Config) { c.Stream = "" },
		"group with dot":    func(c *consume.Config) { c.Group = "a.b" },
		"no filter":         func(c *consume.Config) { c.Filter = nil },
		"ack wait too long": func(c *consume.Config) { c.AckWait = 3 * time.Second },
		"empty filter":      func(c *consume.Config) { c.Filter = func(int) []string { return nil } },
	} {
		cfg := config("bad")
		mutate(&cfg)
		if err := run(cfg); err == nil {
			t.Errorf("%s: Run accepted it", name)
		}
	}
	cfg := config("bad")
	cfg.Stream = "MISSING"
	if err := run(cfg); err == nil {
		t.Error("missing stream: Run accepted it")
	}
}

func TestPermanent(t *testing.T) {
	if consume.Permanent(nil) != nil {
		t.Fatal("Permanent(nil) is not nil")
	}
	base := errors.New("x")
	err := fmt.Errorf("wrapped: %w", consume.Permanent(base))
	if !consume.IsPermanent(err) || !errors.Is(err, base) {
		t.Fatalf("IsPermanent %v, Is %v", consume.IsPermanent(err), errors.Is(err, base))
	}
	if consume.IsPermanent(base) {
		t.Fatal("plain error is permanent")
	}
}

// A group that drops what it handles deletes each message once handled,
// and keeps one it dead-lettered, which a re-drive then reads and handles.
func TestDropHandledDeletesOnlyWhatWasHandled(t *testing.T) {
	n := testenv.StartNATS(t)
	ctx := context.Background()
	stream, err := n.JS.CreateStream(ctx, jetstream.StreamConfig{Name: parts, Subjects: []string{"part.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	var broken atomic.Bool
	broken.Store(true)
	var j journal
	poison := publish(t, n.JS, "K1", "poison")
	h := func(_ context.Context, m consume.Msg) error {
		if m.Seq == poison && broken.Load() {
			return consume.Permanent(errors.New("cannot handle yet"))
		}
		j.add("m", m)
		return nil
	}
	cfg := config("drop")
	cfg.DropHandled = true
	start(t, n.JS, cfg, h)
	handled := []uint64{publish(t, n.JS, "K2", "a"), publish(t, n.JS, "K3", "b")}
	eventually(t, 10*time.Second, func() bool { return j.len() == 2 && len(deadLetters(t, n.JS)) == 1 }, "not handled")
	stored := func(seq uint64) bool {
		_, err := stream.GetMsg(ctx, seq)
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	eventually(t, 10*time.Second, func() bool { return !stored(handled[0]) && !stored(handled[1]) }, "handled messages kept")
	if !stored(poison) {
		t.Fatal("the dead-lettered message was deleted")
	}
	broken.Store(false)
	if err := consume.Redrive(ctx, n.JS, consume.DefaultDeadLetterStream, "drop", "K1", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return j.len() == 3 }, "the dead letter was not re-driven")
	if got := j.all()[2].seq; got != poison {
		t.Fatalf("re-drive handled %d, want %d", got, poison)
	}
}

// A dead letter that fails again when re-driven keeps the time it first
// failed: its key has been parked since, and an operator reading how long
// must not see a re-drive that changed nothing as a fresh jam.
func TestADeadLetterFailingAgainKeepsItsTime(t *testing.T) {
	n := startParts(t)
	s1 := publish(t, n.JS, "K1", "1")
	start(t, n.JS, config("again"), func(context.Context, consume.Msg) error { return consume.Permanent(errors.New("bad")) })
	var first consume.DeadLetter
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		if len(dl) == 1 && dl[0].StreamSeq == s1 {
			first = dl[0]
		}
		return !first.At.IsZero()
	}, "s1 not dead: %+v", func() any { return deadLetters(t, n.JS) })
	time.Sleep(20 * time.Millisecond)
	if err := consume.Redrive(context.Background(), n.JS, consume.DefaultDeadLetterStream, "again", "K1", s1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := consume.Served(ctx, n.JS, consume.DefaultDeadLetterStream, "again", "K1"); err != nil {
		t.Fatal(err)
	}
	dl := deadLetters(t, n.JS)
	if len(dl) != 1 || dl[0].StreamSeq != s1 || !dl[0].At.Equal(first.At) {
		t.Fatalf("after a re-drive that failed again: %+v, want s1 dead since %s", dl, first.At)
	}
}
