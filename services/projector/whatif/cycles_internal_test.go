package whatif

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
)

// vpWebinar scores a VP 40 and a webinar 20 (at most 40).
func vpWebinar(threshold int) scoring.Model {
	return scoring.Model{Threshold: threshold,
		Fit: []scoring.FitRule{{ID: "vp", Points: 40, When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_VP}}}},
		Engagement: []scoring.EngagementRule{{ID: "webinar", Activity: eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED,
			Points: 20, Cap: 40, HalfLife: 30 * 24 * time.Hour}}}
}

// replayer feeds a Replay events built as the services write them, an
// hour apart.
type replayer struct {
	t  *testing.T
	r  *Replay
	at time.Time
}

func (p *replayer) apply(lead string, payload proto.Message) *eventv1.Event {
	p.t.Helper()
	p.at = p.at.Add(time.Hour)
	ev, err := envelope.NewEvent(lead, payload, envelope.Meta{OccurredAt: p.at}, p.at)
	if err != nil {
		p.t.Fatal(err)
	}
	p.r.Apply(lead, ev)
	return ev
}

var (
	vp      = &eventv1.Profile{Seniority: eventv1.Seniority_SENIORITY_VP, Country: "US"}
	webinar = eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED
)

// A lead sales rejected goes back to nurture and may qualify again
// through a re-engagement: the what-if scores that journey too, as live,
// and judges each outcome by its own journey: the proposal keeps out the
// hand-off sales rejected and qualifies the one that was won.
func TestARejectedLeadQualifiesAgainThroughNurture(t *testing.T) {
	active, proposed := vpWebinar(50), vpWebinar(70)
	p := &replayer{t: t, r: New(&active, proposed, time.Time{}, time.Time{}), at: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	p.apply("l", &eventv1.LeadCaptured{Profile: vp, Attribution: &eventv1.Attribution{Source: "web-form"}})
	p.apply("l", &eventv1.ActivityRecorded{Type: webinar}) // 60: the active version's MQL
	p.apply("l", &eventv1.LeadRejected{Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY})
	p.apply("l", &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED})
	p.apply("l", &eventv1.NurtureEnrolled{ProgramId: "warm-up"})
	p.apply("l", &eventv1.ActivityRecorded{Type: webinar})
	p.apply("l", &eventv1.LeadReengaged{}) // 80: the proposal's MQL
	p.apply("l", &eventv1.LeadAccepted{})
	p.apply("l", &eventv1.OpportunityCreated{OpportunityId: "o"})
	p.apply("l", &eventv1.DealWon{OpportunityId: "o"})
	got := p.r.Result().Total
	if got.MQLsActive != 1 || got.MQLsProposed != 1 || got.Won != 1 || got.WonQualified != 1 || got.WonMissed != 0 ||
		got.Rejected != 1 || got.RejectedKeptOut != 1 {
		t.Fatalf("totals %+v: want an MQL under both, the rejection kept out and the won deal qualified by the proposal", got)
	}
}

// A proposal that qualified a lead's first journey, lost, misses the
// deal of a later journey it would not have handed to sales, and sends
// the hand-off of such a journey that sales rejected.
func TestALaterJourneyIsJudgedByItsOwnVerdict(t *testing.T) {
	for _, end := range []proto.Message{&eventv1.DealWon{OpportunityId: "o2"}, &eventv1.LeadRejected{Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY}} {
		active, proposed := vpWebinar(50), vpWebinar(70)
		p := &replayer{t: t, r: New(&active, proposed, time.Time{}, time.Time{}), at: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
		p.apply("l", &eventv1.LeadCaptured{Profile: vp, Attribution: &eventv1.Attribution{Source: "web-form"}})
		p.apply("l", &eventv1.ActivityRecorded{Type: webinar})
		p.apply("l", &eventv1.ActivityRecorded{Type: webinar}) // 80: an MQL under both
		p.apply("l", &eventv1.LeadAccepted{})
		p.apply("l", &eventv1.OpportunityCreated{OpportunityId: "o1"})
		p.apply("l", &eventv1.DealLost{OpportunityId: "o1"})
		p.apply("l", &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_LOST})
		p.apply("l", &eventv1.NurtureEnrolled{ProgramId: "warm-up"})
		p.at = p.at.Add(120 * 24 * time.Hour) // the webinars decay to 5
		p.apply("l", &eventv1.ActivityRecorded{Type: webinar})
		p.apply("l", &eventv1.LeadReengaged{}) // 65: the active version's MQL only
		p.apply("l", &eventv1.LeadAccepted{})
		if _, won := end.(*eventv1.DealWon); won {
			p.apply("l", &eventv1.OpportunityCreated{OpportunityId: "o2"})
		}
		p.apply("l", end)
		got := p.r.Result().Total
		if got.MQLsActive != 1 || got.MQLsProposed != 1 {
			t.Fatalf("totals %+v: want the lead an MQL under both", got)
		}
		if _, won := end.(*eventv1.DealWon); won && (got.Won != 1 || got.WonQualified != 0 || got.WonMissed != 1) {
			t.Fatalf("totals %+v: want the won deal of the second journey missed", got)
		}
		if _, won := end.(*eventv1.DealWon); !won && (got.Rejected != 1 || got.RejectedKeptOut != 1) {
			t.Fatalf("totals %+v: want the second journey's rejection kept out", got)
		}
	}
}

