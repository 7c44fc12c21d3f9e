package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
)

// The dashboard in a real headless Chromium against the real service: the
// page loads without errors or calls to other hosts, its figures are the
// query API's, a lead captured meanwhile shows without a reload (the delay
// is logged; the aim is two seconds), and a lead's journey lists its stream events in order.
// Screenshots go to $LEADFLOW_ARTIFACTS (else artifacts/screenshots/).
func TestDashboardInABrowser(t *testing.T) {
	chromium := findChromium(t)
	w := newWorld(t)
	s, base := w.startDashboard(t)
	w.fixture(t)
	w.dashboardExtras(t)
	w.projected(t, w.dsn)
	c, ctx := s.client, ctxT(t)

	b := newBrowser(t, chromium, base)
	march := "from=2026-03-01&to=2026-04-01"
	b.open(t, base+"#/?"+march)

	t.Run("figures equal the query API", func(t *testing.T) {
		f, err := c.GetFunnel(ctx, &projectorv1.GetFunnelRequest{Period: marchPeriod()})
		if err != nil {
			t.Fatal(err)
		}
		tot := f.GetTotal()
		for k, v := range map[string]int64{"captured": tot.GetCaptured(), "mql": tot.GetMql(), "accepted": tot.GetAccepted(),
			"opportunity": tot.GetOpportunity(), "won": tot.GetWon(), "recycled": tot.GetRecycled(), "disqualified": tot.GetDisqualified()} {
			b.expectText(t, "funnel."+k, count(float64(v)))
		}

		r, err := c.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Period: marchPeriod(),
			Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.GetCampaigns()) < 3 {
			t.Fatalf("the fixture has three campaigns: %v", r.GetCampaigns())
		}
		var order []string
		for _, row := range r.GetCampaigns() {
			id, cur := row.GetCampaignId(), r.GetCurrency()
			order = append(order, id)
			k := func(m string) string { return "campaign." + id + "." + m }
			b.expectText(t, k("spend"), money(row.GetSpend().GetValue(), cur))
			b.expectText(t, k("leads"), count(row.GetLeads().GetValue()))
			b.expectText(t, k("mqls"), count(row.GetMqls().GetValue()))
			b.expectText(t, k("accepted"), count(row.GetAccepted().GetValue()))
			b.expectText(t, k("opportunities"), count(row.GetOpportunities().GetValue()))
			b.expectText(t, k("pipeline"), money(row.GetPipeline().GetValue(), cur))
			b.expectText(t, k("won_deals"), count(row.GetWonDeals().GetValue()))
			b.expectText(t, k("won_revenue"), money(row.GetWonRevenue().GetValue(), cur))
			b.expectText(t, k("cost_per_won_deal"), orDash(row.GetCostPerWonDeal(), func(v float64) string { return money(v, cur) }))
			b.expectText(t, k("roi"), orDash(row.GetRoi(), percent))
		}
		if u := r.GetUnattributed(); u.GetLeads().GetValue() > 0 {
			order = append(order, "-") // last: leads no campaign touched
			b.expectText(t, "campaign.-.leads", count(u.GetLeads().GetValue()))
			b.expectText(t, "campaign.-.won_revenue", money(u.GetWonRevenue().GetValue(), r.GetCurrency()))
		}
		// Rows in the API's order: by won revenue.
		got := b.eval(t, `[...document.querySelectorAll('[data-k^="campaign."][data-k$=".spend"]')].map(e => e.dataset.k.split(".")[1])`)
		if want := order; !slices.Equal(got, want) {
			t.Errorf("campaign rows %v, want the API's order %v", got, want)
		}
		b.expectContains(t, "campaign.stamp", "first touch")

		sla, err := c.GetSLACompliance(ctx, &projectorv1.GetSLAComplianceRequest{Period: marchPeriod()})
		if err != nil {
			t.Fatal(err)
		}
		st := sla.GetSalesTotal()
		b.expectText(t, "sales.total.assigned", count(float64(st.GetAssigned())))
		b.expectText(t, "sales.total.accepted", count(float64(st.GetAccepted())))
		b.expectText(t, "sales.total.accepted_within_sla", count(float64(st.GetAcceptedWithinSla())))
		b.expectText(t, "sales.total.accept_rate", percent(st.GetAcceptedWithinSlaRate()))
		b.expectText(t, "sales.total.accept_due", count(float64(st.GetAcceptDue())))
		b.expectText(t, "sales.total.contact_rate", percent(st.GetFirstAttemptWithinSlaRate()))
		b.expectText(t, "sales.total.contact_due", count(float64(st.GetContactDue())))
		b.expectText(t, "sales.total.breaches", count(float64(st.GetBreaches())))
		for _, rep := range sla.GetReps() {
			b.expectText(t, "sales.rep."+rep.GetKey()+".assigned", count(float64(rep.GetAssigned())))
			b.expectText(t, "sales.rep."+rep.GetKey()+".breaches", count(float64(rep.GetBreaches())))
			if rep.GetAcceptDue() > 0 { // else no rate: "–"
				b.expectText(t, "sales.rep."+rep.GetKey()+".accept_rate", percent(rep.GetAcceptedWithinSlaRate()))
			}
		}
		if len(sla.GetMarketing()) == 0 {
			t.Fatal("the fixture has MQLs in March")
		}
		for _, m := range sla.GetMarketing() {
			b.expectText(t, "marketing."+m.GetPeriod()+"."+m.GetSegment()+".mqls", count(float64(m.GetMqls())))
			if m.GetAcceptDue() > 0 { // else no rate: "–"
				b.expectText(t, "marketing."+m.GetPeriod()+"."+m.GetSegment()+".acceptance", percent(m.GetAcceptanceRate()))
			}
		}
		queues, err := c.GetQueues(ctx, &projectorv1.GetQueuesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(queues.GetQueues()) == 0 {
			t.Fatal("the fixture has an MQL waiting for routing")
		}
		for _, q := range queues.GetQueues() {
			b.expectText(t, "queue."+q.GetQueueId()+".leads", count(float64(q.GetLeads())))
			b.expectText(t, "queue."+q.GetQueueId()+".overdue", count(float64(q.GetOverdue())))
		}

		// The sign-off as the stream has it: v1 active, v2 approved by
		// marketing only.
		b.expectContains(t, "model.v1", "active")
		b.expectContains(t, "model.v2", "awaiting sign-off")
		b.expectContains(t, "model.v2.marketing", "✓")
		b.expectContains(t, "model.v2.sales", "○")
		// The what-if the page ran equals one run through the API.
		b.waitFor(t, `document.querySelector('[data-k="whatif"]') !== null`, 30*time.Second)
		id, err := c.StartWhatIf(ctx, &projectorv1.StartWhatIfRequest{ProposedVersion: 2, Period: marchPeriod()})
		if err != nil {
			t.Fatal(err)
		}
		var wi *projectorv1.GetWhatIfResponse
		for wi.GetState() != projectorv1.WhatIfState_WHAT_IF_STATE_DONE {
			if wi, err = c.GetWhatIf(ctx, &projectorv1.GetWhatIfRequest{WhatIfId: id.GetWhatIfId()}); err != nil || wi.GetState() == projectorv1.WhatIfState_WHAT_IF_STATE_FAILED {
				t.Fatal(wi, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		tr := wi.GetTotalRow()
		b.expectContains(t, "whatif", fmt.Sprintf("Total%s%s → %s", count(float64(tr.GetLeads())), count(float64(tr.GetMqlsActive())), count(float64(tr.GetMqlsProposed()))))
		b.screenshot(t, "dashboard-overview")
	})

	t.Run("a figure opens the leads behind it", func(t *testing.T) {
		// The MQLs of March, from the API: leads captured in March that
		// reached MQL, merged ones left out.
		res, err := c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{Captured: marchPeriod(), PageSize: 500})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, l := range res.GetLeads() {
			if l.GetMqlAt() != nil && l.GetMergedInto() == "" {
				want = append(want, l.GetLeadId())
			}
		}
		b.click(t, `[data-k="funnel.mql"]`)
		b.waitFor(t, `location.hash.startsWith("#/leads") && document.querySelector(".leads-panel") !== null`, 10*time.Second)
		got := b.eval(t, `[...document.querySelectorAll(".leads-panel tr[data-lead]")].map(e => e.dataset.lead)`)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("leads behind the MQL figure %v, want %v", got, want)
		}
		b.screenshot(t, "dashboard-leads-behind-mql")

		// A queue's overdue leads: l8, waiting for routing since February.
		b.open(t, base+"#/?"+march)
		b.waitFor(t, `document.querySelector('[data-k="queue.routing.overdue"]') !== null`, 10*time.Second)
		b.click(t, `[data-k="queue.routing.overdue"]`)
		b.waitFor(t, `location.hash.includes("figure=queue") && document.querySelector(".leads-panel") !== null`, 10*time.Second)
		if got := b.eval(t, `[...document.querySelectorAll(".leads-panel tr[data-lead]")].map(e => e.dataset.lead)`); !slices.Equal(got, []string{"l8"}) {
			t.Errorf("leads behind the routing queue's overdue figure %v, want [l8]", got)
		}
		if got := b.eval(t, `[...document.querySelectorAll('[data-k="leads.per"]')].map(e => e.textContent)`); len(got) != 0 {
			t.Errorf("a list of leads behind a count of leads says %q", got)
		}

		// The SLA figures count hand-offs: their list says it lists each
		// lead once.
		b.open(t, base+"#/?"+march)
		b.waitFor(t, `document.querySelector('[data-k="sales.total.assigned"]') !== null`, 10*time.Second)
		b.click(t, `[data-k="sales.total.assigned"]`)
		b.waitFor(t, `location.hash.includes("figure=sales") && document.querySelector(".leads-panel") !== null`, 10*time.Second)
		if got := b.eval(t, `[...document.querySelectorAll('[data-k="leads.per"]')].map(e => e.textContent)`); len(got) != 1 || !strings.Contains(got[0], "each hand-off") {
			t.Errorf("the list behind the hand-offs figure says %q, want that it lists each lead once", got)
		}

		// A funnel row by segment: its list keeps its figure when the period
		// changes, and "back" is the overview it came from, not one
		// filtered to the row's segment.
		b.open(t, base+"#/?"+march+"&group=segment")
		b.waitFor(t, `document.querySelector('[data-k="funnel.segment.mid.mql"]') !== null`, 10*time.Second)
		b.click(t, `[data-k="funnel.segment.mid.mql"]`)
		b.waitFor(t, `location.hash.includes("figure=funnel") && document.querySelector(".leads-panel") !== null`, 10*time.Second)
		b.eval(t, `(() => { const s = document.getElementById("f-preset"); s.value = "this-year"; s.dispatchEvent(new Event("change", {bubbles: true})); return []; })()`)
		b.waitFor(t, `!location.hash.includes("`+march+`") && document.querySelector(".leads-panel") !== null`, 10*time.Second)
		if h := b.eval(t, `[location.hash]`)[0]; !strings.Contains(h, "figure=funnel") || !strings.Contains(h, "measure=mql") || !strings.Contains(h, "row=segment") {
			t.Errorf("the list after a new period: %s, want its figure kept", h)
		}
		// Another segment in the filter bar: that segment's row, not an
		// empty list of leads in two segments at once.
		b.eval(t, `(() => { const s = document.getElementById("f-segment"); s.value = "ent"; s.dispatchEvent(new Event("change", {bubbles: true})); return []; })()`)
		b.waitFor(t, `location.hash.includes("key=ent") && document.querySelector(".leads-panel") !== null`, 10*time.Second)
		if h := b.eval(t, `[location.hash]`)[0]; !strings.Contains(h, "segment=ent") || !strings.Contains(h, "row=segment") || strings.Contains(h, "mid") {
			t.Errorf("the list after another segment: %s, want the ent row", h)
		}
		b.click(t, `[data-k="back"]`)
		b.waitFor(t, `location.hash.startsWith("#/?") && document.querySelector(".leads-panel") === null`, 10*time.Second)
		if h := b.eval(t, `[location.hash]`)[0]; h != "#/?"+march+"&group=segment" {
			t.Errorf("back to %s, want the overview it came from", h)
		}
	})

	// The period's end is picked as the last day counted: the query's
	// "to" is the day after, so a period ending today counts today.
	t.Run("the period runs through the day picked", func(t *testing.T) {
		b.open(t, base+"#/?"+march)
		b.waitFor(t, `document.querySelector('[data-k="funnel.captured"]') !== null`, 10*time.Second)
		if got := b.eval(t, `[document.getElementById("f-to").value]`)[0]; got != "2026-03-31" {
			t.Errorf("the period's last day shows %q, want 2026-03-31", got)
		}
		b.eval(t, `(() => { const s = document.getElementById("f-to"); s.value = "2026-03-15"; s.dispatchEvent(new Event("change", {bubbles: true})); return []; })()`)
		b.waitFor(t, `location.hash.includes("to=2026-03-16")`, 10*time.Second)
	})

	t.Run("a captured lead shows without a reload", func(t *testing.T) {
		b.open(t, base+"#/?"+march)
		before := b.text(t, "funnel.captured")
		b.eval(t, `(window.__sameDocument = true, [])`)
		w.lead(t, "l10", 200, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{SealedContact: []byte("sealed"),
			Profile:     &eventv1.Profile{EmailDomain: "iota.example", Country: "FR", Employees: 40},
			Attribution: &eventv1.Attribution{Source: "web-form", CampaignId: "search"}})
		appended := time.Now()
		// The aim is two seconds; a loaded CI machine may take longer, and
		// speed is measured, not asserted: the delay is logged.
		b.waitFor(t, `document.querySelector('.recent-panel [data-lead="l10"]') !== null`, 20*time.Second)
		t.Logf("the new lead showed %v after its event was stored (aim: 2s)", time.Since(appended))
		if got := b.eval(t, `[String(window.__sameDocument === true)]`); got[0] != "true" {
			t.Error("the page reloaded to show the new lead")
		}
		n, _ := strconv.Atoi(strings.ReplaceAll(before, ",", ""))
		b.expectText(t, "funnel.captured", count(float64(n+1)))
		b.screenshot(t, "dashboard-live")
	})

	t.Run("a change committed before the stream opened shows", func(t *testing.T) {
		b.open(t, base+"#/?"+march)
		b.waitFor(t, `live.es !== null && live.es.readyState === EventSource.OPEN && document.body.dataset.loaded === "true"`, 20*time.Second)
		// The page as its first load leaves it when that load ran before
		// its stream opened: no stream, no notice seen yet.
		b.eval(t, `(live.es.close(), live.es = null, live.gen = -1, [])`)
		w.lead(t, "l11", 201, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{SealedContact: []byte("sealed"),
			Profile:     &eventv1.Profile{EmailDomain: "kappa.example", Country: "FR", Employees: 40},
			Attribution: &eventv1.Attribution{Source: "web-form", CampaignId: "search"}})
		w.projected(t, w.dsn)
		time.Sleep(time.Second) // the projector's notice of it is out: the stream opens after it
		b.eval(t, `(connectLive(), [])`)
		b.waitFor(t, `document.querySelector('.recent-panel [data-lead="l11"]') !== null`, 20*time.Second)
	})

	t.Run("a lead's journey shows its events in stream order", func(t *testing.T) {
		recs, err := w.store.Load(ctx, eventstore.LeadSubject("l2"))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, r := range recs {
			want = append(want, fmt.Sprintf("%d %s", r.Seq, r.Event.GetEventType()))
		}
		b.click(t, `.recent-panel a[data-lead="l10"]`)
		b.waitFor(t, `document.querySelector('#journey .step[data-type="LeadCaptured"]') !== null`, 10*time.Second)
		b.open(t, base+"#/lead/l2?"+march)
		b.waitFor(t, `document.querySelectorAll('#journey .step').length > 0 && location.hash.startsWith("#/lead/l2")`, 10*time.Second)
		got := b.eval(t, `[...document.querySelectorAll("#journey .step")].map(e => e.dataset.seq + " " + e.dataset.type)`)
		if !slices.Equal(got, want) {
			t.Errorf("journey of l2:\n got %v\nwant %v", got, want)
		}
		// l2 went back to nurture and qualified again: its lanes and its
		// second cycle show.
		lanes := b.eval(t, `[...document.querySelectorAll("#journey .step")].map(e => e.dataset.lane)`)
		for _, lane := range []string{"intake", "qualification", "handoff", "nurture"} {
			if !slices.Contains(lanes, lane) {
				t.Errorf("no %s event in the journey's lanes %v", lane, lanes)
			}
		}
		if got := b.eval(t, `[...document.querySelectorAll("#journey .cycle-band")].map(e => e.textContent)`); len(got) != 1 || !strings.Contains(got[0], "Cycle 2") {
			t.Errorf("cycle bands %v, want one for cycle 2", got)
		}
		b.screenshot(t, "dashboard-journey")
	})

	t.Run("a version nobody has signed off yet shows", func(t *testing.T) {
		// A fresh proposal has no approvals: the overview stopped
		// rendering on it once. Proposed while the page is open, its
		// what-if starts and finishes there (it once sat at "starting").
		b.open(t, base+"#/?"+march)
		b.waitFor(t, `document.querySelector('[data-k="model.v2"]') !== null`, 10*time.Second)
		_, proposed := whatIfModels()
		proposed.Version = 3
		w.other(t, eventstore.ModelSubject("scoring"), -1, &eventv1.ScoringModelProposed{Model: scoring.ToProto(proposed),
			ProposedBy: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "maria", Team: eventv1.Team_TEAM_MARKETING}})
		b.waitFor(t, `document.querySelector('[data-k="model.v3"]') !== null`, 10*time.Second)
		b.expectContains(t, "model.v3", "awaiting sign-off")
		b.expectContains(t, "model.v3.marketing", "○")
		b.expectContains(t, "model.v3.sales", "○")
		b.waitFor(t, `(document.querySelector('#whatif [data-k="whatif"] h3') || {}).textContent?.includes("version 3 against version 1")`, 30*time.Second)

		// An older proposal's what-if, asked for, stays in the box when a
		// live refresh (a newer proposal) redraws the panel.
		b.click(t, `[data-k="model.v2"] button`)
		b.waitFor(t, `(document.querySelector('#whatif [data-k="whatif"] h3') || {}).textContent?.includes("version 2 against version 1")`, 30*time.Second)
		proposed.Version = 4
		w.other(t, eventstore.ModelSubject("scoring"), -1, &eventv1.ScoringModelProposed{Model: scoring.ToProto(proposed),
			ProposedBy: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "maria", Team: eventv1.Team_TEAM_MARKETING}})
		b.waitFor(t, `document.querySelector('[data-k="model.v4"]') !== null`, 10*time.Second)
		time.Sleep(time.Second) // a poll of the older what-if would write over the box by now
		if got := b.eval(t, `[document.querySelector('#whatif [data-k="whatif"] h3').textContent]`); !strings.Contains(got[0], "version 2 against version 1") {
			t.Errorf("after a live refresh the what-if box shows %q, want version 2's, the one asked for", got[0])
		}
	})

	t.Run("newest leads follow the filters, money its ISO minor units", func(t *testing.T) {
		b.open(t, base+"#/?from=2026-02-01&to=2026-03-01")
		b.waitFor(t, `document.querySelector('.recent-panel') !== null`, 10*time.Second)
		if got := b.eval(t, `[...document.querySelectorAll(".recent-panel tr[data-lead]")].map(e => e.dataset.lead)`); !slices.Equal(got, []string{"l8"}) {
			t.Errorf("newest leads captured in February: %v, want [l8]", got)
		}
		// 150000 minor units: RSD has two minor digits by ISO 4217 (a
		// browser may say none), BHD three, JPY none.
		got := b.eval(t, `[fmtMoney(150000, "RSD"), fmtMoney(150000, "BHD"), fmtMoney(1500, "JPY")]`)
		for i, want := range []string{"1,500", "150", "1,500"} {
			if !strings.Contains(got[i], want) || strings.Contains(got[i], want+",000") || strings.Contains(got[i], "150,000") {
				t.Errorf("money %d: %q, want %s", i, got[i], want)
			}
		}
	})

	b.close(t)
}

