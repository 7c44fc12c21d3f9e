package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// A report left to pick its currency looks only at the money it shows: a
// campaign cost in USD makes the campaign report ask which currency, but
// not the performance or account reports, whose deals are all in EUR
// (they used to refuse too). Nor does a USD deal of a lead merged away,
// but for the performance report, which counts it (the deal was made).
func TestReportsPickTheCurrencyOfTheirOwnMoney(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	w.fixture(t)
	w.other(t, eventstore.CampaignSubject("events"), -44, &eventv1.CampaignCostRecorded{CampaignId: "events", CostId: "usd-1",
		Amount: &eventv1.Money{Currency: "USD", MinorUnits: 30000}})
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	w.lead(t, "u1", 1, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"), Attribution: &eventv1.Attribution{Source: "web-form"}})
	w.lead(t, "u1", 2, cmd(lifecycle.Qualify), &eventv1.LeadQualified{Score: 80, Threshold: 70})
	w.lead(t, "u1", 3, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}},
		&eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Segment: "mid"})
	w.lead(t, "u1", 4, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann", Segment: "mid"})
	w.lead(t, "u1", 5, cmd(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "ou1", Amount: &eventv1.Money{Currency: "USD", MinorUnits: 100},
		RepId: "ann", Segment: "mid", Stage: "discovery"})
	w.lead(t, "u1", 6, lifecycle.Command{Name: lifecycle.Lose, Reason: "dupe"}, &eventv1.DealLost{OpportunityId: "ou1", Reason: "dupe", RepId: "ann", Segment: "mid"})
	w.lead(t, "u1", 7, lifecycle.Command{Name: lifecycle.Merge, Reason: "l4"}, &eventv1.LeadMerged{SurvivorLeadId: "l4", AbsorbedLeadId: "u1", Reason: "same person"})
	w.projected(t, w.dsn)
	ctx := ctxT(t)

	_, err := s.client.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "EUR, USD") {
		t.Fatalf("campaign report without a currency: %v", err)
	}
	usd, err := s.client.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH, Currency: "USD"})
	if err != nil || usd.GetCurrency() != "USD" {
		t.Fatalf("campaign report in USD: %v %v", usd, err)
	}
	_, err = s.client.GetPerformance(ctx, &projectorv1.GetPerformanceRequest{})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "EUR, USD") {
		t.Fatalf("performance without a currency: %v, want it to ask (the merged lead's USD deal counts there)", err)
	}
	accounts, err := s.client.GetAccounts(ctx, &projectorv1.GetAccountsRequest{})
	if err != nil || accounts.GetCurrency() != "EUR" {
		t.Fatalf("accounts without a currency: %v %v", accounts, err)
	}
}

// A report that names no currency looks only at the money of its period:
// a USD cost line of 2025 and a USD deal of a lead captured then (in
// March 2026's segment) leave March 2026's reports in EUR, and a report
// over both years still asks.
func TestReportsPickTheCurrencyOfTheirPeriod(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	w.fixture(t)
	old := -24 * 300.0 // May 2025
	w.other(t, eventstore.CampaignSubject("old-usd"), old, &eventv1.CampaignCostRecorded{CampaignId: "old-usd", CostId: "u1",
		Amount: &eventv1.Money{Currency: "USD", MinorUnits: 30000}, PeriodStart: timestamppb.New(w.at(old))})
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	w.lead(t, "u2", old, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"), Attribution: &eventv1.Attribution{Source: "web-form"}})
	w.lead(t, "u2", old+1, cmd(lifecycle.Qualify), &eventv1.LeadQualified{Score: 80, Threshold: 70})
	w.lead(t, "u2", old+2, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}},
		&eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Segment: "mid"})
	w.lead(t, "u2", old+3, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann", Segment: "mid"})
	w.lead(t, "u2", old+4, cmd(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "ou2", Amount: &eventv1.Money{Currency: "USD", MinorUnits: 100},
		RepId: "ann", Segment: "mid", Stage: "discovery"})
	w.projected(t, w.dsn)
	ctx := ctxT(t)

	march := marchPeriod()
	both := &projectorv1.Period{From: timestamppb.New(w.at(old - 1)), To: march.GetTo()}
	for _, tc := range []struct {
		name string
		call func(p *projectorv1.Period) (string, error)
	}{
		{"campaign report", func(p *projectorv1.Period) (string, error) {
			r, err := s.client.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Period: p, Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH})
			return r.GetCurrency(), err
		}},
		{"performance", func(p *projectorv1.Period) (string, error) {
			r, err := s.client.GetPerformance(ctx, &projectorv1.GetPerformanceRequest{Period: p})
			return r.GetCurrency(), err
		}},
		{"accounts", func(p *projectorv1.Period) (string, error) {
			r, err := s.client.GetAccounts(ctx, &projectorv1.GetAccountsRequest{Period: p})
			return r.GetCurrency(), err
		}},
	} {
		if cur, err := tc.call(march); err != nil || cur != "EUR" {
			t.Errorf("%s of March 2026 without a currency: %q, %v; want EUR", tc.name, cur, err)
		}
		if _, err := tc.call(both); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "EUR, USD") {
			t.Errorf("%s over 2025 and March 2026 without a currency: %v; want it to ask", tc.name, err)
		}
	}
}

