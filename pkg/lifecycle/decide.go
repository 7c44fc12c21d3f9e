package lifecycle

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Event is a fact about a lead. It carries its own outcome (owner, deadline)
// so that Evolve needs no policy and replays the same way after a policy
// change.
type Event struct {
	Kind     Kind
	At       time.Time
	Owner    Owner     // owner after the event (zero: unchanged)
	Deadline time.Time // deadline after the event (zero: unchanged)
	Reason   string
	NotNow   bool   // LeadDisqualified only: "not now", goes to nurture instead of terminal
	Score    int    // LeadScored only
	Status   Status // LeadUnmerged only: the status restored
}

// Command asks for one step in a lead's life. Fields a command does not use
// must be left zero; a set field that would be ignored is a caller's bug, so
// Decide rejects it.
type Command struct {
	Name   CommandName
	Owner  Owner     // Assign: a rep (required); Reassign: a rep or a queue (required); Queue: a queue (required); Enroll: a program (required); Unmerge: the owner before the merge
	Due    time.Time // Convert: expected close; Enroll: next touch; Queue: the route deadline moved on; optional, after now when set; Unmerge: the deadline before the merge
	Reason string    // required for Disqualify, Reject, Lose, Recycle, ExitNurture, Merge (the surviving lead id) and Unmerge
	NotNow bool      // Disqualify only
	Score  int       // Score only
	// Rescore (Score only) is a score with no new fact about the lead
	// (under a newly active model version, or of an unmerge's survivor),
	// so a new lead keeps the deadline its last engagement gave it instead
	// of waiting EngageWithin again.
	Rescore bool
	Status  Status // Unmerge only: the status before the merge
}

// ErrRefused is wrapped by every RefusedError.
var ErrRefused = errors.New("transition refused")

// RefusedError is returned by Decide when the command is well formed but not
// allowed in the lead's current status.
type RefusedError struct {
	Command CommandName
	Status  Status
	Reason  string // for people, such as "lead is not assigned"
}

// Error says which command was refused, in which status, and why.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s refused in %s: %s", e.Command, e.Status, e.Reason)
}

// Unwrap returns ErrRefused.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// ErrInvalidCommand is wrapped by every InvalidCommandError.
var ErrInvalidCommand = errors.New("invalid command")

// InvalidCommandError is returned by Decide when a command's field is missing
// or wrong, whatever the lead's state.
type InvalidCommandError struct {
	Command CommandName
	Field   string // "name", "owner", "due", "reason", "not_now", "score" or "status"
	Reason  string // for people, such as "is required"
}

// Error names the command and the field, such as "Assign: owner is required".
func (e *InvalidCommandError) Error() string {
	return fmt.Sprintf("%s: %s %s", e.Command, e.Field, e.Reason)
}

// Unwrap returns ErrInvalidCommand.
func (e *InvalidCommandError) Unwrap() error { return ErrInvalidCommand }

