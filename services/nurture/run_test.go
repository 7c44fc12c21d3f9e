package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/nurture/adapters"
	"github.com/leadflow/leadflow/services/nurture/app"
	"github.com/leadflow/leadflow/services/nurture/ports"
	"github.com/leadflow/leadflow/services/nurture/program"
)

// recyclePrograms are programs with entry rules on cause, segment and
// score band.
func recyclePrograms() []*eventv1.NurtureProgram {
	return []*eventv1.NurtureProgram{
		{ProgramId: "smb-warm", Name: "SMB, warm", Duration: days(60),
			EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "smb-low", Causes: []eventv1.RecycleCause{rejected},
				Segments: []string{"SMB"}, ScoreBand: &eventv1.NurtureScoreBand{Min: 0, Max: 49}}},
			ExitRules: &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{demo, webinar}}},
		{ProgramId: "lost-deals", Name: "Lost deals win-back", Duration: days(120),
			EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "lost", Causes: []eventv1.RecycleCause{lostCause}}},
			ExitRules:  &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{demo}}},
		{ProgramId: "exhausted", Name: "Never reached", Duration: days(30),
			EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "unreached", Causes: []eventv1.RecycleCause{eventv1.RecycleCause_RECYCLE_CAUSE_ATTEMPTS_EXHAUSTED},
				Segments: []string{"smb"}}},
			ExitRules: &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{demo}, ReengageOnResubmission: true}},
		{ProgramId: "smb-later", Name: "SMB, not now", Duration: days(90),
			EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "smb-not-now", Causes: []eventv1.RecycleCause{eventv1.RecycleCause_RECYCLE_CAUSE_NOT_READY},
				Segments: []string{"smb"}}},
			ExitRules: &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{demo}}},
		{ProgramId: "welcome", Name: "Welcome series", Duration: days(45),
			EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "never-qualified", Causes: []eventv1.RecycleCause{notQualified}}},
			ExitRules:  &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{demo, webinar}}},
	}
}

type recycleCase struct {
	name    string
	lead    string
	source  *eventv1.Event // the event that sent the lead back
	cause   eventv1.RecycleCause
	program string
	rule    string
	segment string // the recycle's routing segment
	// recycledBy is the LeadRecycled someone else wrote (handoff), if so.
	recycledBy *eventv1.Event
}

// Every way a lead comes back from sales, or never qualifies in time,
// handled by two replicas: a LeadRecycled naming the reason and caused by
// the source event, then a
// NurtureEnrolled caused by it, into the program the rules choose (by
// cause, reason, segment and score band), with the review date as the
// lead's deadline. Bad data and not-a-fit follow their own policy. A
// plain disqualification stays terminal, and a new lead whose last score
// moved its deadline on stays NEW, with one timer. Then every event is delivered
// again (the group's durables are recreated): nobody is enrolled twice.
func TestEveryRecyclePath(t *testing.T) { testEveryRecyclePath(t, newWorld) }

