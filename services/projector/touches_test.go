package main

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// A webinar platform uploads attendance late: the activity happened at
// h5, before the opportunity at h10, but is stored after the deal was
// won. It is the lead's last touch (it was dropped as after the
// opportunity), live and replayed alike.
func TestLateRecordedTouchCountsForAttribution(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	eur := &eventv1.Money{Currency: "EUR", MinorUnits: 100000}
	w.lead(t, "lt", 0, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"), Attribution: &eventv1.Attribution{Source: "web-form", CampaignId: "search"}})
	w.lead(t, "lt", 1, cmd(lifecycle.Qualify), &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 70})
	w.lead(t, "lt", 2, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}},
		&eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Segment: "mid"})
	w.lead(t, "lt", 3, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann", Segment: "mid"})
	w.lead(t, "lt", 10, cmd(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "o", Amount: eur, RepId: "ann", Segment: "mid"})
	w.lead(t, "lt", 20, cmd(lifecycle.Win), &eventv1.DealWon{OpportunityId: "o", RepId: "ann", Segment: "mid"})
	w.lead(t, "lt", 5, cmd(lifecycle.RecordActivity), &eventv1.ActivityRecorded{ActivityId: "a", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED, CampaignId: "webinar"})
	w.projected(t, w.dsn)
	fresh := w.replay(t, testenv.Postgres(t))
	ctx := ctxT(t)

	d, err := s.client.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: "lt"})
	if err != nil {
		t.Fatal(err)
	}
	l := d.GetLead()
	if l.GetFirstCampaignId() != "search" || l.GetLastCampaignId() != "webinar" || len(d.GetTouches()) != 2 {
		t.Errorf("lt: first %q last %q touches %v; want search, webinar, one each", l.GetFirstCampaignId(), l.GetLastCampaignId(), d.GetTouches())
	}
	replayed, err := fresh.client.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: "lt"})
	if err != nil || !proto.Equal(d, replayed) {
		t.Errorf("replayed lt: %v %v, live %v", replayed, err, d)
	}
	// €1,000 won: all to webinar by last touch, half by linear.
	for m, want := range map[projectorv1.AttributionModel]map[string]float64{
		projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH: {"search": 100000},
		projectorv1.AttributionModel_ATTRIBUTION_MODEL_LAST_TOUCH:  {"webinar": 100000},
		projectorv1.AttributionModel_ATTRIBUTION_MODEL_LINEAR:      {"search": 50000, "webinar": 50000},
	} {
		req := &projectorv1.GetCampaignReportRequest{Period: marchPeriod(), Attribution: m, Currency: "EUR"}
		r, err := s.client.GetCampaignReport(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, c := range r.GetCampaigns() {
			got[c.GetCampaignId()] = c.GetWonRevenue().GetValue()
		}
		if len(got) != len(want) {
			t.Errorf("%v: won by campaign %v, want %v", m, got, want)
		}
		for c, v := range want {
			if !near(got[c], v) {
				t.Errorf("%v: %s won %v, want %v", m, c, got[c], v)
			}
		}
		if again, err := fresh.client.GetCampaignReport(ctx, req); err != nil || !proto.Equal(r, again) {
			t.Errorf("%v replayed: %v %v, live %v", m, again, err, r)
		}
	}
}

