package lead_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/projector/lead"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

type step struct {
	h       float64
	cmd     lifecycle.Command
	payload proto.Message
}

// journey builds a lead's events with the shared state machine, as the
// services write them.
func journey(t *testing.T, steps []step) []*eventv1.Event {
	t.Helper()
	var state lifecycle.State
	var out []*eventv1.Event
	for _, s := range steps {
		at := t0.Add(time.Duration(s.h * float64(time.Hour)))
		ev, after, err := lifecycle.NewEvent("l", state, s.cmd, lifecycle.DefaultPolicy(), s.payload, envelope.Meta{OccurredAt: at}, at)
		if err != nil {
			t.Fatalf("%s: %v", s.cmd.Name, err)
		}
		state = after
		out = append(out, ev)
	}
	return out
}

var ann = lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}

func recycledAndBack(t *testing.T) []*eventv1.Event {
	ts := func(h float64) *timestamppb.Timestamp {
		return timestamppb.New(t0.Add(time.Duration(h * float64(time.Hour))))
	}
	c := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	return journey(t, []step{
		{0, c(lifecycle.Capture), &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "form", CampaignId: "c1"},
			Profile: &eventv1.Profile{Country: "DE", Employees: 10}}},
		{1, c(lifecycle.Qualify), &eventv1.LeadQualified{}},
		{2, lifecycle.Command{Name: lifecycle.Assign, Owner: ann}, &eventv1.LeadAssigned{Owner: &eventv1.Owner{Id: "ann"}, Segment: "smb", AcceptBy: ts(3)}},
		{4, c(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann", ContactBy: ts(5)}},
		{5, lifecycle.Command{Name: lifecycle.Reject, Reason: "later"}, &eventv1.LeadRejected{Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY}},
		{6, lifecycle.Command{Name: lifecycle.Enroll, Owner: lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "p"}}, &eventv1.NurtureEnrolled{ProgramId: "p"}},
		{7, c(lifecycle.RecordActivity), &eventv1.ActivityRecorded{CampaignId: "c2"}},
		{8, c(lifecycle.Reengage), &eventv1.LeadReengaged{ProgramId: "p"}},
		{9, c(lifecycle.Qualify), &eventv1.LeadQualified{}},
		{10, lifecycle.Command{Name: lifecycle.Assign, Owner: ann}, &eventv1.LeadAssigned{Owner: &eventv1.Owner{Id: "ann"}, Segment: "mid", AcceptBy: ts(12)}},
		{11, c(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann"}},
		{12, c(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "o", Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 5}}},
		{13, c(lifecycle.RecordActivity), &eventv1.ActivityRecorded{CampaignId: "c3"}},
		{14, c(lifecycle.Win), &eventv1.DealWon{OpportunityId: "o"}},
	})
}

