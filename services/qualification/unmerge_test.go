package main

import (
	"fmt"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
)

// What a merged lead's person sent while merged scores the survivor only
// until the unmerge gives it back: after it the survivor is scored on its
// own facts, by the cached fold that held them as by a fresh read.
func TestUnmergeTakesBackTheAbsorbedLeadsFacts(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, vpWebinarsOutOfReach())

	survivor, absorbed := uuid.NewString(), uuid.NewString()
	w.capture(t, survivor, &eventv1.Profile{Country: "DE"})
	w.capture(t, absorbed, vpProfile("absorbed.example"))
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor},
		&eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"})
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit},
		&eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"})
	// The absorbed lead's person, a VP, at a form and a webinar: 70.
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit},
		&eventv1.LeadResubmitted{SealedContact: []byte("sealed"), Profile: vpProfile("absorbed.example"), MergedFrom: absorbed})
	via := w.write(t, survivor, lifecycle.Command{Name: lifecycle.RecordActivity},
		&eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: webinar, MergedFrom: absorbed})
	w.settle(t)
	if sc := causedBy(w.events(t, survivor), via.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 70 {
		t.Fatalf("while merged, the survivor's score: %v, want 70", sc)
	}

	prior := lifecycle.FromProto(w.events(t, absorbed)[0].GetLifecycle())
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "different people", Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline},
		&eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "different people"})
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit},
		&eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "different people"})
	own := w.activity(t, survivor, webinar)
	w.settle(t)
	evs := w.events(t, survivor)
	if sc := causedBy(evs, own.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 30 {
		t.Fatalf("after the unmerge, from the cached fold: %v, want 30 (its own webinar)", sc)
	}

	// A fresh process reads the survivor's whole history.
	s.stop()
	w.start(t)
	again := w.activity(t, survivor, webinar)
	w.settle(t)
	evs = w.events(t, survivor)
	if sc := causedBy(evs, again.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 60 {
		t.Fatalf("after the unmerge, from a read: %v, want 60 (its own two webinars)", sc)
	}
	if q := ofType(evs, "LeadQualified"); len(q) != 0 {
		t.Fatalf("qualified on the absorbed lead's facts: %v", q)
	}
}

// A nurtured lead merged after its re-engagement and before that
// re-engagement was scored (the score is refused while it is merged)
// gets that score when an unmerge gives it back in nurture: nurture
// waits for it, and nothing else would give it.
func TestAnUnmergeAnswersTheReengagementItsMergeLeftUnscored(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, webinarModel(50))
	lead, survivor := uuid.NewString(), uuid.NewString()
	w.nurture(t, lead)
	w.capture(t, survivor, &eventv1.Profile{Country: "DE"})
	w.settle(t)
	s.stop()

	w.activity(t, lead, webinar)
	w.activity(t, lead, webinar) // 60: enough, through the re-engagement only
	re := w.write(t, lead, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "warm-up"})
	prior := lifecycle.FromProto(re.GetLifecycle())
	merged := &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: lead, Reason: "one person"}
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, merged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, merged)
	w.start(t)
	w.settle(t)
	if sc := causedBy(w.events(t, lead), re.GetEventId()); len(sc) != 0 {
		t.Fatalf("scored while merged: %v", sc)
	}

	unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: lead, Reason: "two people"}
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline}, unmerged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, unmerged)
	w.settle(t)
	evs := w.events(t, lead)
	if sc := causedBy(evs, re.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 60 {
		t.Fatalf("the re-engagement's score after the unmerge: %v, want one of 60", sc)
	}
	if q := ofType(evs, "LeadQualified"); len(q) != 1 {
		t.Fatalf("%d LeadQualified, want the re-engagement's", len(q))
	}
}

// An unmerge scores the survivor on its own facts again: one whose own
// facts reach the threshold only without what went back qualifies at the
// unmerge, not at its next event (nurture would recycle it first).
func TestAnUnmergeScoresTheSurvivorOnItsOwnFacts(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, vpWebinarModel())
	survivor, unmerge := w.mergedUnderAManager(t)
	w.settle(t)
	un := unmerge()
	w.settle(t)
	evs := w.events(t, survivor)
	sc := causedBy(evs, un.GetEventId())
	if len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 70 {
		t.Fatalf("the survivor's score for the unmerge: %v, want one of 70", sc)
	}
	if q := ofType(evs, "LeadQualified"); len(q) != 1 || q[0].GetCausationId() != sc[0].GetEventId() {
		t.Fatalf("%v, want one LeadQualified on that score", q)
	}
}

