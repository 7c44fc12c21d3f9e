package whatif

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
)

// A lead a person disqualified is never scored again live, so the
// what-if counts it as an MQL under neither version; one sent back "not
// now" is in nurture, where only a re-engagement's score qualifies.
func TestAPersonsDisqualificationEndsTheLead(t *testing.T) {
	m := scoring.Default()
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	ev := func(h int, p any) *eventv1.Event {
		e := &eventv1.Event{OccurredAt: timestamppb.New(at.Add(time.Duration(h) * time.Hour)), RecordedAt: timestamppb.New(at.Add(time.Duration(h) * time.Hour))}
		switch x := p.(type) {
		case *eventv1.LeadCaptured:
			e.Payload = &eventv1.Event_LeadCaptured{LeadCaptured: x}
		case *eventv1.LeadDisqualified:
			e.Payload = &eventv1.Event_LeadDisqualified{LeadDisqualified: x}
		case *eventv1.ActivityRecorded:
			e.Payload = &eventv1.Event_ActivityRecorded{ActivityRecorded: x}
		case *eventv1.LeadRecycled:
			e.Payload = &eventv1.Event_LeadRecycled{LeadRecycled: x}
		case *eventv1.LeadReengaged:
			e.Payload = &eventv1.Event_LeadReengaged{LeadReengaged: x}
		}
		return e
	}
	vp := &eventv1.Profile{Seniority: eventv1.Seniority_SENIORITY_VP, Employees: 200, Country: "US", EmailDomain: "acme.example"}
	r := New(&m, m, time.Time{}, time.Time{})
	for _, id := range []string{"by-hand", "not-now"} {
		r.Apply(id, ev(0, &eventv1.LeadCaptured{Profile: vp, Attribution: &eventv1.Attribution{Source: "web-form"}}))
		r.Apply(id, ev(1, &eventv1.LeadDisqualified{Reason: "spam", NotNow: id == "not-now"}))
		r.Apply(id, ev(2, &eventv1.ActivityRecorded{Type: eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST}))
	}
	if got := r.Result().Total; got.Leads != 2 || got.MQLsActive != 0 || got.MQLsProposed != 0 {
		t.Fatalf("totals %+v: want 2 leads and no MQL (one ended, one in nurture, not re-engaged)", got)
	}

	// In nurture, as live, an activity qualifies a lead only through its
	// re-engagement's score.
	r = New(&m, m, time.Time{}, time.Time{})
	r.Apply("nurtured", ev(0, &eventv1.LeadCaptured{Profile: vp, Attribution: &eventv1.Attribution{Source: "web-form"}}))
	r.Apply("nurtured", ev(1, &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_NOT_QUALIFIED}))
	r.Apply("nurtured", ev(2, &eventv1.ActivityRecorded{Type: eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST}))
	if got := r.Result().Total; got.MQLsActive != 0 || got.MQLsProposed != 0 {
		t.Fatalf("a nurtured lead's activity without a re-engagement: %+v, want no MQL", got)
	}
	r.Apply("nurtured", ev(3, &eventv1.LeadReengaged{}))
	if got := r.Result().Total; got.MQLsActive != 1 || got.MQLsProposed != 1 {
		t.Fatalf("after its re-engagement: %+v, want an MQL under both", got)
	}
}

// The what-if's campaign is the first touch by when touches happened, as
// the read model's: a late upload of an activity from before the capture
// is the first touch; one from after the opportunity is none.
func TestFirstTouchByWhenItHappened(t *testing.T) {
	m := scoring.Default()
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	ev := func(h int, p any) *eventv1.Event {
		e := &eventv1.Event{OccurredAt: timestamppb.New(at.Add(time.Duration(h) * time.Hour)), RecordedAt: timestamppb.New(at.Add(20 * time.Hour))}
		switch x := p.(type) {
		case *eventv1.LeadCaptured:
			e.Payload = &eventv1.Event_LeadCaptured{LeadCaptured: x}
		case *eventv1.ActivityRecorded:
			e.Payload = &eventv1.Event_ActivityRecorded{ActivityRecorded: x}
		case *eventv1.OpportunityCreated:
			e.Payload = &eventv1.Event_OpportunityCreated{OpportunityCreated: x}
		}
		return e
	}
	r := New(&m, m, time.Time{}, time.Time{})
	r.Apply("early", ev(2, &eventv1.LeadCaptured{Attribution: &eventv1.Attribution{CampaignId: "form"}}))
	r.Apply("early", ev(10, &eventv1.OpportunityCreated{OpportunityId: "o"}))
	r.Apply("early", ev(1, &eventv1.ActivityRecorded{CampaignId: "ads"}))
	r.Apply("after", ev(2, &eventv1.LeadCaptured{}))
	r.Apply("after", ev(10, &eventv1.OpportunityCreated{OpportunityId: "o"}))
	r.Apply("after", ev(10, &eventv1.ActivityRecorded{CampaignId: "late"}))
	got := map[string]int64{}
	for _, row := range r.Result().Campaigns {
		got[row.Campaign] = row.Leads
	}
	if len(got) != 2 || got["ads"] != 1 || got[""] != 1 {
		t.Errorf("leads by first-touch campaign %v, want ads 1 and none 1", got)
	}
}