// A lead recycled after a rejection and qualified again has two
// journeys; first-time milestones stay where they were; touches stop at
// the opportunity.
func TestTwoJourneys(t *testing.T) {
	l := lead.New("l")
	for i, ev := range recycledAndBack(t) {
		l.Apply(uint64(i+1), ev)
	}
	at := func(h float64) time.Time { return t0.Add(time.Duration(h * float64(time.Hour))) }
	if l.Status != eventv1.LeadStatus_LEAD_STATUS_WON || l.Cycle != 2 || len(l.Journeys) != 2 || l.Version != 14 {
		t.Fatalf("lead: status %v cycle %d journeys %d version %d", l.Status, l.Cycle, len(l.Journeys), l.Version)
	}
	if !l.MQLAt.Equal(at(1)) || !l.AcceptedAt.Equal(at(4)) || !l.RecycledAt.Equal(at(5)) || !l.WonAt.Equal(at(14)) {
		t.Errorf("milestones: %+v", l)
	}
	j1, j2 := l.Journeys[0], l.Journeys[1]
	if j1.Segment != "smb" || !j1.RejectedAt.Equal(at(5)) || j1.RejectReason != eventv1.RejectReason_REJECT_REASON_NOT_READY || !j1.OpportunityAt.IsZero() {
		t.Errorf("journey 1: %+v", j1)
	}
	if j2.Segment != "mid" || !j2.MQLAt.Equal(at(9)) || !j2.OpportunityAt.Equal(at(12)) || !j2.WonAt.Equal(at(14)) || !j2.RejectedAt.IsZero() {
		t.Errorf("journey 2: %+v", j2)
	}
	if l.TouchCount != 2 || l.FirstCampaign != "c1" || l.LastCampaign != "c2" || l.Touches.Of("c3") != 0 {
		t.Errorf("touches: %d %q %q %v", l.TouchCount, l.FirstCampaign, l.LastCampaign, l.Touches)
	}
	// Accepted an hour late the first time, in time the second.
	if h := l.Handoffs; len(h) != 2 || h[0].AcceptedWithinSLA || !h[1].AcceptedWithinSLA || !h[0].EndedAt.Equal(at(5)) {
		t.Errorf("hand-offs: %+v", h)
	}
	if o := l.Opportunities; len(o) != 1 || o[0].Cycle != 2 || o[0].WonMinor != 5 || o[0].WonCurrency != "EUR" {
		t.Errorf("opportunities: %+v", o)
	}
	if l.OwnerKind != eventv1.OwnerKind_OWNER_KIND_UNSPECIFIED || !l.Deadline.IsZero() {
		t.Errorf("a won lead has owner %v/%q deadline %v", l.OwnerKind, l.OwnerID, l.Deadline)
	}
	// Qualified again, before routing: no segment yet, not the first
	// journey's (a queue filtered by segment would count it there).
	again := lead.New("l")
	for i, ev := range recycledAndBack(t)[:9] {
		again.Apply(uint64(i+1), ev)
	}
	if again.Status != eventv1.LeadStatus_LEAD_STATUS_MQL || again.Segment != "" {
		t.Errorf("qualified again: %v in segment %q, want an MQL in none yet", again.Status, again.Segment)
	}
	// Queued while its pool is off shift: the segment routing decided.
	queued, _, err := lifecycle.NewEvent("l", lifecycle.State{Status: lifecycle.StatusMQL}, lifecycle.Command{Name: lifecycle.Queue,
		Owner: lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: "triage"}}, lifecycle.DefaultPolicy(),
		&eventv1.LeadQueued{Queue: "triage", Decision: &eventv1.RoutingDecision{RuleId: "latam", Segment: "latam", AccountId: "acme"}}, envelope.Meta{OccurredAt: t0.Add(10 * time.Hour)}, t0.Add(10*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	again.Apply(10, queued)
	if again.Segment != "latam" || again.Journeys[1].Segment != "latam" {
		t.Errorf("queued: segment %q, journey's %q; want the decision's latam", again.Segment, again.Journeys[1].Segment)
	}
	// ... and the account it matched: the lead rolls up to it while it waits.
	if again.AccountID != "acme" {
		t.Errorf("queued: account %q, want the decision's acme", again.AccountID)
	}
}

// A capture dated ahead of the scorer's clock (a form's clock, up to the
// minutes intake allows) and qualified before that date by the scorer's:
// the NEW stay lasts nothing rather than less, and the MQL is not before
// the capture.
func TestAStepDatedBeforeTheStayItEnds(t *testing.T) {
	c := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	l := lead.New("l")
	for i, ev := range journey(t, []step{
		{0.1, c(lifecycle.Capture), &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "form"}}},
		{0, c(lifecycle.Qualify), &eventv1.LeadQualified{}},
	}) {
		l.Apply(uint64(i+1), ev)
	}
	if len(l.Stages) != 2 || l.Stages[0].Left.Before(l.Stages[0].Entered) || l.Stages[1].Entered.Before(l.Stages[0].Entered) {
		t.Fatalf("stays: %+v", l.Stages)
	}
	if l.MQLAt.Before(l.CapturedAt) {
		t.Errorf("MQL at %v, before the capture at %v", l.MQLAt, l.CapturedAt)
	}
}

