// Package program is nurture's programs as data: what each takes (entry
// rules on recycle cause, rejection reason, segment and score band), for
// how long, and what ends it (exit rules); the catalog of every program,
// folded from the NurtureProgramChanged events on model.nurture-programs;
// validation, including that no two entry rules can match the same lead;
// and the choice of a program for a recycled lead. It is pure: no gRPC,
// no NATS, no clock.
package program

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// The built-in programs: the recycle policy's fallbacks, in the catalog
// until a PutProgram of the same id replaces them. They have no entry
// rules; Choose sends a lead to them when no rule matches.
const (
	// Default takes every recycled lead no entry rule matches.
	Default = "nurture-default"
	// DataRepair takes leads rejected for BAD_DATA: only a new form fill,
	// which brings new data, re-engages them.
	DataRepair = "data-repair"
	// NotAFit takes leads rejected as NOT_A_FIT: a long wait, and only a
	// new form fill (a new company or role may fit) re-engages them.
	NotAFit = "not-a-fit"
	// ExistingCustomer takes leads rejected as EXISTING_CUSTOMER: the
	// person buys already, so no new-business interest sends them back
	// to sales.
	ExistingCustomer = "existing-customer"
	// Duplicate takes leads rejected as DUPLICATE: sales works the person
	// under their other lead, so nothing sends this one back (merge it).
	Duplicate = "duplicate"
)

// intentActivities are the activities that show intent: the default
// program's re-engagement triggers. Opens and plain visits do not count.
var intentActivities = []eventv1.ActivityType{
	eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK,
	eventv1.ActivityType_ACTIVITY_TYPE_PRICING_PAGE_VISIT,
	eventv1.ActivityType_ACTIVITY_TYPE_FORM_SUBMIT,
	eventv1.ActivityType_ACTIVITY_TYPE_CONTENT_DOWNLOAD,
	eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_REGISTERED,
	eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED,
	eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST,
	eventv1.ActivityType_ACTIVITY_TYPE_EVENT_ATTENDED,
}

const day = 24 * time.Hour

// BuiltIns returns the built-in programs, fresh copies.
func BuiltIns() []*eventv1.NurtureProgram {
	return []*eventv1.NurtureProgram{
		{ProgramId: Default, Name: "Default nurture", Revision: 0,
			Description: "Every recycled lead that no entry rule takes: intent activity re-engages it; reviewed every 90 days.",
			Duration:    durationpb.New(90 * day),
			ExitRules:   &eventv1.NurtureExitRules{ReengageOn: slices.Clone(intentActivities), ReengageOnResubmission: true}},
		{ProgramId: DataRepair, Name: "Data repair",
			Description: "Leads rejected for bad data: only a new form fill (new data) re-engages them; reviewed every 30 days.",
			Duration:    durationpb.New(30 * day),
			ExitRules:   &eventv1.NurtureExitRules{ReengageOnResubmission: true}},
		{ProgramId: NotAFit, Name: "Not a fit",
			Description: "Leads rejected as not a fit: only a new form fill re-engages them; reviewed every 180 days.",
			Duration:    durationpb.New(180 * day),
			ExitRules:   &eventv1.NurtureExitRules{ReengageOnResubmission: true}},
		{ProgramId: ExistingCustomer, Name: "Existing customer",
			Description: "Leads rejected as existing customers: nothing re-engages them as new business; reviewed every 365 days.",
			Duration:    durationpb.New(365 * day), ExitRules: &eventv1.NurtureExitRules{}},
		{ProgramId: Duplicate, Name: "Duplicate",
			Description: "Leads rejected as duplicates of another lead: nothing re-engages them (merge them into the other); reviewed every 30 days.",
			Duration:    durationpb.New(30 * day), ExitRules: &eventv1.NurtureExitRules{}},
	}
}

// OwnPolicy reports whether leads rejected for r follow their own policy:
// no entry rule takes them unless it names r, and they fall back to their
// own program instead of the default one.
func OwnPolicy(r eventv1.RejectReason) bool {
	_, own := ownPrograms[r]
	return own
}

// ownPrograms are the programs of the rejections with their own policy.
var ownPrograms = map[eventv1.RejectReason]string{
	eventv1.RejectReason_REJECT_REASON_BAD_DATA:          DataRepair,
	eventv1.RejectReason_REJECT_REASON_NOT_A_FIT:         NotAFit,
	eventv1.RejectReason_REJECT_REASON_EXISTING_CUSTOMER: ExistingCustomer,
	eventv1.RejectReason_REJECT_REASON_DUPLICATE:         Duplicate,
}

// Key is what entry rules look at in a recycled lead.
type Key struct {
	Cause        eventv1.RecycleCause
	RejectReason eventv1.RejectReason // with cause REJECTED
	Segment      string
	Score        int
}

func (k Key) String() string {
	s := "cause " + causeName(k.Cause)
	if k.Cause == eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED {
		s += " (" + reasonName(k.RejectReason) + ")"
	}
	seg := k.Segment
	if seg == "" {
		seg = "none"
	}
	return fmt.Sprintf("%s, segment %s, score %d", s, seg, k.Score)
}

