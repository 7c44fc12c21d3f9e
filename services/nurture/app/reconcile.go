package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// maxSteps bounds the steps one Reconcile writes in a row: recycle, enrol
// is the longest chain (or exit, enrol).
const maxSteps = 4

// Reconcile writes every step nurture owes the lead now (see owed), each
// a single append at the lead's version, and returns what it wrote; none
// for a lead that owes nothing. A lost race reloads the lead and decides
// again. meta carries the trace of what woke it.
//
// Errors: ErrNotFound for a lead with no events; *PoisonError when the
// lead's recycle names a program that does not exist (retrying will not
// help until it is defined);
// eventstore.ErrConflict after repeated races; store errors.
func (a *App) Reconcile(ctx context.Context, leadID string, meta envelope.Meta) ([]*eventv1.Event, error) {
	return a.ReconcileSeen(ctx, leadID, 0, meta)
}

// ReconcileSeen is Reconcile woken by the lead's event at stream sequence
// seen: a read of the lead without it is eventstore.ErrBehind, not a lead
// that owes nothing, since nurture decides from what it reads, not from
// the event.
func (a *App) ReconcileSeen(ctx context.Context, leadID string, seen uint64, meta envelope.Meta) ([]*eventv1.Event, error) {
	return a.reconcile(ctx, leadID, seen, nil, meta)
}

// reconcile is ReconcileSeen; read, if set, is the lead as the caller
// just read it, which the first try decides on instead of reading again.
func (a *App) reconcile(ctx context.Context, leadID string, seen uint64, read *lead, meta envelope.Meta) ([]*eventv1.Event, error) {
	cat, err := a.catalog(ctx, catalogMaxAge)
	if err != nil {
		return nil, err
	}
	refreshed := false
	var written []*eventv1.Event
	for attempt := range maxRaces {
		l := read
		read = nil // a lost race reads again
		if l == nil {
			if l, err = a.load(ctx, leadID); err != nil {
				return written, err
			}
		}
		if err := eventstore.Behind(leadID, l.version, seen); err != nil {
			return written, err
		}
		if l.version == 0 {
			return nil, fmt.Errorf("lead %s: %w", leadID, ErrNotFound)
		}
		if id := l.enrolled.ev.GetNurtureEnrolled().GetProgramId(); id != "" && !refreshed && l.state.Status == lifecycle.StatusNurturing {
			if _, ok := cat.Get(id); !ok || l.unjudged() {
				// Defined a moment ago, maybe, by another replica: judged
				// by the default program's rules instead, the lead could
				// take a way back its own program does not open. Or a fact
				// waits to be judged by its program as it was when stored
				// (Catalog.At): read after the lead, the list has every
				// change stored before it.
				if cat, err = a.catalog(ctx, 0); err != nil {
					return written, err
				}
				refreshed = true
			}
		}
		raced := false
		for range maxSteps {
			ev, err := a.owed(l, cat, a.now(), meta)
			var poison *PoisonError
			if errors.As(err, &poison) && !refreshed {
				// Maybe the program was defined a moment ago: look again.
				if cat, err = a.catalog(ctx, 0); err != nil {
					return written, err
				}
				refreshed = true
				ev, err = a.owed(l, cat, a.now(), meta)
			}
			if err != nil || ev == nil {
				return written, err
			}
			v, err := a.leads.Append(ctx, leadID, l.version, ev)
			if errors.Is(err, eventstore.ErrConflict) {
				if err := eventstore.AfterConflict(ctx, attempt); err != nil {
					return written, err
				}
				raced = true
				break // read what the other writer appended, decide again
			}
			if err != nil {
				return written, err
			}
			l.apply(eventstore.Record{Seq: v, Event: ev})
			written = append(written, ev)
			a.log.InfoContext(ctx, "nurture step", "lead", leadID, "event", ev.GetEventType(), "cause", ev.GetCausationId(),
				"status", lifecycle.FromProto(ev.GetLifecycle()).Status.String())
			if a.afterAppend != nil {
				a.afterAppend(ev)
			}
		}
		if !raced {
			return written, fmt.Errorf("lead %s: still owes a step after %d in a row", leadID, maxSteps)
		}
	}
	return written, fmt.Errorf("reconcile lead %s: %w after %d races", leadID, eventstore.ErrConflict, maxRaces)
}
