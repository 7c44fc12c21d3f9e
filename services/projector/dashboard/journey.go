package dashboard

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Lanes of the journey, one per service that writes lead events, in the
// order the page draws them.
const (
	LaneIntake        = "intake"
	LaneQualification = "qualification"
	LaneHandoff       = "handoff"
	LaneNurture       = "nurture"
	// LaneOther holds event types this page does not know yet.
	LaneOther = "other"
)

// Step is one lead event as the journey draws it: where the stream stored
// it, which service's lane, what happened in words, and the lifecycle the
// event left the lead in (status, owner, deadline, cycle).
type Step struct {
	Seq         uint64    `json:"seq"`
	Type        string    `json:"type"`
	Lane        string    `json:"lane"`
	At          time.Time `json:"at"`
	Actor       string    `json:"actor,omitempty"`
	Summary     string    `json:"summary"`
	Amount      *Money    `json:"amount,omitempty"`
	Status      string    `json:"status"`
	Owner       string    `json:"owner,omitempty"`
	Deadline    time.Time `json:"deadline,omitzero"`
	Cycle       int32     `json:"cycle"`
	Score       int32     `json:"score"`
	EventID     string    `json:"event_id"`
	CausationID string    `json:"causation_id,omitempty"`
	// Recycle marks a return to nurture; NewCycle the first event of a
	// later journey cycle.
	Recycle  bool `json:"recycle,omitempty"`
	NewCycle bool `json:"new_cycle,omitempty"`
	// Missed: the next step came after this one's deadline, and was not
	// the step the deadline was set for (nurture's review of an enrolment,
	// its recycle of a new lead nobody engaged) within the hour after it:
	// a late step, not a plan.
	Missed bool `json:"missed,omitempty"`
}

// Money is an amount in minor units.
type Money struct {
	Currency string `json:"currency"`
	Minor    int64  `json:"minor"`
}

func money(m *eventv1.Money) *Money {
	if m == nil || m.GetCurrency() == "" {
		return nil
	}
	return &Money{Currency: m.GetCurrency(), Minor: m.GetMinorUnits()}
}

// Journey turns a lead's events, in stream order, into steps. It is pure.
func Journey(recs []eventstore.Record) []Step {
	out := make([]Step, 0, len(recs))
	var cycle int32
	for _, r := range recs {
		ev := r.Event
		lc := ev.GetLifecycle()
		s := Step{Seq: r.Seq, Type: ev.GetEventType(), At: ev.GetOccurredAt().AsTime(), Actor: by(ev),
			Status: word(lc.GetStatus()), Owner: owner(lc.GetOwner()), Cycle: lc.GetCycle(), Score: lc.GetScore(),
			EventID: ev.GetEventId(), CausationID: ev.GetCausationId()}
		if lc.GetDeadline() != nil {
			s.Deadline = lc.GetDeadline().AsTime()
		}
		s.Lane, s.Summary, s.Amount = describe(ev)
		if s.Type == "" {
			s.Type = string(envelope.Payload(ev).ProtoReflect().Descriptor().Name())
		}
		s.Recycle = s.Type == "LeadRecycled"
		s.NewCycle = cycle != 0 && s.Cycle > cycle
		cycle = max(cycle, s.Cycle)
		out = append(out, s)
	}
	for i := range len(out) - 1 {
		s, next := &out[i], out[i+1]
		// Within the hour nurture may wait past it (a fact's score), or
		// past the step that set it (an unmerge restoring a deadline
		// gone by); later, nurture itself was late.
		from := s.Deadline
		if s.At.After(from) {
			from = s.At
		}
		planned := next.Lane == LaneNurture && (s.Status == "new" || s.Status == "nurturing") && !next.At.After(from.Add(time.Hour))
		s.Missed = !s.Deadline.IsZero() && next.At.After(s.Deadline) && !planned
	}
	return out
}

// by is who an event names as its actor, and the API caller beside it
// when the request named someone else (a request's actor field is the
// caller's word; the caller is its token's).
func by(ev *eventv1.Event) string {
	if c := ev.GetCaller(); c != nil {
		return actor(ev.GetActor()) + " via " + actor(c)
	}
	return actor(ev.GetActor())
}

func actor(a *eventv1.Actor) string {
	if a.GetId() == "" {
		return ""
	}
	if a.GetTeam() != eventv1.Team_TEAM_UNSPECIFIED {
		return a.GetId() + " (" + word(a.GetTeam()) + ")"
	}
	return a.GetId()
}

func owner(o *eventv1.Owner) string {
	if o.GetId() == "" {
		return ""
	}
	return word(o.GetKind()) + " " + o.GetId()
}

// word is an enum value in lower-case words: REJECT_REASON_NOT_A_FIT is
// "not a fit".
func word(e protoreflect.Enum) string {
	vals := e.Descriptor().Values()
	v := vals.ByNumber(e.Number())
	if v == nil {
		return fmt.Sprint(e.Number())
	}
	prefix := strings.TrimSuffix(string(vals.ByNumber(0).Name()), "UNSPECIFIED")
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(string(v.Name()), prefix), "_", " "))
}

