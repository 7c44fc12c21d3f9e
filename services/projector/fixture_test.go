package main

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// The small data set every report figure is checked against by hand.
// t0 is Monday 2026-03-02 09:00 UTC; hours are from t0. March 2026 holds
// seven live leads (l1 to l7); l8 was captured in February; l9 was merged
// into l4.
//
//	lead  source    touches before its opportunity   path
//	l1    webinar   webinar (capture), search (h1)   MQL h2, ann (mid, acct-1) h3, accepted h5, attempt h6,
//	                                                 opportunity o1 €10,000 h10, (events touch h11), won €12,000 h58
//	l2    web-form  search                           MQL h2, bob (mid) h3, ACCEPT breach h27, rejected h30
//	l3    web-form  search                           disqualified h3
//	l4    web-form  search                           stays NEW
//	l5    event     events, webinar (h5)             MQL h6, ann (ent) h7, accepted late h33, attempts h40 h41,
//	                                                 opportunity o5 €5,000 h50, lost h74
//	l6    event     events                           MQL h6, bob (ent, acct-1) h7, reassigned to ann h9,
//	                                                 accepted h10, attempt h12, opportunity o6 €3,000 h20, won h116
//	l7    web-form  none                             MQL h7, ann (mid) h8, accepted h9, opportunity o7 €2,000 h10 (open)
//	l8    web-form  search                           February: captured, MQL
//	l9    web-form  search                           merged into l4 h9
//
// Spend in March: webinar €1,000 + €500 (a repeated cost line ignored),
// search €4,000 (and €1,000 in February); events nothing.
func (w *world) fixture(t testing.TB) {
	t.Helper()
	eur := func(cents int64) *eventv1.Money { return &eventv1.Money{Currency: "EUR", MinorUnits: cents} }
	ts := func(h float64) *timestamppb.Timestamp { return timestamppb.New(w.at(h)) }
	rep := func(id string) lifecycle.Owner { return lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: id} }
	owner := func(id string) *eventv1.Owner { return &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: id} }
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }

	// Reference data.
	w.other(t, eventstore.CampaignSubject("webinar"), -48, &eventv1.CampaignRegistered{CampaignId: "webinar", Name: "Q1 webinar",
		Channel: eventv1.Channel_CHANNEL_WEBINAR, Budget: eur(200000)})
	w.other(t, eventstore.CampaignSubject("search"), -48, &eventv1.CampaignRegistered{CampaignId: "search", Name: "March search",
		Channel: eventv1.Channel_CHANNEL_PAID_SEARCH})
	w.other(t, eventstore.CampaignSubject("events"), -48, &eventv1.CampaignRegistered{CampaignId: "events", Name: "Field events",
		Channel: eventv1.Channel_CHANNEL_EVENT})
	march, feb := timestamppb.New(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)), timestamppb.New(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	w.other(t, eventstore.CampaignSubject("webinar"), -47, &eventv1.CampaignCostRecorded{CampaignId: "webinar", CostId: "c1", Amount: eur(100000), PeriodStart: march})
	w.other(t, eventstore.CampaignSubject("webinar"), -46, &eventv1.CampaignCostRecorded{CampaignId: "webinar", CostId: "c2", Amount: eur(50000),
		PeriodStart: timestamppb.New(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC))})
	w.other(t, eventstore.CampaignSubject("webinar"), -45, &eventv1.CampaignCostRecorded{CampaignId: "webinar", CostId: "c1", Amount: eur(99900), PeriodStart: march})
	w.other(t, eventstore.CampaignSubject("search"), -47, &eventv1.CampaignCostRecorded{CampaignId: "search", CostId: "s1", Amount: eur(400000), PeriodStart: march})
	w.other(t, eventstore.CampaignSubject("search"), -46, &eventv1.CampaignCostRecorded{CampaignId: "search", CostId: "s0", Amount: eur(100000), PeriodStart: feb})
	routing := eventstore.ModelSubject("routing")
	for i, c := range []*eventv1.RoutingChanged{
		{Change: &eventv1.RoutingChanged_Team{Team: &eventv1.SalesTeam{TeamId: "east", Name: "East", ManagerRepId: "ann"}}},
		{Change: &eventv1.RoutingChanged_Team{Team: &eventv1.SalesTeam{TeamId: "west", Name: "West"}}},
		{Change: &eventv1.RoutingChanged_Rep{Rep: &eventv1.Rep{RepId: "ann", Name: "Ann", TeamId: "east", Capacity: 10, Active: true}}},
		{Change: &eventv1.RoutingChanged_Rep{Rep: &eventv1.Rep{RepId: "bob", Name: "Bob", TeamId: "west", Capacity: 10, Active: true}}},
		{Change: &eventv1.RoutingChanged_Account{Account: &eventv1.Account{AccountId: "acct-1", Name: "Analytical GmbH", Domains: []string{"analytical.example"}}}},
	} {
		c.Version = uint32(i + 1)
		w.other(t, routing, -40, c)
	}
	w.other(t, eventstore.ModelSubject("sla-targets"), -40, &eventv1.MarketingTargetSet{Target: &eventv1.MarketingTarget{
		Period: "2026-03", Segment: "mid", MinMqls: 4, MinAcceptanceRateBps: 5000, MinMqlToOpportunityBps: 3000}})

	capture := func(id string, h float64, source, campaign, domain string) {
		w.lead(t, id, h, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("sealed"),
			Profile:     &eventv1.Profile{EmailDomain: domain, Country: "DE", Industry: "software", Seniority: eventv1.Seniority_SENIORITY_VP, Employees: 300},
			Attribution: &eventv1.Attribution{Source: source, CampaignId: campaign}})
	}
	activity := func(id string, h float64, campaign string) {
		w.lead(t, id, h, cmd(lifecycle.RecordActivity), &eventv1.ActivityRecorded{ActivityId: id + campaign, Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT, CampaignId: campaign})
	}
	qualify := func(id string, h float64) {
		w.lead(t, id, h, cmd(lifecycle.Qualify), &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 70})
	}
	assign := func(id string, h float64, who, segment, account string, acceptBy float64) {
		w.lead(t, id, h, lifecycle.Command{Name: lifecycle.Assign, Owner: rep(who)}, &eventv1.LeadAssigned{Owner: owner(who), Segment: segment,
			AccountId: account, AcceptBy: ts(acceptBy)})
	}
	accept := func(id string, h float64, who, segment string, contactBy float64) {
		w.lead(t, id, h, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: who, Segment: segment, ContactBy: ts(contactBy)})
	}
	attempt := func(id string, h float64, who string, n int32) {
		w.lead(t, id, h, cmd(lifecycle.LogContact), &eventv1.ContactAttempted{RepId: who, Attempt: n, Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE})
	}
	convert := func(id string, h float64, opp string, cents int64, who, segment string) {
		w.lead(t, id, h, cmd(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: opp, Amount: eur(cents), RepId: who, Segment: segment, Stage: "discovery"})
	}

	capture("l1", 0, "webinar", "webinar", "analytical.example")
	activity("l1", 1, "search")
	qualify("l1", 2)
	assign("l1", 3, "ann", "mid", "acct-1", 27)
	accept("l1", 5, "ann", "mid", 53)
	attempt("l1", 6, "ann", 1)
	convert("l1", 10, "o1", 1000000, "ann", "mid")
	activity("l1", 11, "events")
	w.lead(t, "l1", 58, cmd(lifecycle.Win), &eventv1.DealWon{OpportunityId: "o1", Amount: eur(1200000), RepId: "ann", Segment: "mid"})

	capture("l2", 1, "web-form", "search", "beta.example")
	qualify("l2", 2)
	assign("l2", 3, "bob", "mid", "", 27)
	w.lead(t, "l2", 27, cmd(lifecycle.BreachSLA), &eventv1.SLABreached{Sla: eventv1.SLAKind_SLA_KIND_ACCEPT, Owner: owner("bob"), DueAt: ts(27), Segment: "mid"})
	w.lead(t, "l2", 30, lifecycle.Command{Name: lifecycle.Reject, Reason: "not a fit"}, &eventv1.LeadRejected{RepId: "bob",
		Reason: eventv1.RejectReason_REJECT_REASON_NOT_A_FIT, Segment: "mid"})

	capture("l3", 2, "web-form", "search", "gamma.example")
	w.lead(t, "l3", 3, lifecycle.Command{Name: lifecycle.Disqualify, Reason: "competitor"}, &eventv1.LeadDisqualified{RuleId: "competitor", Reason: "competitor"})

	capture("l4", 3, "web-form", "search", "delta.example")

	capture("l5", 4, "event", "events", "epsilon.example")
	activity("l5", 5, "webinar")
	qualify("l5", 6)
	assign("l5", 7, "ann", "ent", "", 31)
	accept("l5", 33, "ann", "ent", 35)
	attempt("l5", 40, "ann", 1)
	attempt("l5", 41, "ann", 2)
	convert("l5", 50, "o5", 500000, "ann", "ent")
	w.lead(t, "l5", 74, lifecycle.Command{Name: lifecycle.Lose, Reason: "budget"}, &eventv1.DealLost{OpportunityId: "o5", Reason: "budget", RepId: "ann", Segment: "ent"})

	capture("l6", 5, "event", "events", "zeta.example")
	qualify("l6", 6)
	assign("l6", 7, "bob", "ent", "acct-1", 31)
	w.lead(t, "l6", 9, lifecycle.Command{Name: lifecycle.Reassign, Owner: rep("ann")}, &eventv1.LeadReassigned{From: owner("bob"), To: owner("ann"),
		Cause: eventv1.ReassignCause_REASSIGN_CAUSE_MANUAL, AcceptBy: ts(33), Segment: "ent"})
	accept("l6", 10, "ann", "ent", 58)
	attempt("l6", 12, "ann", 1)
	convert("l6", 20, "o6", 300000, "ann", "ent")
	w.lead(t, "l6", 116, cmd(lifecycle.Win), &eventv1.DealWon{OpportunityId: "o6", RepId: "ann", Segment: "ent"})

	capture("l7", 6, "web-form", "", "eta.example")
	qualify("l7", 7)
	assign("l7", 8, "ann", "mid", "", 32)
	accept("l7", 9, "ann", "mid", 57)
	convert("l7", 10, "o7", 200000, "ann", "mid")

	capture("l8", -14*24, "web-form", "search", "theta.example")
	qualify("l8", -14*24+1)

	capture("l9", 8, "web-form", "search", "delta.example")
	w.lead(t, "l9", 9, lifecycle.Command{Name: lifecycle.Merge, Reason: "l4"}, &eventv1.LeadMerged{SurvivorLeadId: "l4", AbsorbedLeadId: "l9", Reason: "same person"})
}

// march is the fixture's main period.
var march = &struct{ from, to time.Time }{time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}