// What came through a merged lead scores the survivor until the unmerge
// gives it back; the lead it goes back to is filed under its own first
// touch, as the campaign report files it.
func TestAnUnmergeTakesBackWhatCameThroughTheLead(t *testing.T) {
	m := vpWebinar(70)
	p := &replayer{t: t, r: New(&m, m, time.Time{}, time.Time{}), at: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	p.apply("s", &eventv1.LeadCaptured{Profile: &eventv1.Profile{Country: "DE"}, Attribution: &eventv1.Attribution{Source: "web-form"}})
	p.apply("a", &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "web-form"}})
	merged := &eventv1.LeadMerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"}
	p.apply("a", merged)
	p.apply("s", merged)
	resubmitted := p.apply("s", &eventv1.LeadResubmitted{Profile: vp, MergedFrom: "a"})
	touched := p.apply("s", &eventv1.ActivityRecorded{Type: webinar, MergedFrom: "a", CampaignId: "x"}) // 60
	unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: "s", AbsorbedLeadId: "a", GivenBackEventIds: []string{resubmitted.GetEventId(), touched.GetEventId()}}
	p.apply("s", unmerged)
	p.apply("a", unmerged)
	p.apply("a", &eventv1.ActivityRecorded{Type: webinar, MergedFrom: "", GivenBackBy: "s", GivenBackEventId: touched.GetEventId(), CampaignId: "x"})
	p.apply("s", &eventv1.ActivityRecorded{Type: webinar}) // its own: 20
	got := p.r.Result()
	if got.Total.Leads != 2 || got.Total.MQLsActive != 0 || got.Total.MQLsProposed != 0 {
		t.Fatalf("totals %+v: want no MQL (the survivor's own facts score 20)", got.Total)
	}
	// The touch of x was a's person's: the unmerge takes it from s, and
	// a's given-back copy counts, as in the read model.
	if len(got.Campaigns) != 2 || got.Campaigns[0].Campaign != "" || got.Campaigns[0].Leads != 1 ||
		got.Campaigns[1].Campaign != "x" || got.Campaigns[1].Leads != 1 {
		t.Fatalf("campaigns %+v: want s under none and a under x", got.Campaigns)
	}
	if s, a := p.r.leads["s"], p.r.leads["a"]; s.campaign != "" || a.campaign != "x" {
		t.Fatalf("first touches: s %q, a %q; want none and x", s.campaign, a.campaign)
	}
}

// A lead whose first own touch comes after one through a merged lead
// keeps it as its first touch once the unmerge takes the other back.
func TestAnOwnTouchAfterAMergedOneIsFirstOnceItIsTakenBack(t *testing.T) {
	m := vpWebinar(70)
	p := &replayer{t: t, r: New(&m, m, time.Time{}, time.Time{}), at: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	p.apply("s", &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "web-form"}})
	p.apply("s", &eventv1.LeadMerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"})
	sent := p.apply("s", &eventv1.ActivityRecorded{MergedFrom: "a", CampaignId: "theirs"})
	p.apply("s", &eventv1.ActivityRecorded{CampaignId: "own"})
	p.apply("s", &eventv1.LeadUnmerged{SurvivorLeadId: "s", AbsorbedLeadId: "a", GivenBackEventIds: []string{sent.GetEventId()}})
	if got := p.r.leads["s"].campaign; got != "own" {
		t.Fatalf("first touch %q, want own", got)
	}
}

