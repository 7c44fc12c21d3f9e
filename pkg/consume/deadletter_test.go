package consume_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/testenv"
)

func seqsOf(hs []handling, key string) []uint64 {
	var out []uint64
	for _, h := range hs {
		if h.key == key {
			out = append(out, h.seq)
		}
	}
	return out
}

// A re-drive whose handling outlasts the 5 s a call to the server gets
// handles the dead message once, then the parked ones. It used to delete
// the entry last, on a context that had expired by then, and so handled
// the dead message again after the parked ones.
func TestSlowRedriveHandlesTheDeadMessageOnce(t *testing.T) {
	n := startParts(t)
	var broken atomic.Bool
	broken.Store(true)
	var j journal
	poison := publish(t, n.JS, "K1", "poison")
	start(t, n.JS, config("slowredrive"), func(_ context.Context, m consume.Msg) error {
		if m.Seq == poison && broken.Load() {
			return consume.Permanent(errors.New("cannot handle yet"))
		}
		j.add("m", m)
		if m.Seq == poison {
			time.Sleep(5500 * time.Millisecond)
		}
		return nil
	})
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 1 }, "no dead letter")
	l1, l2 := parkTwo(t, n.JS, "K1")
	broken.Store(false)
	if err := consume.Redrive(context.Background(), n.JS, consume.DefaultDeadLetterStream, "slowredrive", "K1", poison); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() bool {
		return j.len() > 3 || j.len() == 3 && len(deadLetters(t, n.JS)) == 0
	}, "re-drive not done: handled %v", func() any { return seqsOf(j.all(), "K1") })
	time.Sleep(1500 * time.Millisecond) // a retried request comes back after a second
	if got, want := seqsOf(j.all(), "K1"), []uint64{poison, l1, l2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the re-drive handled %v, want %v", got, want)
	}
}

// poisoned is a group whose handler cannot handle K1's first message: it
// is K1's dead letter, and the two published after it are parked.
type poisoned struct {
	j      journal
	h      consume.Handler
	run    *running
	l1, l2 uint64
}

func poisonK1(t *testing.T, js jetstream.JetStream, group string) *poisoned {
	t.Helper()
	p := &poisoned{}
	poison := publish(t, js, "K1", "poison")
	p.h = func(_ context.Context, m consume.Msg) error {
		if m.Seq == poison {
			return consume.Permanent(errors.New("bad"))
		}
		p.j.add("m", m)
		return nil
	}
	p.run = start(t, js, config(group), p.h)
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, js)) == 1 }, "no dead letter")
	p.l1, p.l2 = parkTwo(t, js, "K1")
	return p
}

// dropEntry deletes K1's dead letter in group, as a member that died
// after deleting it, before releasing what waited behind it, leaves it.
func dropEntry(t *testing.T, js jetstream.JetStream, group string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dl, err := js.Stream(ctx, consume.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := dl.GetLastMsgForSubject(ctx, "deadletter.entry."+group+".K1")
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.DeleteMsg(ctx, entry.Sequence); err != nil {
		t.Fatal(err)
	}
}

// handledInOrder waits until K1's handled messages are want, and no dead
// letter is left.
func (p *poisoned) handledInOrder(t *testing.T, js jetstream.JetStream, want ...uint64) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool { return p.j.len() == len(want) && len(deadLetters(t, js)) == 0 },
		"handled %v, dead letters %v", func() any { return seqsOf(p.j.all(), "K1") }, func() any { return deadLetters(t, js) })
	if got := seqsOf(p.j.all(), "K1"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
}

