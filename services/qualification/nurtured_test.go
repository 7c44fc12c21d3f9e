package main

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/qualification/adapters"
	"github.com/leadflow/leadflow/services/qualification/app"
	"github.com/leadflow/leadflow/services/qualification/ports"
)

// webinarModel scores 30 a webinar (at most 60) and disqualifies a lead
// that withdrew email consent.
func webinarModel(threshold int) scoring.Model {
	return scoring.Model{Description: "webinars qualify", Threshold: threshold,
		Engagement: []scoring.EngagementRule{{ID: "webinar", Description: "Attended a webinar", Activity: webinar,
			Points: 30, Cap: 60, HalfLife: 30 * 24 * time.Hour}},
		Disqualify: []scoring.DisqualifyRule{{ID: "no-email", Description: "Withdrew email consent", Reason: "withdrew email consent",
			When: scoring.Criteria{ConsentWithdrawn: []eventv1.ConsentChannel{eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL}}}}}
}

// startNurtured starts the service with webinarModel(50) active and
// writes a nurtured lead: captured, sent to nurture as "not now", enrolled
// in a program, then at a webinar (30 points).
func startNurtured(t *testing.T) (w *world, s *service, lead string) {
	t.Helper()
	w = newWorld(t)
	s = w.start(t)
	activateFirst(t, s.client, webinarModel(50))
	lead = uuid.NewString()
	w.nurture(t, lead)
	w.activity(t, lead, webinar)
	return w, s, lead
}

// nurture writes a new lead, sent to nurture as "not now" and enrolled.
func (w *world) nurture(t testing.TB, lead string) {
	t.Helper()
	w.capture(t, lead, &eventv1.Profile{Country: "DE"})
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Disqualify, Reason: "not now", NotNow: true},
		&eventv1.LeadDisqualified{RuleId: "budget", Reason: "not now", NotNow: true})
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Enroll, Owner: lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "warm-up"},
		Due: time.Now().Add(30 * 24 * time.Hour)}, &eventv1.NurtureEnrolled{ProgramId: "warm-up"})
}

// causedBy returns the events of evs caused by the event id.
func causedBy(evs []*eventv1.Event, id string) []*eventv1.Event {
	var out []*eventv1.Event
	for _, ev := range evs {
		if ev.GetCausationId() == id {
			out = append(out, ev)
		}
	}
	return out
}

// A nurtured lead's activities are scored, but only nurture's
// LeadReengaged may make it an MQL again: its program decides which
// activities open the way back, and the journey must show the
// re-engagement before the qualification. Any trigger may still
// disqualify it: a lead that withdrew email consent leaves nurture.
func TestNurturedLeadQualifiesOnlyThroughReengagement(t *testing.T) {
	w, _, lead := startNurtured(t)
	withdrawn := uuid.NewString()
	w.nurture(t, withdrawn)
	w.consent(t, withdrawn, eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN)
	second := w.activity(t, lead, webinar)
	w.settle(t)

	evs := w.events(t, lead)
	if q := ofType(evs, "LeadQualified"); len(q) != 0 {
		t.Fatalf("a nurtured lead qualified by an activity: %v", q)
	}
	if sc := causedBy(evs, second.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 60 ||
		sc[0].GetLeadScored().GetVerdict() != eventv1.ScoreVerdict_SCORE_VERDICT_NONE {
		t.Fatalf("the second webinar's scores: %v, want one, 60 with no verdict", sc)
	}
	if st := last(evs).GetLifecycle().GetStatus(); st != eventv1.LeadStatus_LEAD_STATUS_NURTURING {
		t.Fatalf("status %s, want NURTURING", st)
	}
	if evs := w.events(t, withdrawn); len(ofType(evs, "LeadDisqualified")) != 2 ||
		last(evs).GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_DISQUALIFIED {
		t.Fatalf("the nurtured lead that withdrew email consent ends %s, want disqualified", last(evs).GetEventType())
	}

	re := w.write(t, lead, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "warm-up"})
	eventually(t, 20*time.Second, func() bool { return len(ofType(w.events(t, lead), "LeadQualified")) == 1 },
		"the re-engaged lead was not qualified")
	evs = w.events(t, lead)
	scores := causedBy(evs, re.GetEventId())
	if len(scores) != 1 || scores[0].GetLeadScored().GetTotal() != 60 ||
		ofType(evs, "LeadQualified")[0].GetCausationId() != scores[0].GetEventId() {
		t.Fatalf("the LeadReengaged's scores %v; LeadQualified must rest on its one score", scores)
	}
	if st := last(evs).GetLifecycle().GetStatus(); st != eventv1.LeadStatus_LEAD_STATUS_MQL {
		t.Fatalf("status %s, want MQL", st)
	}
}