// A scorer killed between an unmerge's score and its verdict left the
// score: the unmerge delivered again writes the verdict, on the
// survivor's score as on the re-engagement's of a lead given back in
// nurture, and scores nothing again.
func TestAnUnmergeFinishesAVerdictCutOffByACrash(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	version := activateFirst(t, s.client, vpWebinarModel())
	survivor, unmerge := w.mergedUnderAManager(t)
	lead, other := uuid.NewString(), uuid.NewString()
	w.nurture(t, lead)
	w.capture(t, other, &eventv1.Profile{Country: "DE"})
	w.settle(t)
	s.stop()
	// Re-engaged and merged before the scorer saw it: the score is
	// refused while the lead is merged.
	re := w.write(t, lead, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "warm-up"})
	prior := lifecycle.FromProto(re.GetLifecycle())
	merged := &eventv1.LeadMerged{SurvivorLeadId: other, AbsorbedLeadId: lead, Reason: "one person"}
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Merge, Reason: other}, merged)
	w.write(t, other, lifecycle.Command{Name: lifecycle.Resubmit}, merged)
	s = w.start(t)
	w.settle(t)
	s.stop()
	// What the killed scorer stored of each unmerge: the score, not its
	// verdict.
	qualify := &eventv1.LeadScored{ModelId: scoring.ID, ModelVersion: version, Total: 70, Threshold: 50, Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY}
	un := unmerge()
	w.scoredFor(t, un, qualify)
	unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: other, AbsorbedLeadId: lead, Reason: "two people"}
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline}, unmerged)
	w.write(t, other, lifecycle.Command{Name: lifecycle.Resubmit}, unmerged)
	w.scoredFor(t, re, qualify)

	w.start(t)
	w.settle(t)
	for id, cause := range map[string]string{survivor: un.GetEventId(), lead: re.GetEventId()} {
		evs := w.events(t, id)
		sc := causedBy(evs, cause)
		if len(sc) != 1 {
			t.Errorf("lead %s: %d scores for %s, want the one the killed scorer wrote", id, len(sc), cause)
			continue
		}
		if q := ofType(evs, "LeadQualified"); len(q) != 1 || q[0].GetCausationId() != sc[0].GetEventId() {
			t.Errorf("lead %s: %v, want one LeadQualified on the score", id, q)
		}
	}
}

// vpWebinarModel qualifies at 50: a VP brings 40, a webinar 30.
func vpWebinarModel() scoring.Model {
	m := webinarModel(50)
	m.Fit = []scoring.FitRule{{ID: "vp", Description: "VP", Points: 40,
		When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_VP}}}}
	return m
}

// mergedUnderAManager writes a VP's lead that another lead was merged
// into, whose person (a manager) sent a form through it, takes the VP's
// points away; the survivor's own webinar makes 30 under vpWebinarModel.
// unmerge writes the unmerge and returns its survivor-side event.
func (w *world) mergedUnderAManager(t *testing.T) (survivor string, unmerge func() *eventv1.Event) {
	t.Helper()
	survivor, unmerge = w.mergedUnderAManagerWithout(t)
	w.activity(t, survivor, webinar)
	return survivor, unmerge
}

// mergedUnderAManagerWithout is mergedUnderAManager without the
// survivor's own webinar: its own facts make 40.
func (w *world) mergedUnderAManagerWithout(t *testing.T) (survivor string, unmerge func() *eventv1.Event) {
	t.Helper()
	survivor, absorbed := uuid.NewString(), uuid.NewString()
	w.capture(t, survivor, vpProfile("survivor.example"))
	w.capture(t, absorbed, &eventv1.Profile{Country: "DE"})
	merged := &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"}
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, merged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, merged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit},
		&eventv1.LeadResubmitted{SealedContact: []byte("sealed"), MergedFrom: absorbed,
			Profile: &eventv1.Profile{Country: "DE", Seniority: eventv1.Seniority_SENIORITY_MANAGER}})
	return survivor, func() *eventv1.Event {
		prior := lifecycle.FromProto(w.events(t, absorbed)[0].GetLifecycle())
		unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "different people"}
		w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "different people", Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline}, unmerged)
		return w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, unmerged)
	}
}

