package app

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/qualification/registry"
)

// Approved is the answer to an approval.
type Approved struct {
	Version   VersionView
	Activated bool
	Replayed  bool
}

// ApproveModel records one team's sign-off of a version. The approval that
// completes the sign-off appends ScoringModelApproved and
// ScoringModelActivated in one atomic commit at the model's version, so a
// version is never half activated and two racing approvals cannot both
// complete it. A repeated approval by the same person is a no-op.
//
// Errors: *ValidationError (approver.team must be MARKETING or SALES),
// ErrNotFound (unknown version), *registry.RefusedError (the team approved
// already, one person for both teams, the version was activated already,
// or it is older than the active version), eventstore.ErrConflict after
// repeated races.
func (a *App) ApproveModel(ctx context.Context, version uint32, approver *eventv1.Actor, meta envelope.Meta) (Approved, error) {
	var v violations
	if version == 0 {
		v.add("version", "is required")
	}
	checkActor(&v, "approver", approver)
	if approver != nil && !slices.Contains(registry.SignOffTeams, approver.GetTeam()) {
		v.add("approver.team", "must be MARKETING or SALES: a model is signed off by both teams, one approval each")
	}
	if approver != nil && approver.GetKind() != eventv1.ActorKind_ACTOR_KIND_USER {
		v.add("approver.kind", "must be USER: a sign-off is a person's")
	}
	if err := v.err(); err != nil {
		return Approved{}, err
	}
	meta.Actor = approver
	for attempt := range maxRaces {
		reg, err := a.fresh(ctx)
		if err != nil {
			return Approved{}, err
		}
		d, err := reg.Approve(version, approver)
		if errors.Is(err, registry.ErrUnknownVersion) {
			return Approved{}, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		if err != nil {
			return Approved{}, err
		}
		if d.Replay {
			return Approved{Version: view(reg, version), Replayed: true, Activated: d.Activate}, nil
		}
		now := a.now()
		approved, err := envelope.NewEvent("", &eventv1.ScoringModelApproved{Version: version, Approver: approver}, meta, now)
		if err != nil {
			return Approved{}, err
		}
		events := []*eventv1.Event{approved}
		if d.Activate {
			// Caused by the approval that completed the sign-off.
			m := meta
			m.CausationID = approved.GetEventId()
			activated, err := envelope.NewEvent("", &eventv1.ScoringModelActivated{Version: version, SupersededVersion: d.Supersedes}, m, now)
			if err != nil {
				return Approved{}, err
			}
			events = append(events, activated)
		}
		_, err = a.models.Append(ctx, reg.Seq, events...)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return Approved{}, err
			}
			continue
		}
		if err != nil {
			return Approved{}, err
		}
		if reg, err = a.fresh(ctx); err != nil {
			return Approved{}, err
		}
		if d.Activate {
			a.log.InfoContext(ctx, "scoring model activated", "version", version, "superseded", d.Supersedes)
			select {
			case a.activated <- struct{}{}:
			default: // a nudge is pending already
			}
		}
		return Approved{Version: view(reg, version), Activated: d.Activate}, nil
	}
	return Approved{}, fmt.Errorf("approve: %w after %d races", eventstore.ErrConflict, maxRaces)
}
