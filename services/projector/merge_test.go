package main

import (
	"net/http"
	"net/url"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// A merge ends a duplicate, not the work done on it: the hand-off, breach,
// MQL and lost deal of a lead worked in March and merged in April stay in
// March's sales, marketing and performance figures, and their lists still
// open it (all of them fell when the lead was merged, the win rate rose).
// The funnel counts people, so there the duplicate goes.
func TestAMergeKeepsTheWorkDoneOnTheDuplicate(t *testing.T) {
	w := newWorld(t)
	s, base := w.startDashboard(t)
	ctx := ctxT(t)
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	bob := &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "bob"}
	ts := func(h float64) *timestamppb.Timestamp { return timestamppb.New(w.at(h)) }
	eur := func(cents int64) *eventv1.Money { return &eventv1.Money{Currency: "EUR", MinorUnits: cents} }

	for _, id := range []string{"x", "y"} {
		w.lead(t, id, 1, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"),
			Attribution: &eventv1.Attribution{Source: "web-form"}, Profile: &eventv1.Profile{EmailDomain: "acme.example"}})
	}
	w.lead(t, "x", 2, cmd(lifecycle.Qualify), &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 70})
	w.lead(t, "x", 3, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "bob"}},
		&eventv1.LeadAssigned{Owner: bob, Segment: "mid", AcceptBy: ts(5)})
	w.lead(t, "x", 5, cmd(lifecycle.BreachSLA), &eventv1.SLABreached{Sla: eventv1.SLAKind_SLA_KIND_ACCEPT, Owner: bob, DueAt: ts(5), Segment: "mid"})
	w.lead(t, "x", 6, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "bob", Segment: "mid", ContactBy: ts(30)})
	w.lead(t, "x", 7, cmd(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "ox", Amount: eur(500_000), RepId: "bob", Segment: "mid", Stage: "discovery"})
	w.lead(t, "x", 8, lifecycle.Command{Name: lifecycle.Lose, Reason: "budget"}, &eventv1.DealLost{OpportunityId: "ox", Reason: "budget", RepId: "bob", Segment: "mid"})
	w.projected(t, w.dsn)

	type figures struct {
		sla    *projectorv1.GetSLAComplianceResponse
		perf   *projectorv1.GetPerformanceResponse
		funnel *projectorv1.GetFunnelResponse
		lists  map[string]float64
	}
	take := func() figures {
		t.Helper()
		var f figures
		var err error
		if f.sla, err = s.client.GetSLACompliance(ctx, &projectorv1.GetSLAComplianceRequest{Period: marchPeriod()}); err != nil {
			t.Fatal(err)
		}
		if f.perf, err = s.client.GetPerformance(ctx, &projectorv1.GetPerformanceRequest{Period: marchPeriod(), Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		if f.funnel, err = s.client.GetFunnel(ctx, &projectorv1.GetFunnelRequest{Period: marchPeriod()}); err != nil {
			t.Fatal(err)
		}
		f.lists = map[string]float64{}
		for name, q := range map[string]url.Values{
			"sales":     {"figure": {"sales"}, "measure": {"assigned"}, "row": {"rep"}, "key": {"bob"}},
			"breaches":  {"figure": {"breaches"}, "row": {"rep"}, "key": {"bob"}},
			"marketing": {"figure": {"marketing"}, "measure": {"mql"}, "month": {"2026-03"}, "segment": {"mid"}},
		} {
			q.Set("from", "2026-03-01")
			q.Set("to", "2026-04-01")
			code, out := testenv.HTTPJSON(t, "GET", base+"api/leads?"+q.Encode(), "")
			if code != http.StatusOK {
				t.Fatalf("%s: %d %v", name, code, out)
			}
			f.lists[name], _ = out["total"].(float64)
		}
		return f
	}
	before := take()
	if before.perf.GetLost() != 1 || len(before.sla.GetBreachesByOwner()) != 1 || before.lists["sales"] != 1 || before.lists["breaches"] != 1 ||
		before.lists["marketing"] != 1 {
		t.Fatalf("before the merge: lost %d, breaches %v, lists %v; want x's deal, breach and lists", before.perf.GetLost(),
			before.sla.GetBreachesByOwner(), before.lists)
	}

	// April: x, lost and back with marketing, is found to be y.
	w.lead(t, "x", 24*31, lifecycle.Command{Name: lifecycle.Recycle, Reason: "lost"}, &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_LOST})
	w.lead(t, "x", 24*32, lifecycle.Command{Name: lifecycle.Merge, Reason: "y"}, &eventv1.LeadMerged{SurvivorLeadId: "y", AbsorbedLeadId: "x", Reason: "same person"})
	w.projected(t, w.dsn)
	after := take()
	if !proto.Equal(before.sla, after.sla) {
		t.Errorf("March's SLA compliance changed with an April merge:\nbefore %v\nafter  %v", before.sla, after.sla)
	}
	if b, a := before.perf, after.perf; b.GetOpportunities() != a.GetOpportunities() || b.GetLost() != a.GetLost() || b.GetWinRate() != a.GetWinRate() {
		t.Errorf("March's deals changed with an April merge: before %v, after %v", b, a)
	}
	for name, n := range before.lists {
		if after.lists[name] != n {
			t.Errorf("the %s list behind bob's figure holds %v leads after the merge, %v before", name, after.lists[name], n)
		}
	}
	if b, a := before.funnel.GetTotal().GetCaptured(), after.funnel.GetTotal().GetCaptured(); a != b-1 {
		t.Errorf("the funnel counts %d captured after the merge, %d before: the duplicate is one person", a, b)
	}
}