func testEveryRecyclePath(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	a, b := w.start(t), w.start(t)
	for _, p := range recyclePrograms() {
		put(t, a.client, p)
	}

	var cases []recycleCase
	add := func(c recycleCase) { cases = append(cases, c) }
	id := func() string { return uuid.NewString() }

	l := id()
	w.accepted(t, l, "smb", 30)
	add(recycleCase{name: "rejected not ready", lead: l, source: w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb"),
		cause: rejected, program: "smb-warm", rule: "smb-low", segment: "smb"})
	l = id()
	w.accepted(t, l, "smb", 30)
	add(recycleCase{name: "rejected bad data", lead: l, source: w.reject(t, l, eventv1.RejectReason_REJECT_REASON_BAD_DATA, "smb"),
		cause: rejected, program: program.DataRepair, segment: "smb"})
	l = id()
	w.accepted(t, l, "smb", 30)
	add(recycleCase{name: "rejected not a fit", lead: l, source: w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_A_FIT, "smb"),
		cause: rejected, program: program.NotAFit, segment: "smb"})
	l = id()
	w.accepted(t, l, "enterprise", 80)
	add(recycleCase{name: "rejected, no rule matches", lead: l, source: w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NO_BUDGET, "enterprise"),
		cause: rejected, program: program.Default, segment: "enterprise"})
	l = id()
	w.accepted(t, l, "smb", 30)
	add(recycleCase{name: "deal lost", lead: l, source: w.lose(t, l, "smb"), cause: lostCause, program: "lost-deals", rule: "lost", segment: "smb"})
	l = id()
	w.accepted(t, l, "smb", 30)
	for range 3 {
		w.write(t, l, lifecycle.Command{Name: lifecycle.LogContact}, &eventv1.ContactAttempted{RepId: "ann", Outcome: eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER})
	}
	add(recycleCase{name: "attempts exhausted (breach)", lead: l, cause: eventv1.RecycleCause_RECYCLE_CAUSE_ATTEMPTS_EXHAUSTED, program: "exhausted", rule: "unreached", segment: "smb",
		source: w.write(t, l, lifecycle.Command{Name: lifecycle.BreachSLA}, &eventv1.SLABreached{Sla: eventv1.SLAKind_SLA_KIND_FOLLOW_UP,
			Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Escalation: eventv1.SLAEscalation_SLA_ESCALATION_RECYCLE, Segment: "smb"})})
	l = id()
	w.accepted(t, l, "smb", 30)
	byHandoff := w.write(t, l, lifecycle.Command{Name: lifecycle.Recycle, Reason: "attempts exhausted"},
		&eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_ATTEMPTS_EXHAUSTED, Note: "3 contact attempts by ann without reaching the lead"})
	add(recycleCase{name: "attempts exhausted (handoff recycled)", lead: l, source: byHandoff, recycledBy: byHandoff,
		cause: eventv1.RecycleCause_RECYCLE_CAUSE_ATTEMPTS_EXHAUSTED, program: "exhausted", rule: "unreached"})
	l = id()
	w.capture(t, l)
	add(recycleCase{name: "disqualified not now", lead: l, cause: eventv1.RecycleCause_RECYCLE_CAUSE_NOT_READY, program: program.Default,
		source: w.write(t, l, lifecycle.Command{Name: lifecycle.Disqualify, Reason: "budget next year", NotNow: true},
			&eventv1.LeadDisqualified{RuleId: "budget", Reason: "budget next year", NotNow: true})})
	l = id()
	w.capture(t, l)
	w.write(t, l, lifecycle.Command{Name: lifecycle.Score, Score: 80},
		&eventv1.LeadScored{ModelId: "scoring", ModelVersion: 1, Total: 80, Threshold: 50, Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY})
	w.write(t, l, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 50})
	w.write(t, l, lifecycle.Command{Name: lifecycle.Queue, Owner: lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: "triage"}},
		&eventv1.LeadQueued{Queue: "triage", Decision: &eventv1.RoutingDecision{RuleId: "smb", Segment: "smb"}})
	add(recycleCase{name: "queued MQL not now", lead: l, cause: eventv1.RecycleCause_RECYCLE_CAUSE_NOT_READY, program: "smb-later", rule: "smb-not-now",
		segment: "smb", source: w.write(t, l, lifecycle.Command{Name: lifecycle.Disqualify, Reason: "budget next year", NotNow: true},
			&eventv1.LeadDisqualified{RuleId: "budget", Reason: "budget next year", NotNow: true})})
	l = id()
	w.capture(t, l)
	w.scored(t, l, 20, 30*24*time.Hour) // its deadline is replaced by the next score's
	add(recycleCase{name: "not qualified by its deadline", lead: l, cause: notQualified, program: "welcome", rule: "never-qualified",
		source: w.scored(t, l, 25, 2*time.Second)})
	l = id()
	w.capture(t, l)
	lastScore := w.scored(t, l, 15, 30*24*time.Hour)
	survivor := id()
	w.write(t, l, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: l, Reason: "same person"})
	// Unmerged as it was, with the deadline it had then (here about to pass).
	w.write(t, l, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "not the same person", Status: lifecycle.StatusNew,
		Owner: lifecycle.QueueQualification, Due: time.Now().Add(2 * time.Second)},
		&eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: l, Reason: "not the same person"})
	add(recycleCase{name: "unmerged back to NEW, not qualified by its deadline", lead: l, cause: notQualified, program: "welcome",
		rule: "never-qualified", source: lastScore})
	waiting := id()
	w.capture(t, waiting)
	w.scored(t, waiting, 20, time.Hour)
	w.scored(t, waiting, 30, 30*24*time.Hour) // engagement moved its deadline on
	terminal := id()
	w.capture(t, terminal)
	w.write(t, terminal, lifecycle.Command{Name: lifecycle.Disqualify, Reason: "competitor"}, &eventv1.LeadDisqualified{RuleId: "rival", Reason: "competitor"})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs := w.nurtured(t, c.lead)
			checkRecycled(t, c, evs)
		})
	}
	w.settle(t, group)
	if got := types(w.events(t, terminal)); len(got) != 2 {
		t.Fatalf("a disqualified lead is terminal, nurture leaves it: %v", got)
	}
	// One engagement timer per lead, at its last score's deadline: the
	// first score's is gone, so nothing wakes the lead at it.
	if n := w.waitingTimers(t, waiting); n != 1 {
		t.Fatalf("%d timers wait for lead %s, want 1", n, waiting)
	}
	if evs := w.events(t, waiting); len(evs) != 3 || stateOf(last(evs)).Status != lifecycle.StatusNew {
		t.Fatalf("a lead waiting for engagement: %v", types(evs))
	}

	// Deliver everything again: stop both replicas, recreate the group's
	// durables from the start of the stream, start one again.
	before := map[string]int{}
	for _, c := range cases {
		before[c.lead] = len(w.events(t, c.lead))
	}
	a.stop()
	b.stop()
	ctx := ctxT(t)
	for p := range eventstore.Partitions {
		if err := w.nats.JS.DeleteConsumer(ctx, stream, consume.Durable(group, p, eventstore.Partitions)); err != nil {
			t.Fatal(err)
		}
	}
	w.start(t)
	time.Sleep(500 * time.Millisecond)
	w.settle(t, group)
	for _, c := range cases {
		if n := len(w.events(t, c.lead)); n != before[c.lead] {
			t.Fatalf("%s: redelivery wrote %d more events: %v", c.name, n-before[c.lead], types(w.events(t, c.lead)))
		}
	}
}