// dashboardExtras adds what the report fixture lacks: a scoring model
// history (v1 signed off by both teams and active, v2 approved by
// marketing only) and a second cycle for l2 (recycled after its
// rejection, nurtured, qualified again and assigned).
func (w *world) dashboardExtras(t testing.TB) {
	t.Helper()
	active, proposed := whatIfModels()
	subj := eventstore.ModelSubject("scoring")
	mkt := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "maria", Team: eventv1.Team_TEAM_MARKETING}
	sales := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "sam", Team: eventv1.Team_TEAM_SALES}
	w.other(t, subj, -100, &eventv1.ScoringModelProposed{Model: scoring.ToProto(active), ProposedBy: mkt})
	w.other(t, subj, -99, &eventv1.ScoringModelApproved{Version: 1, Approver: mkt})
	w.other(t, subj, -98, &eventv1.ScoringModelApproved{Version: 1, Approver: sales})
	w.other(t, subj, -98, &eventv1.ScoringModelActivated{Version: 1})
	w.other(t, subj, -97, &eventv1.ScoringModelProposed{Model: scoring.ToProto(proposed), ProposedBy: mkt})
	w.other(t, subj, -96, &eventv1.ScoringModelApproved{Version: 2, Approver: mkt})
	// A quarter's target: the marketing table gets a row for the quarter.
	w.other(t, eventstore.ModelSubject("sla-targets"), -39, &eventv1.MarketingTargetSet{Target: &eventv1.MarketingTarget{Period: "2026-Q1", MinMqls: 5}})

	program := lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "reactivate"}
	w.lead(t, "l2", 31, lifecycle.Command{Name: lifecycle.Recycle, Reason: "rejected"}, &eventv1.LeadRecycled{
		Cause: eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED, RejectReason: eventv1.RejectReason_REJECT_REASON_NOT_A_FIT, Cycle: 1})
	w.lead(t, "l2", 32, lifecycle.Command{Name: lifecycle.Enroll, Owner: program, Due: w.at(32 + 7*24)}, &eventv1.NurtureEnrolled{
		ProgramId: "reactivate", ReviewAt: timestamppb.New(w.at(32 + 7*24)), Cycle: 1})
	w.lead(t, "l2", 100, lifecycle.Command{Name: lifecycle.Reengage}, &eventv1.LeadReengaged{ProgramId: "reactivate",
		ActivityType: eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED, Cycle: 1})
	w.lead(t, "l2", 101, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 75, Threshold: 70})
	w.lead(t, "l2", 102, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}},
		&eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Segment: "mid", AcceptBy: timestamppb.New(w.at(126))})
}

