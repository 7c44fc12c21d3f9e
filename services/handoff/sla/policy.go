package sla

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Policy is one segment's sales SLA. Durations are working time in the
// owning team's calendar.
type Policy struct {
	Segment            string
	AcceptWithin       time.Duration
	FirstContactWithin time.Duration
	// MinAttempts contact attempts within AttemptDays working days of
	// acceptance; 0 sets no attempts SLA.
	MinAttempts int
	AttemptDays int
	// WarnBefore is how long before a deadline SLAWarned fires; 0 never.
	WarnBefore time.Duration
	Escalation eventv1.SLAEscalation
}

// Default is the policy of a segment with none of its own: the lifecycle's
// default deadlines (accept within 24h, first contact within 48h), three
// attempts within ten working days, a warning an hour ahead, escalation
// to the next rep.
func Default() Policy {
	return Policy{AcceptWithin: 24 * time.Hour, FirstContactWithin: 48 * time.Hour, MinAttempts: 3, AttemptDays: 10,
		WarnBefore: time.Hour, Escalation: eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP}
}

// FromProto is the policy p describes; nil is Default.
func FromProto(p *eventv1.SLAPolicy) Policy {
	if p == nil {
		return Default()
	}
	return Policy{
		Segment:            p.GetSegment(),
		AcceptWithin:       p.GetAcceptWithin().AsDuration(),
		FirstContactWithin: p.GetFirstContactWithin().AsDuration(),
		MinAttempts:        int(p.GetMinAttempts()),
		AttemptDays:        int(p.GetAttemptDays()),
		WarnBefore:         p.GetWarnBefore().AsDuration(),
		Escalation:         p.GetEscalation(),
	}
}

// ToProto is the proto form of p.
func (p Policy) ToProto() *eventv1.SLAPolicy {
	return &eventv1.SLAPolicy{
		Segment:            p.Segment,
		AcceptWithin:       durationpb.New(p.AcceptWithin),
		FirstContactWithin: durationpb.New(p.FirstContactWithin),
		MinAttempts:        int32(p.MinAttempts),
		AttemptDays:        int32(p.AttemptDays),
		WarnBefore:         durationpb.New(p.WarnBefore),
		Escalation:         p.Escalation,
	}
}

// maxWithin bounds a deadline: beyond it a typo, not a policy.
const maxWithin = 90 * 24 * time.Hour

// Validate checks a policy; field prefixes the violations ("policy").
func Validate(field string, p *eventv1.SLAPolicy) []Violation {
	var v []Violation
	add := func(f, format string, args ...any) {
		v = append(v, Violation{Field: field + f, Description: fmt.Sprintf(format, args...)})
	}
	if p == nil {
		return []Violation{{Field: field, Description: "is required"}}
	}
	dur := func(f string, d *durationpb.Duration, required bool) time.Duration {
		switch {
		case d == nil && required:
			add(f, "is required")
		case d == nil:
		case d.CheckValid() != nil || d.AsDuration() < 0:
			add(f, "must be a positive duration")
		case d.AsDuration() > maxWithin:
			add(f, "must be at most %s", maxWithin)
		case required && d.AsDuration() < time.Second:
			add(f, "must be at least 1s")
		default:
			return d.AsDuration()
		}
		return 0
	}
	accept := dur(".accept_within", p.GetAcceptWithin(), true)
	contact := dur(".first_contact_within", p.GetFirstContactWithin(), true)
	warn := dur(".warn_before", p.GetWarnBefore(), false)
	if warn > 0 && (warn >= accept || warn >= contact) && accept > 0 && contact > 0 {
		add(".warn_before", "must be shorter than accept_within and first_contact_within")
	}
	switch n := p.GetMinAttempts(); {
	case n < 0 || n > 100:
		add(".min_attempts", "must be 0 to 100")
	case n > 0 && (p.GetAttemptDays() < 1 || p.GetAttemptDays() > 90):
		add(".attempt_days", "must be 1 to 90 working days when min_attempts is set")
	case n == 0 && p.GetAttemptDays() != 0:
		add(".attempt_days", "is not used without min_attempts")
	}
	switch p.GetEscalation() {
	case eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP, eventv1.SLAEscalation_SLA_ESCALATION_MANAGER:
	default:
		add(".escalation", "must be NEXT_REP or MANAGER")
	}
	return v
}

// AcceptDeadlines are the steps of an assignment: SLAWarned at WarnAt
// (zero: none), SLABreached at DueAt.
type AcceptDeadlines struct{ WarnAt, DueAt time.Time }

// Accept returns the acceptance deadlines of a lead assigned at start.
func (p Policy) Accept(cal Calendar, start time.Time) AcceptDeadlines {
	due := cal.Add(start, p.AcceptWithin)
	return AcceptDeadlines{WarnAt: p.warn(cal, start, due, p.AcceptWithin), DueAt: due}
}

// ContactDeadlines are the steps after acceptance: the first attempt, and
// the minimum number of attempts (zero times: no attempts SLA).
type ContactDeadlines struct {
	ContactWarn, ContactDue   time.Time
	AttemptsWarn, AttemptsDue time.Time
}

// Contact returns the deadlines of a lead accepted at start. The attempts
// window closes no earlier than the first contact is due.
func (p Policy) Contact(cal Calendar, start time.Time) ContactDeadlines {
	d := ContactDeadlines{ContactDue: cal.Add(start, p.FirstContactWithin)}
	d.ContactWarn = p.warn(cal, start, d.ContactDue, p.FirstContactWithin)
	if p.MinAttempts > 0 {
		// Closing first, the window's breach would escalate a lead whose
		// first-contact SLA still runs.
		d.AttemptsDue = maxTime(cal.AddDays(start, p.AttemptDays), d.ContactDue)
		if p.WarnBefore > 0 {
			d.AttemptsWarn = cal.Sub(d.AttemptsDue, p.WarnBefore, start)
			if !d.AttemptsWarn.After(start) {
				d.AttemptsWarn = time.Time{}
			}
		}
	}
	return d
}

// NextContact returns the deadline of the next touch after a contact
// attempt at start (outside an attempts window), within the first
// contact's interval, and its warning (zero: none).
func (p Policy) NextContact(cal Calendar, start time.Time) (warnAt, dueAt time.Time) {
	dueAt = cal.Add(start, p.FirstContactWithin)
	return p.warn(cal, start, dueAt, p.FirstContactWithin), dueAt
}

func (p Policy) warn(cal Calendar, start, due time.Time, within time.Duration) time.Time {
	if p.WarnBefore <= 0 || p.WarnBefore >= within {
		return time.Time{}
	}
	return cal.Sub(due, p.WarnBefore, start)
}
