package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// Result is a lead after a command.
type Result struct {
	LeadID  string
	State   lifecycle.State
	Version uint64
	// EventID is the event the command wrote, or first wrote.
	EventID string
	// Replayed: the request id was seen before; this is the first answer
	// again and nothing was written.
	Replayed bool
	// OpportunityID is the opportunity that event created, if it did.
	OpportunityID string
}

// decideFunc decides a command on a lead: the events to append, or an
// error. It must not write.
type decideFunc func(l *lead, cfg *routing.Config, now time.Time) ([]*eventv1.Event, error)

// command runs one CRM command on a lead: it answers a request id seen
// before with the first answer, from the id's record (two reads, however
// long the lead's history) or, for an id without one, from the lead's
// events. Otherwise it loads the lead, decides, appends at the lead's
// version (deciding again on a lost race) and sends the id's record. So
// of two commands racing on one lead, the second decides on what the
// first wrote: two reps accepting at once, or an accept racing a
// reassignment, end with exactly one winner. eventType is the event the
// command writes; same tells whether the event a request id first wrote
// says what this request says. A request id used before for another
// command, or for this one with other content, is refused. A command
// that changes nothing writes no event but stores its id's record
// (before answering): a retry after later changes gets the same answer
// instead of acting on the lead as it is then.
//
// Errors: ErrNotFound, *ValidationError, lifecycle.ErrRefused,
// *NotOwnerError, *AtCapacityError, *UnavailableError, and an error
// matching eventstore.ErrConflict after repeated races.
func (a *App) command(ctx context.Context, leadID, requestID, eventType string, same sameFunc, reps []repRef, decide decideFunc) (Result, error) {
	for attempt := range maxRaces {
		if requestID != "" && attempt == 0 { // after a lost race, the reload shows a repeat
			typ, last, found, err := a.leads.Keyed(ctx, leadID, requestID)
			if err != nil {
				return Result{}, err
			}
			if found && typ == unchangedOutcome(eventType) {
				return a.unchangedAgain(ctx, leadID, eventType, last, reps, decide)
			}
			if found {
				if err := reused(ctx, typ, eventType, last.Event, same); err != nil {
					return Result{}, err
				}
				return resultOf(leadID, last, true), nil
			}
		}
		l, err := a.load(ctx, leadID)
		if err != nil {
			return Result{}, err
		}
		if r, ok := l.byKey[requestID]; ok && requestID != "" {
			if err := reused(ctx, r.typ, eventType, r.ev, same); err != nil {
				return Result{}, err
			}
			return Result{LeadID: leadID, State: r.state, Version: r.seq, EventID: r.eventID, Replayed: true, OpportunityID: r.opportunityID}, nil
		}
		cfg, err := a.commandConfig(ctx, reps)
		if err != nil {
			return Result{}, err
		}
		now := a.now()
		events, err := decide(l, cfg, now)
		if errors.Is(err, errUnchanged) {
			if requestID != "" {
				if err := a.leads.Remember(ctx, leadID, requestID, unchangedOutcome(eventType), l.version, l.lastEventID); err != nil {
					return Result{}, err
				}
			}
			return Result{LeadID: leadID, State: l.state, Version: l.version}, nil
		}
		if err != nil {
			return Result{}, err
		}
		var v uint64
		if requestID != "" {
			v, err = a.leads.AppendKeyed(ctx, leadID, l.version, requestID, eventType, events...)
		} else {
			v, err = a.leads.Append(ctx, leadID, l.version, events...)
		}
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return Result{}, err
			}
			continue
		}
		if err != nil {
			return Result{}, err
		}
		return resultOf(leadID, eventstore.Record{Seq: v, Event: events[len(events)-1]}, false), nil
	}
	return Result{}, fmt.Errorf("%s on lead %s: %w after %d races", eventType, leadID, eventstore.ErrConflict, maxRaces)
}

// commandConfig is the routing data a command naming reps decides with;
// a rep it does not know is a *ValidationError.
func (a *App) commandConfig(ctx context.Context, reps []repRef) (*routing.Config, error) {
	ids := make([]string, len(reps))
	fresh := false
	for i, r := range reps {
		ids[i], fresh = r.id, fresh || r.fresh
	}
	cfg, err := a.configKnowing(ctx, ids...)
	if fresh && err == nil {
		cfg, err = a.freshConfig(ctx)
	}
	if err != nil {
		return nil, err
	}
	for _, r := range reps {
		if _, ok := cfg.Reps[r.id]; !ok {
			return nil, invalid(r.field, "%q is not a known rep", r.id)
		}
	}
	return cfg, nil
}

