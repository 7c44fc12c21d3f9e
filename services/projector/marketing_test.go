package main

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

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
		for measure, figure := range map[string]int64{"mql": r.GetMqls(), "accepted": r.GetAccepted(), "rejected": r.GetRejected(), "opportunity": r.GetOpportunities()} {
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