// A report counts the deals in its currency, as it sums their amounts:
// in EUR, a webinar lead's deal won in USD is no won deal (it made one of
// 2, and the cost per won deal half), and an open USD opportunity is no
// open opportunity of acct-1; in USD they are. Leads, MQLs, accepted and
// opportunities count leads by stage, in any currency.
func TestDealCountsFollowTheReportCurrency(t *testing.T) {
	w := newWorld(t)
	s, base := w.startDashboard(t)
	w.fixture(t)
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	usd := func(cents int64) *eventv1.Money { return &eventv1.Money{Currency: "USD", MinorUnits: cents} }
	for _, id := range []string{"ux", "uy"} {
		w.lead(t, id, 1, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"),
			Profile: &eventv1.Profile{EmailDomain: id + ".example"}, Attribution: &eventv1.Attribution{Source: "webinar", CampaignId: "webinar"}})
		w.lead(t, id, 2, cmd(lifecycle.Qualify), &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 70})
		w.lead(t, id, 3, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}},
			&eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Segment: "mid", AccountId: "acct-1",
				AcceptBy: timestamppb.New(w.at(27))})
		w.lead(t, id, 4, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann", Segment: "mid", ContactBy: timestamppb.New(w.at(50))})
	}
	w.lead(t, "ux", 5, cmd(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "ou", Amount: usd(900000), RepId: "ann", Segment: "mid"})
	w.lead(t, "ux", 6, cmd(lifecycle.Win), &eventv1.DealWon{OpportunityId: "ou", RepId: "ann", Segment: "mid"})
	w.lead(t, "uy", 5, cmd(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "oy", Amount: usd(500000), RepId: "ann", Segment: "mid"})
	// events: an open USD opportunity, no deal won in USD.
	w.lead(t, "uz", 1, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"),
		Profile: &eventv1.Profile{EmailDomain: "uz.example"}, Attribution: &eventv1.Attribution{Source: "events", CampaignId: "events"}})
	w.lead(t, "uz", 2, cmd(lifecycle.Qualify), &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 70})
	w.lead(t, "uz", 3, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}},
		&eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Segment: "mid", AcceptBy: timestamppb.New(w.at(27))})
	w.lead(t, "uz", 4, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann", Segment: "mid", ContactBy: timestamppb.New(w.at(50))})
	w.lead(t, "uz", 5, cmd(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "oz", Amount: usd(700000), RepId: "ann", Segment: "mid"})
	w.projected(t, w.dsn)
	ctx := ctxT(t)

	first := projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH
	campaign := func(id, cur string) *projectorv1.CampaignRow {
		t.Helper()
		r, err := s.client.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Period: marchPeriod(), Attribution: first, Currency: cur})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range r.GetCampaigns() {
			if c.GetCampaignId() == id {
				return c
			}
		}
		t.Fatalf("no %s row in %s: %v", id, cur, r)
		return nil
	}
	webinar := func(cur string) *projectorv1.CampaignRow { t.Helper(); return campaign("webinar", cur) }
	// An open opportunity in another currency is named, and undefines
	// nothing: no figure would mix it in.
	if ev := campaign("events", "EUR"); fmt.Sprint(ev.GetOtherCurrencies()) != "[USD]" || ev.GetRoi().GetUndefined() != (ev.GetSpend().GetValue() == 0) ||
		ev.GetCostPerWonDeal().GetUndefined() != (ev.GetWonDeals().GetValue() == 0) {
		t.Errorf("events in EUR with an open USD opportunity: %v", ev)
	}
	// webinar: l1 (€10,000, won €12,000), ux (won $9,000), uy (open $5,000);
	// spend €1,500. Each currency's cost per won deal and ROI would leave
	// the other's money out, so neither gives them; in USD, with no spend
	// in it, no spend figure either.
	checkCampaign(t, webinar("EUR"), first, row{spend: 150000, leads: 3, mqls: 3, accepted: 3, opps: 3, pipeline: 1000000,
		wonDeals: 1, won: 1200000, cpl: 50000, cpa: 50000, cpwUndef: true, roiUndef: true, other: []string{"USD"}})
	checkCampaign(t, webinar("USD"), first, row{leads: 3, mqls: 3, accepted: 3, opps: 3, pipeline: 1400000,
		wonDeals: 1, won: 900000, spendUndef: true, cplUndef: true, cpaUndef: true, cpwUndef: true, roiUndef: true, other: []string{"EUR"}})

	// acct-1: l1 and l6 (won €12,000 and €3,000), ux, uy.
	for _, c := range []struct {
		cur                      string
		open, pipeline, won, rev int64
	}{{"EUR", 0, 0, 2, 1500000}, {"USD", 1, 500000, 1, 900000}} {
		r, err := s.client.GetAccounts(ctx, &projectorv1.GetAccountsRequest{Period: marchPeriod(), Currency: c.cur})
		if err != nil {
			t.Fatal(err)
		}
		a := r.GetAccounts()[0]
		if a.GetAccountId() != "acct-1" || a.GetLeads() != 4 || a.GetOpenOpportunities() != c.open || a.GetPipeline() != c.pipeline ||
			a.GetWonDeals() != c.won || a.GetWonRevenue() != c.rev {
			t.Errorf("acct-1 in %s: %v, want 4 leads, %d open, pipeline %d, %d won, revenue %d", c.cur, a, c.open, c.pipeline, c.won, c.rev)
		}
	}

	// The dashboard's API names its own words for a model it does not know
	// (it reads the API's enum names too, in any case).
	for _, path := range []string{"api/campaigns?attribution=lineer&currency=EUR", "api/leads?figure=campaign&campaign=webinar&attribution=nope&currency=EUR"} {
		code, out := testenv.HTTPJSON(t, "GET", base+path, "")
		if code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(out), "must be first, last or linear") {
			t.Fatalf("%s: %d %v", path, code, out)
		}
	}

	// The won deals open the leads that won in the report's currency.
	for cur, want := range map[string]string{"EUR": "l1", "USD": "ux"} {
		q := url.Values{"figure": {"campaign"}, "campaign": {"webinar"}, "attribution": {"first"}, "measure": {"won"}, "currency": {cur},
			"from": {"2026-03-01"}, "to": {"2026-04-01"}}
		code, out := testenv.HTTPJSON(t, "GET", base+"api/leads?"+q.Encode(), "")
		if code != http.StatusOK {
			t.Fatalf("%s: %d %v", cur, code, out)
		}
		var ids []string
		for _, l := range out["leads"].([]any) {
			ids = append(ids, l.(map[string]any)["lead_id"].(string))
		}
		if join(ids) != want {
			t.Errorf("webinar's won deals in %s: %v, want %s", cur, ids, want)
		}
	}
}