// checkRecycled checks the recycle and the enrolment after c's source.
func checkRecycled(t *testing.T, c recycleCase, evs []*eventv1.Event) {
	t.Helper()
	recycled, enrolled := ofType(evs, "LeadRecycled"), ofType(evs, "NurtureEnrolled")
	if len(recycled) != 1 || len(enrolled) != 1 {
		t.Fatalf("want one LeadRecycled and one NurtureEnrolled, got %v", types(evs))
	}
	r, e := recycled[0], enrolled[0]
	if c.recycledBy != nil {
		if !proto.Equal(r, c.recycledBy) {
			t.Fatalf("nurture recycled a lead handoff had recycled: %v", r)
		}
	} else {
		rc := r.GetLeadRecycled()
		if r.GetCausationId() != c.source.GetEventId() || rc.GetCause() != c.cause || rc.GetSourceEventType() != c.source.GetEventType() ||
			r.GetActor().GetId() != "nurture" || rc.GetNote() == "" || rc.GetCycle() != 1 || rc.GetSegment() != c.segment {
			t.Fatalf("recycle %v, want cause %s caused by %s %s", r, c.cause, c.source.GetEventType(), c.source.GetEventId())
		}
		if c.source.GetLeadRejected() != nil && rc.GetRejectReason() != c.source.GetLeadRejected().GetReason() {
			t.Fatalf("reject reason %s, want %s", rc.GetRejectReason(), c.source.GetLeadRejected().GetReason())
		}
		if st := stateOf(r); st.Status != lifecycle.StatusRecycled || st.Owner != lifecycle.QueueNurture {
			t.Fatalf("after the recycle: %+v", st)
		}
	}
	en := e.GetNurtureEnrolled()
	if e.GetCausationId() != r.GetEventId() || en.GetProgramId() != c.program || en.GetRuleId() != c.rule || en.GetCycle() != 1 {
		t.Fatalf("enrolment %v, want program %s rule %q caused by %s", e, c.program, c.rule, r.GetEventId())
	}
	st := stateOf(e)
	if st.Status != lifecycle.StatusNurturing || st.Owner != (lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: c.program}) ||
		!st.Deadline.Equal(en.GetReviewAt().AsTime()) || !st.Deadline.After(time.Now()) {
		t.Fatalf("after the enrolment: %+v, review %v", st, en.GetReviewAt().AsTime())
	}
	if err := lifecycle.Check(st); err != nil {
		t.Fatal(err)
	}
	if last(evs) != e {
		t.Fatalf("nurture wrote more after the enrolment: %v", types(evs))
	}
}

