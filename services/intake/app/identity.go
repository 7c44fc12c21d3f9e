package app

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// Outcomes of the record of a pair's merge candidate: pending while its
// two events are written, recorded once both are.
const (
	candidatePending  Outcome = "CANDIDATE_PENDING"
	candidateRecorded Outcome = "CANDIDATE"
)

// recordCandidate records on both leads that one capture brought
// identities held by each (kind: the one other holds), once per pair.
// The pair's record is written pending before the two events, so that a
// repeat after a crash between them (a capture's retry, the person's next
// capture) writes only the one missing, even past the server's duplicates
// window: it looks for the events in the two leads' histories.
func (a *App) recordCandidate(ctx context.Context, lead, other, kind, captureEventID string, meta envelope.Meta) error {
	pair := []string{lead, other}
	slices.Sort(pair)
	token := a.keys.BlindID("candidate", pair[0]+" "+pair[1])
	rec, seq, err := a.leads.Record(ctx, token)
	if err != nil || Outcome(rec.GetOutcome()) == candidateRecorded {
		return err
	}
	cutShort := rec != nil
	if !cutShort {
		seq, err = a.leads.PutRecord(ctx, token, &eventv1.IdempotencyRecord{LeadId: lead, EventId: uuid.NewString(), Outcome: string(candidatePending)}, 0)
		if errors.Is(err, eventstore.ErrConflict) {
			return nil // another capture of the pair records it
		}
		if err != nil {
			return err
		}
	}
	opposite := KindEmail
	if kind == KindEmail {
		opposite = KindExt
	}
	for _, side := range []struct{ lead, other, kind string }{{lead, other, kind}, {other, lead, opposite}} {
		// Ids derived from the pair and lead: a repeat is recognised.
		id := a.keys.BlindID("candidate-event", token+" "+side.lead)
		if cutShort {
			if has, err := a.hasEvent(ctx, side.lead, id); err != nil || has {
				if err != nil {
					return err
				}
				continue
			}
		}
		payload := &eventv1.MergeCandidateFound{OtherLeadId: side.other, Identity: matchedBy(side.kind), CaptureEventId: captureEventID}
		if err := a.appendFact(ctx, side.lead, payload, meta, id); err != nil {
			return fmt.Errorf("merge candidate on %s: %w", side.lead, err)
		}
		if side.lead == lead {
			a.passed(AfterFirstCandidate, lead)
		}
	}
	_, err = a.leads.PutRecord(ctx, token, &eventv1.IdempotencyRecord{LeadId: lead, EventId: uuid.NewString(), Outcome: string(candidateRecorded)}, seq)
	if errors.Is(err, eventstore.ErrConflict) {
		return nil
	}
	return err
}

// hasEvent tells whether a lead's history holds an event id.
func (a *App) hasEvent(ctx context.Context, leadID, eventID string) (bool, error) {
	ev, _, err := a.find(ctx, leadID, eventID)
	return ev != nil, err
}

// appendFact appends a fact event (see factEvent) to a lead under the
// given event id, reading its head and retrying lost races. A merged or
// erased lead takes no facts: nothing is written to it.
func (a *App) appendFact(ctx context.Context, leadID string, payload eventPayload, meta envelope.Meta, eventID string) error {
	for attempt := range maxRaces {
		head, err := a.leads.Head(ctx, leadID)
		if err != nil {
			return err
		}
		if head == nil {
			return fmt.Errorf("lead %s: %w", leadID, ErrNotFound)
		}
		state, version := headState(head)
		if state.Status == lifecycle.StatusMerged || state.Status == lifecycle.StatusErased {
			return nil
		}
		ev, err := a.factEvent(leadID, state, payload, meta)
		if err != nil {
			return err
		}
		ev.EventId = eventID
		_, err = a.leads.Append(ctx, leadID, version, ev)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return err
			}
			continue
		}
		return err
	}
	return fmt.Errorf("lead %s: %w after %d races", leadID, eventstore.ErrConflict, maxRaces)
}

// release gives up an identity held by leadID, as seen, so that the
// next capture of the person makes a new lead. A key someone else holds
// by now is left alone.
func (a *App) release(ctx context.Context, k ClaimKey, seen Holder, leadID, eventID string) error {
	for range maxRaces {
		if seen.LeadID != leadID {
			return nil
		}
		err := a.leads.Claim(ctx, k, seen, &eventv1.Claim{EventId: "release-" + eventID + "-" + k.Kind + "-" + k.Token})
		if !errors.Is(err, eventstore.ErrConflict) {
			return err
		}
		now, err := a.leads.Holders(ctx, k)
		if err != nil {
			return err
		}
		seen = now[k]
	}
	return fmt.Errorf("release %s: %w", k.Kind, eventstore.ErrConflict)
}

// releaseStale releases the identities of a capture that still point at
// an erased lead, or at a lead merged into it.
func (a *App) releaseStale(ctx context.Context, erased []string, ids identities, held map[ClaimKey]Holder, eventID string) error {
	var errs []error
	for _, k := range ids.all() {
		if h := held[k]; slices.Contains(erased, h.LeadID) {
			errs = append(errs, a.release(ctx, k, h, h.LeadID, eventID))
		}
	}
	return errors.Join(errs...)
}