// An escalation to a manager's queue ends the rep's hand-off and starts
// none: the queue is not a rep, and the manager's hand-on to a rep starts
// the next.
func TestEscalationToAManagersQueue(t *testing.T) {
	ts := func(h float64) *timestamppb.Timestamp {
		return timestamppb.New(t0.Add(time.Duration(h * float64(time.Hour))))
	}
	c := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	queue := lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: "manager:emea"}
	bob := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "bob"}
	evs := journey(t, []step{
		{0, c(lifecycle.Capture), &eventv1.LeadCaptured{Profile: &eventv1.Profile{Country: "DE"}}},
		{1, c(lifecycle.Qualify), &eventv1.LeadQualified{}},
		{2, lifecycle.Command{Name: lifecycle.Assign, Owner: ann}, &eventv1.LeadAssigned{Owner: &eventv1.Owner{Id: "ann"}, Segment: "smb", AcceptBy: ts(3)}},
		{3, c(lifecycle.BreachSLA), &eventv1.SLABreached{Sla: eventv1.SLAKind_SLA_KIND_ACCEPT, Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}}},
		{3, lifecycle.Command{Name: lifecycle.Reassign, Owner: queue}, &eventv1.LeadReassigned{
			To: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_QUEUE, Id: queue.ID}, Segment: "smb", AcceptBy: ts(5)}},
		{4, lifecycle.Command{Name: lifecycle.Reassign, Owner: bob}, &eventv1.LeadReassigned{
			To: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "bob"}, Segment: "smb", AcceptBy: ts(6)}},
	})
	l := lead.New("l")
	for i, ev := range evs[:5] {
		l.Apply(uint64(i+1), ev)
	}
	at := func(h float64) time.Time { return t0.Add(time.Duration(h * float64(time.Hour))) }
	if h := l.Handoffs; len(h) != 1 || h[0].RepID != "ann" || !h[0].EndedAt.Equal(at(3)) {
		t.Fatalf("in the manager's queue, hand-offs %+v", h)
	}
	if l.OwnerKind != eventv1.OwnerKind_OWNER_KIND_QUEUE || l.OwnerID != "manager:emea" || l.Status != eventv1.LeadStatus_LEAD_STATUS_ASSIGNED {
		t.Errorf("in the manager's queue: %v %v/%q", l.Status, l.OwnerKind, l.OwnerID)
	}
	l.Apply(6, evs[5])
	if h := l.Handoffs; len(h) != 2 || h[1].RepID != "bob" || !h[1].AssignedAt.Equal(at(4)) || !h[1].EndedAt.IsZero() {
		t.Errorf("handed on to bob: %+v", h)
	}
}

// The projector stores the fold as JSON between batches: folding with a
// store and load after every event ends where folding in one go does.
func TestFoldSurvivesItsStorage(t *testing.T) {
	whole, stored := storedBetween(t, recycledAndBack(t), nil)
	want, err := json.Marshal(whole)
	if err != nil {
		t.Fatal(err)
	}
	if string(stored) != string(want) {
		t.Errorf("stored between events:\n%s\nin one go:\n%s", stored, want)
	}
}

// An event that says nothing the read model keeps only moves the version.
func TestUnprojectedEventsMoveTheVersion(t *testing.T) {
	evs := journey(t, []step{{0, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{}},
		{1, lifecycle.Command{Name: lifecycle.Score, Score: 10}, &eventv1.LeadScored{Total: 10}}})
	l := lead.New("l")
	l.Apply(3, evs[0])
	l.Apply(7, evs[1])
	if l.Version != 7 || l.Score != 10 || len(l.Stages) != 1 {
		t.Errorf("after a score: version %d score %d stages %d", l.Version, l.Score, len(l.Stages))
	}
}

