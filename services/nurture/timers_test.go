package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/nurture/adapters"
	"github.com/leadflow/leadflow/services/nurture/app"
	"github.com/leadflow/leadflow/services/nurture/ports"
)

// A new lead's older score delivered again after a newer one (a lost
// acknowledgement, a re-drive) moves its engagement timer back to the
// older deadline, where the lead is not due yet. The lead is still
// recycled at its own deadline; the timer was once spent at the older
// one, and the lead stayed NEW for good.
func TestEngagementTimerFollowsTheLeadsDeadline(t *testing.T) {
	w := newWorld(t)
	w.start(t)
	l := uuid.NewString()
	w.capture(t, l)
	older := w.scored(t, l, 20, 5*time.Second)
	newer := w.scored(t, l, 25, 10*time.Second)
	deadline := stateOf(newer).Deadline
	w.settle(t, group)

	ctx := ctxT(t)
	recs, err := w.store.Load(ctx, eventstore.LeadSubject(l))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	js := w.nats.JS
	a := app.New(adapters.NewLeads(w.store), adapters.NewPrograms(w.store), adapters.NewTimers(js, time.Hour),
		adapters.NewIndex(js, stream, log), adapters.NewGroups(js, stream, consume.DefaultDeadLetterStream), app.WithLogger(log))
	for _, r := range recs {
		if r.Event.GetEventId() == older.GetEventId() {
			if err := ports.NewEvents(a, log).Lead(ctx, testenv.Delivered(t, stream, r)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A past older deadline fires at once, which the old code spent too;
	// only the newer one must still be ahead.
	if time.Now().After(deadline) {
		t.Fatal("too slow: the newer deadline passed before the older score was delivered again")
	}

	evs := w.nurtured(t, l)
	rec := ofType(evs, "LeadRecycled")
	if len(rec) != 1 || rec[0].GetCausationId() != newer.GetEventId() || rec[0].GetRecordedAt().AsTime().Before(deadline) {
		t.Fatalf("recycled %v, want once, caused by the last score, at its deadline %v", rec, deadline)
	}
}

// A review fired before its time by this clock, behind the server's, is
// scheduled again as far past its due by the server's clock: at its due
// it would fire again at once, round after round, while the clocks
// differ.
func TestReviewFiredEarlyByTheClockWaitsForIt(t *testing.T) {
	w := newWorld(t)
	w.start(t)
	l := uuid.NewString()
	w.accepted(t, l, "smb", 30)
	w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	en := ofType(w.nurtured(t, l), "NurtureEnrolled")[0]
	due := en.GetNurtureEnrolled().GetReviewAt().AsTime()

	js := w.nats.JS
	scheduled := w.timerIn(t, l, en.GetEventId())
	// The service schedules the review after it stores the enrolment: wait
	// for that, or it could replace the schedule made below.
	eventually(t, 10*time.Second, func() bool { return scheduled() != nil }, "the review was not scheduled")

	log := slog.New(slog.DiscardHandler)
	behind := app.New(adapters.NewLeads(w.store), adapters.NewPrograms(w.store), adapters.NewTimers(js, time.Hour),
		adapters.NewIndex(js, stream, log), adapters.NewGroups(js, stream, consume.DefaultDeadLetterStream), app.WithLogger(log),
		app.WithClock(func() time.Time { return due.Add(-2 * time.Second) }))
	if err := behind.ReviewDue(ctxT(t), &eventv1.NurtureTimer{TimerId: en.GetEventId(), LeadId: l, ProgramId: en.GetNurtureEnrolled().GetProgramId(),
		ReviewAt: timestamppb.New(due)}, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if got, want := scheduled().GetReviewAt().AsTime(), due.Add(2*time.Second); !got.Equal(want) {
		t.Fatalf("scheduled again for %v, want %v (two seconds past its due, as the clocks differ)", got, want)
	}
}

// A new lead's engagement timer fired early by this clock (behind the
// server's) goes again as far past the deadline; when that one fires,
// the lead past its deadline by this clock is recycled, though the
// timer's own date is still ahead of it.
func TestEngagementFiredEarlyByTheClockStillRecycles(t *testing.T) {
	w := newWorld(t)
	w.start(t)
	l := uuid.NewString()
	w.capture(t, l)
	score := w.scored(t, l, 20, time.Hour)
	due := stateOf(score).Deadline

	scheduled := w.timerIn(t, l, "engage")
	eventually(t, 10*time.Second, func() bool { return scheduled() != nil }, "the engagement deadline was not scheduled")
	at := func(now time.Time) *app.App { return w.nurtureWith(app.WithClock(func() time.Time { return now })) }
	timer := &eventv1.NurtureTimer{TimerId: score.GetEventId(), LeadId: l, ReviewAt: timestamppb.New(due)}
	if err := at(due.Add(-2*time.Second)).ReviewDue(ctxT(t), timer, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	again := scheduled()
	if got, want := again.GetReviewAt().AsTime(), due.Add(2*time.Second); !got.Equal(want) {
		t.Fatalf("scheduled again for %v, want %v", got, want)
	}
	if err := at(due.Add(time.Millisecond)).ReviewDue(ctxT(t), again, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if rec := ofType(w.events(t, l), "LeadRecycled"); len(rec) != 1 || rec[0].GetCausationId() != score.GetEventId() {
		t.Fatalf("recycled %v, want once, caused by the score whose deadline passed", rec)
	}
}

// A new lead that shows interest before its engagement deadline, while the
// scorer has not scored that yet (behind, or down), is not recycled at the
// deadline: the fact's score decides, and sets the next deadline, at which
// a lead still NEW is recycled.
func TestAFactWaitingForItsScoreIsNotRecycled(t *testing.T) {
	w := newWorld(t)
	w.start(t)
	l := uuid.NewString()
	w.capture(t, l)
	first := w.scored(t, l, 20, 3*time.Second)
	w.activity(t, l, demo)
	time.Sleep(time.Until(stateOf(first).Deadline) + 2*time.Second)
	w.settle(t, group)
	if evs := w.events(t, l); len(ofType(evs, "LeadRecycled")) != 0 || stateOf(last(evs)).Status != lifecycle.StatusNew {
		t.Fatalf("recycled with a demo request waiting for its score: %v", types(evs))
	}

	second := w.scored(t, l, 30, 2*time.Second) // the demo request's score
	evs := w.nurtured(t, l)
	rec := ofType(evs, "LeadRecycled")
	if len(rec) != 1 || rec[0].GetCausationId() != second.GetEventId() || rec[0].GetRecordedAt().AsTime().Before(stateOf(second).Deadline) {
		t.Fatalf("recycled %v, want once, caused by the demo request's score, at its deadline", rec)
	}
}

// A re-engaged lead whose score never comes (qualification's dead letter
// skipped) is not left NURTURING for good: its re-engagement schedules a
// timer a day past the deadline it set, before which nurture waits, and
// at which the lead goes back to its program, not qualified.
func TestAReengagementNobodyScoresGoesBackToItsProgram(t *testing.T) {
	w, l, re := reengagedLead(t)
	by := stateOf(re).Deadline.Add(24 * time.Hour)

	st, err := w.nats.JS.Stream(ctxT(t), adapters.DefaultTimerStream)
	if err != nil {
		t.Fatal(err)
	}
	subject := fmt.Sprintf("nurture.timer.at.%d.%s.%s", eventstore.Partition(l), l, re.GetEventId())
	testenv.Eventually(t, 10*time.Second, func() bool {
		m, err := st.GetLastMsgForSubject(ctxT(t), subject)
		var tm eventv1.NurtureTimer
		return err == nil && proto.Unmarshal(m.Data, &tm) == nil && tm.GetReviewAt().AsTime().Equal(by)
	}, "no timer for the end of the wait")

	timer := &eventv1.NurtureTimer{TimerId: re.GetEventId(), LeadId: l, ReviewAt: timestamppb.New(by)}
	if err := w.nurtureAt(by.Add(-time.Minute)).ReviewDue(ctxT(t), timer, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if evs := w.events(t, l); len(ofType(evs, "NurtureExited")) != 0 {
		t.Fatalf("gave up waiting before its time: %v", types(evs))
	}
	if err := w.nurtureAt(by.Add(time.Second)).ReviewDue(ctxT(t), timer, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	exit := ofType(w.events(t, l), "NurtureExited")
	if len(exit) != 1 || exit[0].GetNurtureExited().GetCause() != eventv1.NurtureExitCause_NURTURE_EXIT_CAUSE_NOT_QUALIFIED ||
		exit[0].GetCausationId() != re.GetEventId() {
		t.Fatalf("exits %v, want one back to the program, caused by the re-engagement", exit)
	}
}

// nurtureAt is nurture's app on w's stream with a clock that reads now.
func (w *world) nurtureAt(now time.Time) *app.App {
	return w.nurtureWith(app.WithClock(func() time.Time { return now }))
}

// nurtureWith is nurture's app on w's stream with opts.
// timerIn reads the timer scheduled in lead's slot, nil while none is.
func (w *world) timerIn(t *testing.T, lead, slot string) func() *eventv1.NurtureTimer {
	t.Helper()
	st, err := w.nats.JS.Stream(ctxT(t), adapters.DefaultTimerStream)
	if err != nil {
		t.Fatal(err)
	}
	subject := fmt.Sprintf("nurture.timer.at.%d.%s.%s", eventstore.Partition(lead), lead, slot)
	return func() *eventv1.NurtureTimer {
		m, err := st.GetLastMsgForSubject(ctxT(t), subject)
		if err != nil {
			return nil
		}
		var tm eventv1.NurtureTimer
		if err := proto.Unmarshal(m.Data, &tm); err != nil {
			t.Fatal(err)
		}
		return &tm
	}
}

func (w *world) nurtureWith(opts ...app.Option) *app.App {
	return w.nurtureOn(adapters.NewLeads(w.store), opts...)
}

// nurtureOn is nurtureWith reading and writing leads through leads.
func (w *world) nurtureOn(leads app.Leads, opts ...app.Option) *app.App {
	log := slog.New(slog.DiscardHandler)
	return app.New(leads, adapters.NewPrograms(w.store), adapters.NewTimers(w.nats.JS, time.Hour),
		adapters.NewIndex(w.nats.JS, stream, log), adapters.NewGroups(w.nats.JS, stream, consume.DefaultDeadLetterStream),
		append([]app.Option{app.WithLogger(log)}, opts...)...)
}

// A re-engagement merged away before its score gives the scorer its time
// again when an unmerge gives the lead back (the score was refused while
// it was merged, and comes now): nurture waits from the unmerge, however
// long ago the re-engagement's deadline passed.
func TestAnUnmergeGivesTheReengagementsScoreItsTimeAgain(t *testing.T) {
	w := newWorld(t)
	w.start(t)
	l, other := uuid.NewString(), uuid.NewString()
	w.accepted(t, l, "smb", 30)
	w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	w.nurtured(t, l)
	w.capture(t, other)
	// Re-engaged with a deadline passed at once, then merged.
	p := lifecycle.DefaultPolicy()
	p.ScoreWithin = time.Millisecond
	re := w.writeWith(t, p, l, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "any"})
	prior := stateOf(re)
	w.write(t, l, lifecycle.Command{Name: lifecycle.Merge, Reason: other}, &eventv1.LeadMerged{SurvivorLeadId: other, AbsorbedLeadId: l})
	un := w.write(t, l, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline},
		&eventv1.LeadUnmerged{SurvivorLeadId: other, AbsorbedLeadId: l, Reason: "two people"})
	timer := &eventv1.NurtureTimer{TimerId: un.GetEventId(), LeadId: l, ReviewAt: timestamppb.New(prior.Deadline.Add(24 * time.Hour))}
	// A day past the re-engagement's deadline, but not past the scorer's
	// hour after the unmerge and the day after that: still waiting.
	if err := w.nurtureAt(prior.Deadline.Add(24*time.Hour+time.Second)).ReviewDue(ctxT(t), timer, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if evs := w.events(t, l); len(ofType(evs, "NurtureExited")) != 0 {
		t.Fatalf("gave up on the score the unmerge made due: %v", types(evs))
	}
	by := un.GetRecordedAt().AsTime().Add(25 * time.Hour)
	if err := w.nurtureAt(by.Add(time.Second)).ReviewDue(ctxT(t), timer, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if exit := ofType(w.events(t, l), "NurtureExited"); len(exit) != 1 || exit[0].GetCausationId() != re.GetEventId() {
		t.Fatalf("exits %v, want one, caused by the re-engagement, once its time after the unmerge was over", exit)
	}
}

// A lead an unmerge gives back NEW past its engagement deadline, with an
// activity its person sent while merged (given back with it), waits for
// that activity's score from the unmerge on: the scorer gets its hour
// however long ago the deadline passed.
func TestAGivenBackActivityIsScoredBeforeTheLeadIsRecycled(t *testing.T) {
	w := newWorld(t)
	w.start(t).stop() // its streams; no consumer to race the calls below
	survivor := uuid.NewString()
	due := time.Now().Add(-2 * time.Hour)
	// mergedAndBack merges lead into survivor and unmerges it NEW, its
	// deadline two hours past.
	mergedAndBack := func(lead string) *eventv1.Event {
		w.write(t, lead, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: lead})
		return w.write(t, lead, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: lifecycle.StatusNew, Owner: lifecycle.QueueQualification, Due: due},
			&eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: lead, Reason: "two people"})
	}
	// waitsUntil checks that the lead's engagement timer recycles it only
	// from by on.
	waitsUntil := func(lead string, by time.Time) {
		t.Helper()
		timer := &eventv1.NurtureTimer{TimerId: lead, LeadId: lead, ReviewAt: timestamppb.New(due)}
		for _, c := range []struct {
			at   time.Time
			want int
		}{{by.Add(-time.Second), 0}, {by.Add(time.Second), 1}} {
			if err := w.nurtureAt(c.at).ReviewDue(ctxT(t), timer, envelope.Meta{}); err != nil {
				t.Fatal(err)
			}
			if evs := w.events(t, lead); len(ofType(evs, "LeadRecycled")) != c.want {
				t.Fatalf("at %v, %v: want %d LeadRecycled (recycled from %v on)", c.at, types(evs), c.want, by)
			}
		}
	}

	l := uuid.NewString()
	w.capture(t, l)
	w.scored(t, l, 15, 30*24*time.Hour)
	mergedAndBack(l)
	back := w.write(t, l, lifecycle.Command{Name: lifecycle.RecordActivity},
		&eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: demo, GivenBackBy: survivor})
	waitsUntil(l, back.GetRecordedAt().AsTime().Add(time.Hour))

	// So does one whose own activity's score its merge refused: the
	// scorer scores it at the unmerge.
	own := uuid.NewString()
	w.capture(t, own)
	w.scored(t, own, 15, 30*24*time.Hour)
	w.activity(t, own, demo)
	waitsUntil(own, mergedAndBack(own).GetRecordedAt().AsTime().Add(time.Hour))
}

// A new lead past its engagement deadline whose latest score qualifies
// it (a re-score under a new version keeps the deadline) is not recycled
// while that score's LeadQualified is still to come: qualification
// appends it second. Should it never come, an hour after the score the
// lead is recycled.
func TestAQualifyingScoreIsNotRecycledBeforeItsVerdict(t *testing.T) {
	w := newWorld(t)
	w.start(t).stop() // its streams; no consumer to race the calls below
	l := uuid.NewString()
	w.capture(t, l)
	due := lifecycle.FromProto(w.scored(t, l, 15, time.Millisecond).GetLifecycle()).Deadline
	p := lifecycle.DefaultPolicy()
	p.EngageWithin = time.Millisecond
	re := w.writeWith(t, p, l, lifecycle.Command{Name: lifecycle.Score, Score: 80, Rescore: true},
		&eventv1.LeadScored{ModelId: "scoring", ModelVersion: 2, Total: 80, Threshold: 50, Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY})
	if st := stateOf(re); st.Status != lifecycle.StatusNew || !st.Deadline.Equal(due) {
		t.Fatalf("the re-score left %v due %v, want NEW due %v", st.Status, st.Deadline, due)
	}
	timer := &eventv1.NurtureTimer{TimerId: l, LeadId: l, ReviewAt: timestamppb.New(due)}
	by := re.GetRecordedAt().AsTime().Add(time.Hour)
	if err := w.nurtureAt(by.Add(-time.Minute)).ReviewDue(ctxT(t), timer, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if evs := w.events(t, l); len(ofType(evs, "LeadRecycled")) != 0 {
		t.Fatalf("recycled a lead whose latest score qualified it: %v", types(evs))
	}
	if next := w.timerIn(t, l, "engage")(); next == nil || !next.GetReviewAt().AsTime().Equal(by) {
		t.Fatalf("engagement timer %v, want one at %v, when the verdict stops being awaited", next, by)
	}
	if err := w.nurtureAt(by.Add(time.Second)).ReviewDue(ctxT(t), timer, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if evs := w.events(t, l); len(ofType(evs, "LeadRecycled")) != 1 {
		t.Fatalf("no verdict an hour after the score: %v, want it recycled", types(evs))
	}
}

// A re-engagement's score with a verdict whose verdict event never comes
// (qualification's dead letter skipped) holds the lead an hour, not for
// good: the score schedules that hour's end in the re-engagement's slot,
// and the lead then goes back to its program.
func TestAVerdictThatNeverComesHoldsTheLeadAnHour(t *testing.T) {
	w, l, re := reengagedLead(t)
	w.settle(t, group)
	sc := w.scoreBy(t, l, re.GetEventId(), &eventv1.LeadScored{ModelId: "scoring", ModelVersion: 1, Total: 80, Threshold: 50,
		Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY})
	by := sc.GetRecordedAt().AsTime().Add(time.Hour)
	slot := w.timerIn(t, l, re.GetEventId())
	var timer *eventv1.NurtureTimer
	eventually(t, 10*time.Second, func() bool {
		timer = slot()
		return timer != nil && timer.GetReviewAt().AsTime().Equal(by)
	}, "no timer at the end of the hour the verdict is awaited: %v", func() any { return timer })
	if err := w.nurtureAt(by.Add(-time.Minute)).ReviewDue(ctxT(t), timer, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if exits := ofType(w.events(t, l), "NurtureExited"); len(exits) != 0 {
		t.Fatalf("exited while the score's LeadQualified may still come: %v", exits)
	}
	if err := w.nurtureAt(by.Add(time.Second)).ReviewDue(ctxT(t), timer, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	exits := ofType(w.events(t, l), "NurtureExited")
	if len(exits) != 1 || exits[0].GetNurtureExited().GetCause() != eventv1.NurtureExitCause_NURTURE_EXIT_CAUSE_NOT_QUALIFIED ||
		!strings.Contains(exits[0].GetNurtureExited().GetReason(), "verdict never came") {
		t.Fatalf("an hour after a score whose verdict never came: exits %v, want one back to the program saying why", exits)
	}
}

// reengagedLead is a world with nurture running and a lead sales
// rejected, nurtured in "webinars" and re-engaged by a webinar: the
// lead's id and its LeadReengaged.
func reengagedLead(t *testing.T) (*world, string, *eventv1.Event) {
	t.Helper()
	w, _, l, _, _ := webinarLead(t)
	w.activity(t, l, webinar)
	return w, l, ofType(w.waitFor(t, l, "LeadReengaged", 1), "LeadReengaged")[0]
}

// webinarLead is a world with nurture running and a lead sales rejected,
// nurtured in "webinars": the lead's id, its LeadRejected and its
// NurtureEnrolled.
func webinarLead(t *testing.T) (w *world, s *service, l string, rejected, enrolled *eventv1.Event) {
	t.Helper()
	w = newWorld(t)
	s = w.start(t)
	putWebinars(t, s.client)
	l = uuid.NewString()
	w.accepted(t, l, "smb", 30)
	rejected = w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	return w, s, l, rejected, last(w.nurtured(t, l))
}

// A re-engagement scored below the threshold once its program's review
// has passed goes on to the next program, saying so: not "ended without
// re-engagement".
func TestAReengagementScoredLowAfterTheReviewSaysWhy(t *testing.T) {
	w, s, l, _, enrolled := webinarLead(t)
	review := enrolled.GetNurtureEnrolled().GetReviewAt().AsTime()
	w.activity(t, l, webinar)
	re := ofType(w.waitFor(t, l, "LeadReengaged", 1), "LeadReengaged")[0]
	w.settle(t, group)
	s.stop()
	w.scoreFor(t, l, re, 35, false)
	if _, err := w.nurtureAt(review.Add(time.Minute)).Reconcile(ctxT(t), l, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	exits := ofType(w.events(t, l), "NurtureExited")
	if len(exits) != 1 {
		t.Fatalf("exits %v, want one", exits)
	}
	x := exits[0].GetNurtureExited()
	if x.GetCause() != eventv1.NurtureExitCause_NURTURE_EXIT_CAUSE_NOT_QUALIFIED || !strings.Contains(x.GetReason(), "re-scored 35, below the threshold 50") ||
		x.GetNextProgramId() == "" || !x.GetNextReviewAt().AsTime().After(review) {
		t.Fatalf("exit %v, want NOT_QUALIFIED naming the score, on to a program reviewed later", x)
	}
}

// racedLeads is the lead store with another writer's event stored just
// before its first append.
type racedLeads struct {
	app.Leads
	meanwhile func()
}

func (r *racedLeads) Append(ctx context.Context, leadID string, expected uint64, evs ...*eventv1.Event) (uint64, error) {
	if m := r.meanwhile; m != nil {
		r.meanwhile = nil
		m()
	}
	return r.Leads.Append(ctx, leadID, expected, evs...)
}

// An engagement timer whose recycle loses its race to a fact (stored
// between the timer's read and the recycle) is set again for that fact's
// wait: the fact's score would schedule the next one, but only if it
// lands.
func TestAnEngagementTimerThatLostItsRaceIsSetAgain(t *testing.T) {
	w := newWorld(t)
	w.start(t).stop() // its streams; no consumer to race the calls below
	l := uuid.NewString()
	w.capture(t, l)
	score := w.scored(t, l, 20, time.Hour)
	due := stateOf(score).Deadline
	leads := &racedLeads{Leads: adapters.NewLeads(w.store), meanwhile: func() { w.activity(t, l, demo) }}
	now := due.Add(time.Minute)
	a := w.nurtureOn(leads, app.WithClock(func() time.Time { return now }))
	timer := &eventv1.NurtureTimer{TimerId: score.GetEventId(), LeadId: l, ReviewAt: timestamppb.New(due)}
	if err := a.ReviewDue(ctxT(t), timer, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if leads.meanwhile != nil {
		t.Fatal("nurture wrote nothing: the race was not run")
	}
	if evs := w.events(t, l); len(ofType(evs, "LeadRecycled")) != 0 {
		t.Fatalf("recycled with a demo request waiting for its score: %v", types(evs))
	}
	if next := w.timerIn(t, l, "engage")(); next == nil || !next.GetReviewAt().AsTime().After(now) {
		t.Fatalf("engagement timer %v; want it set again for the demo request's wait", next)
	}
}
