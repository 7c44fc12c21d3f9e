package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/intake/form"
)

// MergeLeads names the two leads of a merge or unmerge.
type MergeLeads struct {
	Survivor string
	Absorbed string
	Reason   string
	Actor    *eventv1.Actor
}

// Merged is the answer to a merge or unmerge: both leads' versions.
type Merged struct {
	Survivor uint64
	Absorbed uint64
	Replayed bool
}

// MergeLeads merges one lead into another: the absorbed lead records
// LeadMerged and becomes MERGED (the shared state machine's Merge), the
// survivor records LeadMerged too and stays as it is, both in one atomic
// commit. Nothing is copied or re-pointed: the absorbed lead's claims
// stay, and a capture that finds one follows the merge to the survivor,
// so an unmerge has nothing to put back. Merging again is a no-op.
//
// Errors: *ValidationError, ErrNotFound, lifecycle.ErrRefused (a
// terminal absorbed lead, one with an open opportunity or with merges
// below it as deep as a capture follows, a merged or erased survivor),
// eventstore.ErrConflict after repeated races.
func (a *App) MergeLeads(ctx context.Context, in MergeLeads, meta envelope.Meta) (Merged, error) {
	if err := checkPair(in); err != nil {
		return Merged{}, err
	}
	meta.Actor = meta.ActorOr(in.Actor)
	depth, err := a.mergeDepth(ctx, in.Absorbed, maxMergeDepth)
	if err != nil {
		return Merged{}, err
	}
	payload := &eventv1.LeadMerged{SurvivorLeadId: in.Survivor, AbsorbedLeadId: in.Absorbed, Reason: in.Reason}
	return a.pairCommit(ctx, in, func(sHead, aHead *eventstore.Record) (*eventv1.Event, *eventv1.Event, error) {
		sState, _ := headState(sHead)
		aState, _ := headState(aHead)
		if m := aHead.Event.GetLeadMerged(); aState.Status == lifecycle.StatusMerged && m.GetSurvivorLeadId() == in.Survivor {
			return nil, nil, nil // merged already
		}
		if depth+1 > maxMergeDepth {
			return nil, nil, &lifecycle.RefusedError{Command: lifecycle.Merge, Status: aState.Status, Reason: fmt.Sprintf(
				"lead %s has leads merged into it %d deep: absorbed, it would end a chain of more than %d merges, which captures do not follow; merge its leads into the survivor instead",
				in.Absorbed, depth, maxMergeDepth)}
		}
		if aState.Status == lifecycle.StatusOpportunity {
			// A merged lead's deal would leave every report, and the CRM
			// could not close it: sales commands do not follow merges.
			return nil, nil, &lifecycle.RefusedError{Command: lifecycle.Merge, Status: aState.Status,
				Reason: "lead " + in.Absorbed + " has an open opportunity: close it won or lost first, or merge the other way"}
		}
		// The table's Merge takes the survivor as its reason, so any
		// reader can follow the merge; the caller's reason is the payload's.
		absorbed, _, err := a.leadEvent(in.Absorbed, aState, lifecycle.Command{Name: lifecycle.Merge, Reason: in.Survivor}, payload, meta, a.now())
		if err != nil {
			return nil, nil, fmt.Errorf("absorbed lead %s: %w", in.Absorbed, err)
		}
		survivor, err := a.factEvent(in.Survivor, sState, payload, meta)
		if err != nil {
			return nil, nil, survivorErr(lifecycle.Merge, in.Survivor, err)
		}
		return survivor, absorbed, nil
	})
}

// maxMergeDepth is the longest chain of merges a lead may end: a capture
// of the deepest lead's identity follows the chain in maxHops reads.
const maxMergeDepth = maxHops - 1

// mergeDepth is how deep the leads merged into lead id go: 0 for none,
// counted up to limit+1 at most.
func (a *App) mergeDepth(ctx context.Context, id string, limit int) (int, error) {
	recs, err := a.leads.Load(ctx, id)
	if err != nil || len(recs) == 0 || limit < 0 {
		return 0, err
	}
	view, _ := fold(id, recs)
	depth := 0
	for _, absorbed := range view.Absorbed {
		d, err := a.mergeDepth(ctx, absorbed, limit-1)
		if err != nil {
			return 0, err
		}
		depth = max(depth, d+1)
	}
	return depth, nil
}

