package adapters

import (
	"maps"
	"slices"
	"testing"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/projector/app"
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
	for _, r := range marketingRows(counts, targets, "", app.Period{}, time.UTC) {
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
	for _, r := range marketingRows(counts, targets, "", app.Period{}, time.UTC) {
		got = append(got, r.GetPeriod()+"/"+r.GetSegment())
	}
	want := []string{"2026-01/", "2026-01/ent", "2026-03/", "2026-03/ent", "2026-Q1/", "2026-12/", "2026-12/ent", "2026-Q4/ent", "2026/ent"}
	if !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
}

func mar(d int) time.Time { return time.Date(2026, 3, d, 0, 0, 0, 0, time.UTC) }

// A target gets its row with no MQL in its period: 0 MQLs against a
// minimum is a miss, and so is a rate minimum with nothing to divide.
func TestMarketingTargetWithoutMQLsHasARow(t *testing.T) {
	counts := []mqlCount{{month: "2026-03", segment: "ent", mqls: 3, accepted: 2}}
	targets := []*eventv1.MarketingTarget{{Period: "2026-03", Segment: "smb", MinMqls: 10, MinAcceptanceRateBps: 5000}}
	rows := marketingRows(counts, targets, "", app.Period{From: mar(1), To: mar(31)}, time.UTC)
	var got []string
	for _, r := range rows {
		got = append(got, r.GetPeriod()+"/"+r.GetSegment())
	}
	if want := []string{"2026-03/", "2026-03/ent", "2026-03/smb"}; !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	smb := rows[2]
	if smb.GetMqls() != 0 || smb.GetTarget().GetMinMqls() != 10 || smb.GetMqlsMet() || smb.GetAcceptanceMet() || !smb.GetOpportunityMet() {
		t.Errorf("smb: %v; want 0 MQLs, the target, MQLs and acceptance missed, no opportunity minimum (met)", smb)
	}
}

// Acceptance is judged on the MQLs due: MQLs none of which is due yet
// hold nothing against marketing (the target reads met, it read missed),
// and a due one not accepted counts against it.
func TestMarketingAcceptanceIsJudgedOnTheMQLsDue(t *testing.T) {
	targets := []*eventv1.MarketingTarget{{Period: "2026-03", Segment: "smb", MinAcceptanceRateBps: 5000}}
	for _, c := range []struct {
		due, accepted int64
		met           bool
	}{{0, 0, true}, {2, 1, true}, {2, 0, false}} {
		counts := []mqlCount{{month: "2026-03", segment: "smb", mqls: 5, accepted: c.accepted, acceptDue: c.due}}
		rows := marketingRows(counts, targets, "smb", app.Period{From: mar(1), To: mar(31)}, time.UTC)
		if len(rows) != 1 || rows[0].GetAcceptanceMet() != c.met || rows[0].GetAcceptDue() != c.due {
			t.Errorf("%d accepted of %d due: %v, want met %v", c.accepted, c.due, rows, c.met)
		}
	}
}

// Rows count whole periods: a month the period leaves out counts only
// for the quarter whose target is shown, and gets no row of its own.
func TestMarketingRowsCountWholePeriods(t *testing.T) {
	counts := []mqlCount{{month: "2026-02", mqls: 1}, {month: "2026-03", segment: "ent", mqls: 5, opps: 2}}
	targets := []*eventv1.MarketingTarget{{Period: "2026-Q1", MinMqls: 6, MinMqlToOpportunityBps: 3000}}
	got := map[string]int64{}
	for _, r := range marketingRows(counts, targets, "", app.Period{From: mar(10), To: mar(20)}, time.UTC) {
		got[r.GetPeriod()+"/"+r.GetSegment()] = r.GetMqls()
		if r.GetPeriod() == "2026-Q1" && (!r.GetMqlsMet() || !r.GetOpportunityMet()) {
			t.Errorf("Q1: %v; want 6 MQLs met, 2 of 6 to opportunity (33%%) met", r)
		}
	}
	if want := map[string]int64{"2026-03/": 5, "2026-03/ent": 5, "2026-Q1/": 6}; !maps.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
}

// The MQLs a report reads: the whole months its period overlaps, widened
// to the whole periods of the targets it shows.
func TestMarketingSpan(t *testing.T) {
	jan1, apr1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name    string
		p       app.Period
		targets []*eventv1.MarketingTarget
		want    app.Period
	}{
		{"days of a month", app.Period{From: mar(10), To: mar(20)}, nil, app.Period{From: mar(1), To: apr1}},
		{"a whole month", app.Period{From: mar(1), To: apr1}, nil, app.Period{From: mar(1), To: apr1}},
		{"open", app.Period{}, []*eventv1.MarketingTarget{{Period: "2026"}}, app.Period{}},
		{"a quarter's target", app.Period{From: mar(10), To: mar(20)}, []*eventv1.MarketingTarget{{Period: "2026-Q1"}}, app.Period{From: jan1, To: apr1}},
		{"a year's target", app.Period{From: mar(10)}, []*eventv1.MarketingTarget{{Period: "2026"}}, app.Period{From: jan1}},
	} {
		if got := marketingSpan(c.p, c.targets, time.UTC); !got.From.Equal(c.want.From) || !got.To.Equal(c.want.To) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// Shown: the targets of the segment, of a period the report overlaps and
// that has begun.
func TestShownTargets(t *testing.T) {
	targets := []*eventv1.MarketingTarget{{Period: "2026-02"}, {Period: "2026-03", Segment: "smb"}, {Period: "2026-Q1"},
		{Period: "2026-Q2"}, {Period: "2026"}, {Period: "2026-W10"}}
	names := func(ts []*eventv1.MarketingTarget) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.GetPeriod()+"/"+t.GetSegment())
		}
		return out
	}
	now := mar(15)
	if got, want := names(shownTargets(targets, app.Period{From: mar(10), To: mar(20)}, "", now, time.UTC)), []string{"2026-03/smb", "2026-Q1/", "2026/"}; !slices.Equal(got, want) {
		t.Errorf("March: %v, want %v", got, want)
	}
	if got, want := names(shownTargets(targets, app.Period{From: mar(10), To: mar(20)}, "smb", now, time.UTC)), []string{"2026-03/smb"}; !slices.Equal(got, want) {
		t.Errorf("March, smb: %v, want %v", got, want)
	}
	// Open: all but Q2, not begun on March 15th (and the malformed one).
	if got, want := names(shownTargets(targets, app.Period{}, "", now, time.UTC)), []string{"2026-02/", "2026-03/smb", "2026-Q1/", "2026/"}; !slices.Equal(got, want) {
		t.Errorf("all time: %v, want %v", got, want)
	}
}