// As the live scorer does, the unmerge scores the survivor on its own
// facts: one that reaches the threshold only without what went back
// qualifies then.
func TestAnUnmergeScoresTheSurvivor(t *testing.T) {
	m := vpWebinar(50)
	p := &replayer{t: t, r: New(&m, m, time.Time{}, time.Time{}), at: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	p.apply("s", &eventv1.LeadCaptured{Profile: vp, Attribution: &eventv1.Attribution{Source: "web-form"}}) // 40
	merged := &eventv1.LeadMerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"}
	p.apply("s", merged)
	// The absorbed lead's person, a manager: the VP's points go.
	sent := p.apply("s", &eventv1.LeadResubmitted{Profile: &eventv1.Profile{Seniority: eventv1.Seniority_SENIORITY_MANAGER}, MergedFrom: "a"})
	p.apply("s", &eventv1.ActivityRecorded{Type: webinar}) // 20, its own
	if got := p.r.Result().Total; got.MQLsActive != 0 {
		t.Fatalf("totals %+v: an MQL while merged", got)
	}
	p.apply("s", &eventv1.LeadUnmerged{SurvivorLeadId: "s", AbsorbedLeadId: "a", GivenBackEventIds: []string{sent.GetEventId()}}) // 60
	if got := p.r.Result().Total; got.MQLsActive != 1 || got.MQLsProposed != 1 {
		t.Fatalf("totals %+v: want the survivor an MQL at the unmerge, under both", got)
	}
}

// A rule's "not now" is a version's verdict: a proposal with such a rule
// sends the lead to nurture where the active version qualified it (and
// a later submission does not qualify it under the proposal), and one
// without it qualifies a lead the active version's rule sent there.
func TestNotNowIsEachVersionsOwn(t *testing.T) {
	tiny := scoring.DisqualifyRule{ID: "tiny", NotNow: true, When: scoring.Criteria{MaxEmployees: 10}}
	plain, withRule := vpWebinar(50), vpWebinar(50)
	withRule.Disqualify = []scoring.DisqualifyRule{tiny}
	small := &eventv1.Profile{Seniority: eventv1.Seniority_SENIORITY_VP, Country: "US", Employees: 5}
	big := &eventv1.Profile{Seniority: eventv1.Seniority_SENIORITY_VP, Country: "US", Employees: 300}
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

	// Active without the rule: an MQL at the webinar, before anyone took
	// it on a re-submission comes; the proposal sent it to nurture.
	p := &replayer{t: t, r: New(&plain, withRule, time.Time{}, time.Time{}), at: at}
	p.apply("l", &eventv1.LeadCaptured{Profile: small, Attribution: &eventv1.Attribution{Source: "web-form"}})
	p.apply("l", &eventv1.ActivityRecorded{Type: webinar})
	p.apply("l", &eventv1.LeadQualified{})
	p.apply("l", &eventv1.LeadResubmitted{Profile: big})
	if got := p.r.Result().Total; got.MQLsActive != 1 || got.MQLsProposed != 0 || got.Lost != 1 {
		t.Fatalf("a proposal's not-now: %+v, want an MQL under the active version only", got)
	}

	// Active with the rule: not now, recycled, enrolled, and again in the
	// next program; the webinar after that qualifies it under a proposal
	// without the rule.
	p = &replayer{t: t, r: New(&withRule, plain, time.Time{}, time.Time{}), at: at}
	p.apply("l", &eventv1.LeadCaptured{Profile: small, Attribution: &eventv1.Attribution{Source: "web-form"}})
	p.apply("l", &eventv1.LeadDisqualified{RuleId: "tiny", NotNow: true})
	p.apply("l", &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_NOT_READY})
	p.apply("l", &eventv1.NurtureEnrolled{ProgramId: "first"})
	p.apply("l", &eventv1.NurtureExited{ProgramId: "first"})
	p.apply("l", &eventv1.NurtureEnrolled{ProgramId: "later"})
	p.apply("l", &eventv1.ActivityRecorded{Type: webinar})
	if got := p.r.Result().Total; got.MQLsActive != 0 || got.MQLsProposed != 1 || got.Gained != 1 {
		t.Fatalf("the active version's not-now: %+v, want an MQL under the proposal only", got)
	}

	// The same with the webinar 90 days on: under the proposal the lead
	// waited 30 days for engagement and was recycled (NOT_QUALIFIED), so
	// the webinar, no re-engagement, qualifies it under neither (it was
	// the proposal's MQL gained).
	late := &replayer{t: t, r: New(&withRule, plain, time.Time{}, time.Time{}), at: at}
	late.apply("l", &eventv1.LeadCaptured{Profile: small, Attribution: &eventv1.Attribution{Source: "web-form"}})
	late.apply("l", &eventv1.LeadDisqualified{RuleId: "tiny", NotNow: true})
	late.apply("l", &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_NOT_READY})
	late.apply("l", &eventv1.NurtureEnrolled{ProgramId: "first"})
	late.at = late.at.Add(90 * 24 * time.Hour)
	late.apply("l", &eventv1.ActivityRecorded{Type: webinar})
	if got := late.r.Result().Total; got.MQLsActive != 0 || got.MQLsProposed != 0 {
		t.Fatalf("the active version's not-now, a webinar 90 days on: %+v, want an MQL under neither", got)
	}

	// Recycled again later (rejected), the lead is in nurture under both.
	p.apply("l", &eventv1.LeadRejected{Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY})
	p.apply("l", &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED})
	p.apply("l", &eventv1.NurtureEnrolled{ProgramId: "later"})
	if l := p.r.leads["l"]; !l.nurtured {
		t.Fatal("recycled after a rejection: not in nurture")
	}
}