// startDashboard runs the service with its dashboard on free ports and
// returns the gRPC client and the dashboard's URL (https on a world with
// users).
func (w *world) startDashboard(t testing.TB, edits ...func(*Config)) (*service, string) {
	t.Helper()
	webc := make(chan net.Addr, 1)
	cfg := Config{Addr: "127.0.0.1:0", HTTP: "127.0.0.1:0", NATSURL: w.nats.Server.URL(), Stream: stream, Replicas: 1,
		Postgres: w.dsn, Workers: 64, AckWait: 2 * time.Second, Grace: time.Second, dashboardReady: func(a net.Addr) { webc <- a }}
	for _, edit := range edits {
		edit(&cfg)
	}
	s := w.launch(t, cfg)
	scheme := "http://"
	if w.nats.TLS != nil { // launch turns TLS on with the users
		scheme = "https://"
	}
	select {
	case web := <-webc:
		return s, scheme + web.String() + "/"
	case <-time.After(30 * time.Second):
		t.Fatal("the dashboard did not start")
		return nil, ""
	}
}

// findChromium fails the test when the browser is missing: the browser
// tests are part of make test, and .ci/run installs it.
func findChromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Fatal("chromium is not installed; the dashboard's browser tests need it: apt-get update && apt-get install -y chromium (.ci/run does this)")
	return ""
}

