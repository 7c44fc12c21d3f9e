// Package lifecycle is the one state machine for a lead's life. Every service
// uses it, so none of them can disagree about what may happen next.
//
// The package is pure: there is no I/O, no clock and no mutable state. Decide
// checks a Command against a State and returns the Events to record, or an
// error saying why not. Evolve applies an Event and never fails, because an
// event is a fact that has already been recorded. Time is always an argument.
// Both functions read one table, Transitions. NewEvent decides and wraps the
// result as a stored event (pkg/envelope); its new event id (UUIDv7) is the
// only value here not given by the arguments.
//
// Every service relies on one invariant: no lead is lost. A lead that has been
// captured and has not reached a terminal status always has an owner, and a
// deadline by which that owner must act. Check reports a state that breaks it.
package lifecycle

import (
	"fmt"
	"strconv"
	"time"
)

// Status is where a lead is in its life.
type Status uint8

// The statuses. The numbers are for storage; never reorder them.
const (
	StatusNone Status = iota // no lead yet (before capture)
	StatusNew
	StatusMQL
	StatusAssigned
	StatusAccepted
	StatusOpportunity
	StatusWon
	StatusLost
	StatusRecycled
	StatusNurturing
	StatusDisqualified
	StatusMerged
	StatusErased
)

var statusNames = [...]string{
	"NONE", "NEW", "MQL", "ASSIGNED", "ACCEPTED", "OPPORTUNITY", "WON",
	"LOST", "RECYCLED", "NURTURING", "DISQUALIFIED", "MERGED", "ERASED",
}

// String returns the status's name in capitals, such as "MQL", the form
// ParseStatus reads.
func (s Status) String() string {
	if s.declared() {
		return statusNames[s]
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Terminal reports whether the lead's life is over: WON, DISQUALIFIED, MERGED
// or ERASED. A terminal lead has no owner and no deadline.
func (s Status) Terminal() bool {
	switch s {
	case StatusWon, StatusDisqualified, StatusMerged, StatusErased:
		return true
	}
	return false
}

// live reports whether the lead exists and is not finished, so must be owned.
func (s Status) live() bool { return s.declared() && s != StatusNone && !s.Terminal() }

func (s Status) declared() bool { return int(s) < len(statusNames) }

// ParseStatus returns the status named name, as written by Status.String.
func ParseStatus(name string) (Status, error) {
	for i, n := range statusNames {
		if n == name {
			return Status(i), nil
		}
	}
	return StatusNone, fmt.Errorf("unknown lead status %q", name)
}

// OwnerKind says what kind of party owns a lead.
type OwnerKind uint8

// The owner kinds.
const (
	OwnerNone    OwnerKind = iota
	OwnerQueue             // a work queue, such as routing, that a service drains
	OwnerRep               // a sales rep
	OwnerProgram           // a nurture program
)

// String returns "", "queue", "rep" or "program".
func (k OwnerKind) String() string {
	switch k {
	case OwnerNone:
		return ""
	case OwnerQueue:
		return "queue"
	case OwnerRep:
		return "rep"
	case OwnerProgram:
		return "program"
	}
	return "OwnerKind(" + strconv.Itoa(int(k)) + ")"
}

// Owner is who must act on a lead next.
type Owner struct {
	Kind OwnerKind
	ID   string
}

// IsZero reports whether o is no owner at all.
func (o Owner) IsZero() bool { return o == Owner{} }

// String returns the kind and the id, such as "rep ann", or "" for no owner.
func (o Owner) String() string {
	if o.IsZero() {
		return ""
	}
	return o.Kind.String() + " " + o.ID
}

// The well-known queues that own a lead between people. Treat them as
// constants.
var (
	QueueQualification = Owner{Kind: OwnerQueue, ID: "qualification"}
	QueueRouting       = Owner{Kind: OwnerQueue, ID: "routing"}
	QueueNurture       = Owner{Kind: OwnerQueue, ID: "nurture"}
)

// State is what the lifecycle knows about one lead: enough to decide the next
// command, nothing more.
type State struct {
	Status   Status
	Owner    Owner
	Deadline time.Time // when the next step is due
	Attempts int       // contact attempts since the lead was last accepted
	Score    int       // last total score (informational)
	// Cycle is the journey cycle: 1 from capture, one more each time the
	// lead qualifies again out of nurture.
	Cycle int
}

// Policy sets how long each step may take; Decide turns these into deadlines.
type Policy struct {
	ScoreWithin        time.Duration // capture or re-engagement to scoring
	EngageWithin       time.Duration // a new lead's score below the threshold to its next score (engagement)
	RouteWithin        time.Duration // qualification to assignment
	AcceptWithin       time.Duration // assignment to acceptance by the rep
	ContactWithin      time.Duration // acceptance, or the last attempt, to the next contact attempt
	CloseWithin        time.Duration // opportunity to won or lost, unless the command gives a date
	RecycleWithin      time.Duration // recycled or lost to nurture enrolment
	NurtureTouchWithin time.Duration // enrolment to the next nurture touch, unless the command gives a date
}

// DefaultPolicy returns the policy used when a tenant sets none.
func DefaultPolicy() Policy {
	return Policy{
		ScoreWithin:        time.Hour,
		EngageWithin:       30 * 24 * time.Hour,
		RouteWithin:        4 * time.Hour,
		AcceptWithin:       24 * time.Hour,
		ContactWithin:      48 * time.Hour,
		CloseWithin:        90 * 24 * time.Hour,
		RecycleWithin:      72 * time.Hour,
		NurtureTouchWithin: 14 * 24 * time.Hour,
	}
}