// A model activated while a re-engagement waits for its score: the
// re-score answers it, caused by the LeadReengaged, since nurture waits
// for that score (with no verdict in it the lead goes back to its
// program). The live consumer then finds it scored and adds nothing.
func TestRescoreAnswersAWaitingReengagement(t *testing.T) {
	w, s, lead := startNurtured(t)
	w.settle(t)

	ctx := ctxT(t)
	var durables []string
	for p := range eventstore.Partitions {
		durables = append(durables, consume.Durable(ports.Group, p, eventstore.Partitions))
	}
	for _, d := range durables {
		if _, err := w.nats.JS.PauseConsumer(ctx, stream, d, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// A webinar before the re-engagement, not scored yet either: the
	// re-score's score covers it, so the live consumer must not score it
	// after, as the lead's latest score, from fewer facts.
	earlier := w.activity(t, lead, webinar)
	re := w.write(t, lead, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "warm-up"})
	v2 := activate(t, s.client, webinarModel(25))
	rescored(t, s.client, v2)

	check := func(when string) {
		evs := w.events(t, lead)
		if sc := causedBy(evs, earlier.GetEventId()); len(sc) != 0 {
			t.Fatalf("%s: the earlier webinar was scored after the re-score covered it: %v", when, sc)
		}
		scores := causedBy(evs, re.GetEventId())
		if len(scores) != 1 || scores[0].GetLeadScored().GetModelVersion() != v2 ||
			scores[0].GetLeadScored().GetVerdict() != eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY {
			t.Fatalf("%s: scores caused by the LeadReengaged: %v, want the re-score's one, qualifying", when, scores)
		}
		q := ofType(evs, "LeadQualified")
		if len(q) != 1 || q[0].GetCausationId() != scores[0].GetEventId() || last(evs).GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_MQL {
			t.Fatalf("%s: qualifications %v, status %s: want one, resting on that score, and an MQL", when, q, last(evs).GetLifecycle().GetStatus())
		}
	}
	check("after the re-score")
	for _, d := range durables {
		if _, err := w.nats.JS.ResumeConsumer(ctx, stream, d); err != nil {
			t.Fatal(err)
		}
	}
	w.settle(t)
	check("after the live consumer")
}

// A lead that withdraws email consent while sales holds it cannot be
// disqualified then (sales owns it), so the withdrawal must still count
// when sales lets it go: its enrolment in a program is answered by the
// disqualification. An enrolment is scored for nothing else: a lead
// without the withdrawal gets no score for it, and a "not now" rule does
// not send the enrolled lead back to nurture.
func TestEnrolmentDisqualifiesALeadThatWithdrewConsentWhileSalesHeldIt(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	m := webinarModel(50)
	m.Disqualify = append(m.Disqualify, scoring.DisqualifyRule{ID: "later", Description: "Not ready in FR", Reason: "not now",
		NotNow: true, When: scoring.Criteria{CountryIn: []string{"FR"}}})
	activateFirst(t, s.client, m)

	enrolled := map[string]*eventv1.Event{}
	for _, c := range []struct{ lead, country string }{{"withdrew", "DE"}, {"kept", "DE"}, {"notnow", "FR"}} {
		lead := uuid.NewString()
		w.capture(t, lead, &eventv1.Profile{Country: c.country})
		w.settle(t)
		if c.country == "FR" {
			w.write(t, lead, lifecycle.Command{Name: lifecycle.Recycle, Reason: "test"}, &eventv1.LeadRecycled{})
		} else {
			w.write(t, lead, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{})
			w.write(t, lead, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "rep-1"}},
				&eventv1.LeadAssigned{Rule: "test"})
			if c.lead == "withdrew" {
				w.consent(t, lead, eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN)
			}
			w.write(t, lead, lifecycle.Command{Name: lifecycle.Reject, Reason: "not ready"},
				&eventv1.LeadRejected{RepId: "rep-1", Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY})
		}
		w.settle(t)
		enrolled[c.lead] = w.write(t, lead, lifecycle.Command{Name: lifecycle.Enroll,
			Owner: lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "warm-up"}, Due: time.Now().Add(24 * time.Hour)},
			&eventv1.NurtureEnrolled{ProgramId: "warm-up"})
	}
	w.settle(t)

	for name, en := range enrolled {
		evs := w.events(t, en.GetLeadId())
		after := causedBy(evs, en.GetEventId())
		st := last(evs).GetLifecycle().GetStatus()
		if name != "withdrew" {
			if len(after) != 0 || st != eventv1.LeadStatus_LEAD_STATUS_NURTURING {
				t.Errorf("%s: the enrolment caused %v and the lead is %s; want nothing, NURTURING", name, after, st)
			}
			continue
		}
		// The withdrawal's own score decided DISQUALIFY, refused while
		// sales held the lead; a redelivery of it after the enrolment (its
		// handling outlasted AckWait on a busy machine) writes that verdict
		// first, and the enrolment then finds the lead disqualified.
		byEnrolment := len(after) == 1 && after[0].GetLeadScored().GetVerdict() == eventv1.ScoreVerdict_SCORE_VERDICT_DISQUALIFY
		if (!byEnrolment && len(after) != 0) || st != eventv1.LeadStatus_LEAD_STATUS_DISQUALIFIED || last(evs).GetLeadDisqualified().GetRuleId() != "no-email" {
			t.Errorf("%s: the enrolment caused %v and the lead ends %s (%s); want a disqualifying score, then DISQUALIFIED by no-email",
				name, after, last(evs).GetEventType(), st)
		}
	}
}