// A merge scores the survivor on both leads' facts, as live: the VP's
// record (40) merged into the webinar's (20, 40 twice) is an MQL under a
// threshold of 70 neither reaches alone.
func TestAMergeScoresTheSurvivorOnBothLeads(t *testing.T) {
	active, proposed := vpWebinar(100), vpWebinar(70)
	p := &replayer{t: t, r: New(&active, proposed, time.Time{}, time.Time{}), at: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	p.apply("a", &eventv1.LeadCaptured{Profile: vp, Attribution: &eventv1.Attribution{Source: "web-form"}})
	p.apply("s", &eventv1.LeadCaptured{Profile: &eventv1.Profile{Country: "DE"}, Attribution: &eventv1.Attribution{Source: "web-form"}})
	p.apply("s", &eventv1.ActivityRecorded{Type: webinar})
	p.apply("s", &eventv1.ActivityRecorded{Type: webinar})
	if got := p.r.Result().Total; got.MQLsProposed != 0 {
		t.Fatalf("before the merge: %+v, want no MQL", got)
	}
	merged := &eventv1.LeadMerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"}
	p.apply("a", merged)
	var facts scoring.FactsFold
	facts.Apply(&eventv1.Event{LeadId: "a", Payload: &eventv1.Event_LeadCaptured{LeadCaptured: &eventv1.LeadCaptured{Profile: vp}}})
	carried := proto.CloneOf(merged)
	facts.Absorbed(carried)
	p.apply("s", carried)
	if got := p.r.Result().Total; got.Leads != 1 || got.MQLsProposed != 1 || got.MQLsActive != 0 {
		t.Fatalf("after the merge: %+v, want one lead, the proposal's MQL", got)
	}
}

// The wait for engagement is the one live scores gave new leads (a
// deadline 60 days on: a webinar at day 45 still qualifies, where 30
// days read it recycled), and a survivor's score at an unmerge does not
// start it again, as live it keeps the deadline.
func TestTheWaitForEngagementIsLives(t *testing.T) {
	day := 24 * time.Hour
	m := vpWebinar(50)
	p := &replayer{t: t, r: New(&m, m, time.Time{}, time.Time{}), at: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	captured := p.apply("l", &eventv1.LeadCaptured{Profile: vp, Attribution: &eventv1.Attribution{Source: "web-form"}}) // 40
	scored, err := envelope.NewEvent("l", &eventv1.LeadScored{Total: 40, Threshold: 50}, envelope.Meta{OccurredAt: p.at, CausationID: captured.GetEventId()}, p.at)
	if err != nil {
		t.Fatal(err)
	}
	scored.Lifecycle = &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_NEW, Deadline: timestamppb.New(p.at.Add(60 * day))}
	p.r.Apply("l", scored)
	p.at = p.at.Add(45 * day)
	p.apply("l", &eventv1.ActivityRecorded{Type: webinar}) // 60
	if got := p.r.Result().Total; got.MQLsActive != 1 || got.MQLsProposed != 1 {
		t.Fatalf("a webinar at day 45 with a 60-day wait: %+v, want an MQL", got)
	}
	// A wait shortened since (7 days) counts for the leads scored since:
	// one scored with it, a webinar 10 days on, was recycled by then.
	short := p.apply("m", &eventv1.LeadCaptured{Profile: vp, Attribution: &eventv1.Attribution{Source: "web-form"}})
	scored, err = envelope.NewEvent("m", &eventv1.LeadScored{Total: 40, Threshold: 50}, envelope.Meta{OccurredAt: p.at, CausationID: short.GetEventId()}, p.at)
	if err != nil {
		t.Fatal(err)
	}
	scored.Lifecycle = &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_NEW, Deadline: timestamppb.New(p.at.Add(7 * day))}
	p.r.Apply("m", scored)
	p.at = p.at.Add(10 * day)
	p.apply("m", &eventv1.ActivityRecorded{Type: webinar})
	if got := p.r.Result().Total; got.MQLsActive != 1 || got.MQLsProposed != 1 {
		t.Fatalf("a webinar 10 days after a score that gave 7: %+v, want no second MQL", got)
	}

	q := &replayer{t: t, r: New(&m, m, time.Time{}, time.Time{}), at: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	q.apply("s", &eventv1.LeadCaptured{Profile: vp, Attribution: &eventv1.Attribution{Source: "web-form"}}) // 40, day 0
	q.at = q.at.Add(20 * day)
	q.apply("s", &eventv1.LeadUnmerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"})
	q.at = q.at.Add(25 * day)
	q.apply("s", &eventv1.ActivityRecorded{Type: webinar}) // day 45: recycled at day 30 already
	if got := q.r.Result().Total; got.MQLsActive != 0 || got.MQLsProposed != 0 {
		t.Fatalf("a webinar 45 days after the last score but an unmerge's: %+v, want no MQL", got)
	}
}

// A lead given back new by an unmerge long after its last score gets its
// wait for engagement again, as live (the scores of what comes back
// start it): the webinar given back qualifies it, where the wait from
// before the merge read it recycled.
func TestAnUnmergeGivesTheAbsorbedLeadItsWaitAgain(t *testing.T) {
	day := 24 * time.Hour
	m := vpWebinar(50)
	p := &replayer{t: t, r: New(&m, m, time.Time{}, time.Time{}), at: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	p.apply("a", &eventv1.LeadCaptured{Profile: vp, Attribution: &eventv1.Attribution{Source: "web-form"}}) // 40
	p.apply("a", &eventv1.LeadMerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"})
	p.at = p.at.Add(40 * day)
	unmerged, err := envelope.NewEvent("a", &eventv1.LeadUnmerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"}, envelope.Meta{OccurredAt: p.at}, p.at)
	if err != nil {
		t.Fatal(err)
	}
	unmerged.Lifecycle = &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_NEW}
	p.r.Apply("a", unmerged)
	p.apply("a", &eventv1.ActivityRecorded{Type: webinar, GivenBackBy: "s", GivenBackEventId: "x"}) // 60
	if got := p.r.Result().Total; got.MQLsActive != 1 || got.MQLsProposed != 1 {
		t.Fatalf("a webinar given back 40 days after the capture's score: %+v, want an MQL under both", got)
	}
}

// A nurtured lead that a proposal's "not now" rule still matches is
// ended by the proposal's final rule, as live: withdrawn email consent
// disqualifies it for good, so its later re-engagement is the active
// version's MQL only.
func TestANurturedLeadMeetsTheFinalRuleBehindANotNow(t *testing.T) {
	tiny := scoring.DisqualifyRule{ID: "tiny", NotNow: true, When: scoring.Criteria{MaxEmployees: 10}}
	withdrawn := scoring.DisqualifyRule{ID: "email-withdrawn", When: scoring.Criteria{ConsentWithdrawn: []eventv1.ConsentChannel{eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL}}}
	active, proposed := vpWebinar(50), vpWebinar(50)
	active.Disqualify = []scoring.DisqualifyRule{tiny}
	proposed.Disqualify = []scoring.DisqualifyRule{tiny, withdrawn}
	email := func(st eventv1.ConsentStatus) *eventv1.ConsentChanged {
		return &eventv1.ConsentChanged{Consent: &eventv1.Consent{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: st}}
	}
	p := &replayer{t: t, r: New(&active, proposed, time.Time{}, time.Time{}), at: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	p.apply("l", &eventv1.LeadCaptured{Profile: &eventv1.Profile{Seniority: eventv1.Seniority_SENIORITY_VP, Country: "US", Employees: 5},
		Attribution: &eventv1.Attribution{Source: "web-form"}})
	p.apply("l", &eventv1.LeadDisqualified{RuleId: "tiny", NotNow: true})
	p.apply("l", &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_NOT_READY})
	p.apply("l", &eventv1.NurtureEnrolled{ProgramId: "first"})
	p.apply("l", email(eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN))
	p.apply("l", email(eventv1.ConsentStatus_CONSENT_STATUS_GRANTED))
	p.apply("l", &eventv1.LeadResubmitted{Profile: &eventv1.Profile{Employees: 200}})
	p.apply("l", &eventv1.ActivityRecorded{Type: webinar})
	p.apply("l", &eventv1.LeadReengaged{})
	if got := p.r.Result().Total; got.MQLsActive != 1 || got.MQLsProposed != 0 || got.Lost != 1 {
		t.Fatalf("%+v, want the active version's MQL only: the proposal ended the lead at the withdrawal", got)
	}
}

// A person's "not now", or a person's recycle of a lead sales never had,
// sends it to nurture under both versions: a proposal that qualified only
// the journey before must qualify the next one on its re-engagement's
// score to be credited with its won deal, or blamed for its rejection.
func TestAPersonSendingTheLeadBackEndsTheProposalsJourney(t *testing.T) {
	visit := eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT
	active := vpWebinar(70)
	proposed := scoring.Model{Threshold: 50, Fit: active.Fit,
		Engagement: []scoring.EngagementRule{{ID: "visit", Activity: visit, Points: 20, Cap: 20, HalfLife: 30 * 24 * time.Hour}}}
	for _, back := range []string{"not now", "manual recycle"} {
		for _, end := range []string{"won", "rejected"} {
			p := &replayer{t: t, r: New(&active, proposed, time.Time{}, time.Time{}), at: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
			p.apply("l", &eventv1.LeadCaptured{Profile: vp, Attribution: &eventv1.Attribution{Source: "web-form"}})
			p.apply("l", &eventv1.ActivityRecorded{Type: visit}) // proposal 60, its MQL; active 40
			if back == "not now" {
				p.apply("l", &eventv1.LeadDisqualified{NotNow: true, Reason: "call me in Q3"})
				p.apply("l", &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_NOT_READY})
			} else {
				p.apply("l", &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_MANUAL})
			}
			p.apply("l", &eventv1.NurtureEnrolled{ProgramId: "warm-up"})
			p.at = p.at.Add(120 * 24 * time.Hour) // the visit decays to about 1
			p.apply("l", &eventv1.ActivityRecorded{Type: webinar})
			p.apply("l", &eventv1.ActivityRecorded{Type: webinar})
			p.apply("l", &eventv1.LeadReengaged{}) // active 80, its MQL; proposal about 41
			p.apply("l", &eventv1.LeadAccepted{})
			if end == "won" {
				p.apply("l", &eventv1.OpportunityCreated{OpportunityId: "o"})
				p.apply("l", &eventv1.DealWon{OpportunityId: "o"})
			} else {
				p.apply("l", &eventv1.LeadRejected{Reason: eventv1.RejectReason_REJECT_REASON_NOT_A_FIT})
			}
			got := p.r.Result().Total
			if end == "won" && (got.WonMissed != 1 || got.WonQualified != 0) {
				t.Errorf("%s, won: %+v; want the deal missed by the proposal", back, got)
			}
			if end == "rejected" && got.RejectedKeptOut != 1 {
				t.Errorf("%s, rejected: %+v; want the rejection kept out by the proposal", back, got)
			}
		}
	}
}
