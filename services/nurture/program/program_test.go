package program_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/nurture/program"
)

var (
	rejected = eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED
	lost     = eventv1.RecycleCause_RECYCLE_CAUSE_LOST
	badData  = eventv1.RejectReason_REJECT_REASON_BAD_DATA
	noBudget = eventv1.RejectReason_REJECT_REASON_NO_BUDGET
)

func TestMatches(t *testing.T) {
	band := &eventv1.NurtureScoreBand{Min: 10, Max: 49}
	for _, c := range []struct {
		name string
		rule *eventv1.NurtureEntryRule
		key  program.Key
		want bool
	}{
		{"empty rule takes anything", &eventv1.NurtureEntryRule{}, program.Key{Cause: lost, Segment: "smb", Score: 3}, true},
		{"empty rule leaves bad data to its policy", &eventv1.NurtureEntryRule{}, program.Key{Cause: rejected, RejectReason: badData}, false},
		{"a rule naming bad data takes it", &eventv1.NurtureEntryRule{RejectReasons: []eventv1.RejectReason{badData}},
			program.Key{Cause: rejected, RejectReason: badData}, true},
		{"reasons take rejected leads only", &eventv1.NurtureEntryRule{RejectReasons: []eventv1.RejectReason{noBudget}}, program.Key{Cause: lost}, false},
		{"cause", &eventv1.NurtureEntryRule{Causes: []eventv1.RecycleCause{lost}}, program.Key{Cause: rejected, RejectReason: noBudget}, false},
		{"segment ignores case", &eventv1.NurtureEntryRule{Segments: []string{"SMB"}}, program.Key{Cause: lost, Segment: "smb"}, true},
		{"no segment on the lead", &eventv1.NurtureEntryRule{Segments: []string{"smb"}}, program.Key{Cause: lost}, false},
		{"band low end", &eventv1.NurtureEntryRule{ScoreBand: band}, program.Key{Cause: lost, Score: 10}, true},
		{"band high end", &eventv1.NurtureEntryRule{ScoreBand: band}, program.Key{Cause: lost, Score: 49}, true},
		{"above the band", &eventv1.NurtureEntryRule{ScoreBand: band}, program.Key{Cause: lost, Score: 50}, false},
	} {
		if got := program.Matches(c.rule, c.key); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestChooseFallsBackByPolicy(t *testing.T) {
	cat := program.New()
	for _, c := range []struct {
		key  program.Key
		want string
	}{
		{program.Key{Cause: rejected, RejectReason: badData}, program.DataRepair},
		{program.Key{Cause: rejected, RejectReason: eventv1.RejectReason_REJECT_REASON_NOT_A_FIT}, program.NotAFit},
		{program.Key{Cause: rejected, RejectReason: eventv1.RejectReason_REJECT_REASON_EXISTING_CUSTOMER}, program.ExistingCustomer},
		{program.Key{Cause: rejected, RejectReason: eventv1.RejectReason_REJECT_REASON_DUPLICATE}, program.Duplicate},
		{program.Key{Cause: rejected, RejectReason: noBudget}, program.Default},
		{program.Key{Cause: lost}, program.Default},
	} {
		if got := cat.Choose(c.key); got.Program.GetProgramId() != c.want || got.RuleID != "" || got.Why == "" {
			t.Errorf("%v: %v, want %s", c.key, got, c.want)
		}
	}
}

// randomRule draws a rule over a small space, so that overlaps are common.
func randomRule(r *rand.Rand, id string) *eventv1.NurtureEntryRule {
	x := &eventv1.NurtureEntryRule{RuleId: id}
	causes := []eventv1.RecycleCause{rejected, lost, eventv1.RecycleCause_RECYCLE_CAUSE_NOT_READY}
	for _, c := range causes {
		if r.IntN(3) == 0 {
			x.Causes = append(x.Causes, c)
		}
	}
	if r.IntN(3) == 0 {
		x.Causes = append(x.Causes, rejected)
		for _, rr := range []eventv1.RejectReason{badData, noBudget, eventv1.RejectReason_REJECT_REASON_NOT_READY} {
			if r.IntN(2) == 0 {
				x.RejectReasons = append(x.RejectReasons, rr)
			}
		}
		if len(x.Causes) > 1 && x.Causes[0] == rejected {
			x.Causes = x.Causes[1:]
		}
	}
	dedupe := map[eventv1.RecycleCause]bool{}
	var cs []eventv1.RecycleCause
	for _, c := range x.Causes {
		if !dedupe[c] {
			cs = append(cs, c)
		}
		dedupe[c] = true
	}
	x.Causes = cs
	for _, s := range []string{"smb", "mid", "ent"} {
		if r.IntN(3) == 0 {
			x.Segments = append(x.Segments, s)
		}
	}
	if r.IntN(2) == 0 {
		lo := int32(r.IntN(100))
		x.ScoreBand = &eventv1.NurtureScoreBand{Min: lo, Max: lo + int32(r.IntN(60))}
	}
	return x
}

// Overlap is exact: two rules that a program may hold together (Validate
// finds no overlap) never both match a lead, and two it refuses both
// match some lead.
func TestOverlapIsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var keys []program.Key
	for _, c := range []eventv1.RecycleCause{rejected, lost, eventv1.RecycleCause_RECYCLE_CAUSE_NOT_READY} {
		for _, rr := range []eventv1.RejectReason{eventv1.RejectReason_REJECT_REASON_UNSPECIFIED, badData, noBudget, eventv1.RejectReason_REJECT_REASON_NOT_READY} {
			if (c == rejected) != (rr != eventv1.RejectReason_REJECT_REASON_UNSPECIFIED) {
				continue
			}
			for _, s := range []string{"", "smb", "mid", "ent", "other"} {
				for score := -1; score <= 161; score++ {
					keys = append(keys, program.Key{Cause: c, RejectReason: rr, Segment: s, Score: score})
				}
			}
		}
	}
	refused, allowed := 0, 0
	for range 3000 {
		a, b := randomRule(r, "a"), randomRule(r, "b")
		p := &eventv1.NurtureProgram{ProgramId: "p", Name: "P", Duration: durationpb.New(program.MinDuration), EntryRules: []*eventv1.NurtureEntryRule{a, b}}
		overlaps := false
		for _, v := range program.Validate(p) {
			if strings.HasPrefix(v.Field, "entry_rules[1]") && strings.Contains(v.Description, "overlaps") {
				overlaps = true
			} else {
				t.Fatalf("unexpected violation %v for %v / %v", v, a, b)
			}
		}
		both := false
		for _, k := range keys {
			if program.Matches(a, k) && program.Matches(b, k) {
				both = true
				break
			}
		}
		if both != overlaps {
			t.Fatalf("rules %v and %v: overlap reported %v, a lead matching both exists %v", a, b, overlaps, both)
		}
		if overlaps {
			refused++
		} else {
			allowed++
		}
	}
	if refused == 0 || allowed == 0 {
		t.Fatalf("the draw is lopsided: %d refused, %d allowed", refused, allowed)
	}
}

func TestCatalogPutAndRetire(t *testing.T) {
	cat := program.New()
	by := &eventv1.Actor{Id: "mia"}
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	p := &eventv1.NurtureProgram{ProgramId: "a", Name: "A", Duration: durationpb.New(program.MinDuration),
		EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "r", Causes: []eventv1.RecycleCause{lost}}}}
	ch, unchanged, err := cat.Put(p, by)
	if err != nil || unchanged || ch.GetVersion() != 1 || ch.GetProgram().GetRevision() != 1 ||
		ch.GetChange() != eventv1.NurtureProgramChange_NURTURE_PROGRAM_CHANGE_DEFINED {
		t.Fatalf("put: %v %v %v", ch, unchanged, err)
	}
	cat.Apply(10, at, ch)
	if _, unchanged, err := cat.Put(p, by); !unchanged || err != nil {
		t.Fatalf("same again: %v %v", unchanged, err)
	}
	if got := cat.Choose(program.Key{Cause: lost}); got.Program.GetProgramId() != "a" || got.RuleID != "r" {
		t.Fatalf("choose: %v", got)
	}
	// Another program may not take the same leads.
	q := &eventv1.NurtureProgram{ProgramId: "b", Name: "B", Duration: durationpb.New(program.MinDuration),
		EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "s", Segments: []string{"smb"}}}}
	var ve *program.ValidationError
	if _, _, err := cat.Put(q, by); !errors.As(err, &ve) || ve.Violations[0].Field != "entry_rules[0]" {
		t.Fatalf("overlap: %v", err)
	}
	ch, _, err = cat.Retire("a", by)
	if err != nil || !ch.GetProgram().GetRetired() || ch.GetProgram().GetRevision() != 2 {
		t.Fatalf("retire: %v %v", ch, err)
	}
	cat.Apply(11, at, ch)
	// Retired, a takes nobody and b no longer overlaps.
	if got := cat.Choose(program.Key{Cause: lost}); got.Program.GetProgramId() != program.Default {
		t.Fatalf("choose after retiring: %v", got)
	}
	if _, _, err := cat.Put(q, by); err != nil {
		t.Fatalf("b after a retired: %v", err)
	}
	if _, _, err := cat.Retire("nope", by); !errors.Is(err, program.ErrUnknown) {
		t.Fatalf("retire unknown: %v", err)
	}
	var refused *program.RefusedError
	if _, _, err := cat.Retire(program.Default, by); !errors.As(err, &refused) {
		t.Fatalf("retire the default: %v", err)
	}
	if cat.Version != 2 || cat.Seq != 11 {
		t.Fatalf("version %d seq %d", cat.Version, cat.Seq)
	}
}

