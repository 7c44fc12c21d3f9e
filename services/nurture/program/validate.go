package program

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Violation is one refused field, named as in the program
// ("entry_rules[1].score_band").
type Violation struct {
	Field       string
	Description string
}

type violations []Violation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// A program id becomes a lifecycle owner id and a subject-safe token.
var slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// CheckID reports what is wrong with a program id, "" if nothing.
func CheckID(id string) string {
	if id == "" {
		return "is required"
	}
	if !slugRE.MatchString(id) {
		return "must be 1-63 lower-case letters, digits or '-', starting with a letter or digit"
	}
	return ""
}

// Limits on a program.
const (
	// MinDuration keeps programs at a marketer's pace: a program that ends
	// enrols its leads again at once (in itself, or its then_program_id),
	// and the stream keeps every event for good.
	MinDuration = day
	MaxDuration = 3 * 366 * day
	maxName     = 100
	maxText     = 1000
	maxRules    = 50
	maxSegment  = 64
)

// Validate checks a program on its own: every field, and that no two of
// its entry rules match the same lead. Revision and retired are assigned
// by the service and must be unset.
func Validate(p *eventv1.NurtureProgram) []Violation { return validate(p, MinDuration) }

// validate is Validate with programs as short as shortest allowed.
func validate(p *eventv1.NurtureProgram, shortest time.Duration) []Violation {
	var v violations
	if p == nil {
		v.add("", "is required")
		return v
	}
	if msg := CheckID(p.GetProgramId()); msg != "" {
		v.add("program_id", "%s", msg)
	}
	checkText(&v, "name", p.GetName(), maxName, true)
	checkText(&v, "description", p.GetDescription(), maxText, false)
	if p.GetRevision() != 0 {
		v.add("revision", "is assigned by the service: leave it 0")
	}
	if p.GetRetired() {
		v.add("retired", "is set by RetireProgram: leave it false")
	}
	switch d := p.GetDuration(); {
	case d == nil:
		v.add("duration", "is required")
	case d.CheckValid() != nil || d.AsDuration() < shortest || d.AsDuration() > MaxDuration:
		low := shortest.String()
		switch {
		case shortest == day:
			low = "1 day"
		case shortest%day == 0:
			low = fmt.Sprintf("%d days", shortest/day)
		}
		v.add("duration", "must be between %s and %d days", low, MaxDuration/day)
	}
	if n := len(p.GetEntryRules()); n > maxRules {
		v.add("entry_rules", "has %d rules, at most %d", n, maxRules)
	}
	ids := map[string]int{}
	for i, r := range p.GetEntryRules() {
		f := fmt.Sprintf("entry_rules[%d]", i)
		checkRule(&v, f, r)
		if j, dup := ids[r.GetRuleId()]; dup && r.GetRuleId() != "" {
			v.add(f+".rule_id", "repeats entry_rules[%d]", j)
		}
		ids[r.GetRuleId()] = i
		for j, earlier := range p.GetEntryRules()[:i] {
			if what, ok := overlap(earlier, r); ok {
				v.add(f, "overlaps entry_rules[%d] (rule %q): %s", j, earlier.GetRuleId(), what)
			}
		}
	}
	x := p.GetExitRules()
	seen := map[eventv1.ActivityType]bool{}
	for i, t := range x.GetReengageOn() {
		f := fmt.Sprintf("exit_rules.reengage_on[%d]", i)
		switch _, known := eventv1.ActivityType_name[int32(t)]; {
		case !known || t == eventv1.ActivityType_ACTIVITY_TYPE_UNSPECIFIED:
			v.add(f, "%d is not an activity type", t)
		case t == eventv1.ActivityType_ACTIVITY_TYPE_UNSUBSCRIBE:
			v.add(f, "an unsubscribe is not interest: it cannot re-engage a lead")
		case seen[t]:
			v.add(f, "repeats %s", t)
		}
		seen[t] = true
	}
	if id := x.GetThenProgramId(); id != "" {
		if msg := CheckID(id); msg != "" {
			v.add("exit_rules.then_program_id", "%s", msg)
		}
	}
	return v
}

func checkRule(v *violations, f string, r *eventv1.NurtureEntryRule) {
	if r == nil {
		v.add(f, "is empty")
		return
	}
	if msg := CheckID(r.GetRuleId()); msg != "" {
		v.add(f+".rule_id", "%s", msg)
	}
	rejected := len(r.GetCauses()) == 0
	seenCause := map[eventv1.RecycleCause]bool{}
	for i, c := range r.GetCauses() {
		cf := fmt.Sprintf("%s.causes[%d]", f, i)
		switch _, known := eventv1.RecycleCause_name[int32(c)]; {
		case !known || c == eventv1.RecycleCause_RECYCLE_CAUSE_UNSPECIFIED:
			v.add(cf, "%d is not a recycle cause", c)
		case seenCause[c]:
			v.add(cf, "repeats %s", causeName(c))
		}
		seenCause[c] = true
		rejected = rejected || c == eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED
	}
	seenReason := map[eventv1.RejectReason]bool{}
	for i, rr := range r.GetRejectReasons() {
		rf := fmt.Sprintf("%s.reject_reasons[%d]", f, i)
		switch _, known := eventv1.RejectReason_name[int32(rr)]; {
		case !known || rr == eventv1.RejectReason_REJECT_REASON_UNSPECIFIED:
			v.add(rf, "%d is not a reject reason", rr)
		case seenReason[rr]:
			v.add(rf, "repeats %s", reasonName(rr))
		}
		seenReason[rr] = true
	}
	if len(r.GetRejectReasons()) > 0 && !rejected {
		v.add(f+".reject_reasons", "apply to rejected leads only: add cause REJECTED or drop them")
	}
	seenSeg := map[string]bool{}
	for i, s := range r.GetSegments() {
		sf := fmt.Sprintf("%s.segments[%d]", f, i)
		switch t := strings.TrimSpace(s); {
		case t == "" || t != s:
			v.add(sf, "must be a segment name without surrounding spaces")
		case len(s) > maxSegment || !utf8.ValidString(s):
			v.add(sf, "must be at most %d bytes of UTF-8", maxSegment)
		case seenSeg[strings.ToLower(s)]:
			v.add(sf, "repeats %q", s)
		}
		seenSeg[strings.ToLower(s)] = true
	}
	if b := r.GetScoreBand(); b != nil {
		switch {
		case b.GetMin() > b.GetMax():
			v.add(f+".score_band", "min %d is above max %d", b.GetMin(), b.GetMax())
		case b.GetMin() < minScore || b.GetMax() > maxScore:
			v.add(f+".score_band", "must lie within %d to %d", minScore, maxScore)
		}
	}
}

func checkText(v *violations, field, s string, maxLen int, required bool) {
	switch {
	case required && strings.TrimSpace(s) == "":
		v.add(field, "is required")
	case !utf8.ValidString(s):
		v.add(field, "must be UTF-8")
	case utf8.RuneCountInString(s) > maxLen:
		v.add(field, "must be at most %d characters", maxLen)
	}
}
