package main

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// droppingConsumer runs the nurture group with a handler that
// acknowledges every event and does nothing: the bug that silently
// derails leads on their way back to nurture. It stops when the test's
// stop is called.
func (w *world) droppingConsumer(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- consume.Run(ctx, w.nats.JS, consume.Config{Stream: stream, Group: group, Partitions: eventstore.Partitions,
			Filter: eventstore.PartitionSubjects, Key: eventstore.LeadID, Logger: testLog()},
			func(context.Context, consume.Msg) error { return nil })
	}()
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dropping consumer: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func (w *world) find(t *testing.T, c nurturev1.NurtureServiceClient, r *nurturev1.FindLostLeadsRequest) *nurturev1.FindLostLeadsResponse {
	t.Helper()
	if r.ClaimGrace == nil {
		r.ClaimGrace = durationpb.New(time.Millisecond)
	}
	got, err := c.FindLostLeads(ctxT(t), r)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func lostIDs(r *nurturev1.FindLostLeadsResponse) []string {
	var out []string
	for _, l := range r.GetLost() {
		out = append(out, l.GetLeadId())
	}
	sort.Strings(out)
	return out
}

func parkedIDs(r *nurturev1.FindLostLeadsResponse) []string {
	var out []string
	for _, p := range r.GetParked() {
		out = append(out, p.GetGroup()+"/"+p.GetLeadId())
	}
	sort.Strings(out)
	return out
}

func sorted(s ...string) []string { s = slices.Clone(s); sort.Strings(s); return s }

// The no-lost-lead check finds exactly the leads that were broken on
// purpose: three leads whose way back a consumer dropped (rejected, lost,
// disqualified "not now"), one a buggy writer left without an owner, a
// lead parked behind a poison event (a recycle into a program that does
// not exist), and an identity claim with no lead. Healthy leads are not
// listed. Once the cause is fixed (the program defined, the real consumer
// running, the lead captured) a re-drive puts every lead back on track and
// the check comes back clean.
func TestLostLeadCheckFindsExactlyTheBrokenLeads(t *testing.T) {
	testLostLeadCheckFindsExactlyTheBrokenLeads(t, newWorld)
}

func testLostLeadCheckFindsExactlyTheBrokenLeads(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	ctx := ctxT(t)

	// Phase 1: the broken consumer has the nurture group.
	stopDropping := w.droppingConsumer(t)
	dropRejected, dropLost, dropNotNow, noOwner := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	w.accepted(t, dropRejected, "smb", 30)
	w.reject(t, dropRejected, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	w.accepted(t, dropLost, "smb", 30)
	w.lose(t, dropLost, "smb")
	w.capture(t, dropNotNow)
	w.write(t, dropNotNow, lifecycle.Command{Name: lifecycle.Disqualify, Reason: "budget next year", NotNow: true},
		&eventv1.LeadDisqualified{RuleId: "budget", Reason: "budget next year", NotNow: true})
	// A buggy writer stamps a rejection without the lifecycle's owner and
	// deadline.
	w.accepted(t, noOwner, "smb", 30)
	recs, err := w.store.Load(ctx, eventstore.LeadSubject(noOwner))
	if err != nil {
		t.Fatal(err)
	}
	bad, err := envelope.NewEvent(noOwner, &eventv1.LeadRejected{RepId: "ann", Reason: eventv1.RejectReason_REJECT_REASON_NO_BUDGET, Segment: "smb"},
		envelope.Meta{Actor: handoffActor, CorrelationID: uuid.NewString()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bad.Lifecycle = &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_RECYCLED, Score: 30}
	if _, err := w.store.Append(ctx, eventstore.LeadSubject(noOwner), recs[len(recs)-1].Seq, bad); err != nil {
		t.Fatal(err)
	}
	w.settle(t, group)
	stopDropping()

	// Phase 2: the real service, healthy leads, a poison event and an
	// orphan claim.
	s := w.start(t)
	healthy, fresh, poisoned := uuid.NewString(), uuid.NewString(), uuid.NewString()
	w.accepted(t, healthy, "smb", 30)
	w.reject(t, healthy, eventv1.RejectReason_REJECT_REASON_NO_BUDGET, "smb")
	w.capture(t, fresh)
	w.accepted(t, poisoned, "smb", 30)
	w.write(t, poisoned, lifecycle.Command{Name: lifecycle.Recycle, Reason: "spring campaign"},
		&eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_MANUAL, Note: "spring campaign", ProgramId: "spring-2027"})
	w.activity(t, poisoned, webinar) // parked behind the poison
	orphan := uuid.NewString()
	if _, err := w.store.Commit(ctx, eventstore.Write{Subject: eventstore.ClaimSubject("email", "h"+strings.ReplaceAll(orphan, "-", "")),
		Claim: &eventv1.Claim{LeadId: orphan, EventId: "claim-email-" + orphan}}); err != nil {
		t.Fatal(err)
	}
	w.nurtured(t, healthy)
	var rep *nurturev1.FindLostLeadsResponse
	eventually(t, 20*time.Second, func() bool {
		rep = w.find(t, s.client, &nurturev1.FindLostLeadsRequest{})
		return len(rep.GetParked()) == 1 && len(rep.GetParked()[0].GetParkedSeqs()) == 1
	}, "the poison event is not parked: %v", func() any { return rep.GetParked() })
	w.settle(t, group)

	rep = w.find(t, s.client, &nurturev1.FindLostLeadsRequest{})
	t.Logf("checked %d leads in %v", rep.GetLeadsChecked(), rep.GetTook().AsDuration())
	if got, want := lostIDs(rep), sorted(dropRejected, dropLost, dropNotNow, noOwner); !slices.Equal(got, want) {
		t.Fatalf("lost %v, want %v: %v", got, want, rep.GetLost())
	}
	for _, l := range rep.GetLost() {
		want := nurturev1.LostReason_LOST_REASON_DROPPED
		if l.GetLeadId() == noOwner {
			want = nurturev1.LostReason_LOST_REASON_NO_OWNER
		}
		if l.GetReason() != want || l.GetLastEventId() == "" || l.GetMissingStep() == "" || l.GetDetail() == "" || l.GetStuckFor().AsDuration() <= 0 {
			t.Fatalf("lost lead %v, want reason %s with its last event, missing step and time stuck", l, want)
		}
		if want == nurturev1.LostReason_LOST_REASON_DROPPED && l.GetOwner().GetId() != "nurture" {
			t.Fatalf("dropped lead %v is not owned by the nurture queue", l)
		}
	}
	if got := parkedIDs(rep); !slices.Equal(got, []string{group + "/" + poisoned}) {
		t.Fatalf("parked %v", got)
	}
	if p := rep.GetParked()[0]; p.GetDeadEventType() != "LeadRecycled" || !strings.Contains(p.GetError(), "spring-2027") {
		t.Fatalf("parked: %v", p)
	}
	if cl := rep.GetOrphanClaims(); len(cl) != 1 || cl[0].GetLeadId() != orphan || cl[0].GetKind() != "email" {
		t.Fatalf("orphan claims: %v", cl)
	}
	// Judged two hours on, the fresh lead's scoring deadline has passed
	// too (no qualification runs here).
	later := w.find(t, s.client, &nurturev1.FindLostLeadsRequest{AsOf: timestamppb.New(time.Now().Add(2 * time.Hour))})
	if got, want := lostIDs(later), sorted(dropRejected, dropLost, dropNotNow, noOwner, fresh); !slices.Equal(got, want) {
		t.Fatalf("two hours on: lost %v, want %v", got, want)
	}
	// Paged two at a time at the same as_of: every one of them once, in
	// the listing's order.
	var paged []string
	page := &nurturev1.FindLostLeadsRequest{AsOf: later.GetAsOf(), Limit: 2}
	for range 5 {
		r := w.find(t, s.client, page)
		for _, l := range r.GetLost() {
			paged = append(paged, l.GetLeadId())
		}
		if len(r.GetLost()) < 2 {
			break
		}
		l := r.GetLost()[len(r.GetLost())-1]
		page.After = &nurturev1.LostCursor{StuckFor: l.GetStuckFor(), LeadId: l.GetLeadId()}
	}
	var whole []string
	for _, l := range later.GetLost() {
		whole = append(whole, l.GetLeadId())
	}
	if !slices.Equal(paged, whole) {
		t.Fatalf("paged two at a time: %v, want %v", paged, whole)
	}
	// A cursor judged now, not as its page was, would skip leads.
	page.AsOf = nil
	if _, err := s.client.FindLostLeads(ctx, page); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "as_of") {
		t.Fatalf("a cursor without as_of: %v, want INVALID_ARGUMENT naming as_of", err)
	}

	// Fix the causes, then re-drive.
	put(t, s.client, &eventv1.NurtureProgram{ProgramId: "spring-2027", Name: "Spring 2027", Duration: days(90),
		ExitRules: &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{demo}}})
	w.capture(t, orphan)
	unknown := uuid.NewString() // a mistyped id is told apart from a lead that owes nothing
	ids := append(lostIDs(rep), poisoned, healthy, unknown)
	res, err := s.client.RedriveLeads(ctx, &nurturev1.RedriveLeadsRequest{LeadIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetLeads()) != len(ids) {
		t.Fatalf("%d outcomes for %d leads: %v", len(res.GetLeads()), len(ids), res.GetLeads())
	}
	for _, r := range res.GetLeads() {
		switch r.GetLeadId() {
		case poisoned:
			if r.GetAction() != nurturev1.RedriveAction_REDRIVE_ACTION_REDRIVEN || !slices.Equal(r.GetGroups(), []string{group}) {
				t.Fatalf("poisoned lead: %v", r)
			}
		case healthy:
			if r.GetAction() != nurturev1.RedriveAction_REDRIVE_ACTION_NONE {
				t.Fatalf("healthy lead: %v", r)
			}
		case unknown:
			if r.GetAction() != nurturev1.RedriveAction_REDRIVE_ACTION_NOT_FOUND || len(r.GetEventTypes()) != 0 {
				t.Fatalf("unknown lead: %v", r)
			}
		default:
			// The re-drive writes the recycle; the enrolment after it is
			// written by the re-drive or, when it gets there first, by the
			// running service reading that recycle (checked below).
			types := r.GetEventTypes()
			if r.GetAction() != nurturev1.RedriveAction_REDRIVE_ACTION_WRITTEN ||
				!slices.Equal(types, []string{"LeadRecycled"}) && !slices.Equal(types, []string{"LeadRecycled", "NurtureEnrolled"}) {
				t.Fatalf("dropped lead: %v", r)
			}
		}
	}
	for _, l := range []string{dropRejected, dropLost, dropNotNow, noOwner, poisoned} {
		evs := w.nurtured(t, l)
		if err := lifecycle.Check(stateOf(last(evs))); err != nil {
			t.Fatal(err)
		}
	}
	if p := last(w.events(t, poisoned)); p.GetNurtureEnrolled().GetProgramId() != "spring-2027" {
		t.Fatalf("poisoned lead enrolled in %v", p)
	}
	eventually(t, 20*time.Second, func() bool {
		rep = w.find(t, s.client, &nurturev1.FindLostLeadsRequest{})
		return len(rep.GetLost()) == 0 && len(rep.GetParked()) == 0 && len(rep.GetOrphanClaims()) == 0
	}, "the check is not clean: %v", func() any { return rep })
	if rep.GetLeadsChecked() != 8 {
		t.Fatalf("checked %d leads", rep.GetLeadsChecked())
	}
}

// While the scorer is stopped, the check lists the new leads that wait
// for it (never scored, a fact scored by nobody yet, a verdict not
// written), not those scored already, which wait for engagement or their
// deadline. It judges by the rule nurture's own recycling follows
// (Unscored).
func TestScoredNewLeadsAreNotStalledWhileTheScorerIsDown(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	// A first check waits for the index's first read: every event after
	// it is read in full. One that read only late's last event, its
	// score, would take the lead as scored (one run in thirty did).
	w.find(t, s.client, &nurturev1.FindLostLeadsRequest{})
	// qualification ran here once and has no live member now.
	w.stoppedScorer(t)
	scored, unscored, pending, verdict := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	late, rescored := uuid.NewString(), uuid.NewString()
	for _, l := range []string{scored, unscored, pending, verdict, late, rescored} {
		w.capture(t, l)
	}
	for _, l := range []string{scored, pending, late, rescored} {
		w.scored(t, l, 20, 30*24*time.Hour)
	}
	w.activity(t, pending, webinar)
	// Two facts, the first one's score stored after the second: the
	// second waits for the scorer.
	first := w.activity(t, late, webinar)
	w.activity(t, late, webinar)
	w.scoredBy(t, late, first.GetEventId())
	// Re-scored under a newly active version after its fact: the
	// re-score covers it, and the scorer skips it.
	w.activity(t, rescored, webinar)
	w.scoredBy(t, rescored, uuid.NewString())
	// Scored to qualify, the scorer stopped before its LeadQualified.
	w.write(t, verdict, lifecycle.Command{Name: lifecycle.Score, Score: 80},
		&eventv1.LeadScored{ModelId: "scoring", ModelVersion: 1, Total: 80, Threshold: 50, Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY})
	w.settle(t, group)

	got := w.find(t, s.client, &nurturev1.FindLostLeadsRequest{})
	if want := sorted(unscored, pending, verdict, late); !slices.Equal(lostIDs(got), want) {
		t.Fatalf("lost %v, want %v (scored %s and re-scored %s wait for their deadline)", lostIDs(got), want, scored, rescored)
	}
	for _, l := range got.GetLost() {
		if l.GetReason() != nurturev1.LostReason_LOST_REASON_STALLED {
			t.Errorf("%s lost as %v, want stalled", l.GetLeadId(), l.GetReason())
		}
	}
}

// A replica that started after a lead's facts read only the last one: a
// score of an earlier fact, stored after it, does not cover it, and the
// lead still waits for the scorer.
func TestAReplicaStartedAfterTheFactsKeepsTheLaterOneWaiting(t *testing.T) {
	w := newWorld(t)
	w.stoppedScorer(t)
	l := uuid.NewString()
	w.capture(t, l)
	w.scored(t, l, 20, 30*24*time.Hour)
	first := w.activity(t, l, webinar)
	w.activity(t, l, webinar)
	s := w.start(t)
	w.settle(t, group)
	w.scoredBy(t, l, first.GetEventId())
	got := w.find(t, s.client, &nurturev1.FindLostLeadsRequest{})
	if ids := lostIDs(got); len(ids) != 1 || ids[0] != l || got.GetLost()[0].GetReason() != nurturev1.LostReason_LOST_REASON_STALLED {
		t.Fatalf("lost %v, want %s stalled (its second activity waits for the scorer)", got.GetLost(), l)
	}
}

// A breach nobody escalated stays the step a lead misses through the
// facts after it (a click, a merge's facts: it read "a contact attempt by
// the rep", which no fix follows), and the rep's own attempt since ends
// it.
func TestTheLostCheckNamesAnUnescalatedBreachUntilTheRepActs(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	w.find(t, s.client, &nurturev1.FindLostLeadsRequest{}) // the index's first read done: it sees the breach
	lead := uuid.NewString()
	w.accepted(t, lead, "smb", 60)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.BreachSLA}, &eventv1.SLABreached{Sla: eventv1.SLAKind_SLA_KIND_FIRST_CONTACT,
		Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Segment: "smb"})
	w.activity(t, lead, webinar)
	// And a duplicate merged into it, bringing its facts.
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Resubmit}, &eventv1.LeadMerged{SurvivorLeadId: lead, AbsorbedLeadId: uuid.NewString(),
		Reason: "same person", AbsorbedProfile: &eventv1.Profile{Country: "DE"}})
	step := func() string {
		t.Helper()
		var missing string
		eventually(t, 20*time.Second, func() bool {
			rep := w.find(t, s.client, &nurturev1.FindLostLeadsRequest{AsOf: timestamppb.New(time.Now().Add(48 * time.Hour))})
			for _, l := range rep.GetLost() {
				if l.GetLeadId() == lead {
					missing = l.GetMissingStep()
				}
			}
			return missing != ""
		}, "the lead is not listed lost")
		return missing
	}
	if got := step(); !strings.Contains(got, "escalation of the SLA breach") {
		t.Fatalf("after a click since the breach: missing %q, want the escalation", got)
	}
	w.write(t, lead, lifecycle.Command{Name: lifecycle.LogContact},
		&eventv1.ContactAttempted{RepId: "ann", Attempt: 1, Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE})
	eventually(t, 20*time.Second, func() bool { return !strings.Contains(step(), "escalation") },
		"after the rep's attempt the breach is still the missing step")
}

