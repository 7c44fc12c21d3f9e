package lifecycle

import (
	"slices"
	"time"
)

// Kind names an event, in the past tense, exactly as the spec does.
type Kind string

// The event kinds.
const (
	KindCaptured           Kind = "LeadCaptured"
	KindResubmitted        Kind = "LeadResubmitted"
	KindMerged             Kind = "LeadMerged"
	KindUnmerged           Kind = "LeadUnmerged"
	KindActivityRecorded   Kind = "ActivityRecorded"
	KindConsentChanged     Kind = "ConsentChanged"
	KindScored             Kind = "LeadScored"
	KindQualified          Kind = "LeadQualified"
	KindDisqualified       Kind = "LeadDisqualified"
	KindQueued             Kind = "LeadQueued"
	KindAssigned           Kind = "LeadAssigned"
	KindAccepted           Kind = "LeadAccepted"
	KindRejected           Kind = "LeadRejected"
	KindContactAttempted   Kind = "ContactAttempted"
	KindSLAWarned          Kind = "SLAWarned"
	KindSLABreached        Kind = "SLABreached"
	KindReassigned         Kind = "LeadReassigned"
	KindOpportunityCreated Kind = "OpportunityCreated"
	KindDealWon            Kind = "DealWon"
	KindDealLost           Kind = "DealLost"
	KindRecycled           Kind = "LeadRecycled"
	KindNurtureEnrolled    Kind = "NurtureEnrolled"
	KindReengaged          Kind = "LeadReengaged"
	KindNurtureExited      Kind = "NurtureExited"
	KindErased             Kind = "LeadErased"
)

// Fact reports whether an event of this kind brings new facts about the
// person, which score the lead again: a capture, a re-submission, an
// activity or a consent change.
func (k Kind) Fact() bool {
	switch k {
	case KindCaptured, KindResubmitted, KindActivityRecorded, KindConsentChanged:
		return true
	}
	return false
}

// CommandName names a command, in the imperative.
type CommandName string

// The commands. Each emits exactly one event, named in Transitions.
const (
	Capture        CommandName = "Capture"
	Resubmit       CommandName = "Resubmit"
	RecordActivity CommandName = "RecordActivity"
	ChangeConsent  CommandName = "ChangeConsent"
	Score          CommandName = "Score"
	Qualify        CommandName = "Qualify"
	Disqualify     CommandName = "Disqualify"
	Queue          CommandName = "Queue"
	Assign         CommandName = "Assign"
	Accept         CommandName = "Accept"
	Reject         CommandName = "Reject"
	LogContact     CommandName = "LogContact"
	WarnSLA        CommandName = "WarnSLA"
	BreachSLA      CommandName = "BreachSLA"
	Reassign       CommandName = "Reassign"
	Convert        CommandName = "Convert"
	Win            CommandName = "Win"
	Lose           CommandName = "Lose"
	Recycle        CommandName = "Recycle"
	Enroll         CommandName = "Enroll"
	Reengage       CommandName = "Reengage"
	ExitNurture    CommandName = "ExitNurture"
	Merge          CommandName = "Merge"
	Unmerge        CommandName = "Unmerge"
	Erase          CommandName = "Erase"
)

// Transition is one row of Transitions: the command that records an event
// kind, where it may happen and what it does to the state.
//
// Decide reads every column; Evolve reads only Kind, To and Keeps, because
// once an event is recorded its Owner and Deadline carry the outcome.
type Transition struct {
	Command CommandName
	Kind    Kind
	From    []Status // where Command is allowed; empty: any status that is neither None nor terminal
	To      Status   // status after the event; StatusNone: unchanged

	Owner      Owner                      // fixed owner after the event (a queue); zero: unchanged, or see TakesOwner
	TakesOwner OwnerKind                  // the command names the new owner, who must be of this kind
	OrQueue    bool                       // ... or a queue (an escalation to a manager's queue)
	Within     func(Policy) time.Duration // the new deadline is now plus this; nil: unchanged
	TakesDue   bool                       // the command may name the deadline instead of Within

	NeedsReason bool // the command must say why; the reason is kept on the event

	// Restores: the command names the status, owner and deadline to go
	// back to (an unmerge, with the state from before the merge).
	Restores bool

	// Keeps lists statuses of From the event leaves as they are, deadline
	// included: the new owner takes over the step under way (an open
	// deal and its close date) instead of starting To's. Evolve tells the
	// cases apart by the status before, so the kind keeps one row.
	Keeps []Status
}