// The unmerge's score counts the facts as of the unmerge, however late it
// is handled: a webinar after it, stored before the scorer got to the
// unmerge, qualifies the lead through its own score, not the unmerge's.
func TestAnUnmergeScoresTheFactsAsOfIt(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, vpWebinarModel())
	survivor, unmerge := w.mergedUnderAManagerWithout(t)
	w.settle(t)
	s.stop()
	un := unmerge()
	after := w.activity(t, survivor, webinar)
	w.start(t)
	w.settle(t)
	evs := w.events(t, survivor)
	if sc := causedBy(evs, un.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 40 {
		t.Fatalf("the unmerge's score: %v, want one of 40 (the VP, without the later webinar)", sc)
	}
	sc := causedBy(evs, after.GetEventId())
	if q := ofType(evs, "LeadQualified"); len(sc) != 1 || len(q) != 1 || q[0].GetCausationId() != sc[0].GetEventId() {
		t.Fatalf("qualified %v, want once, on the webinar's score %v", q, sc)
	}
}

// A lead merged before the scorer reached its capture (the score is
// refused while it is merged) is scored when an unmerge gives it back
// NEW; one the unmerge also gives facts back to is scored on those; one
// whose score stands gets no other, but one with a fact of its own its
// merge left unscored gets the score that starts its wait for engagement
// again, the same total or not.
func TestAnUnmergeScoresTheLeadItGivesBackNew(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, vpWebinarModel())
	survivor, scored, visited := uuid.NewString(), uuid.NewString(), uuid.NewString()
	w.capture(t, survivor, &eventv1.Profile{Country: "DE"})
	w.capture(t, scored, vpProfile("scored.example"))
	w.capture(t, visited, vpProfile("visited.example"))
	w.settle(t)
	s.stop()

	unscored, withFacts := uuid.NewString(), uuid.NewString()
	priors := map[string]lifecycle.State{}
	var visit *eventv1.Event
	for _, l := range []string{unscored, withFacts, scored, visited} {
		switch l {
		case unscored, withFacts:
			w.capture(t, l, vpProfile(l+".example"))
		case visited:
			visit = w.activity(t, l, eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT) // no points in this model
		}
		evs := w.events(t, l)
		priors[l] = lifecycle.FromProto(evs[len(evs)-1].GetLifecycle())
		merged := &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: l, Reason: "one person"}
		w.write(t, l, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, merged)
		w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, merged)
	}
	s = w.start(t)
	w.settle(t) // the captures' scores refused: merged
	s.stop()    // the unmerge and its fact come in one commit
	for _, l := range []string{unscored, withFacts, scored, visited} {
		prior := priors[l]
		unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: l, Reason: "two people"}
		w.write(t, l, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline}, unmerged)
		w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, unmerged)
	}
	back := w.write(t, withFacts, lifecycle.Command{Name: lifecycle.RecordActivity},
		&eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: webinar, GivenBackBy: survivor})
	w.start(t)
	w.settle(t)

	un := ofType(w.events(t, unscored), "LeadUnmerged")[0]
	sc := ofType(w.events(t, unscored), "LeadScored")
	if len(sc) != 1 || sc[0].GetCausationId() != un.GetEventId() || sc[0].GetLeadScored().GetTotal() != 40 {
		t.Fatalf("the lead given back unscored: %v, want one score of 40, for the unmerge", sc)
	}
	// Its first score: the wait for engagement starts, as for any first
	// score, not the capture's hour (nurture would recycle it at once).
	if got, want := sc[0].GetLifecycle().GetDeadline().AsTime(), sc[0].GetRecordedAt().AsTime().Add(lifecycle.DefaultPolicy().EngageWithin); !got.Equal(want) {
		t.Fatalf("the first score's deadline %v, want %v", got, want)
	}
	if sc := ofType(w.events(t, withFacts), "LeadScored"); len(sc) != 1 || sc[0].GetCausationId() != back.GetEventId() {
		t.Fatalf("the lead given back with a fact: %v, want one score, for the fact", sc)
	}
	if sc := ofType(w.events(t, scored), "LeadScored"); len(sc) != 1 {
		t.Fatalf("the lead given back scored: %v, want its one score", sc)
	}
	evs := w.events(t, visited)
	if n := len(causedBy(evs, visit.GetEventId())); n != 0 {
		t.Fatalf("the visit scored while merged: %d scores", n)
	}
	un = ofType(evs, "LeadUnmerged")[0]
	if sc := causedBy(evs, un.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 40 ||
		!sc[0].GetLifecycle().GetDeadline().AsTime().Equal(sc[0].GetRecordedAt().AsTime().Add(lifecycle.DefaultPolicy().EngageWithin)) {
		t.Fatalf("the lead given back with its visit unscored: %v, want a score of 40 for the unmerge, its wait for engagement begun", sc)
	}
}