// Touches count by when they happened, not by when they were recorded: a
// platform's late upload of an activity from before the opportunity is a
// touch, and can be the last one (or the first, if before the capture);
// one from after the opportunity stays out however it is recorded.
func TestLateRecordedTouchesCountByWhenTheyHappened(t *testing.T) {
	c := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	act := func(campaign string) *eventv1.ActivityRecorded {
		return &eventv1.ActivityRecorded{CampaignId: campaign}
	}
	evs := journey(t, []step{
		{2, c(lifecycle.Capture), &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "form", CampaignId: "form"}}},
		{3, c(lifecycle.Qualify), &eventv1.LeadQualified{}},
		{4, lifecycle.Command{Name: lifecycle.Assign, Owner: ann}, &eventv1.LeadAssigned{Owner: &eventv1.Owner{Id: "ann"}}},
		{5, c(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann"}},
		{10, c(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "o"}},
		// Recorded after the opportunity, in this order:
		{6, c(lifecycle.RecordActivity), act("webinar")}, // before it: the last touch
		{1, c(lifecycle.RecordActivity), act("ads")},     // before the capture: the first touch
		{10, c(lifecycle.RecordActivity), act("late")},   // at the opportunity: not before it
		{12, c(lifecycle.RecordActivity), act("after")},  // after it
		{4, c(lifecycle.RecordActivity), act("webinar")}, // before, but not the last
	})
	l := lead.New("l")
	for i, ev := range evs {
		l.Apply(uint64(i+1), ev)
	}
	at := func(h float64) time.Time { return t0.Add(time.Duration(h * float64(time.Hour))) }
	if l.FirstCampaign != "ads" || !l.FirstTouchAt.Equal(at(1)) || l.LastCampaign != "webinar" || !l.LastTouchAt.Equal(at(6)) {
		t.Errorf("first %q at %v, last %q at %v; want ads at h1, webinar at h6", l.FirstCampaign, l.FirstTouchAt, l.LastCampaign, l.LastTouchAt)
	}
	// form 1, webinar 2, ads 1: 4 touches; "late" and "after" none.
	if l.TouchCount != 4 || len(l.Touches) != 3 || l.Touches.Of("form") != 1 || l.Touches.Of("webinar") != 2 || l.Touches.Of("ads") != 1 {
		t.Errorf("touches %v (%d), want form 1, webinar 2, ads 1 (4)", l.Touches, l.TouchCount)
	}
}

// An unsubscribe is not interest: its campaign gets no touch, so no
// credit for the deal won after it.
func TestAnUnsubscribeIsNoTouch(t *testing.T) {
	c := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	evs := journey(t, []step{
		{0, c(lifecycle.Capture), &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "form", CampaignId: "webinar"}}},
		{1, c(lifecycle.RecordActivity), &eventv1.ActivityRecorded{CampaignId: "newsletter", Type: eventv1.ActivityType_ACTIVITY_TYPE_UNSUBSCRIBE}},
		{2, c(lifecycle.Qualify), &eventv1.LeadQualified{}},
		{3, lifecycle.Command{Name: lifecycle.Assign, Owner: ann}, &eventv1.LeadAssigned{Owner: &eventv1.Owner{Id: "ann"}}},
		{4, c(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann"}},
		{5, c(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "o"}},
	})
	l := lead.New("l")
	for i, ev := range evs {
		l.Apply(uint64(i+1), ev)
	}
	if l.LastCampaign != "webinar" || l.Touches.Of("newsletter") != 0 || l.TouchCount != 1 {
		t.Errorf("last touch %q, touches %v (%d); want webinar's alone", l.LastCampaign, l.Touches, l.TouchCount)
	}
}