// studentModel is webinarModel(50) whose first disqualifier sends
// students to nurture as "not now".
func studentModel() scoring.Model {
	m := webinarModel(50)
	m.Disqualify = append([]scoring.DisqualifyRule{{ID: "student", Description: "Student", Reason: "student, not yet", NotNow: true,
		When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_STUDENT}}}}, m.Disqualify...)
	return m
}

// A nurtured lead that a "not now" rule matches is in nurture already: no
// activity, re-engagement or re-score sends it there again (each did:
// LeadDisqualified, RECYCLED, a new enrolment that restarted its program,
// and one more disqualification in the funnel). Nor does it qualify while
// the rule matches. A final rule still ends it, though the "not now" rule
// comes first.
func TestNurturedLeadIsNotSentToNurtureAgain(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	m := studentModel()
	activateFirst(t, s.client, m)
	lead := uuid.NewString()
	w.capture(t, lead, &eventv1.Profile{Seniority: eventv1.Seniority_SENIORITY_STUDENT, Country: "DE"})
	w.settle(t)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Enroll, Owner: lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "students"},
		Due: time.Now().Add(30 * 24 * time.Hour)}, &eventv1.NurtureEnrolled{ProgramId: "students"})
	// check: still the capture's one "not now", NURTURING, never qualified.
	check := func(after string) []*eventv1.Event {
		t.Helper()
		w.settle(t)
		evs := w.events(t, lead)
		if n, st := len(ofType(evs, "LeadDisqualified")), last(evs).GetLifecycle().GetStatus(); n != 1 || st != eventv1.LeadStatus_LEAD_STATUS_NURTURING ||
			len(ofType(evs, "LeadQualified")) != 0 {
			t.Fatalf("after %s: %d LeadDisqualified, status %s, %d LeadQualified: want the capture's one \"not now\", NURTURING, none",
				after, n, st, len(ofType(evs, "LeadQualified")))
		}
		return evs
	}
	w.activity(t, lead, webinar)
	w.activity(t, lead, webinar)
	check("two webinars")
	re := w.write(t, lead, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "students"})
	evs := check("the re-engagement")
	if sc := causedBy(evs, re.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetTotal() != 60 ||
		sc[0].GetLeadScored().GetVerdict() != eventv1.ScoreVerdict_SCORE_VERDICT_NONE {
		t.Fatalf("the re-engagement's scores: %v, want one, 60 with no verdict (nurture keeps the lead)", sc)
	}
	m.Threshold = 40
	rescored(t, s.client, activate(t, s.client, m))
	check("a re-score")

	w.consent(t, lead, eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN)
	w.settle(t)
	evs = w.events(t, lead)
	if d := last(evs).GetLeadDisqualified(); d.GetRuleId() != "no-email" || last(evs).GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_DISQUALIFIED {
		t.Fatalf("after withdrawing email consent the lead ends %s %s, want DISQUALIFIED by no-email", last(evs).GetEventType(), last(evs).GetLifecycle().GetStatus())
	}
}

