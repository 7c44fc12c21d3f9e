package lifecycle_test

import (
	"errors"
	"flag"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/lifecycle"
)

var seed = flag.Uint64("lifecycle.seed", 0, "seed for TestProperties; 0 picks one from the clock")

// TestProperties runs random command sequences from a lead that does not exist
// yet and checks the invariants after every step. A failure logs the seed;
// rerun with -lifecycle.seed to reproduce it.
func TestProperties(t *testing.T) {
	s0 := *seed
	if s0 == 0 {
		s0 = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d", s0)
	r := rand.New(rand.NewPCG(s0, 0))
	p := lifecycle.DefaultPolicy()

	const sequences, steps, tries = 3000, 40, 3
	emitted := map[lifecycle.Kind]int{}
	for seq := range sequences {
		var (
			s      lifecycle.State
			prior  lifecycle.State // before the last merge
			n      int             // events so far
			clock  = t0
			failed = func(format string, args ...any) {
				t.Helper()
				t.Fatalf("seed %d, sequence %d, after %d events: "+format, append([]any{s0, seq, n}, args...)...)
			}
		)
		for range steps {
			clock = clock.Add(time.Duration(r.Int64N(int64(72 * time.Hour))))
			// Several tries per step, keeping the first that succeeds, so that
			// sequences get deep into the funnel; every try is checked.
			for range tries {
				c := randomCommand(r, clock, prior)
				events, err := lifecycle.Decide(s, c, p, clock)
				if err != nil {
					if events != nil {
						failed("%s in %s: events %+v with error %v", c.Name, s.Status, events, err)
					}
					if !errors.Is(err, lifecycle.ErrRefused) && !errors.Is(err, lifecycle.ErrInvalidCommand) {
						failed("%s in %s: unexpected error %v", c.Name, s.Status, err)
					}
					continue // no events, so the state is unchanged
				}
				if len(events) != 1 {
					failed("%s in %s: %d events", c.Name, s.Status, len(events))
				}
				e := events[0]
				// An unmerge brings back the deadline the lead had, past or not.
				if !e.At.Equal(clock) || (!e.Deadline.IsZero() && !e.Deadline.After(clock) && c.Name != lifecycle.Unmerge) {
					failed("%s at %v: event %+v", c.Name, clock, e)
				}
				next := lifecycle.Evolve(s, e)
				checkStep(failed, s, c, next)
				if c.Name == lifecycle.Merge {
					prior = s
				}
				// What the command restores comes back; the rest is as it was
				// before the merge.
				if want := (lifecycle.State{Status: c.Status, Owner: c.Owner, Deadline: c.Due, Attempts: prior.Attempts, Score: prior.Score, Cycle: prior.Cycle}); c.Name == lifecycle.Unmerge && !sameState(next, want) {
					failed("Unmerge gave %+v, want %+v (before the merge: %+v)", next, want, prior)
				}
				s = next
				n++
				emitted[e.Kind]++
				break
			}
		}
	}
	for _, k := range allKinds {
		if emitted[k] == 0 {
			t.Errorf("no %s in %d sequences: the generator no longer reaches it", k, sequences)
		}
	}
	t.Logf("events emitted: %v", emitted)
}

// checkStep checks one accepted command c that took s to next.
func checkStep(failed func(string, ...any), s lifecycle.State, c lifecycle.Command, next lifecycle.State) {
	if !slices.Contains(allStatuses, next.Status) || next.Status == lifecycle.StatusNone {
		failed("%s from %s gave status %v", c.Name, s.Status, next.Status)
	}
	if err := lifecycle.Check(next); err != nil {
		failed("%s from %+v gave %+v: %v", c.Name, s, next, err)
	}
	if s.Status == lifecycle.StatusNone && c.Name != lifecycle.Capture {
		failed("%s accepted before capture", c.Name)
	}
	if s.Status.Terminal() {
		// A finished lead takes only erasure, and facts about the person
		// while it is won or disqualified; facts change nothing.
		fact := slices.Contains([]lifecycle.CommandName{lifecycle.Resubmit, lifecycle.RecordActivity, lifecycle.ChangeConsent}, c.Name)
		switch {
		case c.Name == lifecycle.Erase && s.Status != lifecycle.StatusErased:
		case c.Name == lifecycle.Unmerge && s.Status == lifecycle.StatusMerged:
		case fact && (s.Status == lifecycle.StatusWon || s.Status == lifecycle.StatusDisqualified) && sameState(s, next):
		default:
			failed("%s accepted in terminal %+v, giving %+v", c.Name, s, next)
		}
	}
	if next.Status.Terminal() && (!next.Owner.IsZero() || !next.Deadline.IsZero()) {
		failed("%s gave terminal %+v with an owner or deadline", c.Name, next)
	}
}

var (
	reps     = []lifecycle.Owner{ann, bob, {Kind: lifecycle.OwnerRep, ID: "cy"}}
	queues   = []lifecycle.Owner{fallback, {Kind: lifecycle.OwnerQueue, ID: "fallback-apac"}}
	programs = []lifecycle.Owner{drip, {Kind: lifecycle.OwnerProgram, ID: "win-back"}}
	anyOwner = append(append([]lifecycle.Owner{{}, lifecycle.QueueRouting, {Kind: lifecycle.OwnerRep}}, reps...), programs...)
	reasons  = []string{"", " ", "no budget", "lead-7"}
)

// randomCommand returns a random command, usually well formed so that
// sequences progress, sometimes with arbitrary fields to exercise validation.
// An unmerge restores prior, the state before the last merge.
func randomCommand(r *rand.Rand, now time.Time, prior lifecycle.State) lifecycle.Command {
	// Merge and Erase end a sequence, so they are drawn less often.
	name := allCommands[r.IntN(len(allCommands))]
	if (name == lifecycle.Merge || name == lifecycle.Erase) && r.IntN(4) != 0 {
		name = allCommands[r.IntN(len(allCommands))]
	}
	due := func() time.Time {
		switch r.IntN(4) {
		case 0:
			return now.Add(-time.Duration(r.Int64N(int64(time.Hour))))
		case 1:
			return now.Add(time.Duration(1 + r.Int64N(int64(60*24*time.Hour))))
		}
		return time.Time{}
	}

	c := lifecycle.Command{Name: name}
	if r.IntN(8) == 0 { // arbitrary
		c.Owner = pick(r, anyOwner)
		c.Reason = pick(r, reasons)
		c.Due = due()
		c.NotNow = r.IntN(2) == 0
		c.Score = r.IntN(3) - 1
		c.Status = pick(r, allStatuses)
		return c
	}
	switch name {
	case lifecycle.Assign:
		c.Owner = pick(r, reps)
	case lifecycle.Reassign:
		c.Owner = pick(r, append(slices.Clone(reps), queues...))
	case lifecycle.Queue:
		c.Owner = pick(r, queues)
		c.Due = due()
	case lifecycle.Unmerge:
		c.Status, c.Owner, c.Due = prior.Status, prior.Owner, prior.Deadline
	case lifecycle.Enroll:
		c.Owner = pick(r, programs)
		c.Due = due()
	case lifecycle.Convert:
		c.Due = due()
	case lifecycle.Disqualify:
		c.NotNow = r.IntN(2) == 0
	case lifecycle.Score:
		c.Score = r.IntN(101)
	}
	if r.IntN(2) == 0 || name == lifecycle.Merge || name == lifecycle.Unmerge {
		c.Reason = pick(r, reasons[2:])
	}
	return c
}

func pick[T any](r *rand.Rand, from []T) T { return from[r.IntN(len(from))] }