// A merge scores the survivor on both leads' facts, as its LeadMerged
// carries the absorbed lead's: two records of one person, each under the
// threshold (a webinar's 30, a VP's 40), qualify merged (70), where they
// stayed under it. The absorbed lead, merged, is not scored.
func TestAMergeQualifiesTheSurvivorOnBothLeadsFacts(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	m := webinarModel(60)
	m.Fit = []scoring.FitRule{{ID: "vp", Description: "VP", Points: 40,
		When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_VP}}}}
	activateFirst(t, s.client, m)

	survivor, absorbed := uuid.NewString(), uuid.NewString()
	w.capture(t, survivor, &eventv1.Profile{Country: "DE"})
	w.activity(t, survivor, webinar)
	w.capture(t, absorbed, vpProfile("absorbed.example"))
	w.settle(t)
	for _, id := range []string{survivor, absorbed} {
		if q := ofType(w.events(t, id), "LeadQualified"); len(q) != 0 {
			t.Fatalf("%s qualified alone: %v", id, q)
		}
	}
	// A merge stored before merges carried facts is no trigger: scored,
	// it would move a new lead's deadline for no new fact.
	older := uuid.NewString()
	w.capture(t, older, &eventv1.Profile{Country: "FR"})
	w.settle(t)
	oldStyle := &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: older, Reason: "same person"}
	w.write(t, older, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, oldStyle)
	old := w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, oldStyle)
	w.settle(t)
	if sc := causedBy(w.events(t, survivor), old.GetEventId()); len(sc) != 0 {
		t.Fatalf("a merge without facts scored: %v", sc)
	}
	// As intake writes them: the survivor's carries the absorbed lead's
	// facts (pkg/scoring FactsFold.Absorbed).
	payload := &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"}
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, payload)
	var facts scoring.FactsFold
	for _, ev := range w.events(t, absorbed) {
		facts.Apply(ev)
	}
	carried := proto.CloneOf(payload)
	facts.Absorbed(carried)
	merged := w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, carried)
	w.settle(t)

	evs := w.events(t, survivor)
	sc := causedBy(evs, merged.GetEventId())
	q := ofType(evs, "LeadQualified")
	if len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 70 || len(q) != 1 || q[0].GetCausationId() != sc[0].GetEventId() ||
		last(evs).GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_MQL {
		t.Fatalf("the merge's scores %v, qualifications %v, status %s: want 70, qualifying, an MQL", sc, q, last(evs).GetLifecycle().GetStatus())
	}
	if n := len(ofType(w.events(t, absorbed), "LeadScored")); n != 1 {
		t.Errorf("the absorbed lead has %d scores, want its capture's only", n)
	}
}