// A manual recycle stored before its enrolment failed answers the
// recycle: an error would have the caller's retry refused (the consumer
// enrols the lead) or recycle the lead a second time.
func TestAStoredRecycleIsAnsweredWhateverFollows(t *testing.T) {
	w := newWorld(t)
	w.start(t).stop() // its streams
	l := uuid.NewString()
	w.accepted(t, l, "smb", 30)
	a, ctx := w.enrolmentCut(t)
	r, err := a.RecycleLead(ctx, app.RecycleLead{LeadID: l, Note: "asked us to come back in spring", Actor: marketer},
		envelope.Meta{CorrelationID: uuid.NewString()})
	rec := ofType(w.events(t, l), "LeadRecycled")
	if err != nil || len(rec) != 1 || r.RecycledEventID != rec[0].GetEventId() || r.EnrolledEventID != "" {
		t.Fatalf("recycle %+v, %v; stored %v", r, err, rec)
	}
}

// A lead recycled by hand whose enrolment nurture still owes (the
// enrolment failed, nurture's consumer is down) is not recycled again by
// a request without a program, which would count the one hand-back twice:
// FAILED_PRECONDITION naming the state, nothing written. One naming a
// program sends the lead there instead.
func TestARecycledLeadAwaitingItsEnrolmentIsNotRecycledAgain(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	put(t, s.client, recyclePrograms()[0])
	s.stop()
	l := uuid.NewString()
	w.accepted(t, l, "smb", 30)
	first, ctx := w.enrolmentCut(t)
	meta := envelope.Meta{CorrelationID: uuid.NewString()}
	if _, err := first.RecycleLead(ctx, app.RecycleLead{LeadID: l, Note: "asked us to come back in spring", Actor: marketer}, meta); err != nil {
		t.Fatal(err)
	}
	before := w.events(t, l)
	if len(ofType(before, "LeadRecycled")) != 1 || len(ofType(before, "NurtureEnrolled")) != 0 {
		t.Fatalf("after the first recycle: %v", types(before))
	}

	log := slog.New(slog.DiscardHandler)
	port := ports.NewGRPC(w.nurtureWith(), log)
	req := &nurturev1.RecycleLeadRequest{LeadId: l, Note: "asked us to come back in spring", Actor: marketer}
	_, err := port.RecycleLead(ctxT(t), req)
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "recycled") || !strings.Contains(st.Message(), "enrolment") {
		t.Fatalf("a second recycle without a program: %v, want FAILED_PRECONDITION saying the enrolment is owed", err)
	}
	if evs := w.events(t, l); len(evs) != len(before) {
		t.Fatalf("the refused recycle wrote: %v", types(evs))
	}

	req.ProgramId = "smb-warm"
	r, err := port.RecycleLead(ctxT(t), req)
	if err != nil || r.GetProgramId() != "smb-warm" || r.GetEnrolledEventId() == "" {
		t.Fatalf("a recycle into a program: %v, %v", r, err)
	}
	evs := w.events(t, l)
	rec, en := ofType(evs, "LeadRecycled"), ofType(evs, "NurtureEnrolled")
	if len(rec) != 2 || len(en) != 1 || en[0].GetCausationId() != rec[1].GetEventId() || en[0].GetNurtureEnrolled().GetProgramId() != "smb-warm" {
		t.Fatalf("after the recycle into a program: %v", types(evs))
	}

	// A recycle naming a program that does not exist owes an enrolment
	// nurture can never write: without a program, the entry rules choose.
	ghost := uuid.NewString()
	w.accepted(t, ghost, "smb", 30)
	w.write(t, ghost, lifecycle.Command{Name: lifecycle.Recycle, Reason: "by hand"},
		&eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_MANUAL, Note: "by hand", ProgramId: "ghost"})
	req = &nurturev1.RecycleLeadRequest{LeadId: ghost, Note: "asked us to come back in spring", Actor: marketer}
	if r, err := port.RecycleLead(ctxT(t), req); err != nil || r.GetEnrolledEventId() == "" {
		t.Fatalf("a recycle without a program of a lead whose recycle names no program there is: %v, %v", r, err)
	}
}