// A free mail provider's domain is no account: leads at gmail.com roll up
// to none (they made one "gmail.com" account with everyone's deals), while
// a company's domain still groups its unmatched leads.
func TestFreeMailIsNoAccount(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	for id, domain := range map[string]string{"g1": "gmail.com", "g2": "gmail.com", "c1": "acme.example", "c2": "acme.example"} {
		w.lead(t, id, 1, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"), Attribution: &eventv1.Attribution{Source: "web-form"},
			Profile: &eventv1.Profile{EmailDomain: domain}})
	}
	w.projected(t, w.dsn)
	r, err := s.client.GetAccounts(ctxT(t), &projectorv1.GetAccountsRequest{Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetAccounts()) != 1 || r.GetAccounts()[0].GetAccountId() != "acme.example" || r.GetAccounts()[0].GetLeads() != 2 {
		t.Errorf("accounts %v: want acme.example's 2 leads only", r.GetAccounts())
	}
}

// What a merged duplicate did not do for sales does not count: its MQL
// merged while it waited for routing is the person's other MQL (March
// read 2 MQLs, 1 accepted, for one person), and a hand-off left open by a
// merge while assigned (refused since the thirty-sixth session) is not
// bob's miss.
func TestAMergedDuplicatesUnworkedMQLCountsOnce(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	bob := &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "bob"}
	for i, id := range []string{"x", "y", "z", "s"} { // u below is March's fifth MQL
		h := float64(i)
		w.lead(t, id, h, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"), Attribution: &eventv1.Attribution{Source: "web-form"}})
		w.lead(t, id, h+0.5, cmd(lifecycle.Qualify), &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 70})
	}
	w.lead(t, "x", 5, lifecycle.Command{Name: lifecycle.Merge, Reason: "y"}, &eventv1.LeadMerged{SurvivorLeadId: "y", AbsorbedLeadId: "x", Reason: "same person"})
	w.lead(t, "z", 5, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "bob"}},
		&eventv1.LeadAssigned{Owner: bob, AcceptBy: timestamppb.New(w.at(7))})
	w.lead(t, "z", 6, lifecycle.Command{Name: lifecycle.Merge, Reason: "s"}, &eventv1.LeadMerged{SurvivorLeadId: "s", AbsorbedLeadId: "z", Reason: "same person"})
	// And the one deal, in USD, lost by cy on a lead merged since: the
	// performance report counts it, so its currency is the report's.
	cy := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "cy"}
	w.lead(t, "u", 1, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"), Attribution: &eventv1.Attribution{Source: "web-form"}})
	w.lead(t, "u", 2, cmd(lifecycle.Qualify), &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 70})
	w.lead(t, "u", 3, lifecycle.Command{Name: lifecycle.Assign, Owner: cy}, &eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "cy"}})
	w.lead(t, "u", 4, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "cy"})
	w.lead(t, "u", 5, cmd(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "ou", Amount: &eventv1.Money{Currency: "USD", MinorUnits: 100}, RepId: "cy", Stage: "d"})
	w.lead(t, "u", 6, lifecycle.Command{Name: lifecycle.Lose, Reason: "budget"}, &eventv1.DealLost{OpportunityId: "ou", Reason: "budget", RepId: "cy"})
	w.lead(t, "u", 7, lifecycle.Command{Name: lifecycle.Recycle, Reason: "lost"}, &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_LOST})
	w.lead(t, "u", 8, lifecycle.Command{Name: lifecycle.Merge, Reason: "y"}, &eventv1.LeadMerged{SurvivorLeadId: "y", AbsorbedLeadId: "u", Reason: "same person"})
	w.projected(t, w.dsn)
	if perf, err := s.client.GetPerformance(ctxT(t), &projectorv1.GetPerformanceRequest{Period: marchPeriod()}); err != nil || perf.GetCurrency() != "USD" || perf.GetLost() != 1 {
		t.Errorf("performance in the only currency: %v %v, want cy's lost USD deal", perf, err)
	}
	r, err := s.client.GetSLACompliance(ctxT(t), &projectorv1.GetSLAComplianceRequest{Period: marchPeriod()})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.GetMarketing() {
		if m.GetPeriod() == "2026-03" && m.GetSegment() == "" && m.GetMqls() != 4 {
			t.Errorf("March counts %d MQLs, want 4: y, s, and z and u, which reached sales (x is y's duplicate)", m.GetMqls())
		}
	}
	for _, row := range r.GetReps() {
		if row.GetKey() == "bob" && (row.GetAssigned() != 0 || row.GetAcceptDue() != 0) {
			t.Errorf("bob's row counts the hand-off a merge left open: %v", row)
		}
	}
}