// Parked messages whose dead letter is gone (a member died after the
// re-drive deleted the entry, before it released them) are released in
// order by the next member, and the dead message is not handled again.
func TestParkedWithoutDeadLetterAreReleased(t *testing.T) {
	n := startParts(t)
	p := poisonK1(t, n.JS, "orphan")
	if err := p.run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	dropEntry(t, n.JS, "orphan")
	// Listed with its partition and stream, read off its parked messages.
	if dls := deadLetters(t, n.JS); len(dls) != 1 || dls[0].Partition != partitionOf("K1") || dls[0].Stream != parts || len(dls[0].Parked) != 2 {
		t.Fatalf("listed %+v, want K1 of partition %d of %s with 2 parked", dls, partitionOf("K1"), parts)
	}
	start(t, n.JS, config("orphan"), p.h)
	p.handledInOrder(t, n.JS, p.l1, p.l2)
}

// An operator's re-drive of a key whose parked messages outlived their
// dead letter (as a member killed between the two leaves them) releases
// them in order while the partition's owner runs, instead of failing for
// want of a dead letter until the owner next takes the partition over.
func TestARedriveReleasesParkedMessagesWhoseDeadLetterIsGone(t *testing.T) {
	n := startParts(t)
	p := poisonK1(t, n.JS, "orphanrun")
	dropEntry(t, n.JS, "orphanrun")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := consume.Redrive(ctx, n.JS, consume.DefaultDeadLetterStream, "orphanrun", "K1", 0); err != nil {
		t.Fatalf("re-drive of parked messages without their dead letter: %v", err)
	}
	p.handledInOrder(t, n.JS, p.l1, p.l2)
	l3 := publish(t, n.JS, "K1", "l3") // no longer parked
	p.handledInOrder(t, n.JS, p.l1, p.l2, l3)
	if err := consume.Redrive(ctx, n.JS, consume.DefaultDeadLetterStream, "orphanrun", "K1", 0); !errors.Is(err, consume.ErrNotFound) {
		t.Errorf("re-drive with nothing dead or parked: %v, want ErrNotFound", err)
	}
}

// A member killed after a released message failed again and became the
// dead letter, before it deleted that message's parked record, leaves it
// both dead and parked: it is listed once, as the dead letter, and a skip
// of it handles only what waits behind it.
func TestADeadMessageStillParkedIsSettledOnce(t *testing.T) {
	n := startParts(t)
	p := poisonK1(t, n.JS, "deadparked")
	if err := p.run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The re-drive's state when the member died: the poison handled and
	// its entry deleted, l1 failed again and stored as the dead letter,
	// its parked record not deleted yet.
	dropEntry(t, n.JS, "deadparked")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := consume.StoreDead(ctx, n.JS, consume.DefaultDeadLetterStream, parts, "deadparked", "K1", subject("K1"), p.l1, partitionOf("K1")); err != nil {
		t.Fatal(err)
	}
	if dls := deadLetters(t, n.JS); len(dls) != 1 || dls[0].StreamSeq != p.l1 || fmt.Sprint(dls[0].Parked) != fmt.Sprint([]uint64{p.l2}) {
		t.Fatalf("listed %+v, want %d dead with %d parked behind it", dls, p.l1, p.l2)
	}
	start(t, n.JS, config("deadparked"), p.h)
	if err := consume.Skip(ctx, n.JS, consume.DefaultDeadLetterStream, "deadparked", "K1", p.l1); err != nil {
		t.Fatal(err)
	}
	p.handledInOrder(t, n.JS, p.l2)
	time.Sleep(1500 * time.Millisecond) // a retried request comes back after a second
	p.handledInOrder(t, n.JS, p.l2)
}

// Hand-backs never dead-letter a message: one delivered and naked 25 times
// (more than the server's old MaxDeliver of 20, as a storm of hand-overs
// does), never handled, is handled by the next owner like any other.
func TestHandBacksNeverDeadLetter(t *testing.T) {
	n := startParts(t)
	cfg := config("handbacks")
	var j journal
	h := func(_ context.Context, m consume.Msg) error {
		j.add("m", m)
		return nil
	}
	run := start(t, n.JS, cfg, h) // makes the durables
	eventually(t, 10*time.Second, func() bool { return members(t, n.JS, "handbacks") == 1 }, "the member did not join")
	if err := run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	seq := publish(t, n.JS, "K1", "x")
	handBack(t, n.JS, "handbacks", "K1", 25)

	start(t, n.JS, cfg, h)
	handledOnly(t, n.JS, &j, "K1", seq)
}