// An erased lead's open deal is no open deal of its account: nobody can
// close it any more, so counting it would keep it in the open pipeline
// for good.
func TestAnErasedLeadsDealIsNotOpen(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	for _, id := range []string{"z1", "z2"} {
		w.lead(t, id, 1, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"), Attribution: &eventv1.Attribution{Source: "web-form"},
			Profile: &eventv1.Profile{EmailDomain: "zeta.example"}})
		w.lead(t, id, 2, cmd(lifecycle.Qualify), &eventv1.LeadQualified{Score: 80, Threshold: 70})
		w.lead(t, id, 3, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}},
			&eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Segment: "mid"})
		w.lead(t, id, 4, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann", Segment: "mid"})
		w.lead(t, id, 5, cmd(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "o-" + id, Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 1_000_000},
			RepId: "ann", Segment: "mid", Stage: "discovery"})
	}
	w.lead(t, "z2", 6, lifecycle.Command{Name: lifecycle.Erase, Reason: "access request"}, &eventv1.LeadErased{Reason: "access request"})
	w.projected(t, w.dsn)
	r, err := s.client.GetAccounts(ctxT(t), &projectorv1.GetAccountsRequest{Currency: "EUR"})
	if err != nil || len(r.GetAccounts()) != 1 {
		t.Fatalf("accounts: %v %v", r, err)
	}
	if a := r.GetAccounts()[0]; a.GetAccountId() != "zeta.example" || a.GetLeads() != 2 || a.GetOpenOpportunities() != 1 || a.GetPipeline() != 1_000_000 {
		t.Errorf("zeta.example: %v, want z1's open deal only", a)
	}
}

// A campaign report picked in one currency offers the others its
// campaigns hold money in: the page has a way to them besides the link.
func TestDashboardSwitchesTheCampaignsCurrency(t *testing.T) {
	chromium := findChromium(t)
	w := newWorld(t)
	_, base := w.startDashboard(t)
	w.fixture(t)
	w.other(t, eventstore.CampaignSubject("events"), -44, &eventv1.CampaignCostRecorded{CampaignId: "events", CostId: "usd-1",
		Amount: &eventv1.Money{Currency: "USD", MinorUnits: 30000}})
	w.projected(t, w.dsn)
	b := newBrowser(t, chromium, base)
	b.open(t, base+"#/?currency=EUR")
	b.waitFor(t, `document.querySelector('[data-k="campaign.currencies"] button') !== null`, 20*time.Second)
	b.click(t, `[data-k="campaign.currencies"] button`)
	b.waitFor(t, `location.hash.includes("currency=USD") && document.body.dataset.route === location.hash`, 20*time.Second)
	b.expectContains(t, "campaign.stamp", "currency USD")
	b.close(t)
}