// browser is one headless Chromium with one tab, 1366x768 like a laptop,
// that records every request the page makes and every script error.
type browser struct {
	ctx    context.Context
	cancel func()
	origin string

	mu       sync.Mutex
	foreign  []string
	problems []string
}

func newBrowser(t *testing.T, path, base string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1366, 768),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{ctx: ctx, cancel: func() { cancel(); acancel() }, origin: u.Host}
	t.Cleanup(b.cancel)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1366, 768)); err != nil {
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	err = chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			if r, err := url.Parse(e.Request.URL); err != nil || (r.Scheme != "data" && r.Host != b.origin) {
				b.foreign = append(b.foreign, e.Request.URL)
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.problems = append(b.problems, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, msg))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				b.problems = append(b.problems, "console.error: "+strings.Join(args, " "))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) run(t testing.TB, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// click clicks the element sel once the page has drawn its current
// route. A live refresh may redraw the view between finding the node and
// clicking it; then the click finds the node again.
func (b *browser) click(t testing.TB, sel string) {
	t.Helper()
	b.waitFor(t, fmt.Sprintf(`document.body.dataset.route === location.hash && document.querySelector(%q) !== null`, sel), 10*time.Second)
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel)))
		cancel()
		if err == nil {
			return
		}
		if try == 5 || !strings.Contains(err.Error(), "Could not find node") {
			t.Fatalf("click %s: %v", sel, err)
		}
	}
}