// handledOnly waits until the journal holds one handling, of key's
// message seq, and fails if anything was dead-lettered.
func handledOnly(t testing.TB, js jetstream.JetStream, j *journal, key string, seq uint64) {
	t.Helper()
	eventually(t, 15*time.Second, func() bool { return j.len() == 1 }, "not handled; dead letters %+v", func() any { return deadLetters(t, js) })
	if got := seqsOf(j.all(), key); fmt.Sprint(got) != fmt.Sprint([]uint64{seq}) {
		t.Fatalf("handled %v, want %d", got, seq)
	}
	if dl := deadLetters(t, js); len(dl) != 0 {
		t.Fatalf("dead letters %+v", dl)
	}
}

// handBack delivers key's next message of group times and naks it each
// time, as members handing its partition back do, then unpins.
func handBack(t testing.TB, js jetstream.JetStream, group, key string, times int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	durable := consume.Durable(group, partitionOf(key), partitions)
	cons, err := js.Consumer(ctx, parts, durable)
	if err != nil {
		t.Fatal(err)
	}
	for i := range times {
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second), jetstream.FetchPriorityGroup("leadflow"))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range b.Messages() {
			got++
			_ = m.Nak()
		}
		if got != 1 {
			t.Fatalf("pull %d got %d messages (%v): the server gave up on it", i, got, b.Error())
		}
	}
	src, err := js.Stream(ctx, parts)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.UnpinConsumer(ctx, durable, "leadflow"); err != nil {
		t.Fatal(err)
	}
}