// Matches reports whether rule r takes a lead with key k.
func Matches(r *eventv1.NurtureEntryRule, k Key) bool {
	if len(r.GetCauses()) > 0 && !slices.Contains(r.GetCauses(), k.Cause) {
		return false
	}
	rejected := k.Cause == eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED
	switch {
	case len(r.GetRejectReasons()) > 0:
		if !rejected || !slices.Contains(r.GetRejectReasons(), k.RejectReason) {
			return false
		}
	case rejected && OwnPolicy(k.RejectReason):
		return false
	}
	if len(r.GetSegments()) > 0 && !slices.ContainsFunc(r.GetSegments(), func(s string) bool { return strings.EqualFold(s, k.Segment) }) {
		return false
	}
	if b := r.GetScoreBand(); b != nil && (int32(k.Score) < b.GetMin() || int32(k.Score) > b.GetMax()) {
		return false
	}
	return true
}

// causes are the recycle causes a rule can take: every declared one.
var causes = func() []eventv1.RecycleCause {
	var out []eventv1.RecycleCause
	for n := range eventv1.RecycleCause_name {
		if c := eventv1.RecycleCause(n); c != eventv1.RecycleCause_RECYCLE_CAUSE_UNSPECIFIED {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}()

// overlap reports whether some lead matches both a and b, and describes
// such leads.
func overlap(a, b *eventv1.NurtureEntryRule) (string, bool) {
	both := func(x, y []eventv1.RecycleCause) []eventv1.RecycleCause {
		var out []eventv1.RecycleCause
		for _, c := range causes {
			if (len(x) == 0 || slices.Contains(x, c)) && (len(y) == 0 || slices.Contains(y, c)) {
				out = append(out, c)
			}
		}
		return out
	}(a.GetCauses(), b.GetCauses())
	// Which causes both can take, given their rejection reasons: a rule
	// naming reasons takes rejected leads only.
	var shared []string
	for _, c := range both {
		if c != eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED {
			if len(a.GetRejectReasons()) == 0 && len(b.GetRejectReasons()) == 0 {
				shared = append(shared, causeName(c))
			}
			continue
		}
		var reasons []string
		for r := range eventv1.RejectReason_name {
			rr := eventv1.RejectReason(r)
			if rr == eventv1.RejectReason_REJECT_REASON_UNSPECIFIED {
				continue
			}
			if takesReason(a, rr) && takesReason(b, rr) {
				reasons = append(reasons, reasonName(rr))
			}
		}
		if len(reasons) > 0 {
			slices.Sort(reasons)
			shared = append(shared, causeName(c)+" ("+strings.Join(reasons, ", ")+")")
		}
	}
	if len(shared) == 0 {
		return "", false
	}
	segs := "any segment"
	switch sa, sb := a.GetSegments(), b.GetSegments(); {
	case len(sa) > 0 && len(sb) > 0:
		var common []string
		for _, s := range sa {
			if slices.ContainsFunc(sb, func(t string) bool { return strings.EqualFold(s, t) }) {
				common = append(common, strings.ToLower(s))
			}
		}
		if len(common) == 0 {
			return "", false
		}
		segs = "segment " + strings.Join(common, ", ")
	case len(sa) > 0:
		segs = "segment " + strings.Join(sa, ", ")
	case len(sb) > 0:
		segs = "segment " + strings.Join(sb, ", ")
	}
	lo, hi := int64(minScore), int64(maxScore)
	for _, band := range []*eventv1.NurtureScoreBand{a.GetScoreBand(), b.GetScoreBand()} {
		if band != nil {
			lo, hi = max(lo, int64(band.GetMin())), min(hi, int64(band.GetMax()))
		}
	}
	if lo > hi {
		return "", false
	}
	scores := "any score"
	if a.GetScoreBand() != nil || b.GetScoreBand() != nil {
		scores = fmt.Sprintf("score %d to %d", lo, hi)
	}
	return fmt.Sprintf("both take cause %s, %s, %s", strings.Join(shared, " or "), segs, scores), true
}

// takesReason reports whether r takes a lead rejected for reason.
func takesReason(r *eventv1.NurtureEntryRule, reason eventv1.RejectReason) bool {
	if len(r.GetCauses()) > 0 && !slices.Contains(r.GetCauses(), eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED) {
		return false
	}
	if len(r.GetRejectReasons()) > 0 {
		return slices.Contains(r.GetRejectReasons(), reason)
	}
	return !OwnPolicy(reason)
}

// Scores are bounded so that bands compare without overflow.
const (
	minScore = -1_000_000
	maxScore = 1_000_000
)

func causeName(c eventv1.RecycleCause) string {
	return strings.TrimPrefix(c.String(), "RECYCLE_CAUSE_")
}

func reasonName(r eventv1.RejectReason) string {
	return strings.TrimPrefix(r.String(), "REJECT_REASON_")
}

// Duration is a program's duration.
func Duration(p *eventv1.NurtureProgram) time.Duration { return p.GetDuration().AsDuration() }

// ReengagesOn reports whether an activity of type t re-engages a lead in p.
func ReengagesOn(p *eventv1.NurtureProgram, t eventv1.ActivityType) bool {
	return slices.Contains(p.GetExitRules().GetReengageOn(), t)
}

// Next is the program a lead goes to when p ends without re-engagement.
func Next(p *eventv1.NurtureProgram) string {
	if id := p.GetExitRules().GetThenProgramId(); id != "" {
		return id
	}
	return p.GetProgramId()
}

// same reports whether a and b define the same program, revision and
// retirement aside.
func same(a, b *eventv1.NurtureProgram) bool {
	x, y := proto.CloneOf(a), proto.CloneOf(b)
	x.Revision, y.Revision, x.Retired, y.Retired = 0, 0, false, false
	return proto.Equal(x, y)
}