// unchangedOutcome is the record outcome of a request that changed
// nothing: it names the lead's last event then, not one it wrote.
func unchangedOutcome(eventType string) string { return eventType + " (unchanged)" }

// unchangedAgain answers a request id whose first request changed
// nothing, at, the lead's last event then: this request is that one if
// it changes nothing on the lead as it was at that point (decided again
// on its events up to at, a read of the lead: such repeats are rare),
// and gets the same answer; anything else said otherwise.
func (a *App) unchangedAgain(ctx context.Context, leadID, eventType string, at eventstore.Record, reps []repRef, decide decideFunc) (Result, error) {
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return Result{}, err
	}
	i := slices.IndexFunc(recs, func(r eventstore.Record) bool { return r.Seq == at.Seq })
	if i < 0 {
		return Result{}, fmt.Errorf("lead %s: request record names seq %d, not the lead's", leadID, at.Seq)
	}
	then := foldLead(leadID, recs[:i+1])
	cfg, err := a.commandConfig(ctx, reps)
	if err != nil {
		return Result{}, err
	}
	if _, err := decide(then, cfg, a.now()); !errors.Is(err, errUnchanged) {
		return Result{}, invalid("request_id", "was used for an earlier %s on this lead that said otherwise: a new request needs a new id", eventType)
	}
	return Result{LeadID: leadID, State: then.state, Version: then.version, Replayed: true}, nil
}

// commandTypes are the events handoff's keyed commands write.
var commandTypes = map[string]bool{
	string(lifecycle.KindAccepted): true, string(lifecycle.KindAssigned): true, string(lifecycle.KindReassigned): true,
	string(lifecycle.KindRejected): true, string(lifecycle.KindContactAttempted): true, string(lifecycle.KindOpportunityCreated): true,
	"OpportunityStageChanged": true, string(lifecycle.KindDealWon): true, string(lifecycle.KindDealLost): true,
}

// sameFunc tells whether first, the event a request id first wrote, says
// what this request says.
type sameFunc func(ctx context.Context, first *eventv1.Event) (bool, error)

// sameIf is a sameFunc that compares fields in the clear.
func sameIf(f func(first *eventv1.Event) bool) sameFunc {
	return func(_ context.Context, first *eventv1.Event) (bool, error) { return f(first), nil }
}

// reused refuses a request id whose first event, of type typ, was written
// by another command or says other than this request (same); nil: a
// repeat. first is nil for a type outside commandTypes, whose content is
// not kept.
func reused(ctx context.Context, typ, eventType string, first *eventv1.Event, same sameFunc) error {
	if typ != eventType {
		return invalid("request_id", "was used for an earlier %s on this lead", typ)
	}
	if first == nil {
		return nil
	}
	ok, err := same(ctx, first)
	if err != nil {
		return err
	}
	if !ok {
		return invalid("request_id", "was used for an earlier %s on this lead that said otherwise: a new request needs a new id", typ)
	}
	return nil
}

// resultOf is the answer of a command whose last event is last.
func resultOf(leadID string, last eventstore.Record, replayed bool) Result {
	ev := last.Event
	return Result{LeadID: leadID, State: lifecycle.FromProto(ev.GetLifecycle()), Version: last.Seq, EventID: ev.GetEventId(),
		Replayed: replayed, OpportunityID: ev.GetOpportunityCreated().GetOpportunityId()}
}

// errUnchanged is a decideFunc's answer to a command that would change
// nothing: command writes nothing and returns the lead as it is.
var errUnchanged = errors.New("unchanged")

// repRef is a rep a request names, and the field that names it; fresh
// asks for the routing data as of the request (who is out of office),
// not as of a moment ago.
type repRef struct {
	field, id string
	fresh     bool
}

// requireOwner refuses a rep's command on a lead another rep owns, or
// that waits in a sales queue (a manager's) for someone to hand it on;
// an open deal reassigned answers to its new rep alone. Any other lead
// no rep owns is left to the lifecycle to refuse: its status says more.
func requireOwner(l *lead, repID, command string) error {
	st := l.state
	inSalesQueue := st.Owner.Kind == lifecycle.OwnerQueue &&
		(st.Status == lifecycle.StatusAssigned || st.Status == lifecycle.StatusAccepted || st.Status == lifecycle.StatusOpportunity)
	if l.ownedBy(repID) || (st.Owner.Kind != lifecycle.OwnerRep && !inSalesQueue) {
		return nil
	}
	return &NotOwnerError{LeadID: l.id, RepID: repID, Owner: st.Owner, Status: st.Status, Command: command}
}

// repMeta is the envelope of a rep's command.
func repMeta(meta envelope.Meta, repID, requestID string) envelope.Meta {
	meta.Actor, meta.IdempotencyKey = repActor(repID), requestID
	return meta
}