// A suspect (a redelivery whose last handling never ended) runs alone in
// its process: another group's handler waits for it. A member handing
// its partitions back stops waiting at once (not after its
// ShutdownGrace, here 10 s), rather than hold its messages past the pin's
// TTL, when the next owner may already handle the key's later ones.
func TestWaitForASuspectEndsWithTheHandBack(t *testing.T) {
	n := startParts(t)
	cfgA := config("suspecta")
	hang := make(chan struct{})
	var hanging atomic.Bool
	hA := func(ctx context.Context, m consume.Msg) error {
		hanging.Store(true)
		select {
		case <-hang:
		case <-ctx.Done():
		}
		return nil
	}
	run := start(t, n.JS, cfgA, hA) // makes the durables and the dead-letter stream
	eventually(t, 10*time.Second, func() bool { return members(t, n.JS, "suspecta") == 1 }, "the member did not join")
	if err := run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	seq := publish(t, n.JS, "K1", "x")
	handBack(t, n.JS, "suspecta", "K1", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := consume.RecordStarts(ctx, n.JS, consume.DefaultDeadLetterStream, "suspecta", "K1", seq, 1); err != nil {
		t.Fatal(err)
	}
	start(t, n.JS, cfgA, hA)
	eventually(t, 15*time.Second, hanging.Load, "the suspect did not start")
	defer close(hang)

	cfgB := config("suspectb")
	cfgB.ShutdownGrace = 10 * time.Second
	var handledB atomic.Int64
	runB := start(t, n.JS, cfgB, func(context.Context, consume.Msg) error {
		handledB.Add(1)
		return nil
	})
	eventually(t, 10*time.Second, func() bool { return members(t, n.JS, "suspectb") == 1 }, "group b did not join")
	time.Sleep(2 * time.Second) // time for b to fetch K1's message and try it
	if got := handledB.Load(); got != 0 {
		t.Fatalf("group b handled %d messages beside the suspect", got)
	}
	if err := runB.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// A handling that a hand-back interrupts (the handler returns when its
// context ends) did not take its process down: with MaxUnfinished 1, the
// redelivered message is handled again, not dead-lettered, after each of
// two such interruptions.
func TestInterruptedHandlingIsNotUnfinished(t *testing.T) {
	n := startParts(t)
	cfg := config("interrupted")
	cfg.MaxUnfinished = 1
	cfg.ShutdownGrace = 100 * time.Millisecond
	var started atomic.Int64
	var block atomic.Bool
	block.Store(true)
	var j journal
	h := func(ctx context.Context, m consume.Msg) error {
		if block.Load() {
			started.Add(1)
			<-ctx.Done()
			return ctx.Err()
		}
		j.add("m", m)
		return nil
	}
	seq := publish(t, n.JS, "K1", "x")
	for i := range int64(3) {
		run := start(t, n.JS, cfg, h)
		eventually(t, 15*time.Second, func() bool { return started.Load() > i }, "handling %d did not start", i+1)
		if err := run.stop(t, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	block.Store(false)
	start(t, n.JS, cfg, h)
	handledOnly(t, n.JS, &j, "K1", seq)
}

// A re-drive that ends while the member reloads its parked keys (here on a
// partition's first delivery) is not undone by the reload: the key's next
// message is handled, not parked behind a dead letter that is gone.
func TestReloadKeepsARedriveThatEndedMeanwhile(t *testing.T) {
	n := startParts(t)
	const key = "K1"
	other := "Z0" // on a partition that has had no delivery yet
	for i := 1; partitionOf(other) == partitionOf(key); i++ {
		other = fmt.Sprintf("Z%d", i)
	}
	var broken atomic.Bool
	broken.Store(true)
	var j journal
	poison := publish(t, n.JS, key, "poison")
	start(t, n.JS, config("reload"), func(_ context.Context, m consume.Msg) error {
		if m.Seq == poison && broken.Load() {
			return consume.Permanent(errors.New("bad"))
		}
		j.add("m", m)
		return nil
	})
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 1 }, "no dead letter")
	l1 := publish(t, n.JS, key, "l1")
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		return len(dl) == 1 && len(dl[0].Parked) == 1
	}, "not parked")

	listed, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	defer consume.SetParkedListed(func() {
		first := false
		once.Do(func() { first = true })
		if first {
			close(listed)
			select {
			case <-proceed:
			case <-time.After(10 * time.Second):
			}
		}
	})()
	publish(t, n.JS, other, "z")
	select {
	case <-listed:
	case <-time.After(10 * time.Second):
		t.Fatal("no reload on the first delivery")
	}
	broken.Store(false)
	if err := consume.Redrive(context.Background(), n.JS, consume.DefaultDeadLetterStream, "reload", key, poison); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return len(seqsOf(j.all(), key)) == 2 && len(deadLetters(t, n.JS)) == 0 },
		"re-drive not done: handled %v", func() any { return seqsOf(j.all(), key) })
	close(proceed)
	eventually(t, 10*time.Second, func() bool { return len(seqsOf(j.all(), other)) == 1 }, "the other key not handled")

	l2 := publish(t, n.JS, key, "l2")
	eventually(t, 5*time.Second, func() bool { return len(seqsOf(j.all(), key)) == 3 },
		"l2 not handled; dead letters %+v", func() any { return deadLetters(t, n.JS) })
	if got, want := seqsOf(j.all(), key), []uint64{poison, l1, l2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
}

// parkTwo publishes two more messages of key, whose message is the one
// dead letter, and waits until both are parked behind it.
func parkTwo(t *testing.T, js jetstream.JetStream, key string) (l1, l2 uint64) {
	t.Helper()
	l1, l2 = publish(t, js, key, "l1"), publish(t, js, key, "l2")
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, js)
		return len(dl) == 1 && len(dl[0].Parked) == 2
	}, "not parked")
	return l1, l2
}