// Decide checks c against s at time now and returns the events to record, or
// an error. It checks the command's fields first, so a malformed command is an
// *InvalidCommandError in every state; then the state, returning a
// *RefusedError when the transition is not allowed. It returns events or an
// error, never both.
func Decide(s State, c Command, p Policy, now time.Time) ([]Event, error) {
	t, ok := byCommand(c.Name)
	if !ok {
		return nil, &InvalidCommandError{Command: c.Name, Field: "name", Reason: "is not a known command"}
	}
	if err := validate(c, t, now); err != nil {
		return nil, err
	}
	if !t.Allows(s.Status) {
		return nil, &RefusedError{Command: c.Name, Status: s.Status, Reason: refusal(t, s.Status)}
	}
	// Reassigning to the same rep would restart the acceptance clock with
	// nobody new to accept, hiding the breach the reassignment is meant to fix.
	if c.Name == Reassign && c.Owner == s.Owner {
		return nil, &RefusedError{Command: c.Name, Status: s.Status, Reason: "lead is already owned by " + s.Owner.String()}
	}
	// A lead in a sales queue (a manager's, after an escalation) waits for a
	// person to hand it on; no rep accepts or rejects it there.
	if (c.Name == Accept || c.Name == Reject) && s.Owner.Kind == OwnerQueue {
		return nil, &RefusedError{Command: c.Name, Status: s.Status, Reason: "lead waits in " + s.Owner.String() + ": reassign it to a rep first"}
	}

	e := Event{Kind: t.Kind, At: now, Owner: t.Owner, Reason: c.Reason}
	if t.TakesOwner != OwnerNone || t.Restores {
		e.Owner = c.Owner
	}
	if t.Restores {
		e.Status = c.Status
	}
	switch {
	case !c.Due.IsZero(): // validate allowed it only where TakesDue
		e.Deadline = c.Due
	case t.Within != nil && !t.keeps(s.Status):
		e.Deadline = now.Add(t.Within(p))
	}
	switch c.Name {
	case Disqualify:
		// "Not now" is not an end: the lead goes back to nurture, so like any
		// recycled lead it needs the nurture queue and a deadline.
		if c.NotNow {
			e.NotNow = true
			e.Owner = QueueNurture
			e.Deadline = now.Add(p.RecycleWithin)
		}
	case Score:
		e.Score = c.Score
		if s.Status == StatusNew && !c.Rescore {
			// Scored: what a new lead waits for now is engagement that
			// scores it over the threshold (a verdict follows at once when
			// this score is over it), not the scoring it just had.
			e.Deadline = now.Add(p.EngageWithin)
		}
	}
	return []Event{e}, nil
}

// validate checks c's fields against its row; the state plays no part.
func validate(c Command, t Transition, now time.Time) error {
	invalid := func(field, reason string) error {
		return &InvalidCommandError{Command: c.Name, Field: field, Reason: reason}
	}
	const unused = "is not used by this command"
	if t.Restores {
		// The state before a merge: any live one, as it was, deadline
		// included even when it has passed since.
		switch {
		case strings.TrimSpace(c.Reason) == "":
			return invalid("reason", "is required")
		case !c.Status.live():
			return invalid("status", "must be the live status the lead had before, not "+c.Status.String())
		case c.Owner.IsZero() || c.Owner.Kind == OwnerNone || strings.TrimSpace(c.Owner.ID) == "":
			return invalid("owner", "must be the owner the lead had before")
		case c.Due.IsZero():
			return invalid("due", "must be the deadline the lead had before")
		case c.NotNow:
			return invalid("not_now", unused)
		case c.Score != 0:
			return invalid("score", unused)
		case c.Rescore:
			return invalid("rescore", unused)
		}
		return nil
	}
	switch {
	case c.Status != StatusNone:
		return invalid("status", unused)
	case t.NeedsReason && strings.TrimSpace(c.Reason) == "":
		return invalid("reason", "is required")
	case t.TakesOwner == OwnerNone && !c.Owner.IsZero():
		return invalid("owner", unused)
	case t.TakesOwner != OwnerNone && c.Owner.IsZero():
		return invalid("owner", "is required")
	case t.TakesOwner != OwnerNone && c.Owner.Kind == OwnerNone:
		return invalid("owner", "must be a "+t.takes())
	case t.TakesOwner != OwnerNone && c.Owner.Kind != t.TakesOwner && !(t.OrQueue && c.Owner.Kind == OwnerQueue):
		return invalid("owner", "must be a "+t.takes()+", not a "+c.Owner.Kind.String())
	case t.TakesOwner != OwnerNone && strings.TrimSpace(c.Owner.ID) == "":
		return invalid("owner", "needs an id")
	case !t.TakesDue && !c.Due.IsZero():
		return invalid("due", unused)
	case !c.Due.IsZero() && !c.Due.After(now):
		return invalid("due", "must be after now")
	case c.NotNow && c.Name != Disqualify:
		return invalid("not_now", unused)
	case c.Score != 0 && c.Name != Score:
		return invalid("score", unused)
	case c.Rescore && c.Name != Score:
		return invalid("rescore", unused)
	}
	return nil
}

