package app

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
)

// RedriveAction is what a re-drive did for one lead.
type RedriveAction int

// The actions.
const (
	RedriveNone RedriveAction = iota + 1
	RedriveRedriven
	RedriveWritten
	RedriveNotFound
	RedriveRedrivenAndWritten
	RedriveFailed
	// RedrivePending: an operator's skip of its dead letter already waits
	// for the group's owner; nothing else was done.
	RedrivePending
)

// Redriven is one lead's re-drive.
type Redriven struct {
	LeadID string
	Action RedriveAction
	// Groups are the groups its dead letters were handed back to.
	Groups []string
	// EventTypes are the events nurture wrote for it.
	EventTypes []string
	// Err is why it failed (RedriveFailed).
	Err error
}

// maxRedrive bounds the leads of one call.
const maxRedrive = 1000

// RedriveLeads puts leads back on track once the cause of their trouble
// is fixed: a lead parked behind a dead letter is re-driven in each group
// that parked it (the group's owner of the lead handles the dead event
// again, then what waited behind it); for any other lead nurture writes
// the steps it owes (Reconcile), which is how a lead that a consumer
// passed over is recycled and enrolled after all.
//
// A lead whose re-drive fails (a recycle naming a program that does not
// exist, a lost race) is answered RedriveFailed with its error, and the
// others are still re-driven: one poison lead must not hold back the
// rest. Near ctx's deadline it stops and answers the leads it got to,
// so the work done is reported and the caller asks again for the rest.
// Errors: *ValidationError (lead_ids), the dead letters' listing, and
// ctx's own when it got to none.
func (a *App) RedriveLeads(ctx context.Context, ids []string, meta envelope.Meta) ([]Redriven, error) {
	var v violations
	if len(ids) == 0 || len(ids) > maxRedrive {
		v.add("lead_ids", "must list 1 to %d leads", maxRedrive)
	}
	for i, id := range ids {
		checkLeadID(&v, "lead_ids["+strconv.Itoa(i)+"]", id)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	dls, err := a.groups.DeadLetters(ctx)
	if err != nil {
		return nil, err
	}
	var out []Redriven
	done := map[string]bool{}
	deadline, bounded := ctx.Deadline()
	for _, id := range ids {
		if done[id] {
			continue
		}
		if len(out) > 0 && bounded && time.Until(deadline) < redriveMargin {
			break // answered in time rather than lost to a timeout
		}
		done[id] = true
		r := a.redrive(ctx, id, dls, meta)
		if r.Err != nil {
			if err := ctx.Err(); err != nil {
				if len(out) > 0 {
					return out, nil
				}
				return out, err
			}
			a.log.WarnContext(ctx, "lead not re-driven", "lead", id, "groups", r.Groups, "wrote", r.EventTypes, "err", r.Err)
		} else {
			a.log.InfoContext(ctx, "lead re-driven", "lead", id, "groups", r.Groups, "wrote", r.EventTypes)
		}
		out = append(out, r)
	}
	return out, nil
}

// redriveMargin is how much of the call's time RedriveLeads leaves for
// its answer: a lead's re-drive takes a few round trips.
const redriveMargin = time.Second

// redrive re-drives one lead (see RedriveLeads).
func (a *App) redrive(ctx context.Context, id string, dls []consume.DeadLetter, meta envelope.Meta) Redriven {
	r := Redriven{LeadID: id, Action: RedriveNone}
	fail := func(err error) Redriven {
		r.Action, r.Err = RedriveFailed, err
		return r
	}
	for _, d := range dls {
		if d.Key != id || slices.Contains(r.Groups, d.Group) {
			continue
		}
		err := a.groups.Redrive(ctx, d.Group, id, d.StreamSeq)
		if errors.Is(err, consume.ErrOtherDeadLetter) {
			// Another of its events died since the listing: the lead is
			// still parked there, behind that one.
			err = a.groups.Redrive(ctx, d.Group, id, 0)
		}
		if errors.Is(err, consume.ErrNotFound) {
			continue // re-driven meanwhile, or only parked events left: the owner releases them
		}
		if errors.Is(err, consume.ErrRequestPending) {
			// An operator's skip waits for the group's owner (a pending
			// re-drive is replaced, not refused): it hands the lead back.
			r.Groups = append(r.Groups, d.Group)
			if r.Action == RedriveNone {
				r.Action = RedrivePending
			}
			continue
		}
		if err != nil {
			return fail(err)
		}
		r.Groups, r.Action = append(r.Groups, d.Group), RedriveRedriven
	}
	pending := r.Action == RedrivePending
	if slices.Contains(r.Groups, Group) {
		return r // parked here: nurture's own owner writes what it owes
	}
	written, err := a.Reconcile(ctx, id, meta)
	for _, ev := range written {
		r.EventTypes = append(r.EventTypes, ev.GetEventType())
	}
	switch {
	case errors.Is(err, ErrNotFound):
		r.Action = RedriveNotFound // a mistyped id: not a lead that owes nothing
	case err != nil:
		return fail(err)
	case len(written) > 0 && len(r.Groups) > 0 && !pending:
		r.Action = RedriveRedrivenAndWritten
	case len(written) > 0:
		r.Action = RedriveWritten
	}
	return r
}