// A group that is done (a finished re-score) is removed with what it
// keeps in the dead-letter stream: with no member left to serve a
// re-drive, its dead letters would be listed for ever. HeldBack counts
// them before, so a caller that must not lose one can wait.
func TestRemoveGroupDropsItsDeadLetters(t *testing.T) {
	n := startParts(t)
	poison := publish(t, n.JS, "K1", "poison")
	publish(t, n.JS, "K1", "later")
	run := start(t, n.JS, config("done"), func(_ context.Context, m consume.Msg) error {
		if m.Seq == poison {
			return consume.Permanent(errors.New("bad"))
		}
		return nil
	})
	other := start(t, n.JS, config("other"), func(_ context.Context, m consume.Msg) error {
		if m.Seq == poison {
			return consume.Permanent(errors.New("bad"))
		}
		return nil
	})
	eventually(t, 10*time.Second, func() bool {
		dls := deadLetters(t, n.JS)
		return len(dls) == 2 && len(dls[0].Parked) == 1 && len(dls[1].Parked) == 1
	}, "no dead letters with a parked message")
	held, err := consume.HeldBack(context.Background(), n.JS, consume.DefaultDeadLetterStream, "done")
	if err != nil || held != 1 {
		t.Fatalf("held back by done: %d %v, want 1", held, err)
	}
	if err := run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := other.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := consume.RemoveGroup(context.Background(), n.JS, parts, consume.DefaultDeadLetterStream, "done", partitions); err != nil {
		t.Fatal(err)
	}
	if held, err := consume.HeldBack(context.Background(), n.JS, consume.DefaultDeadLetterStream, "done"); err != nil || held != 0 {
		t.Fatalf("held back by the removed group: %d %v", held, err)
	}
	if dls := deadLetters(t, n.JS); len(dls) != 1 || dls[0].Group != "other" || len(dls[0].Parked) != 1 {
		t.Fatalf("dead letters after the removal: %+v, want the other group's only", dls)
	}
	if _, err := n.JS.Consumer(context.Background(), parts, consume.Durable("done", 0, partitions)); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("the removed group's durable: %v", err)
	}
}

// A dead message gone from its stream (expired, as fired timers do) and
// the messages parked behind it cannot be handled again: a skip or a
// re-drive drops them, with an error in the log, and releases the key,
// which would otherwise stay parked for ever.
func TestMessagesGoneFromTheStreamReleaseTheirKey(t *testing.T) {
	n := testenv.StartNATS(t)
	if _, err := n.JS.CreateStream(context.Background(), jetstream.StreamConfig{Name: parts, Subjects: []string{"part.>"}, AllowMsgTTL: true}); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"skip", "redrive"} {
		t.Run(op, func(t *testing.T) {
			key := "K-" + op
			publishTTL := func(data string) uint64 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				ack, err := n.JS.Publish(ctx, subject(key), []byte(data), jetstream.WithMsgTTL(2*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				return ack.Sequence
			}
			poison := publishTTL("poison")
			var j journal
			start(t, n.JS, config("gone-"+op), func(_ context.Context, m consume.Msg) error {
				if m.Seq == poison {
					return consume.Permanent(errors.New("bad"))
				}
				j.add("m", m)
				return nil
			})
			eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 1 }, "no dead letter")
			parked := publishTTL("parked")
			eventually(t, 10*time.Second, func() bool {
				dl := deadLetters(t, n.JS)
				return len(dl) == 1 && fmt.Sprint(dl[0].Parked) == fmt.Sprint([]uint64{parked})
			}, "not parked: %+v", func() any { return deadLetters(t, n.JS) })
			time.Sleep(3 * time.Second) // both expire
			var err error
			if op == "skip" {
				err = consume.Skip(context.Background(), n.JS, consume.DefaultDeadLetterStream, "gone-"+op, key, poison)
			} else {
				err = consume.Redrive(context.Background(), n.JS, consume.DefaultDeadLetterStream, "gone-"+op, key, poison)
			}
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 0 }, "still dead-lettered: %+v", func() any { return deadLetters(t, n.JS) })
			next := publish(t, n.JS, key, "next")
			eventually(t, 10*time.Second, func() bool { return fmt.Sprint(seqsOf(j.all(), key)) == fmt.Sprint([]uint64{next}) },
				"the key's next message not handled: %v", func() any { return seqsOf(j.all(), key) })
		})
	}
}