// describe says which service's lane an event belongs to and what it
// means. Personal fields are sealed in the stream and never shown.
func describe(ev *eventv1.Event) (lane, summary string, amount *Money) {
	join := func(parts ...string) string {
		var out []string
		for _, p := range parts {
			if p != "" {
				out = append(out, p)
			}
		}
		return strings.Join(out, ", ")
	}
	opt := func(format, v string) string {
		if v == "" {
			return ""
		}
		return fmt.Sprintf(format, v)
	}
	switch p := envelope.Payload(ev).(type) {
	case *eventv1.LeadCaptured:
		a, pr := p.GetAttribution(), p.GetProfile()
		return LaneIntake, join("Captured"+opt(" from %s", a.GetSource()), opt("campaign %s", a.GetCampaignId()),
			pr.GetEmailDomain(), pr.GetCountry(), pr.GetIndustry()), nil
	case *eventv1.LeadResubmitted:
		return LaneIntake, join("Submitted again"+opt(" from %s", p.GetAttribution().GetSource()),
			opt("campaign %s", p.GetAttribution().GetCampaignId()), opt("matched by %s", p.GetMatchedBy())), nil
	case *eventv1.ActivityRecorded:
		return LaneIntake, join("Activity: "+word(p.GetType()), opt("campaign %s", p.GetCampaignId())), nil
	case *eventv1.ConsentChanged:
		return LaneIntake, "Consent changed" + opt(" (%s)", p.GetSource()), nil
	case *eventv1.LeadMerged:
		return LaneIntake, fmt.Sprintf("Merged: %s absorbed into %s", p.GetAbsorbedLeadId(), p.GetSurvivorLeadId()), nil
	case *eventv1.LeadUnmerged:
		return LaneIntake, fmt.Sprintf("Unmerged: %s split from %s", p.GetAbsorbedLeadId(), p.GetSurvivorLeadId()), nil
	case *eventv1.MergeCandidateFound:
		return LaneIntake, "Possible duplicate of " + p.GetOtherLeadId(), nil
	case *eventv1.LeadErased:
		return LaneIntake, "Personal data erased" + opt(": %s", p.GetReason()), nil
	case *eventv1.LeadScored:
		return LaneQualification, fmt.Sprintf("Scored %d of %d (fit %d, engagement %d), model v%d",
			p.GetTotal(), p.GetThreshold(), p.GetFit(), p.GetEngagement(), p.GetModelVersion()), nil
	case *eventv1.LeadQualified:
		return LaneQualification, fmt.Sprintf("Qualified (MQL): %d ≥ %d, model v%d", p.GetScore(), p.GetThreshold(), p.GetModelVersion()), nil
	case *eventv1.LeadDisqualified:
		s := "Disqualified"
		if p.GetNotNow() {
			s = "Not now"
		}
		return LaneQualification, join(s+opt(": %s", p.GetReason()), opt("rule %s", p.GetRuleId())), nil
	case *eventv1.LeadAssigned:
		return LaneHandoff, join("Assigned to "+owner(p.GetOwner()), opt("segment %s", p.GetSegment()),
			opt("account %s", p.GetAccountId()), opt("rule %s", p.GetRule())), nil
	case *eventv1.LeadQueued:
		return LaneHandoff, "Queued in " + p.GetQueue(), nil
	case *eventv1.LeadAccepted:
		return LaneHandoff, "Accepted by " + p.GetRepId() + map[bool]string{true: " within SLA", false: " late"}[p.GetWithinSla()], nil
	case *eventv1.LeadRejected:
		return LaneHandoff, join("Rejected by "+p.GetRepId()+": "+word(p.GetReason()), p.GetNote()), nil
	case *eventv1.ContactAttempted:
		return LaneHandoff, join(fmt.Sprintf("Contact attempt %d by %s", p.GetAttempt(), p.GetRepId()), word(p.GetChannel()),
			nonZero(word(p.GetOutcome()))), nil
	case *eventv1.SLAWarned:
		return LaneHandoff, fmt.Sprintf("SLA warning: %s due, owner %s", word(p.GetSla()), owner(p.GetOwner())), nil
	case *eventv1.SLABreached:
		return LaneHandoff, fmt.Sprintf("SLA breached: %s, owner %s", word(p.GetSla()), owner(p.GetOwner())), nil
	case *eventv1.LeadReassigned:
		return LaneHandoff, join(fmt.Sprintf("Reassigned %s → %s", owner(p.GetFrom()), owner(p.GetTo())), word(p.GetCause()), p.GetReason()), nil
	case *eventv1.OpportunityCreated:
		return LaneHandoff, join("Opportunity "+p.GetOpportunityId(), p.GetStage(), opt("rep %s", p.GetRepId())), money(p.GetAmount())
	case *eventv1.OpportunityStageChanged:
		return LaneHandoff, fmt.Sprintf("Opportunity %s: %s → %s", p.GetOpportunityId(), p.GetFromStage(), p.GetToStage()), money(p.GetAmount())
	case *eventv1.DealWon:
		return LaneHandoff, join("Won "+p.GetOpportunityId(), opt("rep %s", p.GetRepId())), money(p.GetAmount())
	case *eventv1.DealLost:
		return LaneHandoff, join("Lost "+p.GetOpportunityId(), p.GetReason()), nil
	case *eventv1.LeadRecycled:
		return LaneNurture, join("Recycled: "+word(p.GetCause()), nonZero(word(p.GetRejectReason())), p.GetNote()), nil
	case *eventv1.NurtureEnrolled:
		return LaneNurture, join("Enrolled in "+p.GetProgramId(), p.GetWhy()), nil
	case *eventv1.LeadReengaged:
		return LaneNurture, join("Re-engaged", nonZero(word(p.GetActivityType())), opt("program %s", p.GetProgramId())), nil
	case *eventv1.NurtureExited:
		return LaneNurture, join("Left "+p.GetProgramId(), word(p.GetCause()), p.GetReason()), nil
	}
	return LaneOther, ev.GetEventType(), nil
}

// nonZero drops an enum left unset.
func nonZero(w string) string {
	if w == "unspecified" {
		return ""
	}
	return w
}
