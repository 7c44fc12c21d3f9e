package main

import (
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
)

func marchPeriod() *projectorv1.Period {
	return &projectorv1.Period{From: timestamppb.New(march.from), To: timestamppb.New(march.to)}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

// Every figure of every report on the fixture, worked out by hand in the
// comments of fixture_test.go and here.
func TestReportsOnTheFixture(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	w.fixture(t)
	w.projected(t, w.dsn)
	c := s.client
	ctx := ctxT(t)

	t.Run("funnel", func(t *testing.T) {
		f, err := c.GetFunnel(ctx, &projectorv1.GetFunnelRequest{Period: marchPeriod()})
		if err != nil {
			t.Fatal(err)
		}
		// l1..l7: MQL l1 l2 l5 l6 l7; accepted l1 l5 l6 l7; opportunity the
		// same; won l1 l6; recycled l2 (rejected); disqualified l3.
		checkFunnel(t, f.GetTotal(), "", 7, 5, 4, 4, 2, 1, 1)
		if tot := f.GetTotal(); !near(tot.GetMqlRate(), 5.0/7) || !near(tot.GetAcceptRate(), 0.8) || !near(tot.GetOpportunityRate(), 1) || !near(tot.GetWinRate(), 0.5) {
			t.Errorf("rates %v", tot)
		}
		if len(f.GetRows()) != 0 {
			t.Errorf("rows without a grouping: %v", f.GetRows())
		}
		f, err = c.GetFunnel(ctx, &projectorv1.GetFunnelRequest{Period: marchPeriod(), GroupBy: projectorv1.FunnelGroup_FUNNEL_GROUP_SOURCE})
		if err != nil || len(f.GetRows()) != 3 {
			t.Fatalf("by source: %v %v", f, err)
		}
		checkFunnel(t, f.GetRows()[0], "event", 2, 2, 2, 2, 1, 0, 0)
		checkFunnel(t, f.GetRows()[1], "web-form", 4, 2, 1, 1, 0, 1, 1)
		checkFunnel(t, f.GetRows()[2], "webinar", 1, 1, 1, 1, 1, 0, 0)
		f, err = c.GetFunnel(ctx, &projectorv1.GetFunnelRequest{Period: marchPeriod(), GroupBy: projectorv1.FunnelGroup_FUNNEL_GROUP_SEGMENT})
		if err != nil || len(f.GetRows()) != 3 {
			t.Fatalf("by segment: %v %v", f, err)
		}
		checkFunnel(t, f.GetRows()[0], "", 2, 0, 0, 0, 0, 0, 1)
		checkFunnel(t, f.GetRows()[1], "ent", 2, 2, 2, 2, 1, 0, 0)
		checkFunnel(t, f.GetRows()[2], "mid", 3, 3, 2, 2, 1, 1, 0)
		// All time by month: l8 in February; the merged l9 nowhere.
		f, err = c.GetFunnel(ctx, &projectorv1.GetFunnelRequest{GroupBy: projectorv1.FunnelGroup_FUNNEL_GROUP_PERIOD})
		if err != nil || len(f.GetRows()) != 2 {
			t.Fatalf("by month: %v %v", f, err)
		}
		checkFunnel(t, f.GetRows()[0], "2026-02-01", 1, 1, 0, 0, 0, 0, 0)
		checkFunnel(t, f.GetRows()[1], "2026-03-01", 7, 5, 4, 4, 2, 1, 1)
		// By ISO week: t0 is a Monday; l1..l7 were captured that day.
		f, err = c.GetFunnel(ctx, &projectorv1.GetFunnelRequest{Period: marchPeriod(), GroupBy: projectorv1.FunnelGroup_FUNNEL_GROUP_PERIOD,
			Unit: projectorv1.PeriodUnit_PERIOD_UNIT_WEEK, Segment: "mid"})
		if err != nil || len(f.GetRows()) != 1 {
			t.Fatalf("by week: %v %v", f, err)
		}
		checkFunnel(t, f.GetRows()[0], "2026-03-02", 3, 3, 2, 2, 1, 1, 0)
	})

	t.Run("campaigns first touch", func(t *testing.T) {
		r, err := c.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Period: marchPeriod(),
			Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetCurrency() != "EUR" || ids(r) != "webinar events search" {
			t.Fatalf("currency %q, order %q", r.GetCurrency(), ids(r))
		}
		m := projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH
		// webinar: l1. spend 1,000 + 500 = €1,500; revenue €12,000.
		checkCampaign(t, r.GetCampaigns()[0], m, row{spend: 150000, leads: 1, mqls: 1, accepted: 1, opps: 1, pipeline: 1000000,
			wonDeals: 1, won: 1200000, cpl: 150000, cpa: 150000, cpw: 150000, roi: 7})
		// events: l5 l6, no spend: cost ratios 0, ROI undefined.
		checkCampaign(t, r.GetCampaigns()[1], m, row{spend: 0, leads: 2, mqls: 2, accepted: 2, opps: 2, pipeline: 800000,
			wonDeals: 1, won: 300000, cpl: 0, cpa: 0, cpw: 0, roiUndef: true})
		// search: l2 l3 l4, the biggest spend (€4,000 in March) and no
		// revenue: a dud by revenue, the leader by lead count.
		checkCampaign(t, r.GetCampaigns()[2], m, row{spend: 400000, leads: 3, mqls: 1, cpl: 400000.0 / 3, cpaUndef: true, cpwUndef: true, roi: -1})
		checkCampaign(t, r.GetUnattributed(), m, row{leads: 1, mqls: 1, accepted: 1, opps: 1, pipeline: 200000, cpl: 0, cpa: 0, cpwUndef: true, roiUndef: true})
		if r.GetCampaigns()[0].GetName() != "Q1 webinar" || r.GetCampaigns()[2].GetChannel() != eventv1.Channel_CHANNEL_PAID_SEARCH {
			t.Errorf("names and channels: %v", r.GetCampaigns())
		}
	})

	t.Run("campaigns last touch", func(t *testing.T) {
		r, err := c.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Period: marchPeriod(),
			Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_LAST_TOUCH, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		if ids(r) != "search events webinar" {
			t.Fatalf("order %q", ids(r))
		}
		m := projectorv1.AttributionModel_ATTRIBUTION_MODEL_LAST_TOUCH
		// search: l1 (last touch before o1), l2 l3 l4.
		checkCampaign(t, r.GetCampaigns()[0], m, row{spend: 400000, leads: 4, mqls: 2, accepted: 1, opps: 1, pipeline: 1000000,
			wonDeals: 1, won: 1200000, cpl: 100000, cpa: 400000, cpw: 400000, roi: 2})
		checkCampaign(t, r.GetCampaigns()[1], m, row{leads: 1, mqls: 1, accepted: 1, opps: 1, pipeline: 300000, wonDeals: 1, won: 300000, roiUndef: true})
		// webinar: l5, lost.
		checkCampaign(t, r.GetCampaigns()[2], m, row{spend: 150000, leads: 1, mqls: 1, accepted: 1, opps: 1, pipeline: 500000,
			cpl: 150000, cpa: 150000, cpwUndef: true, roi: -1})
	})

	t.Run("campaigns linear", func(t *testing.T) {
		r, err := c.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Period: marchPeriod(),
			Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_LINEAR})
		if err != nil {
			t.Fatal(err)
		}
		// webinar and search both earn €6,000; webinar has more pipeline.
		if ids(r) != "webinar search events" {
			t.Fatalf("order %q", ids(r))
		}
		m := projectorv1.AttributionModel_ATTRIBUTION_MODEL_LINEAR
		// webinar: half of l1, half of l5.
		checkCampaign(t, r.GetCampaigns()[0], m, row{spend: 150000, leads: 1, mqls: 1, accepted: 1, opps: 1, pipeline: 750000,
			wonDeals: 0.5, won: 600000, cpl: 150000, cpa: 150000, cpw: 300000, roi: 3})
		// search: half of l1, all of l2 l3 l4.
		checkCampaign(t, r.GetCampaigns()[1], m, row{spend: 400000, leads: 3.5, mqls: 1.5, accepted: 0.5, opps: 0.5, pipeline: 500000,
			wonDeals: 0.5, won: 600000, cpl: 400000 / 3.5, cpa: 800000, cpw: 800000, roi: 0.5})
		// events: half of l5, all of l6.
		checkCampaign(t, r.GetCampaigns()[2], m, row{leads: 1.5, mqls: 1.5, accepted: 1.5, opps: 1.5, pipeline: 550000,
			wonDeals: 1, won: 300000, roiUndef: true})
		checkCampaign(t, r.GetUnattributed(), m, row{leads: 1, mqls: 1, accepted: 1, opps: 1, pipeline: 200000, cpwUndef: true, roiUndef: true})
	})

	t.Run("sla", func(t *testing.T) {
		r, err := c.GetSLACompliance(ctx, &projectorv1.GetSLAComplianceRequest{Period: marchPeriod()})
		if err != nil {
			t.Fatal(err)
		}
		// ann: l1 (2h, in time; attempt after 1h, in time), l5 (26h, late;
		// attempt after 7h, late; 2 attempts), l6 after the reassignment
		// (1h; attempt after 2h), l7 (1h; no attempt, converted before its
		// contact_by, so not due).
		ann := sales{assigned: 4, accepted: 4, within: 3, acceptDue: 4, avgAccept: 7.5, medAccept: 1.5, contacted: 3, attemptWithin: 2,
			contactDue: 3, avgAttempt: 10.0 / 3, attemptsPerLead: 1}
		// bob: l2 (never accepted, held past its accept_by, breached,
		// rejected: due), l6 before the reassignment (taken away before
		// its accept_by: not due).
		bob := sales{assigned: 2, acceptDue: 1, breaches: 1}
		if len(r.GetReps()) != 2 || len(r.GetTeams()) != 2 {
			t.Fatalf("reps %v teams %v", r.GetReps(), r.GetTeams())
		}
		checkSales(t, r.GetReps()[0], "ann", "east", ann)
		checkSales(t, r.GetReps()[1], "bob", "west", bob)
		checkSales(t, r.GetTeams()[0], "east", "east", ann)
		checkSales(t, r.GetTeams()[1], "west", "west", bob)
		checkSales(t, r.GetSalesTotal(), "", "", sales{assigned: 6, accepted: 4, within: 3, acceptDue: 5, avgAccept: 7.5, medAccept: 1.5,
			contacted: 3, attemptWithin: 2, contactDue: 3, avgAttempt: 10.0 / 3, attemptsPerLead: 1, breaches: 1})
		if b := r.GetReps()[1].GetBreachesBySla(); len(b) != 1 || b[0].GetSla() != eventv1.SLAKind_SLA_KIND_ACCEPT || b[0].GetCount() != 1 {
			t.Errorf("bob's breaches by SLA: %v", b)
		}
		if o := r.GetBreachesByOwner(); len(o) != 1 || o[0].GetOwner().GetId() != "bob" || o[0].GetCount() != 1 {
			t.Errorf("breaches by owner: %v", o)
		}
		// Marketing, by MQL month: l1 l2 l7 in mid (l2 rejected), l5 l6 in ent.
		mk := r.GetMarketing()
		if len(mk) != 3 {
			t.Fatalf("marketing rows: %v", mk)
		}
		checkMarketing(t, mk[0], "2026-03", "", 5, 4, 1, 4, 5)
		checkMarketing(t, mk[1], "2026-03", "ent", 2, 2, 0, 2, 2)
		checkMarketing(t, mk[2], "2026-03", "mid", 3, 2, 1, 2, 3)
		// mid's target: 4 MQLs (missed), 50% accepted (67% met), 30% to
		// opportunity (67% met).
		if tg := mk[2]; tg.GetTarget().GetMinMqls() != 4 || tg.GetMqlsMet() || !tg.GetAcceptanceMet() || !tg.GetOpportunityMet() {
			t.Errorf("mid against its target: %v", tg)
		}
		if mk[0].GetTarget() != nil || mk[1].GetTarget() != nil {
			t.Errorf("targets where none was set: %v %v", mk[0].GetTarget(), mk[1].GetTarget())
		}
	})

	t.Run("performance", func(t *testing.T) {
		r, err := c.GetPerformance(ctx, &projectorv1.GetPerformanceRequest{Period: marchPeriod()})
		if err != nil {
			t.Fatal(err)
		}
		// o1 o5 o6 o7 created in March; o1 (€12,000, 2 days) and o6
		// (€3,000, 4 days) won, o5 lost: win rate 2/3, average deal €7,500,
		// cycle 3 days, velocity 4 × 750,000 × 2/3 / 3.
		if r.GetCurrency() != "EUR" || r.GetOpportunities() != 4 || r.GetWon() != 2 || r.GetLost() != 1 || !near(r.GetWinRate(), 2.0/3) ||
			!near(r.GetAvgWonDeal(), 750000) || !near(r.GetAvgSalesCycleDays(), 3) || !near(r.GetVelocity(), 4*750000*(2.0/3)/3) {
			t.Errorf("deals: %v", r)
		}
		want := [][2]int64{{7, 5}, {5, 4}, {4, 4}, {4, 2}}
		if len(r.GetConversions()) != len(want) {
			t.Fatalf("conversions: %v, want %d", r.GetConversions(), len(want))
		}
		for i, cv := range r.GetConversions() {
			if cv.GetReached() != want[i][0] || cv.GetConverted() != want[i][1] || !near(cv.GetRate(), float64(want[i][1])/float64(want[i][0])) {
				t.Errorf("conversion %v → %v: %v, want %v", cv.GetFrom(), cv.GetTo(), cv, want[i])
			}
		}
		// Stays that ended, by status (hours): NEW 2 1 1 2 1 1; MQL 1 ×5;
		// ASSIGNED 2 27 26 3 1; ACCEPTED 5 17 10 1; OPPORTUNITY 48 24 96.
		type st struct {
			stays    int64
			avg, med float64
		}
		wantT := map[eventv1.LeadStatus]st{
			eventv1.LeadStatus_LEAD_STATUS_NEW:         {6, 8.0 / 6, 1},
			eventv1.LeadStatus_LEAD_STATUS_MQL:         {5, 1, 1},
			eventv1.LeadStatus_LEAD_STATUS_ASSIGNED:    {5, 59.0 / 5, 3},
			eventv1.LeadStatus_LEAD_STATUS_ACCEPTED:    {4, 33.0 / 4, 7.5},
			eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY: {3, 56, 48},
		}
		if len(r.GetTimeInStage()) != len(wantT) {
			t.Fatalf("time in stage: %v", r.GetTimeInStage())
		}
		for _, ts := range r.GetTimeInStage() {
			w := wantT[ts.GetStatus()]
			if ts.GetStays() != w.stays || !near(ts.GetAvgHours(), w.avg) || !near(ts.GetMedianHours(), w.med) {
				t.Errorf("time in %v: %v, want %+v", ts.GetStatus(), ts, w)
			}
		}
	})

	t.Run("accounts", func(t *testing.T) {
		r, err := c.GetAccounts(ctx, &projectorv1.GetAccountsRequest{Period: marchPeriod()})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range r.GetAccounts() {
			got = append(got, a.GetAccountId())
		}
		// acct-1 holds l1 and l6 (both won); eta.example has l7's open €2,000.
		if want := []string{"acct-1", "eta.example", "beta.example", "delta.example", "epsilon.example", "gamma.example"}; !slices.Equal(got, want) {
			t.Fatalf("accounts %v, want %v", got, want)
		}
		a := r.GetAccounts()[0]
		if a.GetName() != "Analytical GmbH" || !a.GetMatched() || a.GetLeads() != 2 || a.GetOpenOpportunities() != 0 || a.GetPipeline() != 0 ||
			a.GetWonDeals() != 2 || a.GetWonRevenue() != 1500000 {
			t.Errorf("acct-1: %v", a)
		}
		e := r.GetAccounts()[1]
		if e.GetMatched() || e.GetLeads() != 1 || e.GetOpenOpportunities() != 1 || e.GetPipeline() != 200000 || e.GetWonRevenue() != 0 {
			t.Errorf("eta.example: %v", e)
		}
		if e := r.GetAccounts()[4]; e.GetLeads() != 1 || e.GetOpenOpportunities() != 0 || e.GetWonDeals() != 0 {
			t.Errorf("epsilon.example (lost): %v", e)
		}
	})

	t.Run("leads", func(t *testing.T) {
		d, err := c.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: "l6"})
		if err != nil {
			t.Fatal(err)
		}
		l := d.GetLead()
		if l.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_WON || l.GetAccountId() != "acct-1" || l.GetRepId() != "ann" || l.GetSegment() != "ent" ||
			l.GetFirstCampaignId() != "events" || l.GetCycle() != 1 || !l.GetWonAt().AsTime().Equal(w.at(116)) || l.GetOwner() != nil {
			t.Errorf("l6: %v", l)
		}
		if h := d.GetHandoffs(); len(h) != 2 || h[0].GetRepId() != "bob" || !h[0].GetEndedAt().AsTime().Equal(w.at(9)) ||
			h[1].GetRepId() != "ann" || !h[1].GetAcceptedWithinSla() || h[1].GetAttempts() != 1 {
			t.Errorf("l6 hand-offs: %v", h)
		}
		if o := d.GetOpportunities(); len(o) != 1 || o[0].GetWonAmount().GetMinorUnits() != 300000 {
			t.Errorf("l6 opportunities: %v", o)
		}
		if len(d.GetStages()) != 6 || len(d.GetJourneys()) != 1 || d.GetJourneys()[0].GetSegment() != "ent" {
			t.Errorf("l6 stages %v journeys %v", d.GetStages(), d.GetJourneys())
		}
		d, err = c.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: "l1"})
		if err != nil {
			t.Fatal(err)
		}
		if tc := d.GetTouches(); len(tc) != 2 || tc[0].GetCampaignId() != "search" || tc[1].GetCampaignId() != "webinar" {
			t.Errorf("l1 touches (the one after its opportunity left out): %v", tc)
		}
		if d.GetLead().GetLastCampaignId() != "search" {
			t.Errorf("l1 last touch %q", d.GetLead().GetLastCampaignId())
		}
		if d, err := c.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: "l9"}); err != nil || d.GetLead().GetMergedInto() != "l4" {
			t.Errorf("l9: %v %v", d, err)
		}
		if _, err := c.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: "nobody"}); status.Code(err) != codes.NotFound {
			t.Errorf("unknown lead: %v", err)
		}
		res, err := c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{Statuses: []eventv1.LeadStatus{eventv1.LeadStatus_LEAD_STATUS_WON}})
		if err != nil || leadIDs(res.GetLeads()) != "l6 l1" || res.GetNextPageToken() != "" {
			t.Errorf("won leads: %v %v", res, err)
		}
		res, err = c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{CampaignId: "webinar"})
		if err != nil || leadIDs(res.GetLeads()) != "l5 l1" {
			t.Errorf("touched by webinar: %v %v", res, err)
		}
		// Domain and country in any case, as intake takes them.
		res, err = c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{EmailDomain: " Delta.EXAMPLE", Country: "de"})
		if err != nil || leadIDs(res.GetLeads()) != "l9 l4" {
			t.Errorf("delta.example in DE: %v %v", res, err)
		}
		if _, err := c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{Country: " "}); status.Code(err) != codes.InvalidArgument ||
			!strings.Contains(err.Error(), "country") {
			t.Errorf("a blank country: %v, want INVALID_ARGUMENT naming country, not every lead", err)
		}
		res, err = c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{Segment: "mid", RepId: "ann"})
		if err != nil || leadIDs(res.GetLeads()) != "l7 l1" {
			t.Errorf("mid, ann: %v %v", res, err)
		}
		// Before a rep: only l8, an MQL since February, waits for routing,
		// long past its deadline.
		qs, err := c.GetQueues(ctx, &projectorv1.GetQueuesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if q := qs.GetQueues(); len(q) != 1 || q[0].GetQueueId() != "routing" || q[0].GetStatus() != eventv1.LeadStatus_LEAD_STATUS_MQL ||
			q[0].GetLeads() != 1 || q[0].GetOverdue() != 1 || q[0].GetFirstDeadline() == nil {
			t.Errorf("queues: %v", q)
		}
		if qs, err := c.GetQueues(ctx, &projectorv1.GetQueuesRequest{Segment: "no-such-segment"}); err != nil || len(qs.GetQueues()) != 0 {
			t.Errorf("queues of an unknown segment: %v %v", qs, err)
		}
		// Owned by a queue now: rejected l2 and lost l5 wait for nurture,
		// l8 for routing; l4 is NEW, qualification's.
		for queue, want := range map[string]string{"nurture": "l5 l2", "routing": "l8", "qualification": "l4", "manager:emea": ""} {
			res, err = c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{QueueId: queue})
			if err != nil || leadIDs(res.GetLeads()) != want {
				t.Errorf("in queue %s: %v %v, want %q", queue, leadIDs(res.GetLeads()), err, want)
			}
		}
		// Pages of 4 over all nine, newest capture first.
		var all []string
		token := ""
		for range 3 {
			res, err := c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{PageSize: 4, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range res.GetLeads() {
				all = append(all, l.GetLeadId())
			}
			token = res.GetNextPageToken()
		}
		if want := []string{"l9", "l7", "l6", "l5", "l4", "l3", "l2", "l1", "l8"}; !slices.Equal(all, want) || token != "" {
			t.Errorf("pages: %v (token %q), want %v", all, token, want)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			call func() error
		}{
			{"attribution", func() error {
				_, err := c.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{})
				return err
			}},
			{"currency", func() error {
				_, err := c.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Attribution: 1, Currency: "euro"})
				return err
			}},
			{"period.to", func() error {
				_, err := c.GetFunnel(ctx, &projectorv1.GetFunnelRequest{Period: &projectorv1.Period{From: timestamppb.New(march.to), To: timestamppb.New(march.from)}})
				return err
			}},
			{"page_token", func() error {
				_, err := c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{PageToken: "!!"})
				return err
			}},
			{"page_token", func() error { // a time PostgreSQL has no timestamp for
				_, err := c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte("-300000000000000000|l1"))})
				return err
			}},
			{"period.from", func() error {
				_, err := c.GetFunnel(ctx, &projectorv1.GetFunnelRequest{Period: &projectorv1.Period{From: &timestamppb.Timestamp{Seconds: -300000000000}}})
				return err
			}},
			{"page_size", func() error {
				_, err := c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{PageSize: 501})
				return err
			}},
			{"lead_id", func() error {
				_, err := c.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: "lead.>"})
				return err
			}},
			{"lead_id", func() error { // PostgreSQL text takes no NUL
				_, err := c.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: "l1\x00"})
				return err
			}},
			{"group_by", func() error {
				_, err := c.GetFunnel(ctx, &projectorv1.GetFunnelRequest{GroupBy: 99})
				return err
			}},
			// Text PostgreSQL takes no NUL in, nor bytes that are not UTF-8:
			// refused naming the field, not an Internal from the query.
			{"segment", func() error {
				_, err := c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{Segment: "a\x00"})
				return err
			}},
			{"country", func() error {
				_, err := c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{Country: "de\x1b"})
				return err
			}},
			{"page_token", func() error { // regexp reads \xff as U+FFFD, which a lead id may hold
				_, err := c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte("0|\xff"))})
				return err
			}},
			{"source", func() error {
				_, err := c.GetFunnel(ctx, &projectorv1.GetFunnelRequest{Source: "x\x00"})
				return err
			}},
			{"segment", func() error {
				_, err := c.GetSLACompliance(ctx, &projectorv1.GetSLAComplianceRequest{Segment: "emea\x00"})
				return err
			}},
			{"segment", func() error {
				_, err := c.GetPerformance(ctx, &projectorv1.GetPerformanceRequest{Segment: "emea\x00"})
				return err
			}},
			{"segment", func() error {
				_, err := c.GetQueues(ctx, &projectorv1.GetQueuesRequest{Segment: "emea\x00"})
				return err
			}},
		} {
			err := tc.call()
			v := grpcserver.Violations(err)
			if status.Code(err) != codes.InvalidArgument || len(v) != 1 || v[0].Field != tc.name {
				t.Errorf("%s: %v %v", tc.name, err, v)
			}
		}
	})
}