// enrolmentCut is nurture whose reads and writes through ctx fail once
// it has stored a LeadRecycled: a recycle's enrolment then fails.
func (w *world) enrolmentCut(t *testing.T) (*app.App, context.Context) {
	ctx, cancel := context.WithCancel(ctxT(t))
	t.Cleanup(cancel)
	return w.nurtureWith(app.WithAfterAppend(func(ev *eventv1.Event) {
		if ev.GetLeadRecycled() != nil {
			cancel()
		}
	})), ctx
}

// lostAnswer stores the next append and loses its answer.
type lostAnswer struct {
	app.Leads
	armed atomic.Bool
}

func (l *lostAnswer) Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	v, err := l.Leads.Append(ctx, leadID, expected, events...)
	if err == nil && l.armed.CompareAndSwap(true, false) {
		return 0, fmt.Errorf("%w: the answer was lost", eventstore.ErrUnknownOutcome)
	}
	return v, err
}

func (l *lostAnswer) AppendKeyed(ctx context.Context, leadID string, expected uint64, requestID, eventType string, events ...*eventv1.Event) (uint64, error) {
	v, err := l.Leads.AppendKeyed(ctx, leadID, expected, requestID, eventType, events...)
	if err == nil && l.armed.CompareAndSwap(true, false) {
		return 0, fmt.Errorf("%w: the answer was lost", eventstore.ErrUnknownOutcome)
	}
	return v, err
}

// A manual recycle whose outcome is unknown is UNAVAILABLE; only one with
// a request id is told that sending it again is safe: without one, a
// second would recycle the lead again.
func TestARecycleOfUnknownOutcomeSaysWhetherToSendItAgain(t *testing.T) {
	w := newWorld(t)
	w.start(t).stop() // its streams
	lost := &lostAnswer{Leads: adapters.NewLeads(w.store)}
	log := slog.New(slog.DiscardHandler)
	port := ports.NewGRPC(app.New(lost, adapters.NewPrograms(w.store), adapters.NewTimers(w.nats.JS, time.Hour),
		adapters.NewIndex(w.nats.JS, stream, log), adapters.NewGroups(w.nats.JS, stream, consume.DefaultDeadLetterStream), app.WithLogger(log)), log)
	for _, id := range []string{"", "r-9"} {
		l := uuid.NewString()
		w.accepted(t, l, "smb", 30)
		lost.armed.Store(true)
		_, err := port.RecycleLead(ctxT(t), &nurturev1.RecycleLeadRequest{LeadId: l, Note: "asked us to come back in spring", Actor: marketer, RequestId: id})
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || strings.Contains(st.Message(), "request_id") != (id == "") {
			t.Errorf("request id %q: %v, want UNAVAILABLE, naming the missing request_id only without one", id, err)
		}
		if lost.armed.Load() || len(ofType(w.events(t, l), "LeadRecycled")) != 1 {
			t.Fatalf("request id %q: the recycle was not stored", id)
		}
	}
}