// A score written while the lead was RECYCLED says "not now", and its
// verdict was refused there; the lead is enrolled, then the trigger is
// redelivered. The verdict it finds owed is not written: the lead is in
// nurture already.
func TestRedeliveryOwesNoNotNowToANurturedLead(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	version := activateFirst(t, s.client, studentModel())
	s.stop() // the durable has seen nothing of the lead

	lead := uuid.NewString()
	// scoreFor writes what a scorer wrote for trigger: a "not now" score.
	scoreFor := func(trigger *eventv1.Event) {
		t.Helper()
		w.scoredFor(t, trigger, &eventv1.LeadScored{ModelId: scoring.ID, ModelVersion: version, Threshold: 50,
			Verdict:    eventv1.ScoreVerdict_SCORE_VERDICT_DISQUALIFY,
			Disqualify: &eventv1.LeadDisqualified{RuleId: "student", Reason: "student, not yet", NotNow: true, ModelId: scoring.ID, ModelVersion: version}})
	}
	capture := w.capture(t, lead, &eventv1.Profile{Seniority: eventv1.Seniority_SENIORITY_STUDENT, Country: "DE"})
	scoreFor(capture)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Disqualify, Reason: "student, not yet", NotNow: true},
		&eventv1.LeadDisqualified{RuleId: "student", Reason: "student, not yet", NotNow: true})
	act := w.activity(t, lead, webinar) // RECYCLED: its score's verdict was refused
	scoreFor(act)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Enroll, Owner: lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "students"},
		Due: time.Now().Add(30 * 24 * time.Hour)}, &eventv1.NurtureEnrolled{ProgramId: "students"})

	w.start(t)
	w.settle(t)
	evs := w.events(t, lead)
	if n, st := len(ofType(evs, "LeadDisqualified")), last(evs).GetLifecycle().GetStatus(); n != 1 || st != eventv1.LeadStatus_LEAD_STATUS_NURTURING {
		t.Fatalf("%d LeadDisqualified, status %s: want the first \"not now\" only, and NURTURING", n, st)
	}
}

