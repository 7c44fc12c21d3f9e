package scoring_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
)

// A merge scores the survivor on both leads' facts: the absorbed lead's
// activities count, and its profile fills what the survivor's does not
// say (the survivor's wins where both do), until the unmerge gives them
// back. Each lead alone is under the threshold; merged, over it.
func TestAMergeScoresTheSurvivorOnBothLeadsFacts(t *testing.T) {
	m := scoring.Model{Threshold: 70, Fit: []scoring.FitRule{
		{ID: "vp", Points: 30, When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{vp}}},
		{ID: "big", Points: 20, When: scoring.Criteria{MinEmployees: 200}},
	}, Engagement: []scoring.EngagementRule{{ID: "webinar", Activity: webinar, Points: 20, Cap: 60, HalfLife: 30 * day}}}
	ev := func(lead string, p proto.Message) *eventv1.Event {
		e, err := envelope.NewEvent(lead, p, envelope.Meta{}, t0)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	// The absorbed lead: a VP at 50 people, one webinar: 50.
	var absorbed scoring.FactsFold
	absorbed.Apply(ev("a", &eventv1.LeadCaptured{Profile: &eventv1.Profile{Seniority: vp, Employees: 50, Country: "FR"},
		Consents: []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_SMS, Status: eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN}}}))
	absorbed.Apply(ev("a", &eventv1.ActivityRecorded{Type: webinar}))
	// The survivor: no seniority, 300 people, from Germany, one webinar:
	// 40.
	var s scoring.FactsFold
	s.Apply(ev("s", &eventv1.LeadCaptured{Profile: &eventv1.Profile{Employees: 300, Country: "DE"}}))
	s.Apply(ev("s", &eventv1.ActivityRecorded{Type: webinar}))
	if a, b := scoring.Score(m, absorbed.Facts, t0).Total, scoring.Score(m, s.Facts, t0).Total; a >= 70 || b >= 70 {
		t.Fatalf("alone: absorbed %d, survivor %d; want both under 70", a, b)
	}
	merged := &eventv1.LeadMerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"}
	// One stored before merges carried facts adds nothing.
	s.Apply(ev("s", merged))
	if got := scoring.Score(m, s.Facts, t0).Total; got != 40 || scoring.HasFacts(ev("s", merged)) {
		t.Errorf("a LeadMerged without facts: %d, want 40 and no facts", got)
	}
	absorbed.Absorbed(merged)
	s.Apply(ev("s", merged))
	// Its withdrawals count at once: the events after it carry them.
	if st := s.Facts.Consents[eventv1.ConsentChannel_CONSENT_CHANNEL_SMS]; st != eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN {
		t.Errorf("merged: SMS %v, want the absorbed lead's withdrawal", st)
	}
	// VP (theirs) 30 + 300 people (ours) 20 + two webinars 40 = 90.
	if got := scoring.Score(m, s.Facts, t0).Total; got != 90 || s.Facts.Profile.Country != "DE" || s.Facts.Profile.Seniority != vp {
		t.Errorf("merged: %d, profile %+v; want 90, the survivor's country and the absorbed lead's seniority", got, s.Facts.Profile)
	}
	// The absorbed side's own LeadMerged adds nothing to it.
	before := len(absorbed.Facts.Activities)
	absorbed.Apply(ev("a", merged))
	if len(absorbed.Facts.Activities) != before {
		t.Errorf("the absorbed lead's LeadMerged changed its facts")
	}
	s.Apply(ev("s", &eventv1.LeadUnmerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"}))
	if got := scoring.Score(m, s.Facts, t0).Total; got != 40 || s.Facts.Profile.Seniority != eventv1.Seniority_SENIORITY_UNSPECIFIED {
		t.Errorf("unmerged: %d, profile %+v; want 40, its own again", got, s.Facts.Profile)
	}
}