// A program shorter than MinDuration is refused: ending, it would send
// its leads out and in again every few seconds. One stored when shorter
// programs were accepted keeps its leads at least that long.
func TestShortPrograms(t *testing.T) {
	by := &eventv1.Actor{Id: "mia"}
	p := &eventv1.NurtureProgram{ProgramId: "blink", Name: "Blink", Duration: durationpb.New(time.Second)}
	cat := program.New()
	var ve *program.ValidationError
	if _, _, err := cat.Put(p, by); !errors.As(err, &ve) || len(ve.Violations) != 1 || ve.Violations[0].Field != "duration" {
		t.Fatalf("put a program of a second: %v", err)
	}
	cat.Apply(1, time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), &eventv1.NurtureProgramChanged{Version: 1, Program: p})
	if d := cat.Duration(p); d != program.MinDuration {
		t.Fatalf("a stored program of a second runs %v, want %v", d, program.MinDuration)
	}
	// Tests may run programs for seconds.
	short := program.New().WithShortest(time.Second)
	if _, _, err := short.Put(p, by); err != nil || short.Duration(p) != time.Second {
		t.Fatalf("with the shortest at a second: %v, %v", err, short.Duration(p))
	}
}

// Nothing sends an existing customer or a duplicate back to sales: an
// email click re-engaged them in the default program within seconds.
func TestCustomersAndDuplicatesAreNotReengaged(t *testing.T) {
	cat := program.New()
	for _, r := range []eventv1.RejectReason{eventv1.RejectReason_REJECT_REASON_EXISTING_CUSTOMER, eventv1.RejectReason_REJECT_REASON_DUPLICATE} {
		p := cat.Choose(program.Key{Cause: rejected, RejectReason: r}).Program
		for t2 := range eventv1.ActivityType_name {
			if program.ReengagesOn(p, eventv1.ActivityType(t2)) {
				t.Errorf("%s: %s re-engages on %s", r, p.GetProgramId(), eventv1.ActivityType(t2))
			}
		}
		if p.GetExitRules().GetReengageOnResubmission() {
			t.Errorf("%s: %s re-engages on a form fill", r, p.GetProgramId())
		}
	}
}