func checkFunnel(t *testing.T, r *projectorv1.FunnelRow, key string, captured, mql, accepted, opp, won, recycled, disq int64) {
	t.Helper()
	got := []int64{r.GetCaptured(), r.GetMql(), r.GetAccepted(), r.GetOpportunity(), r.GetWon(), r.GetRecycled(), r.GetDisqualified()}
	if want := []int64{captured, mql, accepted, opp, won, recycled, disq}; r.GetKey() != key || !slices.Equal(got, want) {
		t.Errorf("funnel row %q %v, want %q %v", r.GetKey(), got, key, want)
	}
}

func ids(r *projectorv1.GetCampaignReportResponse) string {
	var out []string
	for _, c := range r.GetCampaigns() {
		out = append(out, c.GetCampaignId())
	}
	return join(out)
}

func leadIDs(ls []*projectorv1.Lead) string {
	var out []string
	for _, l := range ls {
		out = append(out, l.GetLeadId())
	}
	return join(out)
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

type row struct {
	spend, leads, mqls, accepted, opps, pipeline, wonDeals, won float64
	cpl, cpa, cpw, roi                                          float64
	spendUndef, cplUndef, cpaUndef, cpwUndef, roiUndef          bool
	other                                                       []string // other currencies
}

func checkCampaign(t *testing.T, r *projectorv1.CampaignRow, m projectorv1.AttributionModel, w row) {
	t.Helper()
	for _, f := range []struct {
		name  string
		fig   *projectorv1.Figure
		want  float64
		undef bool
	}{
		{"spend", r.GetSpend(), w.spend, w.spendUndef}, {"leads", r.GetLeads(), w.leads, false}, {"mqls", r.GetMqls(), w.mqls, false},
		{"accepted", r.GetAccepted(), w.accepted, false}, {"opportunities", r.GetOpportunities(), w.opps, false},
		{"pipeline", r.GetPipeline(), w.pipeline, false}, {"won_deals", r.GetWonDeals(), w.wonDeals, false},
		{"won_revenue", r.GetWonRevenue(), w.won, false}, {"cost_per_lead", r.GetCostPerLead(), w.cpl, w.cplUndef},
		{"cost_per_accepted", r.GetCostPerAccepted(), w.cpa, w.cpaUndef}, {"cost_per_won_deal", r.GetCostPerWonDeal(), w.cpw, w.cpwUndef},
		{"roi", r.GetRoi(), w.roi, w.roiUndef},
	} {
		if f.fig.GetAttribution() != m {
			t.Errorf("%s %s: stamped %v, want %v", r.GetCampaignId(), f.name, f.fig.GetAttribution(), m)
		}
		if f.fig.GetUndefined() != f.undef || (!f.undef && !near(f.fig.GetValue(), f.want)) {
			t.Errorf("%s %s: %v (undefined %v), want %v (undefined %v)", r.GetCampaignId(), f.name, f.fig.GetValue(), f.fig.GetUndefined(), f.want, f.undef)
		}
	}
	if r.GetAttribution() != m {
		t.Errorf("%s stamped %v", r.GetCampaignId(), r.GetAttribution())
	}
	if fmt.Sprint(r.GetOtherCurrencies()) != fmt.Sprint(w.other) {
		t.Errorf("%s other currencies %v, want %v", r.GetCampaignId(), r.GetOtherCurrencies(), w.other)
	}
}

type sales struct {
	assigned, accepted, within, acceptDue, contacted, attemptWithin, contactDue, breaches int64
	avgAccept, medAccept, avgAttempt, attemptsPerLead                                     float64
}

func checkSales(t *testing.T, r *projectorv1.SalesSLARow, key, team string, w sales) {
	t.Helper()
	if r.GetKey() != key || r.GetTeamId() != team || r.GetAssigned() != w.assigned || r.GetAccepted() != w.accepted ||
		r.GetAcceptedWithinSla() != w.within || r.GetContacted() != w.contacted || r.GetFirstAttemptWithinSla() != w.attemptWithin ||
		r.GetBreaches() != w.breaches || !near(r.GetAvgHoursToAccept(), w.avgAccept) || !near(r.GetMedianHoursToAccept(), w.medAccept) ||
		!near(r.GetAvgHoursToFirstAttempt(), w.avgAttempt) || !near(r.GetAttemptsPerLead(), w.attemptsPerLead) ||
		r.GetAcceptDue() != w.acceptDue || r.GetContactDue() != w.contactDue ||
		!near(r.GetAcceptedWithinSlaRate(), ratioOf(w.within, w.acceptDue)) ||
		!near(r.GetFirstAttemptWithinSlaRate(), ratioOf(w.attemptWithin, w.contactDue)) {
		t.Errorf("sales row %q: %v, want team %q %+v", key, r, team, w)
	}
}

func ratioOf(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func checkMarketing(t *testing.T, r *projectorv1.MarketingSLARow, period, segment string, mqls, accepted, rejected, opps, due int64) {
	t.Helper()
	if r.GetPeriod() != period || r.GetSegment() != segment || r.GetMqls() != mqls || r.GetAccepted() != accepted ||
		r.GetRejected() != rejected || r.GetOpportunities() != opps || r.GetAcceptDue() != due ||
		!near(r.GetAcceptanceRate(), ratioOf(accepted, due)) || !near(r.GetMqlToOpportunityRate(), ratioOf(opps, mqls)) {
		t.Errorf("marketing row %v, want %s %q %d %d %d %d due %d", r, period, segment, mqls, accepted, rejected, opps, due)
	}
}