// A nurtured lead re-engaged waits for the scorer's re-score: with the
// scorer stopped, the check lists it stalled (its program owns it, but
// nothing moves it on), through the facts after the re-engagement, and
// no more once that score came.
func TestAReengagedLeadWaitsForTheStoppedScorer(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	w.find(t, s.client, &nurturev1.FindLostLeadsRequest{}) // the index's first read is over
	w.stoppedScorer(t)
	re, calm := uuid.NewString(), uuid.NewString()
	for _, l := range []string{re, calm} {
		w.accepted(t, l, "smb", 30)
		w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
		w.nurtured(t, l)
	}
	reengaged := w.write(t, re, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "any"})
	w.activity(t, re, eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN) // no intent: no second re-engagement
	w.settle(t, group)
	got := w.find(t, s.client, &nurturev1.FindLostLeadsRequest{})
	if ids := lostIDs(got); len(ids) != 1 || ids[0] != re || got.GetLost()[0].GetReason() != nurturev1.LostReason_LOST_REASON_STALLED {
		t.Fatalf("lost %v, want %s stalled (its re-engagement waits for the stopped scorer), not %s", got.GetLost(), re, calm)
	}
	// Its score qualifies it; the scorer stopped before the LeadQualified.
	w.scoreBy(t, re, reengaged.GetEventId(), &eventv1.LeadScored{ModelId: "scoring", ModelVersion: 1, Total: 80, Threshold: 50,
		Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY})
	w.settle(t, group)
	if got := w.find(t, s.client, &nurturev1.FindLostLeadsRequest{}); len(got.GetLost()) != 1 || got.GetLost()[0].GetReason() != nurturev1.LostReason_LOST_REASON_STALLED {
		t.Fatalf("lost %v with the qualifying score's verdict still to come, want %s stalled", got.GetLost(), re)
	}
	w.write(t, re, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 50})
	w.settle(t, group)
	if got := w.find(t, s.client, &nurturev1.FindLostLeadsRequest{}); len(got.GetLost()) != 0 {
		t.Fatalf("lost %v after the re-engagement's score and verdict, want none; %v", got.GetLost(), types(w.events(t, re)))
	}
}

