package app

import (
	"context"
	"errors"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// AssignLead gives an MQL to a rep by hand (from a queue).
type AssignLead struct {
	LeadID, RepID, RequestID string
	By                       *eventv1.Actor
}

// AssignLead appends LeadAssigned to the rep named, with the SLA of the
// segment the rules put the lead in. The rep must be active, in the
// office and below capacity.
//
// Errors: see command.
func (a *App) AssignLead(ctx context.Context, in AssignLead, meta envelope.Meta) (_ Result, err error) {
	var v violations
	checkLeadID(&v, in.LeadID)
	checkRepID(&v, "rep_id", in.RepID)
	checkRequestID(&v, in.RequestID)
	in.By = meta.ActorOr(in.By)
	checkActor(&v, "assigned_by", in.By)
	if err := v.err(); err != nil {
		return Result{}, err
	}
	meta.Actor, meta.IdempotencyKey = in.By, in.RequestID
	same := func(ev *eventv1.Event) bool {
		return ev.GetLeadAssigned().GetOwner().GetId() == in.RepID && ev.GetActor().GetId() == in.By.GetId()
	}
	var h byHand
	defer func() { a.giveBack(ctx, in.LeadID, h, err) }()
	return a.command(ctx, in.LeadID, in.RequestID, string(lifecycle.KindAssigned), sameIf(same), []repRef{{"rep_id", in.RepID, true}},
		func(l *lead, cfg *routing.Config, now time.Time) ([]*eventv1.Event, error) {
			if _, err := lifecycle.Decide(l.state, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: in.RepID}}, a.policy, now); err != nil {
				return nil, err
			}
			// Routing reads the sealed company name too (the account).
			if err := a.unseal(ctx, cfg, l); err != nil {
				return nil, err
			}
			if err := a.takeByHand(ctx, cfg, l.id, in.RepID, now, &h); err != nil {
				return nil, err
			}
			// The rules still say the segment, the account (and so the SLA)
			// and the pool an escalation goes to.
			d := cfg.Route(l.routingLead(), nil, nil, now)
			d.RepID, d.Turn, d.Queue = in.RepID, nil, ""
			d.Record.RuleId, d.Record.RepId, d.Record.FallbackQueue = routing.RuleManual, in.RepID, ""
			d.Record.Candidates = []*eventv1.Candidate{{RepId: in.RepID, Outcome: eventv1.CandidateOutcome_CANDIDATE_OUTCOME_CHOSEN,
				Source: "manual:" + in.By.GetId(), Detail: "assigned by hand"}}
			d.Record.Summary = "assigned to " + in.RepID + " by " + in.By.GetId()
			return a.assignedEvents(cfg, l, d, meta, now)
		})
}

// ReassignLead moves an assigned or accepted lead, or an open deal, to
// another rep.
type ReassignLead struct {
	LeadID, ToRepID, RequestID string
	Reason                     string
	By                         *eventv1.Actor
}