// refusal says, for people, why t is not allowed from s.
func refusal(t Transition, s Status) string {
	switch {
	case s == StatusNone:
		return "no lead has been captured"
	case !s.declared():
		return "lead status " + s.String() + " is unknown"
	case s == StatusMerged:
		// Terminal for every command but the unmerge that undoes it.
		return "lead is merged into another: act on the survivor, or unmerge it first"
	case s.Terminal():
		return "lead is " + phrases[s] + ", a terminal state"
	case t.Allows(StatusNone):
		return "lead already exists"
	}
	from := make([]string, len(t.From))
	for i, f := range t.From {
		from[i] = phrases[f]
	}
	if n := len(from); n > 1 {
		return "lead is not " + strings.Join(from[:n-1], ", ") + " or " + from[n-1]
	}
	return "lead is not " + from[0]
}

// phrases completes "lead is …" for each status.
var phrases = [...]string{
	StatusNone: "not captured", StatusNew: "new", StatusMQL: "an MQL", StatusAssigned: "assigned",
	StatusAccepted: "accepted", StatusOpportunity: "an opportunity", StatusWon: "won", StatusLost: "lost",
	StatusRecycled: "recycled", StatusNurturing: "nurturing", StatusDisqualified: "disqualified",
	StatusMerged: "merged", StatusErased: "erased",
}

// Evolve applies one event to s. It never fails and does not check From: an
// event is a fact already recorded, and refusing it would make the lead
// unreadable. Kinds it does not know leave s unchanged, so an older reader
// survives events added later.
func Evolve(s State, e Event) State {
	t, ok := byKind(e.Kind)
	if !ok {
		return s
	}
	switch {
	case e.Kind == KindCaptured:
		s.Cycle = 1
	case e.Kind == KindQualified && s.Status == StatusNurturing:
		// Back from nurture: a new journey. A lead written before cycles
		// were recorded counts as having been in its first.
		s.Cycle = max(s.Cycle, 1) + 1
	}
	to := t.To
	switch {
	case e.Kind == KindDisqualified && e.NotNow:
		to = StatusRecycled // see Decide: "not now" goes back to nurture
	case t.Restores:
		to = e.Status
	case t.keeps(s.Status):
		to = StatusNone
	}
	if to != StatusNone {
		s.Status = to
	}
	if !e.Owner.IsZero() {
		s.Owner = e.Owner
	}
	if !e.Deadline.IsZero() {
		s.Deadline = e.Deadline
	}
	if s.Status.Terminal() {
		// Nobody owns a finished lead, so no SLA can fire for it.
		s.Owner, s.Deadline = Owner{}, time.Time{}
	}
	switch e.Kind {
	case KindAccepted:
		s.Attempts = 0
	case KindContactAttempted:
		s.Attempts++
	case KindScored:
		s.Score = e.Score
	}
	return s
}

// Fold applies events to s in order.
func Fold(s State, events ...Event) State {
	for _, e := range events {
		s = Evolve(s, e)
	}
	return s
}

// Check reports a broken no-lost-lead invariant: a lead that is neither None
// nor terminal must have an owner and a deadline. It also reports a status
// that is not declared. Decide and Evolve keep the invariant; Check is for
// states read from elsewhere, and for tests.
func Check(s State) error {
	switch {
	case !s.Status.declared():
		return fmt.Errorf("lead status %s is unknown", s.Status)
	case !s.Status.live():
		return nil
	case s.Owner.IsZero():
		return fmt.Errorf("lead in %s has no owner", s.Status)
	case s.Deadline.IsZero():
		return fmt.Errorf("lead in %s owned by %s has no deadline", s.Status, s.Owner)
	}
	return nil
}