// A touch that came through a lead merged into this one is that person's:
// the unmerge that names its event as given back takes it from the
// survivor (first and last touch included), also when the fold was
// stored in between, and the absorbed lead counts the copy the unmerge
// gave it. An unmerge that names nothing (written before unmerges named
// what they gave back, or one that could not give an event back) leaves
// the touches where they were counted.
func TestAnUnmergeMovesTouchesToTheirPerson(t *testing.T) {
	c := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	for _, named := range []bool{true, false} {
		unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: "l", AbsorbedLeadId: "a", GivenBackVia: []string{"x"}}
		survivor := journey(t, []step{
			{0, c(lifecycle.Capture), &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "form", CampaignId: "ads"}}},
			{1, c(lifecycle.Resubmit), &eventv1.LeadMerged{SurvivorLeadId: "l", AbsorbedLeadId: "a"}},
			{2, c(lifecycle.RecordActivity), &eventv1.ActivityRecorded{CampaignId: "seo"}},
			{3, c(lifecycle.Resubmit), &eventv1.LeadResubmitted{Attribution: &eventv1.Attribution{CampaignId: "webinar"}, MergedFrom: "a"}},
			{4, c(lifecycle.RecordActivity), &eventv1.ActivityRecorded{CampaignId: "events", MergedFrom: "x"}}, // merged into a before
			{5, c(lifecycle.Resubmit), unmerged},
		})
		if named {
			unmerged.GivenBackEventIds = []string{survivor[3].GetEventId(), survivor[4].GetEventId()}
		}
		whole, stored := storedBetween(t, survivor, func(i int, l *lead.Lead) {
			if i == 4 && (l.TouchCount != 4 || l.LastCampaign != "events") {
				t.Fatalf("while merged: %d touches, last %q; want 4, events", l.TouchCount, l.LastCampaign)
			}
		})
		again := lead.New("l")
		if err := json.Unmarshal(stored, again); err != nil {
			t.Fatal(err)
		}
		for _, l := range []*lead.Lead{whole, again} {
			switch {
			case !named:
				if l.TouchCount != 4 || l.LastCampaign != "events" {
					t.Errorf("after an unmerge naming nothing: %v (%d), last %q; want all four kept", l.Touches, l.TouchCount, l.LastCampaign)
				}
			case l.TouchCount != 2 || l.Touches.Of("ads") != 1 || l.Touches.Of("seo") != 1 || l.Touches.Of("webinar") != 0 || l.Touches.Of("events") != 0 ||
				l.FirstCampaign != "ads" || l.LastCampaign != "seo" || !l.LastTouchAt.Equal(t0.Add(2*time.Hour)) || l.Via != nil || l.Own != nil:
				t.Errorf("the survivor after the unmerge: %v (%d), first %q, last %q at %v, via %v; want ads and seo", l.Touches, l.TouchCount,
					l.FirstCampaign, l.LastCampaign, l.LastTouchAt, l.Via)
			case len(l.Touches) != 4:
				t.Errorf("touch rows %v: want webinar and events kept at zero", l.Touches)
			}
		}

		back := &eventv1.LeadUnmerged{SurvivorLeadId: "l", AbsorbedLeadId: "a", GivenBackEventIds: unmerged.GetGivenBackEventIds()}
		replayed := func(i int) string { // the event a replay names: none after an older unmerge
			if named {
				return survivor[i].GetEventId()
			}
			return ""
		}
		absorbed := journey(t, []step{
			{0, c(lifecycle.Capture), &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "form", CampaignId: "search"}}},
			{5, c(lifecycle.Resubmit), back},
			{3, c(lifecycle.Resubmit), &eventv1.LeadResubmitted{Attribution: &eventv1.Attribution{CampaignId: "webinar"}, GivenBackBy: "l", GivenBackEventId: replayed(3)}},
			{4, c(lifecycle.RecordActivity), &eventv1.ActivityRecorded{CampaignId: "events", GivenBackBy: "l", MergedFrom: "x", GivenBackEventId: replayed(4)}},
		})
		a := lead.New("a")
		for i, ev := range absorbed {
			ev.LeadId = "a"
			a.Apply(uint64(i+1), ev)
		}
		if want := map[bool]int{true: 3, false: 1}[named]; a.TouchCount != want || (named && (a.Touches.Of("webinar") != 1 || a.LastCampaign != "events")) {
			t.Errorf("the absorbed lead (unmerge naming what it gave back: %v): %v (%d), last %q; want %d touches", named, a.Touches, a.TouchCount, a.LastCampaign, want)
		}
	}
}