// A request replaces the key's pending one, so the other of re-drive and
// skip is refused while one waits to be served: an operator's skip must
// not silently become another's re-drive. Once served, either may be
// asked again.
func TestAPendingSkipIsNotReplacedByARedrive(t *testing.T) {
	n := startParts(t)
	poison := publish(t, n.JS, "K1", "poison")
	var j journal
	handler := func(_ context.Context, m consume.Msg) error {
		if m.Seq == poison {
			return consume.Permanent(errors.New("bad"))
		}
		j.add("m", m)
		return nil
	}
	run := start(t, n.JS, config("pending"), handler)
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 1 }, "no dead letter")
	later := publish(t, n.JS, "K1", "later")
	eventually(t, 10*time.Second, func() bool {
		dl := deadLetters(t, n.JS)
		return len(dl) == 1 && len(dl[0].Parked) == 1
	}, "not parked")
	if err := run.stop(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	if err := consume.Skip(ctx, n.JS, consume.DefaultDeadLetterStream, "pending", "K1", poison); err != nil {
		t.Fatal(err)
	}
	if err := consume.Skip(ctx, n.JS, consume.DefaultDeadLetterStream, "pending", "K1", poison); err != nil {
		t.Fatalf("the same request again: %v", err)
	}
	if err := consume.Redrive(ctx, n.JS, consume.DefaultDeadLetterStream, "pending", "K1", poison); !errors.Is(err, consume.ErrRequestPending) {
		t.Fatalf("a re-drive while the skip waits: %v, want ErrRequestPending", err)
	}
	start(t, n.JS, config("pending"), handler)
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 0 && j.len() == 1 },
		"the skip not served: %+v", func() any { return deadLetters(t, n.JS) })
	if hs := j.all(); hs[0].seq != later {
		t.Fatalf("handled %+v, want only the parked message (the dead one skipped)", hs)
	}
}

// A member that died after storing a dead letter and parking the key's
// next message, before settling the dead one, leaves it to be delivered
// again. A skip served before that delivery must not let it run: the next
// owner serves requests once what its durable delivers again is
// dispatched, and the key's messages run in order, the dead one never.
func TestASkipWaitsForTheDeadMessagesRedelivery(t *testing.T) {
	n := startParts(t)
	const group = "settle"
	cfg := config(group)
	var j journal
	h := func(_ context.Context, m consume.Msg) error { j.add("m", m); return nil }
	run := start(t, n.JS, cfg, h) // makes the durables
	eventually(t, 10*time.Second, func() bool { return members(t, n.JS, group) == 1 }, "the member did not join")
	if err := run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	dead, later := publish(t, n.JS, "K1", "dead"), publish(t, n.JS, "K1", "later")

	// The member that died: it took both, stored the first as dead and
	// parked the second (settled), and never settled the first.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := partitionOf("K1")
	durable := consume.Durable(group, p, partitions)
	cons, err := n.JS.Consumer(ctx, parts, durable)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cons.Fetch(2, jetstream.FetchMaxWait(2*time.Second), jetstream.FetchPriorityGroup("leadflow"))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range b.Messages() {
		if got++; m.Subject() == subject("K1") && mustSeq(t, m) == later {
			_ = m.Ack()
		}
	}
	if got != 2 {
		t.Fatalf("fetched %d messages, want 2", got)
	}
	if err := consume.StoreDead(ctx, n.JS, consume.DefaultDeadLetterStream, parts, group, "K1", subject("K1"), dead, p); err != nil {
		t.Fatal(err)
	}
	if err := consume.StoreParked(ctx, n.JS, consume.DefaultDeadLetterStream, parts, group, "K1", subject("K1"), later, p); err != nil {
		t.Fatal(err)
	}
	// Its pin lapses PinnedTTL after its pull, as after a crash.
	if err := consume.Skip(ctx, n.JS, consume.DefaultDeadLetterStream, group, "K1", dead); err != nil {
		t.Fatal(err)
	}
	start(t, n.JS, cfg, h)
	eventually(t, 15*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 0 && j.len() >= 1 },
		"the skip not served: %+v", func() any { return deadLetters(t, n.JS) })
	time.Sleep(3 * time.Second) // past AckWait: a redelivery would have run by now
	if got := seqsOf(j.all(), "K1"); fmt.Sprint(got) != fmt.Sprint([]uint64{later}) {
		t.Fatalf("handled %v, want only %d (the dead %d skipped)", got, later, dead)
	}
	// A served request is not kept.
	dl, err := n.JS.Stream(ctx, consume.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dl.GetLastMsgForSubject(ctx, "deadletter.request."+group+".K1"); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the served request: %v, want it deleted", err)
	}
}