// A touch that came through a merged lead is its person's: after the
// unmerge the survivor no longer counts it, in its touches, its last
// touch or a campaign's leads, and the absorbed lead does; live and
// replayed alike.
func TestAnUnmergeMovesATouchToItsPerson(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	capture := func(id, campaign string) *eventv1.Event {
		return w.lead(t, id, 0, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"),
			Attribution: &eventv1.Attribution{Source: "web-form", CampaignId: campaign}})
	}
	capture("su", "ads")
	before := lifecycle.FromProto(capture("ab", "seo").GetLifecycle())
	merged := &eventv1.LeadMerged{SurvivorLeadId: "su", AbsorbedLeadId: "ab", Reason: "same person"}
	w.lead(t, "ab", 1, lifecycle.Command{Name: lifecycle.Merge, Reason: "su"}, merged)
	w.lead(t, "su", 1, cmd(lifecycle.Resubmit), merged) // the survivor's record
	sent := w.lead(t, "su", 2, cmd(lifecycle.RecordActivity), &eventv1.ActivityRecorded{ActivityId: "w", CampaignId: "webinar", MergedFrom: "ab"})
	unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: "su", AbsorbedLeadId: "ab", Reason: "two people", GivenBackEventIds: []string{sent.GetEventId()}}
	w.lead(t, "su", 3, cmd(lifecycle.Resubmit), unmerged)
	w.lead(t, "ab", 3, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: before.Status, Owner: before.Owner, Due: before.Deadline}, unmerged)
	w.lead(t, "ab", 2, cmd(lifecycle.RecordActivity), &eventv1.ActivityRecorded{ActivityId: "w", CampaignId: "webinar", GivenBackBy: "su", GivenBackEventId: sent.GetEventId()})
	w.projected(t, w.dsn)
	fresh := w.replay(t, testenv.Postgres(t))
	ctx := ctxT(t)

	for id, want := range map[string][2]string{"su": {"ads", "ads"}, "ab": {"seo", "webinar"}} {
		d, err := s.client.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: id})
		if err != nil {
			t.Fatal(err)
		}
		var touched []string
		for _, tc := range d.GetTouches() {
			touched = append(touched, tc.GetCampaignId())
		}
		if l := d.GetLead(); l.GetFirstCampaignId() != want[0] || l.GetLastCampaignId() != want[1] || len(touched) != 1+len(slices.Compact([]string{want[0], want[1]}))-1 {
			t.Errorf("%s: first %q last %q touches %v; want %v", id, l.GetFirstCampaignId(), l.GetLastCampaignId(), touched, want)
		}
		if replayed, err := fresh.client.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: id}); err != nil || !proto.Equal(d, replayed) {
			t.Errorf("replayed %s: %v %v, live %v", id, replayed, err, d)
		}
	}
	found, err := s.client.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{CampaignId: "webinar", PageSize: 10})
	if err != nil || len(found.GetLeads()) != 1 || found.GetLeads()[0].GetLeadId() != "ab" {
		t.Errorf("leads touched by webinar: %v %v, want ab only", found.GetLeads(), err)
	}
	req := &projectorv1.GetCampaignReportRequest{Period: marchPeriod(), Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_LINEAR}
	r, err := s.client.GetCampaignReport(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, c := range r.GetCampaigns() {
		got[c.GetCampaignId()] = c.GetLeads().GetValue()
	}
	if want := map[string]float64{"ads": 1, "seo": 0.5, "webinar": 0.5}; len(got) != len(want) || !near(got["ads"], 1) || !near(got["seo"], 0.5) || !near(got["webinar"], 0.5) {
		t.Errorf("linear leads by campaign %v, want %v", got, want)
	}
	if again, err := fresh.client.GetCampaignReport(ctx, req); err != nil || !proto.Equal(r, again) {
		t.Errorf("replayed report: %v %v, live %v", again, err, r)
	}
}

// A merge undone leaves no stay in MERGED among the times in stage: it is
// no stage of the funnel (the lead's NEW stays before the merge and after
// the unmerge count as two).
func TestAnUnmergedLeadHasNoStayInMerged(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	capture := func(id string) *eventv1.Event {
		return w.lead(t, id, 0, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"), Attribution: &eventv1.Attribution{Source: "web-form"}})
	}
	capture("su")
	before := lifecycle.FromProto(capture("ab").GetLifecycle())
	merged := &eventv1.LeadMerged{SurvivorLeadId: "su", AbsorbedLeadId: "ab", Reason: "same person"}
	w.lead(t, "ab", 2, lifecycle.Command{Name: lifecycle.Merge, Reason: "su"}, merged)
	w.lead(t, "su", 2, cmd(lifecycle.Resubmit), merged)
	unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: "su", AbsorbedLeadId: "ab", Reason: "two people"}
	w.lead(t, "su", 50, cmd(lifecycle.Resubmit), unmerged)
	w.lead(t, "ab", 50, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: before.Status, Owner: before.Owner, Due: before.Deadline}, unmerged)
	w.lead(t, "ab", 52, cmd(lifecycle.Qualify), &eventv1.LeadQualified{Score: 80, Threshold: 70})
	w.projected(t, w.dsn)
	r, err := s.client.GetPerformance(ctxT(t), &projectorv1.GetPerformanceRequest{Period: marchPeriod()})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ts := range r.GetTimeInStage() {
		got = append(got, fmt.Sprintf("%v×%d", ts.GetStatus(), ts.GetStays()))
	}
	if want := "[LEAD_STATUS_NEW×2]"; fmt.Sprint(got) != want {
		t.Errorf("time in stage %v, want %s", got, want)
	}
}