// A replay an older unmerge wrote (naming no event) counts nowhere: its
// touch stayed on that survivor. Given back again by a newer unmerge (X
// merged into A, A into S; A unmerged from S by an older intake, then X
// from A), it is not named and its new replay counts nowhere either: the
// touch is counted once, on S.
func TestAnOlderReplayGivenBackAgainCountsOnce(t *testing.T) {
	c := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	s := folded("s", journey(t, []step{
		{0, c(lifecycle.Capture), &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "form", CampaignId: "ads"}}},
		{1, c(lifecycle.Resubmit), &eventv1.LeadMerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"}},
		{2, c(lifecycle.RecordActivity), &eventv1.ActivityRecorded{CampaignId: "webinar", MergedFrom: "x"}},
		{3, c(lifecycle.Resubmit), &eventv1.LeadUnmerged{SurvivorLeadId: "s", AbsorbedLeadId: "a", GivenBackVia: []string{"x"}}},
	}))
	aEvs := journey(t, []step{
		{0, c(lifecycle.Capture), &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "form"}}},
		{2, c(lifecycle.RecordActivity), &eventv1.ActivityRecorded{CampaignId: "webinar", MergedFrom: "x", GivenBackBy: "s"}}, // the older replay
		{4, c(lifecycle.Resubmit), &eventv1.LeadUnmerged{SurvivorLeadId: "a", AbsorbedLeadId: "x"}},                           // names nothing
	})
	a := folded("a", aEvs)
	x := folded("x", journey(t, []step{
		{0, c(lifecycle.Capture), &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "form"}}},
		{2, c(lifecycle.RecordActivity), &eventv1.ActivityRecorded{CampaignId: "webinar", GivenBackBy: "a"}}, // no event named
	}))
	if n := s.Touches.Of("webinar") + a.Touches.Of("webinar") + x.Touches.Of("webinar"); n != 1 || s.Touches.Of("webinar") != 1 {
		t.Errorf("webinar counted %d times (s %d, a %d, x %d), want once, on s", n, s.Touches.Of("webinar"), a.Touches.Of("webinar"), x.Touches.Of("webinar"))
	}
}

// After an unmerge takes a touch back, first and last are what a fold
// that never saw it would say: touches at the same time keep the order
// they were recorded in, and own touches that came after merged ones
// are first and last.
func TestAnUnmergeKeepsFirstAndLastInOrder(t *testing.T) {
	c := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	activity := func(h float64, campaign, via string) step {
		return step{h, c(lifecycle.RecordActivity), &eventv1.ActivityRecorded{CampaignId: campaign, MergedFrom: via}}
	}
	for _, tc := range []struct {
		name        string
		touches     []step
		taken       int // which of touches the unmerge takes back
		first, last string
	}{
		{"ties", []step{activity(2, "seo", "b"), activity(2, "events", ""), activity(2, "webinar", "a")}, 2, "seo", "events"},
		{"own after", []step{activity(2, "theirs", "a"), activity(3, "own", "")}, 0, "own", "own"},
	} {
		unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: "l", AbsorbedLeadId: "a"}
		steps := append([]step{
			{0, c(lifecycle.Capture), &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{Source: "form"}}},
			{1, c(lifecycle.Resubmit), &eventv1.LeadMerged{SurvivorLeadId: "l", AbsorbedLeadId: "b"}},
			{1, c(lifecycle.Resubmit), &eventv1.LeadMerged{SurvivorLeadId: "l", AbsorbedLeadId: "a"}},
		}, tc.touches...)
		evs := journey(t, append(steps, step{4, c(lifecycle.Resubmit), unmerged}))
		unmerged.GivenBackEventIds = []string{evs[3+tc.taken].GetEventId()}
		l := folded("l", evs)
		if l.FirstCampaign != tc.first || l.LastCampaign != tc.last || l.TouchCount != len(tc.touches)-1 {
			t.Errorf("%s: first %q, last %q, %d touches; want %s, %s", tc.name, l.FirstCampaign, l.LastCampaign, l.TouchCount, tc.first, tc.last)
		}
	}
}