func mustSeq(t *testing.T, m jetstream.Msg) uint64 {
	t.Helper()
	md, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	return md.Sequence.Stream
}

// A dead letter records how many attempts its message had: one for a
// permanent failure, the configured number for one that kept failing.
func TestDeadLetterCountsItsAttempts(t *testing.T) {
	n := startParts(t)
	perm, flaky := publish(t, n.JS, "K1", "permanent"), publish(t, n.JS, "K2", "flaky")
	h := func(_ context.Context, m consume.Msg) error {
		if m.Seq == perm {
			return consume.Permanent(errors.New("bad"))
		}
		return errors.New("again")
	}
	cfg := config("attempts")
	cfg.Attempts = 3
	start(t, n.JS, cfg, h)
	eventually(t, 10*time.Second, func() bool { return len(deadLetters(t, n.JS)) == 2 }, "not dead-lettered")
	for _, d := range deadLetters(t, n.JS) {
		want := map[uint64]int{perm: 1, flaky: 3}[d.StreamSeq]
		if d.Attempts != want {
			t.Errorf("dead letter of seq %d: %d attempts, want %d", d.StreamSeq, d.Attempts, want)
		}
	}
}

// A group with thousands of dead letters (a mass dead-lettering) still
// consumes: reading which keys are parked, at every partition taken, once
// took a request a dead letter, long enough for the first messages'
// leases to run out, and the member handed its partitions back over and
// over without handling anything.
func TestManyDeadLettersDoNotStopTheGroup(t *testing.T) {
	n := startParts(t)
	const group, dead = "many", 5000
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := start(t, n.JS, config(group), func(context.Context, consume.Msg) error { return nil }) // makes the streams
	eventually(t, 10*time.Second, func() bool { return members(t, n.JS, group) == 1 }, "the member did not join")
	if err := run.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for i := range dead {
		key := fmt.Sprintf("D%05d", i)
		if err := consume.StoreDead(ctx, n.JS, consume.DefaultDeadLetterStream, parts, group, key, subject(key), uint64(1_000_000+i), partitionOf(key)); err != nil {
			t.Fatal(err)
		}
	}
	want := publishMany(t, n.JS, 64, 5)
	var j journal
	cfg := config(group)
	cfg.AckWait, cfg.PinnedTTL = 4*time.Second, 8*time.Second // twice the services' AckWait
	var lost atomic.Int64
	cfg.Logger = slog.New(&countHandler{match: "handing the partition back", n: &lost})
	start(t, n.JS, cfg, func(_ context.Context, m consume.Msg) error { j.add("m", m); return nil })
	eventually(t, time.Minute, func() bool { return j.len() >= 320 }, "handled %d of 320", func() any { return j.len() })
	checkOrder(t, j.all(), want)
	if n := lost.Load(); n != 0 {
		t.Errorf("%d hand-backs (leases that ran out while the dead letters were read)", n)
	}
}