// open loads the page afresh at u and waits until it has drawn it.
func (b *browser) open(t testing.TB, u string) {
	t.Helper()
	// By way of a blank page: a change of the hash alone is no navigation.
	b.run(t, chromedp.Navigate("about:blank"), chromedp.Navigate(u))
	_, hash, _ := strings.Cut(u, "#")
	b.waitFor(t, fmt.Sprintf(`document.body.dataset.route === %q`, "#"+hash), 20*time.Second)
	b.check(t)
}

// eval runs a script that returns a list of strings.
func (b *browser) eval(t testing.TB, js string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return out
}

// waitFor polls a condition in the page until it holds.
func (b *browser) waitFor(t testing.TB, cond string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if got := b.eval(t, `[String(Boolean(`+cond+`))]`); got[0] == "true" {
			return
		}
		if time.Now().After(deadline) {
			b.screenshot(t, "failed-"+strings.ReplaceAll(t.Name(), "/", "-"))
			t.Fatalf("after %v the page still does not satisfy %s", d, cond)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// text is the text of the element marked data-k=key.
func (b *browser) text(t testing.TB, key string) string {
	t.Helper()
	got := b.eval(t, fmt.Sprintf(`[...document.querySelectorAll('[data-k=%q]')].map(e => e.textContent.trim())`, key))
	if len(got) != 1 {
		t.Fatalf("%d elements data-k=%q, want 1", len(got), key)
	}
	return got[0]
}

func (b *browser) expectText(t testing.TB, key, want string) {
	t.Helper()
	if got := b.text(t, key); got != want {
		t.Errorf("%s shows %q, the API says %q", key, got, want)
	}
}

func (b *browser) expectContains(t testing.TB, key, want string) {
	t.Helper()
	if got := b.text(t, key); !strings.Contains(got, want) {
		t.Errorf("%s shows %q, want it to contain %q", key, got, want)
	}
}

// check fails on script errors and on requests to any other host.
func (b *browser) check(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 {
		t.Errorf("script errors: %v", b.problems)
		b.problems = nil
	}
	if len(b.foreign) > 0 {
		t.Errorf("the page called other hosts: %v", b.foreign)
		b.foreign = nil
	}
}

// screenshot saves the page as PNG: the whole page, and the part a
// 1366x768 screen shows first.
func (b *browser) screenshot(t testing.TB, name string) {
	t.Helper()
	dir := os.Getenv("LEADFLOW_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "artifacts", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	full, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	first, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	for file, png := range map[string][]byte{name + ".png": full, name + "-1366x768.png": first} {
		if err := os.WriteFile(filepath.Join(dir, file), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshot %s", filepath.Join(dir, name+".png"))
}

func (b *browser) close(t testing.TB) {
	t.Helper()
	b.check(t)
	b.cancel()
}

func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d
		}
	}
	return dir
}

// The page's formats in en-US (the browser runs with --lang=en-US).

// count: thousands separators, fractions to two places.
func count(v float64) string {
	if v == math.Trunc(v) {
		return group(strconv.FormatInt(int64(v), 10))
	}
	s := strings.TrimRight(strconv.FormatFloat(v, 'f', 2, 64), "0")
	whole, frac, _ := strings.Cut(s, ".")
	return group(whole) + "." + frac
}

func group(digits string) string {
	neg := strings.HasPrefix(digits, "-")
	digits = strings.TrimPrefix(digits, "-")
	var out []string
	for len(digits) > 3 {
		out = append([]string{digits[len(digits)-3:]}, out...)
		digits = digits[:len(digits)-3]
	}
	s := strings.Join(append([]string{digits}, out...), ",")
	if neg {
		return "-" + s
	}
	return s
}

// money: minor units of a two-decimal currency; 1,000 and more without
// cents.
func money(minor float64, cur string) string {
	sym := map[string]string{"EUR": "€", "USD": "$", "GBP": "£"}[cur]
	major := minor / 100
	sign := ""
	if major < 0 {
		sign, major = "-", -major
	}
	if major >= 1000 {
		return sign + sym + group(strconv.FormatFloat(math.Round(major), 'f', 0, 64))
	}
	whole, frac, _ := strings.Cut(strconv.FormatFloat(major, 'f', 2, 64), ".")
	return sign + sym + group(whole) + "." + frac
}

// percent: at most one decimal.
func percent(v float64) string {
	s := strings.TrimSuffix(strconv.FormatFloat(v*100, 'f', 1, 64), ".0")
	whole, frac, ok := strings.Cut(s, ".")
	if ok {
		return group(whole) + "." + frac + "%"
	}
	return group(whole) + "%"
}

func orDash(f *projectorv1.Figure, format func(float64) string) string {
	if f.GetUndefined() {
		return "—"
	}
	return format(f.GetValue())
}

// The dashboard loads again and again in one tab: each page left for
// another stays in the back/forward cache, and held its live stream open,
// so the seventh load waited for a connection for ever (a browser gives a
// host six).
func TestDashboardLoadsAgainAndAgain(t *testing.T) {
	chromium := findChromium(t)
	w := newWorld(t)
	_, base := w.startDashboard(t)
	w.fixture(t)
	w.projected(t, w.dsn)
	b := newBrowser(t, chromium, base)
	for range 8 {
		b.open(t, base+"#/?from=2026-03-01&to=2026-04-01")
	}
	b.close(t)
}

// A tab in the background closes its live stream (six of them would take
// every connection the browser gives a host over HTTP/1.1) and opens it
// again when shown.
func TestADashboardInTheBackgroundHoldsNoStream(t *testing.T) {
	chromium := findChromium(t)
	w := newWorld(t)
	_, base := w.startDashboard(t)
	b := newBrowser(t, chromium, base)
	b.open(t, base+"#/")
	b.waitFor(t, `document.getElementById("live").classList.contains("on")`, 20*time.Second)
	visible := func(v bool) {
		b.eval(t, fmt.Sprintf(`Object.defineProperty(document, "hidden", {value: %t, configurable: true}); document.dispatchEvent(new Event("visibilitychange")); []`, !v))
	}
	visible(false)
	b.waitFor(t, `live.es === null && document.getElementById("live").classList.contains("off")`, 5*time.Second)
	visible(true)
	b.waitFor(t, `live.es !== null && live.es.readyState === EventSource.OPEN && document.getElementById("live").classList.contains("on")`, 20*time.Second)

	// Opened in the background (a link opened in a new tab): no stream
	// until it is shown.
	b.run(t, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
			Source: `Object.defineProperty(document, "hidden", {value: true, configurable: true})`})
		return chromedp.Void{}, err
	})
	b.open(t, base+"#/leads")
	time.Sleep(time.Second)
	if got := b.eval(t, `[String(live.es === null)]`); got[0] != "true" {
		t.Fatal("a page opened in the background holds a stream")
	}
	visible(true)
	b.waitFor(t, `live.es !== null && live.es.readyState === EventSource.OPEN`, 20*time.Second)
	b.close(t)
}