// folded is the fold of evs, stored at sequences 1, 2, ...
func folded(id string, evs []*eventv1.Event) *lead.Lead {
	l := lead.New(id)
	for i, ev := range evs {
		ev.LeadId = id // journey writes lead "l"
		l.Apply(uint64(i+1), ev)
	}
	return l
}

// An event under the lead that is another lead's (a write that bypassed
// the store) leaves its lifecycle as the lead's state, as every reader
// takes it, and counts nothing else: not its deal, not its touch.
func TestAnotherLeadsEventCountsOnlyItsLifecycle(t *testing.T) {
	evs := recycledAndBack(t)
	won := evs[len(evs)-1]
	evs[len(evs)-1] = proto.CloneOf(won)
	evs[len(evs)-1].LeadId = "other"
	l := folded("l", evs[:len(evs)-1])
	l.Apply(uint64(len(evs)), evs[len(evs)-1])
	if len(l.Opportunities) != 1 || l.Status != eventv1.LeadStatus_LEAD_STATUS_WON || !l.Opportunities[0].WonAt.IsZero() || l.Opportunities[0].WonMinor != 0 {
		t.Fatalf("status %v, deals %+v: want WON (its lifecycle), its deal not won (no revenue)", l.Status, l.Opportunities)
	}
}

// An open deal handed to another rep (its rep left) starts no hand-off:
// there is nothing to accept, so no SLA row counts it as never accepted.
// The deal and the lead are the new rep's.
func TestOpenDealHandedOn(t *testing.T) {
	c := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	bob := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "bob"}
	evs := journey(t, []step{
		{0, c(lifecycle.Capture), &eventv1.LeadCaptured{}},
		{1, c(lifecycle.Qualify), &eventv1.LeadQualified{}},
		{2, lifecycle.Command{Name: lifecycle.Assign, Owner: ann}, &eventv1.LeadAssigned{Owner: &eventv1.Owner{Id: "ann"}}},
		{3, c(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann"}},
		{4, c(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "o", RepId: "ann", Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 5}}},
		{5, lifecycle.Command{Name: lifecycle.Reassign, Owner: bob}, &eventv1.LeadReassigned{
			To: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "bob"}}},
	})
	l := lead.New("l")
	for i, ev := range evs {
		l.Apply(uint64(i+1), ev)
	}
	if l.Status != eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY || l.RepID != "bob" {
		t.Fatalf("after the hand-on: %v, rep %q", l.Status, l.RepID)
	}
	if h := l.Handoffs; len(h) != 1 || h[0].RepID != "ann" {
		t.Errorf("hand-offs %+v, want ann's only", h)
	}
	if o := l.Opportunities; len(o) != 1 || o[0].RepID != "bob" {
		t.Errorf("opportunities %+v, want the deal bob's", o)
	}
}

// What the absorbed lead's person answered on a form while merged leaves
// the survivor's profile with the unmerge, also when the fold was stored
// in between (as a live batch stores it).
func TestUnmergeTakesBackTheAbsorbedPersonsAnswers(t *testing.T) {
	c := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	evs := journey(t, []step{
		{0, c(lifecycle.Capture), &eventv1.LeadCaptured{Profile: &eventv1.Profile{Country: "DE", Employees: 10, EmailDomain: "own.example"}}},
		{1, c(lifecycle.Resubmit), &eventv1.LeadMerged{SurvivorLeadId: "l", AbsorbedLeadId: "a"}},
		{2, c(lifecycle.Resubmit), &eventv1.LeadResubmitted{MergedFrom: "a",
			Profile: &eventv1.Profile{Country: "US", Industry: "software", Employees: 500, EmailDomain: "other.example", Company: "Other Inc"}}},
		{3, c(lifecycle.Resubmit), &eventv1.LeadResubmitted{Profile: &eventv1.Profile{Industry: "retail"}}},
		{4, c(lifecycle.Resubmit), &eventv1.LeadUnmerged{SurvivorLeadId: "l", AbsorbedLeadId: "a"}},
	})
	whole, stored := storedBetween(t, evs, func(i int, l *lead.Lead) {
		if i == 2 && (l.Country != "US" || l.Employees != 500) {
			t.Fatalf("while merged: %s %d, want the form's US, 500", l.Country, l.Employees)
		}
	})
	for _, l := range []*lead.Lead{whole, func() *lead.Lead {
		l := lead.New("l")
		if err := json.Unmarshal(stored, l); err != nil {
			t.Fatal(err)
		}
		return l
	}()} {
		if l.Country != "DE" || l.Employees != 10 || l.Industry != "retail" || l.EmailDomain != "own.example" {
			t.Errorf("after the unmerge: %s, %d, %s, %s; want its own DE, 10, retail, own.example", l.Country, l.Employees, l.Industry, l.EmailDomain)
		}
	}
	if strings.Contains(string(stored), "Other Inc") {
		t.Errorf("the stored fold keeps a company name: %s", stored)
	}
}