// An unmerge handled again after a later score (a redelivery) writes
// nothing: the later score, on facts after it, already says what the
// unmerge's would, and one on the facts as of the unmerge would become
// the lead's latest, leaving out what came since.
func TestAnUnmergeHandledAgainAfterALaterScoreWritesNothing(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	rescored(t, s.client, activate(t, s.client, vpWebinarsOutOfReach())) // its end is written: done before messages count

	survivor, absorbed := uuid.NewString(), uuid.NewString()
	w.capture(t, survivor, vpProfile("survivor.example")) // 40
	w.capture(t, absorbed, &eventv1.Profile{Country: "DE"})
	merged := &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"}
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, merged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, merged)
	w.settle(t)
	prior := lifecycle.FromProto(w.events(t, absorbed)[0].GetLifecycle())
	unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "different people"}
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "different people", Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline}, unmerged)
	un := w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, unmerged) // still 40: no score
	own := w.activity(t, survivor, webinar)                                           // 70
	w.settle(t)
	evs := w.events(t, survivor)
	if sc := causedBy(evs, un.GetEventId()); len(sc) != 0 {
		t.Fatalf("the unmerge that changed nothing scored: %v", sc)
	}
	if sc := causedBy(evs, own.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 70 {
		t.Fatalf("the webinar's score: %v, want 70", sc)
	}

	if wrote := w.handledAgain(t, s); wrote != 0 {
		scores := ofType(w.events(t, survivor), "LeadScored")
		t.Fatalf("handling every event again wrote %d messages; the survivor's latest score: %d", wrote, scores[len(scores)-1].GetLeadScored().GetTotal())
	}
}

// vpWebinarsOutOfReach scores a VP 40 and each webinar 30, against a
// threshold of 100 that nothing here reaches.
func vpWebinarsOutOfReach() scoring.Model {
	m := webinarModel(100)
	m.Fit = []scoring.FitRule{{ID: "vp", Description: "VP", Points: 40,
		When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_VP}}}}
	return m
}

// A version activated while a lead was merged skips it (merged leads are
// not scored); given back as an MQL, it is scored under that version, so
// a final disqualifier the version added applies, as the re-score would
// have applied it; also when a crash cut the verdict off after the score.
func TestAnUnmergeScoresTheLeadARescoreSkipped(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) { testAnUnmergeScoresTheLeadARescoreSkipped(t, crash) })
	}
}

func testAnUnmergeScoresTheLeadARescoreSkipped(t *testing.T, crash bool) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, vpWebinarModel())
	survivor, absorbed := uuid.NewString(), uuid.NewString()
	w.capture(t, survivor, &eventv1.Profile{Country: "DE"})
	w.capture(t, absorbed, vpProfile("rival.example"))
	w.activity(t, absorbed, webinar) // 70: an MQL
	w.settle(t)
	evs := w.events(t, absorbed)
	prior := lifecycle.FromProto(evs[len(evs)-1].GetLifecycle())
	if prior.Status != lifecycle.StatusMQL {
		t.Fatalf("before the merge: %v, want an MQL", prior.Status)
	}
	merged := &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "one person"}
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, merged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, merged)
	w.settle(t)
	m := vpWebinarModel()
	m.Disqualify = append([]scoring.DisqualifyRule{{ID: "rival", Description: "A competitor", Reason: "works for a competitor",
		When: scoring.Criteria{EmailDomainIn: []string{"rival.example"}}}}, m.Disqualify...)
	v2 := activate(t, s.client, m)
	rescored(t, s.client, v2)
	if crash {
		s.stop()
	}
	unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "two people"}
	un := w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline}, unmerged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, unmerged)
	if crash {
		// What the killed scorer stored: the score, not its verdict.
		w.scoredFor(t, un, &eventv1.LeadScored{ModelId: scoring.ID, ModelVersion: v2, Total: 70, Threshold: 50, Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_DISQUALIFY,
			Disqualify: &eventv1.LeadDisqualified{RuleId: "rival", Reason: "works for a competitor", ModelId: scoring.ID, ModelVersion: v2}})
		w.start(t)
	}
	w.settle(t)
	evs = w.events(t, absorbed)
	sc := ofType(evs, "LeadScored")
	if last := sc[len(sc)-1].GetLeadScored(); last.GetModelVersion() != v2 {
		t.Fatalf("the lead given back: last score under version %d, want %d", last.GetModelVersion(), v2)
	}
	if d := ofType(evs, "LeadDisqualified"); len(d) != 1 || d[0].GetLeadDisqualified().GetRuleId() != "rival" {
		t.Fatalf("the lead given back: %v, want it disqualified by version %d's rule", d, v2)
	}
}