// ReassignLead appends LeadReassigned: the new owner has to accept it,
// within the lead's acceptance SLA in the new owner's working hours. The
// rep must be active, in the office and below capacity. An opportunity
// changes hands as it is (its rep left): still an opportunity, due to
// close when it was, and the new rep works and closes it; an open deal
// holds no capacity (conversion gave it back), so none is reserved.
//
// Errors: see command; a reassignment to the owner is refused by the
// lifecycle.
func (a *App) ReassignLead(ctx context.Context, in ReassignLead, meta envelope.Meta) (_ Result, err error) {
	var v violations
	checkLeadID(&v, in.LeadID)
	checkRepID(&v, "to_rep_id", in.ToRepID)
	checkRequestID(&v, in.RequestID)
	checkText(&v, "reason", in.Reason, maxNote, true)
	checkNoEmail(&v, "reason", in.Reason)
	in.By = meta.ActorOr(in.By)
	checkActor(&v, "reassigned_by", in.By)
	if err := v.err(); err != nil {
		return Result{}, err
	}
	meta.Actor, meta.IdempotencyKey = in.By, in.RequestID
	same := func(ev *eventv1.Event) bool {
		r := ev.GetLeadReassigned()
		return r.GetTo().GetId() == in.ToRepID && r.GetReason() == in.Reason && ev.GetActor().GetId() == in.By.GetId()
	}
	var h byHand
	defer func() { a.giveBack(ctx, in.LeadID, h, err) }()
	return a.command(ctx, in.LeadID, in.RequestID, string(lifecycle.KindReassigned), sameIf(same), []repRef{{"to_rep_id", in.ToRepID, true}},
		func(l *lead, cfg *routing.Config, now time.Time) ([]*eventv1.Event, error) {
			to := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: in.ToRepID}
			if _, err := lifecycle.Decide(l.state, lifecycle.Command{Name: lifecycle.Reassign, Owner: to}, a.policy, now); err != nil {
				return nil, err
			}
			if l.state.Status == lifecycle.StatusOpportunity {
				// An earlier try that saw the lead ACCEPTED (converted
				// since) reserved for it: the deal holds none.
				h.holds = false
				if ok, why := cfg.Available(in.ToRepID, now); !ok {
					return nil, &UnavailableError{RepID: in.ToRepID, Why: why}
				}
			} else if err := a.takeByHand(ctx, cfg, l.id, in.ToRepID, now, &h); err != nil {
				return nil, err
			}
			rec := &eventv1.RoutingDecision{RoutingVersion: cfg.Version, RuleId: routing.RuleManual, RepId: in.ToRepID, Segment: l.segment,
				Candidates: []*eventv1.Candidate{{RepId: in.ToRepID, Outcome: eventv1.CandidateOutcome_CANDIDATE_OUTCOME_CHOSEN,
					Source: "manual:" + in.By.GetId(), Detail: "reassigned by hand"}},
				Summary: "reassigned to " + in.ToRepID + " by " + in.By.GetId()}
			ev, err := a.reassignedEvent(cfg, l, l.state, to, cfg.RepCalendar(in.ToRepID), in.Reason, eventv1.ReassignCause_REASSIGN_CAUSE_MANUAL, rec, meta, now)
			if err != nil {
				return nil, err
			}
			return []*eventv1.Event{ev}, nil
		})
}

// byHand is the reservation a command by hand holds for its rep, over
// its tries (each reserves again). own: the command made it and nobody
// has reserved the lead with the rep since. holds: the last try's event
// keeps it (an open deal handed on does not).
type byHand struct {
	rep   string
	at    time.Time
	own   bool
	holds bool
}

// takeByHand checks that a rep can be given a lead by hand and reserves
// the rep's capacity for it, noting the reservation in h.
func (a *App) takeByHand(ctx context.Context, cfg *routing.Config, leadID, repID string, now time.Time, h *byHand) error {
	if ok, why := cfg.Available(repID, now); !ok {
		return &UnavailableError{RepID: repID, Why: why}
	}
	capacity := int(cfg.Reps[repID].GetCapacity())
	r, err := a.reserve(ctx, repID, capacity, leadID)
	if err != nil {
		return err
	}
	if !r.ok {
		return &AtCapacityError{RepID: repID, Open: r.open, Capacity: capacity}
	}
	own := r.prev.IsZero() || (h.own && h.rep == repID && r.prev.Equal(h.at))
	*h = byHand{rep: repID, at: r.at, own: own, holds: true}
	return nil
}

// giveBack ends the reservation h of a command that wrote nothing (err:
// a refusal, after a lost race too), or whose event holds none, if it is
// still the command's own: one another holder reserved since is left to
// it. An outcome that cannot be known keeps it (the event may be stored).
func (a *App) giveBack(ctx context.Context, leadID string, h byHand, err error) {
	if err == nil && h.holds || !h.own || errors.Is(err, eventstore.ErrUnknownOutcome) {
		return
	}
	if err := a.unreserve(context.WithoutCancel(ctx), h.rep, leadID, h.at); err != nil {
		a.log.WarnContext(ctx, "give back a reservation", "rep", h.rep, "lead", leadID, "err", err)
	}
}
