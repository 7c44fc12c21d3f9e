package main

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// Every marketing SLA figure opens the leads it counts: a month's row per
// segment, the row of all segments (every segment's leads, where it used
// to list only the MQLs without a segment) and the row of a quarter a
// target names (refused before). A figure counts journeys, so a lead
// qualified twice in the period is one lead behind two MQLs.
func TestMarketingFiguresOpenTheirLeads(t *testing.T) {
	w := newWorld(t)
	s, base := w.startDashboard(t)
	w.fixture(t)
	w.dashboardExtras(t) // a target for 2026-Q1
	w.projected(t, w.dsn)

	sla, err := s.client.GetSLACompliance(ctxT(t), &projectorv1.GetSLAComplianceRequest{})
	if err != nil {
		t.Fatal(err)
	}
	behind := func(r *projectorv1.MarketingSLARow, measure string, figure int64) []string {
		t.Helper()
		q := url.Values{"figure": {"marketing"}, "measure": {measure}, "month": {r.GetPeriod()}, "segment": {r.GetSegment()}, "limit": {"500"}}
		code, out := testenv.HTTPJSON(t, "GET", base+"api/leads?"+q.Encode(), "")
		if code != http.StatusOK {
			t.Fatalf("%s %q %s: %d %v", r.GetPeriod(), r.GetSegment(), measure, code, out)
		}
		var ids []string
		for _, l := range out["leads"].([]any) {
			ids = append(ids, l.(map[string]any)["lead_id"].(string))
		}
		if n := int64(len(ids)); n != int64(out["total"].(float64)) || n > figure || (figure > 0) != (n > 0) {
			t.Errorf("%s %q %s: %d leads (total %v) behind the figure %d", r.GetPeriod(), r.GetSegment(), measure, n, out["total"], figure)
		}
		slices.Sort(ids)
		return ids
	}
	mqls := map[string][]string{} // by period, then "/segment"
	for _, r := range sla.GetMarketing() {
		for measure, figure := range map[string]int64{"mql": r.GetMqls(), "accepted": r.GetAccepted(), "rejected": r.GetRejected(), "opportunity": r.GetOpportunities(), "accept_due": r.GetAcceptDue()} {
			ids := behind(r, measure, figure)
			if measure == "mql" {
				mqls[r.GetPeriod()+"/"+r.GetSegment()] = ids
			}
		}
	}
	union := func(keep func(key string) bool) []string {
		var all []string
		for k, ids := range mqls {
			if keep(k) {
				all = append(all, ids...)
			}
		}
		slices.Sort(all)
		return slices.Compact(all)
	}
	march, q1 := mqls["2026-03/"], mqls["2026-Q1/"]
	if len(march) == 0 || q1 == nil {
		t.Fatalf("no row for March or for 2026-Q1 of all segments: %v", mqls)
	}
	segments := union(func(k string) bool { return strings.HasPrefix(k, "2026-03/") && k != "2026-03/" })
	if missing := slices.DeleteFunc(segments, func(id string) bool { return slices.Contains(march, id) }); len(missing) > 0 {
		t.Errorf("March of all segments lacks %v, which its segments count", missing)
	}
	months := union(func(k string) bool {
		return len(k) == len("2026-01/") && k[:7] >= "2026-01" && k[:7] <= "2026-03" && strings.HasSuffix(k, "/")
	})
	if !slices.Equal(q1, months) {
		t.Errorf("2026-Q1 lists %v, its months %v", q1, months)
	}
}

// Marketing's rows are judged on whole periods: a report of March (or of
// some days of it) shows Q1's target against all of Q1 (February's l8 and
// March's five: 6 of 6, met; it counted March only, 5, "missed"), and
// March whole. A target with no MQLs shows as a miss (it had no row); a
// target of a period the report does not overlap, or still to come, has
// no row.
func TestMarketingTargetsAreJudgedOnTheirWholePeriod(t *testing.T) {
	w := newWorld(t)
	s, base := w.startDashboard(t)
	w.fixture(t)
	for _, tg := range []*eventv1.MarketingTarget{
		{Period: "2026-Q1", MinMqls: 6},
		{Period: "2026-03", Segment: "smb", MinMqls: 10, MinAcceptanceRateBps: 5000},
		{Period: "2026-02", Segment: "ent", MinMqls: 1},
		{Period: "2099"},
	} {
		w.other(t, eventstore.ModelSubject("sla-targets"), -39, &eventv1.MarketingTargetSet{Target: tg})
	}
	w.projected(t, w.dsn)

	type row struct {
		key               string
		mqls              int64
		target            bool
		mqlsMet, accepted bool
	}
	rows := func(p *projectorv1.Period) []row {
		t.Helper()
		r, err := s.client.GetSLACompliance(ctxT(t), &projectorv1.GetSLAComplianceRequest{Period: p})
		if err != nil {
			t.Fatal(err)
		}
		var out []row
		for _, m := range r.GetMarketing() {
			out = append(out, row{m.GetPeriod() + "/" + m.GetSegment(), m.GetMqls(), m.GetTarget() != nil, m.GetMqlsMet(), m.GetAcceptanceMet()})
		}
		return out
	}
	// March: l1 l2 l7 in mid (its target of 4 missed, 2 of 3 accepted
	// meets 50%), l5 l6 in ent; smb none (10 missed, no acceptance).
	march := []row{{"2026-03/", 5, false, false, false}, {"2026-03/ent", 2, false, false, false}, {"2026-03/mid", 3, true, false, true},
		{"2026-03/smb", 0, true, false, false}, {"2026-Q1/", 6, true, true, true}}
	days := &projectorv1.Period{From: timestamppb.New(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)), To: timestamppb.New(time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC))}
	for name, p := range map[string]*projectorv1.Period{"March": marchPeriod(), "March 10 to 20": days} {
		if got := rows(p); !slices.Equal(got, march) {
			t.Errorf("%s: %v, want %v", name, got, march)
		}
	}
	// All time adds February: l8, no segment; ent's target, no MQL.
	all := append([]row{{"2026-02/", 1, false, false, false}, {"2026-02/ent", 0, true, false, true}}, march...)
	if got := rows(nil); !slices.Equal(got, all) {
		t.Errorf("all time: %v, want %v", got, all)
	}

	// Q1's MQLs open from the March report: all six.
	q := url.Values{"figure": {"marketing"}, "measure": {"mql"}, "month": {"2026-Q1"}, "from": {"2026-03-01"}, "to": {"2026-04-01"}}
	code, out := testenv.HTTPJSON(t, "GET", base+"api/leads?"+q.Encode(), "")
	if code != http.StatusOK {
		t.Fatalf("Q1's MQLs: %d %v", code, out)
	}
	var ids []string
	for _, l := range out["leads"].([]any) {
		ids = append(ids, l.(map[string]any)["lead_id"].(string))
	}
	slices.Sort(ids)
	if want := []string{"l1", "l2", "l5", "l6", "l7", "l8"}; !slices.Equal(ids, want) {
		t.Errorf("Q1's MQLs from March: %v, want %v", ids, want)
	}
}