// storedBetween folds evs in one go (whole) and, as live batches do,
// one event at a time with the fold stored as JSON and read back in
// between (stored: the last one stored); each, if set, sees the latter
// after event i.
func storedBetween(t *testing.T, evs []*eventv1.Event, each func(i int, l *lead.Lead)) (whole *lead.Lead, stored []byte) {
	t.Helper()
	whole = lead.New("l")
	for i, ev := range evs {
		whole.Apply(uint64(i+1), ev)
		l := lead.New("l")
		if stored != nil {
			if err := json.Unmarshal(stored, l); err != nil {
				t.Fatal(err)
			}
		}
		l.Apply(uint64(i+1), ev)
		l.Clean()
		var err error
		if stored, err = json.Marshal(l); err != nil {
			t.Fatal(err)
		}
		if each != nil {
			each(i, l)
		}
	}
	return whole, stored
}

// Touches moved from a map to a slice; folds stored before must read as
// they were, and new ones must read in older binaries.
func TestTouchesKeepTheMapsJSON(t *testing.T) {
	old := map[string]int{"webinar": 2, `ads "q4"`: 1, "ümlaut": 3}
	want, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	var ts lead.Touches
	if err := json.Unmarshal(want, &ts); err != nil {
		t.Fatal(err)
	}
	for c, n := range old {
		if ts.Of(c) != n {
			t.Errorf("%q: %d, want %d", c, ts.Of(c), n)
		}
	}
	got, err := json.Marshal(ts)
	if err != nil || string(got) != string(want) {
		t.Errorf("written as %s (%v), the map as %s", got, err, want)
	}
	var l lead.Lead
	if err := json.Unmarshal([]byte(`{"id":"x","touches":{"b":1,"a":2}}`), &l); err != nil || l.Touches.Of("a") != 2 || l.Touches.Of("b") != 1 || l.Touches[0].Campaign != "a" {
		t.Errorf("lead read with touches %+v (%v)", l.Touches, err)
	}
	if b, _ := json.Marshal(lead.Lead{ID: "x"}); strings.Contains(string(b), "touches") {
		t.Errorf("no touches written as %s", b)
	}
}

// A late sync's event (occurred before the lead's last change, recorded
// after it) moves the lead's updated time to when it was recorded: a
// "changed since" reader sees it, and the time never goes back.
func TestUpdatedAtIsWhenTheLastChangeWasRecorded(t *testing.T) {
	evs := recycledAndBack(t)
	won := evs[len(evs)-1].GetRecordedAt().AsTime()
	late := proto.CloneOf(evs[6]) // an activity
	late.OccurredAt = timestamppb.New(won.Add(-10 * time.Hour))
	late.RecordedAt = timestamppb.New(won.Add(time.Minute))
	l := folded("l", append(evs, late))
	if !l.UpdatedAt.Equal(won.Add(time.Minute)) {
		t.Fatalf("updated at %v, want %v, when the late event was recorded", l.UpdatedAt, won.Add(time.Minute))
	}
}