// An unmerge does not hide a re-engagement that waits for the stopped
// scorer: not the survivor's (its side of the unmerge moves nothing), nor
// the absorbed lead's, given back NURTURING (the scorer scores an
// unmerged lead's re-engagement).
func TestAnUnmergeKeepsAReengagementStalled(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	w.find(t, s.client, &nurturev1.FindLostLeadsRequest{}) // the index's first read is over
	w.stoppedScorer(t)
	survivor, absorbed, other, into := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	for _, l := range []string{survivor, absorbed} {
		w.accepted(t, l, "smb", 30)
		w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
		w.nurtured(t, l)
		w.write(t, l, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "any"})
	}
	// The survivor's side of a merge and its unmerge.
	w.capture(t, other)
	merged := &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: other, Reason: "same person",
		AbsorbedProfile: &eventv1.Profile{Country: "GB"}}
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, merged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, &eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: other, Reason: "two people"})
	// The absorbed lead merged away and given back as it was.
	prior := stateOf(last(w.events(t, absorbed)))
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Merge, Reason: into}, &eventv1.LeadMerged{SurvivorLeadId: into, AbsorbedLeadId: absorbed, Reason: "same person"})
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline},
		&eventv1.LeadUnmerged{SurvivorLeadId: into, AbsorbedLeadId: absorbed, Reason: "two people"})
	w.settle(t, group)
	got := w.find(t, s.client, &nurturev1.FindLostLeadsRequest{})
	stalled := map[string]bool{}
	for _, l := range got.GetLost() {
		stalled[l.GetLeadId()] = l.GetReason() == nurturev1.LostReason_LOST_REASON_STALLED
	}
	if !stalled[survivor] || !stalled[absorbed] {
		t.Fatalf("lost %v, want the survivor %s and the absorbed lead %s stalled: their re-engagements wait for the stopped scorer", got.GetLost(), survivor, absorbed)
	}
}

// stoppedScorer makes qualification a group that ran on this stream and
// has no live member now.
func (w *world) stoppedScorer(t *testing.T) {
	t.Helper()
	if _, err := w.nats.JS.CreateOrUpdateConsumer(ctxT(t), stream, jetstream.ConsumerConfig{
		Durable: consume.Durable("qualification", 0, eventstore.Partitions), AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
}