// A score written while the lead was RECYCLED says QUALIFY, and its
// verdict was refused there; the lead is enrolled, then the trigger is
// redelivered. The qualification it finds owed is not written: a
// nurtured lead qualifies only through its re-engagement.
func TestRedeliveryOwesNoQualificationToANurturedLead(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	version := activateFirst(t, s.client, webinarModel(50))
	s.stop() // the durable has seen nothing of the lead

	lead := uuid.NewString()
	// scoreFor writes what a scorer wrote for trigger: a score of total.
	scoreFor := func(trigger *eventv1.Event, total int32) {
		t.Helper()
		verdict := eventv1.ScoreVerdict_SCORE_VERDICT_NONE
		if total >= 50 {
			verdict = eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY
		}
		w.scoredFor(t, trigger, &eventv1.LeadScored{ModelId: scoring.ID, ModelVersion: version, Engagement: total, Total: total,
			Threshold: 50, Verdict: verdict})
	}
	scoreFor(w.capture(t, lead, &eventv1.Profile{Country: "DE"}), 0)
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Disqualify, Reason: "not now", NotNow: true},
		&eventv1.LeadDisqualified{RuleId: "budget", Reason: "not now", NotNow: true})
	scoreFor(w.activity(t, lead, webinar), 30)
	scoreFor(w.activity(t, lead, webinar), 60) // RECYCLED: its verdict was refused
	w.write(t, lead, lifecycle.Command{Name: lifecycle.Enroll, Owner: lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "warm-up"},
		Due: time.Now().Add(30 * 24 * time.Hour)}, &eventv1.NurtureEnrolled{ProgramId: "warm-up"})

	w.start(t)
	w.settle(t)
	evs := w.events(t, lead)
	if n, st := len(ofType(evs, "LeadQualified")), last(evs).GetLifecycle().GetStatus(); n != 0 || st != eventv1.LeadStatus_LEAD_STATUS_NURTURING {
		t.Fatalf("%d LeadQualified, status %s: want none, and NURTURING", n, st)
	}
}

// scoredFor appends score to trigger's lead as a scorer wrote it for
// trigger: caused by it, in the lifecycle the lead's last event left.
func (w *world) scoredFor(t *testing.T, trigger *eventv1.Event, score *eventv1.LeadScored) {
	t.Helper()
	ctx := ctxT(t)
	lead := trigger.GetLeadId()
	recs, err := w.store.Load(ctx, eventstore.LeadSubject(lead))
	if err != nil {
		t.Fatal(err)
	}
	prev := recs[len(recs)-1]
	ev, err := envelope.NewEvent(lead, score, envelope.Meta{CausationID: trigger.GetEventId()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ev.Lifecycle = prev.Event.GetLifecycle()
	if _, err := w.store.Append(ctx, eventstore.LeadSubject(lead), prev.Seq, ev); err != nil {
		t.Fatal(err)
	}
}

// verdictCut is the lead store of a scorer killed between a score and
// its verdict: the next verdict it is asked to append is not stored.
type verdictCut struct {
	app.Leads
	cut atomic.Bool
}

func (v *verdictCut) Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	if len(events) == 1 && events[0].GetLeadQualified() != nil && v.cut.CompareAndSwap(true, false) {
		return 0, errors.New("killed before the verdict")
	}
	return v.Leads.Append(ctx, leadID, expected, events...)
}

// A re-score that answers a waiting re-engagement and is cut off before
// its verdict writes that verdict when it resumes: the LeadReengaged,
// handled by the live scorer already, is not delivered again, and nurture
// waits for an MQL that its score promised.
func TestAResumedRescoreWritesTheReengagementVerdictItOwes(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	leads := &verdictCut{Leads: adapters.NewLeads(w.store)}
	b := app.New(leads, adapters.NewModels(w.store, w.nats.JS), adapters.NewScans(w.nats.JS, stream),
		app.WithLogger(slog.New(slog.DiscardHandler)))
	lead := uuid.NewString()
	w.nurture(t, lead)
	w.activity(t, lead, webinar)
	re := w.write(t, lead, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "warm-up"})
	job := signOff(t, b, webinarModel(25))
	recs, err := w.store.Load(ctx, eventstore.LeadSubject(lead))
	if err != nil {
		t.Fatal(err)
	}
	leads.cut.Store(true)
	if err := b.RescoreLead(ctx, job, lead, recs[0].Seq, 0); err == nil {
		t.Fatal("the cut re-score reported no error")
	}
	scores := causedBy(w.events(t, lead), re.GetEventId())
	if len(scores) != 1 || scores[0].GetLeadScored().GetVerdict() != eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY {
		t.Fatalf("scores caused by the LeadReengaged: %v, want one qualifying", scores)
	}
	if err := b.RescoreLead(ctx, job, lead, recs[0].Seq, 0); err != nil { // resumed
		t.Fatal(err)
	}
	evs := w.events(t, lead)
	q := ofType(evs, "LeadQualified")
	if len(q) != 1 || q[0].GetCausationId() != scores[0].GetEventId() || last(evs).GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_MQL {
		t.Fatalf("after the resumed re-score: qualifications %v, status %s; want one resting on the re-engagement's score, and an MQL",
			q, last(evs).GetLifecycle().GetStatus())
	}
	if n := len(causedBy(evs, re.GetEventId())); n != 1 {
		t.Errorf("%d scores caused by the LeadReengaged, want the one", n)
	}
}