// keeps reports whether the transition leaves status s and its deadline
// as they are.
func (t Transition) keeps(s Status) bool { return slices.Contains(t.Keeps, s) }

// takes names the kinds of owner the command may name.
func (t Transition) takes() string {
	if t.OrQueue {
		return t.TakesOwner.String() + " or a " + OwnerQueue.String()
	}
	return t.TakesOwner.String()
}

// Allows reports whether the transition may happen from status s.
func (t Transition) Allows(s Status) bool {
	if len(t.From) == 0 {
		return s.live()
	}
	return slices.Contains(t.From, s)
}

// Transitions is the lifecycle: one row per event kind, in the order a lead
// usually meets them. Decide and Evolve both read it; treat it as read-only.
//
// Special cases that do not fit a row are kept explicit in Decide and Evolve:
// a "not now" LeadDisqualified goes to RECYCLED instead of DISQUALIFIED;
// LeadAccepted resets Attempts and ContactAttempted counts one; LeadScored
// keeps the score; Reassign to the current owner is refused; a terminal To
// clears the owner and the deadline.
var Transitions = []Transition{
	{Command: Capture, Kind: KindCaptured, From: []Status{StatusNone}, To: StatusNew,
		Owner: QueueQualification, Within: scoreWithin},

	// Facts about the person, not steps in the funnel: recorded even for a
	// lead that is won or disqualified, because a consent change in
	// particular must never be lost. A merged lead's facts belong to the
	// survivor, and an erased lead has nothing left to attach them to.
	{Command: Resubmit, Kind: KindResubmitted, From: allBut(StatusNone, StatusMerged, StatusErased)},
	{Command: RecordActivity, Kind: KindActivityRecorded, From: allBut(StatusNone, StatusMerged, StatusErased)},
	{Command: ChangeConsent, Kind: KindConsentChanged, From: allBut(StatusNone, StatusMerged, StatusErased)},

	{Command: Score, Kind: KindScored},
	{Command: Qualify, Kind: KindQualified, From: []Status{StatusNew, StatusNurturing}, To: StatusMQL,
		Owner: QueueRouting, Within: routeWithin},
	{Command: Disqualify, Kind: KindDisqualified, From: []Status{StatusNew, StatusMQL, StatusNurturing}, To: StatusDisqualified,
		NeedsReason: true},
	// No rep fits: the MQL waits in a named queue, still due by its route
	// deadline, until a rep is free or someone assigns it from there. The
	// deadline moves on (Due) when no rep is on shift: the clock waits.
	{Command: Queue, Kind: KindQueued, From: []Status{StatusMQL}, TakesOwner: OwnerQueue, TakesDue: true},
	{Command: Assign, Kind: KindAssigned, From: []Status{StatusMQL}, To: StatusAssigned,
		TakesOwner: OwnerRep, Within: acceptWithin},
	{Command: Accept, Kind: KindAccepted, From: []Status{StatusAssigned}, To: StatusAccepted,
		Within: contactWithin},
	{Command: Reject, Kind: KindRejected, From: []Status{StatusAssigned, StatusAccepted}, To: StatusRecycled,
		Owner: QueueNurture, Within: recycleWithin, NeedsReason: true},
	{Command: LogContact, Kind: KindContactAttempted, From: []Status{StatusAccepted}, To: StatusAccepted,
		Within: contactWithin},

	// SLA events are notes for people; the deadline stays, so a breached lead
	// stays breached until someone acts on it.
	{Command: WarnSLA, Kind: KindSLAWarned},
	{Command: BreachSLA, Kind: KindSLABreached},
	// To a rep, or to a queue whose people hand it on (a manager's queue,
	// by escalation): either way sales still holds it. An open deal changes
	// hands as it is (its rep left): still an opportunity, due to close
	// when it was, so its revenue is not stuck with someone gone.
	{Command: Reassign, Kind: KindReassigned, From: []Status{StatusAssigned, StatusAccepted, StatusOpportunity}, To: StatusAssigned,
		TakesOwner: OwnerRep, OrQueue: true, Within: acceptWithin, Keeps: []Status{StatusOpportunity}},

	{Command: Convert, Kind: KindOpportunityCreated, From: []Status{StatusAccepted}, To: StatusOpportunity,
		Within: closeWithin, TakesDue: true},
	{Command: Win, Kind: KindDealWon, From: []Status{StatusOpportunity}, To: StatusWon},
	{Command: Lose, Kind: KindDealLost, From: []Status{StatusOpportunity}, To: StatusLost,
		Owner: QueueNurture, Within: recycleWithin, NeedsReason: true},
	// From RECYCLED too: a rejection or a "not now" already hands the lead to
	// nurture, which then records why and from what it recycles it. From
	// NEW: a lead no score qualified by its deadline goes to nurture.
	{Command: Recycle, Kind: KindRecycled, From: []Status{StatusNew, StatusLost, StatusAccepted, StatusRecycled}, To: StatusRecycled,
		Owner: QueueNurture, Within: recycleWithin, NeedsReason: true},

	{Command: Enroll, Kind: KindNurtureEnrolled, From: []Status{StatusRecycled}, To: StatusNurturing,
		TakesOwner: OwnerProgram, Within: nurtureTouchWithin, TakesDue: true},
	{Command: Reengage, Kind: KindReengaged, From: []Status{StatusNurturing}, To: StatusNurturing,
		Within: scoreWithin},
	{Command: ExitNurture, Kind: KindNurtureExited, From: []Status{StatusNurturing}, To: StatusRecycled,
		Owner: QueueNurture, Within: recycleWithin, NeedsReason: true},

	// The reason names the surviving lead, so readers can follow the merge.
	{Command: Merge, Kind: KindMerged, To: StatusMerged, NeedsReason: true},
	// The only way out of a terminal status: an unmerge puts the absorbed
	// lead back as it was before its merge, which the caller reads from the
	// lead's history. An old deadline stays old, so the lead shows overdue.
	{Command: Unmerge, Kind: KindUnmerged, From: []Status{StatusMerged}, NeedsReason: true, Restores: true},
	// Erasure is a legal duty, so it is allowed from every terminal status
	// too; only an erased lead cannot be erased again.
	{Command: Erase, Kind: KindErased, From: allBut(StatusNone, StatusErased), To: StatusErased},
}

func scoreWithin(p Policy) time.Duration        { return p.ScoreWithin }
func routeWithin(p Policy) time.Duration        { return p.RouteWithin }
func acceptWithin(p Policy) time.Duration       { return p.AcceptWithin }
func contactWithin(p Policy) time.Duration      { return p.ContactWithin }
func closeWithin(p Policy) time.Duration        { return p.CloseWithin }
func recycleWithin(p Policy) time.Duration      { return p.RecycleWithin }
func nurtureTouchWithin(p Policy) time.Duration { return p.NurtureTouchWithin }

// allBut returns every declared status except those given.
func allBut(except ...Status) []Status {
	var out []Status
	for s := range Status(len(statusNames)) {
		if !slices.Contains(except, s) {
			out = append(out, s)
		}
	}
	return out
}

func byCommand(n CommandName) (Transition, bool) {
	i := slices.IndexFunc(Transitions, func(t Transition) bool { return t.Command == n })
	if i < 0 {
		return Transition{}, false
	}
	return Transitions[i], true
}

func byKind(k Kind) (Transition, bool) {
	i := slices.IndexFunc(Transitions, func(t Transition) bool { return t.Kind == k })
	if i < 0 {
		return Transition{}, false
	}
	return Transitions[i], true
}
