package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// DisqualifyLead is a person's verdict on a lead that no rule caught.
type DisqualifyLead struct {
	LeadID, Reason, RequestID string
	// NotNow sends the lead to nurture instead of ending it.
	NotNow    bool
	DecidedBy *eventv1.Actor
}

// Disqualified is the answer to DisqualifyLead.
type Disqualified struct {
	LeadID   string
	Version  uint64
	Status   lifecycle.Status
	EventID  string
	Replayed bool
}

// Limits on a manual verdict's text.
const (
	maxReason    = 500
	maxRequestID = 128
)

// DisqualifyLead appends LeadDisqualified (no rule, decided by a person)
// where the lifecycle allows it: a NEW, MQL or NURTURING lead. With NotNow
// the lead is RECYCLED and nurture takes it as for a rule's "not now"; a
// NURTURING lead is there already, and NotNow is refused for it. A
// request id seen on the lead before returns the first answer, found in
// O(1) from the id's record (sent after the verdict), and writes
// nothing. A race with another writer (a score, an assignment) reloads
// and decides again, so the verdict is decided on what that one wrote.
//
// Errors: *ValidationError (a field, a request id used for another event
// on the lead); ErrNotFound (no such lead); lifecycle.ErrRefused (naming
// the lead's status); eventstore.ErrConflict after repeated races.
func (a *App) DisqualifyLead(ctx context.Context, in DisqualifyLead, meta envelope.Meta) (Disqualified, error) {
	var v violations
	checkLeadID(&v, "lead_id", in.LeadID)
	switch r := strings.TrimSpace(in.Reason); {
	case r == "":
		v.add("reason", "is required")
	case utf8.RuneCountInString(r) > maxReason:
		v.add("reason", "must be at most %d characters", maxReason)
	case strings.ContainsFunc(r, unicode.IsControl):
		v.add("reason", "must not contain control characters")
	case envelope.HoldsEmail(r):
		v.add("reason", "must not name the person: it is kept in the clear, also after the lead's erasure, and this one holds an email address")
	}
	if len(in.RequestID) > maxRequestID {
		v.add("request_id", "must be at most %d characters", maxRequestID)
	} else if blank(in.RequestID) {
		v.add("request_id", "must not be blank: a blank id is no id, and a retry would not get the first answer")
	} else if envelope.HoldsEmail(in.RequestID) {
		v.add("request_id", "must not hold an email address: it is kept in the clear, also after the lead's erasure")
	}
	checkActor(&v, "decided_by", in.DecidedBy)
	if err := v.err(); err != nil {
		return Disqualified{}, err
	}
	reason := strings.TrimSpace(in.Reason)
	meta.Actor, meta.IdempotencyKey = in.DecidedBy, strings.TrimSpace(in.RequestID)
	key := meta.IdempotencyKey
	// same: the verdict a request id first wrote is this request's.
	same := func(ev *eventv1.Event) bool {
		d := ev.GetLeadDisqualified()
		return d.GetReason() == reason && d.GetNotNow() == in.NotNow && d.GetDecidedBy().GetId() == in.DecidedBy.GetId()
	}
	for attempt := range maxRaces {
		if key != "" && attempt == 0 { // after a lost race, the reload shows a repeat
			typ, last, found, err := a.leads.Keyed(ctx, in.LeadID, key)
			if err != nil {
				return Disqualified{}, err
			}
			if found {
				if typ != typeDisqualified || !same(last.Event) {
					return Disqualified{}, keyReused(typ)
				}
				return disqualified(last, true), nil
			}
		}
		recs, err := a.leads.Load(ctx, in.LeadID)
		if err != nil {
			return Disqualified{}, err
		}
		if len(recs) == 0 {
			return Disqualified{}, fmt.Errorf("lead %s: %w", in.LeadID, ErrNotFound)
		}
		// A verdict without a record (keyed before records, or its record
		// not stored) is found in the lead's events.
		if key != "" {
			if r, ok := keyed(recs, key); ok {
				if !same(r.Event) {
					return Disqualified{}, keyReused(r.Event.GetEventType())
				}
				return disqualified(r, true), nil
			}
		}
		last := recs[len(recs)-1]
		state := lifecycle.FromProto(last.Event.GetLifecycle())
		if in.NotNow && state.Status == lifecycle.StatusNurturing {
			// It would recycle the lead and restart its program.
			return Disqualified{}, &lifecycle.RefusedError{Command: lifecycle.Disqualify, Status: state.Status,
				Reason: `lead is in nurture already: "not now" would only restart its program`}
		}
		payload := &eventv1.LeadDisqualified{Reason: reason, NotNow: in.NotNow, DecidedBy: in.DecidedBy}
		ev, _, err := a.leadEvent(in.LeadID, state, lifecycle.Command{Name: lifecycle.Disqualify, Reason: reason, NotNow: in.NotNow}, payload, meta)
		if err != nil {
			return Disqualified{}, err
		}
		var seq uint64
		if key != "" {
			seq, err = a.leads.AppendKeyed(ctx, in.LeadID, last.Seq, key, typeDisqualified, ev)
		} else {
			seq, err = a.leads.Append(ctx, in.LeadID, last.Seq, ev)
		}
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return Disqualified{}, err
			}
			continue
		}
		if err != nil {
			return Disqualified{}, err
		}
		a.log.InfoContext(ctx, "lead disqualified by hand", "lead", in.LeadID, "by", in.DecidedBy.GetId(), "not_now", in.NotNow)
		return disqualified(eventstore.Record{Seq: seq, Event: ev}, false), nil
	}
	return Disqualified{}, fmt.Errorf("disqualify lead %s: %w after %d races", in.LeadID, eventstore.ErrConflict, maxRaces)
}

// typeDisqualified is the event a verdict writes, and its record's outcome.
const typeDisqualified = "LeadDisqualified"

// keyReused refuses a request id used before on the lead for another
// command, or for a verdict that said otherwise.
func keyReused(eventType string) error {
	return &ValidationError{Violations: []Violation{{Field: "request_id",
		Description: "was used for an earlier " + eventType + " on this lead: a new request needs a new id"}}}
}

// keyed is the lead's first LeadDisqualified written under idempotency
// key k. Another service's event under k is another request: keys are
// each service's own, as its records are.
func keyed(recs []eventstore.Record, k string) (eventstore.Record, bool) {
	for _, r := range recs {
		if r.Event.GetLeadDisqualified() != nil && r.Event.GetIdempotencyKey() == k {
			return r, true
		}
	}
	return eventstore.Record{}, false
}

func disqualified(r eventstore.Record, replayed bool) Disqualified {
	return Disqualified{LeadID: r.Event.GetLeadId(), Version: r.Seq, Status: lifecycle.FromProto(r.Event.GetLifecycle()).Status,
		EventID: r.Event.GetEventId(), Replayed: replayed}
}