// UnmergeLeads undoes a merge: both leads record LeadUnmerged in one
// atomic commit, the absorbed lead back in the state it had before the
// merge (lifecycle's Unmerge, with the state read from the event before
// its LeadMerged), the survivor as it is, with whatever it recorded
// meanwhile. Captures of the absorbed lead's identities find it again, as
// its claims never moved. Unmerging again is a no-op.
//
// Errors: *ValidationError, ErrNotFound, lifecycle.ErrRefused (the
// absorbed lead is not merged into the survivor; the survivor is merged
// or erased), eventstore.ErrConflict after repeated races.
func (a *App) UnmergeLeads(ctx context.Context, in MergeLeads, meta envelope.Meta) (Merged, error) {
	if err := checkPair(in); err != nil {
		return Merged{}, err
	}
	meta.Actor = meta.ActorOr(in.Actor)
	payload := &eventv1.LeadUnmerged{SurvivorLeadId: in.Survivor, AbsorbedLeadId: in.Absorbed, Reason: in.Reason}
	return a.pairCommit(ctx, in, func(sHead, aHead *eventstore.Record) (*eventv1.Event, *eventv1.Event, error) {
		sState, _ := headState(sHead)
		aState, _ := headState(aHead)
		if u := aHead.Event.GetLeadUnmerged(); u != nil && u.GetSurvivorLeadId() == in.Survivor {
			return nil, nil, nil // unmerged already
		}
		merged := aHead.Event.GetLeadMerged()
		if aState.Status != lifecycle.StatusMerged || merged.GetSurvivorLeadId() != in.Survivor {
			return nil, nil, &lifecycle.RefusedError{Command: "Unmerge", Status: aState.Status, Reason: "lead " + in.Absorbed + " is not merged into " + in.Survivor}
		}
		survivor, err := a.factEvent(in.Survivor, sState, payload, meta)
		if err != nil {
			return nil, nil, survivorErr(lifecycle.Unmerge, in.Survivor, err)
		}
		before, err := a.leads.Get(ctx, aHead.Event.GetVersionBefore())
		if err != nil {
			return nil, nil, fmt.Errorf("state of %s before its merge: %w", in.Absorbed, err)
		}
		// The state before the merge, as the absorbed lead's own event
		// before its LeadMerged recorded it.
		prior := lifecycle.FromProto(before.Event.GetLifecycle())
		absorbed, _, err := a.leadEvent(in.Absorbed, aState, lifecycle.Command{
			Name: lifecycle.Unmerge, Reason: in.Reason, Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline,
		}, payload, meta, a.now())
		if err != nil {
			return nil, nil, fmt.Errorf("absorbed lead %s: %w", in.Absorbed, err)
		}
		return survivor, absorbed, nil
	})
}

func checkPair(in MergeLeads) error {
	var v form.Violations
	form.LeadID(&v, "survivor_lead_id", in.Survivor)
	form.LeadID(&v, "absorbed_lead_id", in.Absorbed)
	if in.Survivor != "" && in.Survivor == in.Absorbed {
		v.Add("absorbed_lead_id", "must differ from survivor_lead_id")
	}
	if in.Reason == "" {
		v.Add("reason", "is required")
	}
	form.Text(&v, "reason", in.Reason, MaxReason, false)
	form.Actor(&v, "actor", in.Actor)
	return invalid(v)
}

// pairCommit reads both leads' last events, lets decide make one event
// for each (none: already done), and appends both in one atomic commit,
// deciding again after a lost race.
func (a *App) pairCommit(ctx context.Context, in MergeLeads, decide func(survivor, absorbed *eventstore.Record) (*eventv1.Event, *eventv1.Event, error)) (Merged, error) {
	for attempt := range maxRaces {
		sHead, err := a.leads.Head(ctx, in.Survivor)
		if err != nil {
			return Merged{}, err
		}
		aHead, err := a.leads.Head(ctx, in.Absorbed)
		if err != nil {
			return Merged{}, err
		}
		for id, h := range map[string]*eventstore.Record{in.Survivor: sHead, in.Absorbed: aHead} {
			if h == nil {
				return Merged{}, fmt.Errorf("lead %s: %w", id, ErrNotFound)
			}
		}
		sEv, aEv, err := decide(sHead, aHead)
		if err != nil {
			return Merged{}, err
		}
		if sEv == nil {
			return Merged{Survivor: sHead.Seq, Absorbed: aHead.Seq, Replayed: true}, nil
		}
		vs, err := a.leads.Commit(ctx,
			LeadAppend{LeadID: in.Survivor, Expected: sHead.Seq, Events: []*eventv1.Event{sEv}},
			LeadAppend{LeadID: in.Absorbed, Expected: aHead.Seq, Events: []*eventv1.Event{aEv}})
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return Merged{}, err
			}
			continue
		}
		if err != nil {
			return Merged{}, err
		}
		return Merged{Survivor: vs[0], Absorbed: vs[1]}, nil
	}
	return Merged{}, fmt.Errorf("merge %s into %s: %w after %d races", in.Absorbed, in.Survivor, eventstore.ErrConflict, maxRaces)
}

// survivorErr names the command the caller sent when the survivor's side
// of it is refused (it is written as a fact, checked as a resubmission).
func survivorErr(cmd lifecycle.CommandName, survivor string, err error) error {
	var refused *lifecycle.RefusedError
	if errors.As(err, &refused) {
		return &lifecycle.RefusedError{Command: cmd, Status: refused.Status, Reason: "the survivor " + survivor + " is " + refused.Status.String()}
	}
	return fmt.Errorf("survivor lead %s: %w", survivor, err)
}