// A person recycles an accepted lead by hand into a named program; a
// retry with the same request id answers the same and writes nothing.
func TestManualRecycle(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	put(t, s.client, recyclePrograms()[0])
	l := uuid.NewString()
	w.accepted(t, l, "smb", 30)
	req := &nurturev1.RecycleLeadRequest{LeadId: l, Note: "asked us to come back in spring", ProgramId: "smb-warm", Actor: marketer, RequestId: "r-1"}
	r, err := s.client.RecycleLead(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetProgramId() != "smb-warm" || r.GetEnrolledEventId() == "" || r.GetReplayed() || r.GetCycle() != 1 {
		t.Fatalf("recycle: %v", r)
	}
	evs := w.events(t, l)
	rec := ofType(evs, "LeadRecycled")
	if len(rec) != 1 || rec[0].GetLeadRecycled().GetCause() != eventv1.RecycleCause_RECYCLE_CAUSE_MANUAL || rec[0].GetActor().GetId() != "mia" ||
		rec[0].GetEventId() != r.GetRecycledEventId() {
		t.Fatalf("recycled: %v", rec)
	}
	again, err := s.client.RecycleLead(ctxT(t), req)
	if err != nil || !again.GetReplayed() || again.GetRecycledEventId() != r.GetRecycledEventId() || again.GetEnrolledEventId() != r.GetEnrolledEventId() ||
		again.GetProgramId() != r.GetProgramId() || !again.GetReviewAt().AsTime().Equal(r.GetReviewAt().AsTime()) || again.GetCycle() != r.GetCycle() {
		t.Fatalf("retry: %v %v, want %v", again, err, r)
	}
	// The same request id with another note is not a retry: refused.
	other := proto.Clone(req).(*nurturev1.RecycleLeadRequest)
	other.Note = "wants a call next week"
	_, err = s.client.RecycleLead(ctxT(t), other)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "request_id") {
		t.Fatalf("request id reused with another note: %v", err)
	}
	// A blank request id would be none: a retry would recycle again.
	other.RequestId = "   "
	if _, err = s.client.RecycleLead(ctxT(t), other); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "request_id") {
		t.Fatalf("a blank request id: %v", err)
	}
	// Answered from the request id's record, sent after the recycle.
	if typ, rec, found, err := w.store.Keyed(ctxT(t), "nurture", eventstore.LeadSubject(l), "r-1"); err != nil || !found ||
		typ != "LeadRecycled" || rec.Event.GetEventId() != r.GetRecycledEventId() {
		t.Fatalf("the recycle's record: %q %v %v", typ, found, err)
	}
	w.settle(t, group)
	if n := len(w.events(t, l)); n != len(evs) {
		t.Fatalf("a retry or the consumer wrote more: %v", types(w.events(t, l)))
	}
	got, err := s.client.GetLeadNurture(ctxT(t), &nurturev1.GetLeadNurtureRequest{LeadId: l})
	if err != nil || got.GetProgramId() != "smb-warm" || got.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_NURTURING || len(got.GetSteps()) != 2 || got.GetCycle() != 1 {
		t.Fatalf("nurture view: %v %v", got, err)
	}
}

// A retry of a manual recycle is answered as the first was even after its
// program was retired: it writes nothing, so no lead enters the retired
// program. A new request into that program is still refused.
func TestManualRecycleRetriedAfterItsProgramIsRetired(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	ctx := ctxT(t)
	put(t, s.client, &eventv1.NurtureProgram{ProgramId: "spring", Name: "Spring campaign", Duration: days(30)})
	l := uuid.NewString()
	w.accepted(t, l, "smb", 30)
	req := &nurturev1.RecycleLeadRequest{LeadId: l, Note: "back in spring", ProgramId: "spring", Actor: marketer, RequestId: "r-spring"}
	r, err := s.client.RecycleLead(ctx, req)
	if err != nil || r.GetProgramId() != "spring" || r.GetEnrolledEventId() == "" || r.GetReplayed() {
		t.Fatalf("recycle: %v %v", r, err)
	}
	if _, err := s.client.RetireProgram(ctx, &nurturev1.RetireProgramRequest{ProgramId: "spring", ChangedBy: marketer}); err != nil {
		t.Fatalf("retire: %v", err)
	}
	w.settle(t, group)
	before := w.streamLast(t)
	again, err := s.client.RecycleLead(ctx, req)
	if err != nil || !again.GetReplayed() || again.GetRecycledEventId() != r.GetRecycledEventId() ||
		again.GetEnrolledEventId() != r.GetEnrolledEventId() || again.GetProgramId() != "spring" {
		t.Fatalf("retry after the retirement: %v %v, want %v replayed", again, err, r)
	}
	if after := w.streamLast(t); after != before {
		t.Fatalf("the retry moved the stream from %d to %d", before, after)
	}
	fresh := proto.CloneOf(req)
	fresh.RequestId = "r-later"
	if _, err := s.client.RecycleLead(ctx, fresh); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "retired") {
		t.Fatalf("a new recycle into the retired program: %v", err)
	}
}

// A fired timers' TTL the server would refuse on every schedule stops
// the service at start, naming the flag.
func TestAShortTimerTTLIsRefusedAtStart(t *testing.T) {
	err := run(context.Background(), Config{NATSURL: "nats://127.0.0.1:1", TimerTTL: 500 * time.Millisecond}, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "-timer-ttl") {
		t.Fatalf("run with -timer-ttl 500ms: %v, want it refused, named", err)
	}
}