// A re-engagement scored QUALIFY whose verdict was cut off (the live
// scorer killed between its two appends), then a model activated before
// the redelivery: the re-score answers the re-engagement again, caused by
// it, verdict and all. It scored past it, and the verdict, owed only by
// the latest score, was never written: the lead stayed nurtured for good.
func TestARescoreAnswersAReengagementWhoseVerdictWasCutOff(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	leads := &verdictCut{Leads: adapters.NewLeads(w.store)}
	b := app.New(leads, adapters.NewModels(w.store, w.nats.JS), adapters.NewScans(w.nats.JS, stream),
		app.WithLogger(slog.New(slog.DiscardHandler)))
	v1 := signOff(t, b, webinarModel(50))
	lead := uuid.NewString()
	w.nurture(t, lead)
	w.activity(t, lead, webinar)
	w.activity(t, lead, webinar)
	re := w.write(t, lead, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "warm-up"})
	recs, err := w.store.Load(ctx, eventstore.LeadSubject(lead))
	if err != nil {
		t.Fatal(err)
	}
	reSeq := recs[len(recs)-1].Seq
	leads.cut.Store(true)
	if err := b.ScoreLeadEvent(ctx, lead, reSeq, re, envelope.Meta{}); err == nil {
		t.Fatal("the cut scorer reported no error")
	}
	if sc := causedBy(w.events(t, lead), re.GetEventId()); len(sc) != 1 || sc[0].GetLeadScored().GetModelVersion() != v1.Version ||
		sc[0].GetLeadScored().GetVerdict() != eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY {
		t.Fatalf("scores caused by the LeadReengaged: %v, want v%d's, qualifying", sc, v1.Version)
	}
	v2 := signOff(t, b, webinarModel(40))
	if err := b.RescoreLead(ctx, v2, lead, recs[0].Seq, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.ScoreLeadEvent(ctx, lead, reSeq, re, envelope.Meta{}); err != nil { // the redelivery
		t.Fatal(err)
	}
	evs := w.events(t, lead)
	scores := causedBy(evs, re.GetEventId())
	q := ofType(evs, "LeadQualified")
	if len(scores) != 2 || scores[1].GetLeadScored().GetModelVersion() != v2.Version || len(q) != 1 ||
		q[0].GetCausationId() != scores[1].GetEventId() || last(evs).GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_MQL {
		t.Fatalf("scores caused by the LeadReengaged %v, qualifications %v, status %s: want v%d's answer qualifying it, an MQL",
			scores, q, last(evs).GetLifecycle().GetStatus(), v2.Version)
	}
}
