package adapters

import (
	"slices"
	"testing"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// An MQL that no segment holds yet (not routed, or routed by a rule that
// names none) belongs to the all-segments row once, not twice.
func TestMarketingRowsCountALeadWithoutSegmentOnce(t *testing.T) {
	counts := []mqlCount{
		{month: "2026-03", segment: "", mqls: 2, accepted: 1},
		{month: "2026-03", segment: "ent", mqls: 3, accepted: 2, opps: 1},
	}
	targets := []*eventv1.MarketingTarget{{Period: "2026-Q1", MinMqls: 5}}
	got := map[string]int64{}
	for _, r := range marketingRows(counts, targets, "") {
		got[r.GetPeriod()+"/"+r.GetSegment()] = r.GetMqls()
		if r.GetPeriod() == "2026-03" && r.GetSegment() == "" && r.GetAccepted() != 3 {
			t.Errorf("all segments in March: %d accepted, want 3", r.GetAccepted())
		}
	}
	want := map[string]int64{"2026-03/": 5, "2026-03/ent": 3, "2026-Q1/": 5}
	if len(got) != len(want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d MQLs, want %d (rows %v)", k, got[k], v, got)
		}
	}
}

// Rows run in time: each month, then the quarter or year ending with it.
func TestMarketingRowsRunInTime(t *testing.T) {
	counts := []mqlCount{
		{month: "2026-03", segment: "ent", mqls: 1},
		{month: "2026-01", segment: "ent", mqls: 1},
		{month: "2026-12", segment: "ent", mqls: 1},
	}
	targets := []*eventv1.MarketingTarget{{Period: "2026", Segment: "ent"}, {Period: "2026-Q1"}, {Period: "2026-Q4", Segment: "ent"}}
	var got []string
	for _, r := range marketingRows(counts, targets, "") {
		got = append(got, r.GetPeriod()+"/"+r.GetSegment())
	}
	want := []string{"2026-01/", "2026-01/ent", "2026-03/", "2026-03/ent", "2026-Q1/", "2026-12/", "2026-12/ent", "2026-Q4/ent", "2026/ent"}
	if !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
}
