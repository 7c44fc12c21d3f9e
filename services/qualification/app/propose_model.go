package app

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
)

// ProposeModel is a new model version for sign-off.
type ProposeModel struct {
	Model          *eventv1.ScoringModel
	ProposedBy     *eventv1.Actor
	IdempotencyKey string
}

// Proposed is the answer to a proposal.
type Proposed struct {
	Version  uint32
	Replayed bool
}

const maxKey = 200

// ProposeModel validates a model and appends ScoringModelProposed with
// the next version number, at the model's version (a racing proposal makes
// it read and number again). It scores nobody until both teams approve.
//
// Errors: *ValidationError (fields named as in the request,
// "model.fit_rules[2].when.max_employees"), eventstore.ErrConflict after
// repeated races.
func (a *App) ProposeModel(ctx context.Context, in ProposeModel, meta envelope.Meta) (Proposed, error) {
	var v violations
	checkActor(&v, "proposed_by", in.ProposedBy)
	if len(in.IdempotencyKey) > maxKey {
		v.add("idempotency_key", "must be at most %d characters", maxKey)
	} else if blank(in.IdempotencyKey) {
		v.add("idempotency_key", "must not be blank: a blank key is no key, and a retry would propose again")
	} else if envelope.HoldsEmail(in.IdempotencyKey) {
		v.add("idempotency_key", "must not hold an email address: it is kept in the clear for good")
	}
	if in.Model == nil {
		v.add("model", "is required")
	} else {
		if in.Model.GetVersion() != 0 {
			v.add("model.version", "is assigned by the service: leave it 0")
		}
		if id := in.Model.GetModelId(); id != "" && id != scoring.ID {
			v.add("model.model_id", "must be %q (or empty): Leadflow has one scoring model", scoring.ID)
		}
		for _, x := range scoring.Validate(scoring.FromProto(in.Model)) {
			v.add("model."+x.Field, "%s", x.Description)
		}
	}
	if err := v.err(); err != nil {
		return Proposed{}, err
	}
	meta.Actor, meta.IdempotencyKey = in.ProposedBy, strings.TrimSpace(in.IdempotencyKey)
	for attempt := range maxRaces {
		reg, err := a.fresh(ctx)
		if err != nil {
			return Proposed{}, err
		}
		if n, ok := reg.ByIdempotencyKey(meta.IdempotencyKey); ok {
			// The key is the caller's for one proposal: reused for another
			// model it would answer a version that is not the one sent.
			v, _ := reg.Get(n)
			if !sameModel(v.Model, scoring.FromProto(in.Model)) {
				return Proposed{}, &ValidationError{Violations: []Violation{{Field: "idempotency_key",
					Description: fmt.Sprintf("was used for version %d, a different model: a new proposal needs a new key", n)}}}
			}
			return Proposed{Version: n, Replayed: true}, nil
		}
		pb := proto.CloneOf(in.Model)
		pb.ModelId, pb.Version = scoring.ID, reg.Next()
		ev, err := envelope.NewEvent("", &eventv1.ScoringModelProposed{Model: pb, ProposedBy: in.ProposedBy}, meta, a.now())
		if err != nil {
			return Proposed{}, err
		}
		_, err = a.models.Append(ctx, reg.Seq, ev)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return Proposed{}, err
			}
			continue
		}
		if err != nil {
			return Proposed{}, err
		}
		return Proposed{Version: pb.Version}, nil
	}
	return Proposed{}, fmt.Errorf("propose: %w after %d races", eventstore.ErrConflict, maxRaces)
}

// sameModel reports whether two models score alike, whatever their id and
// version.
func sameModel(a, b scoring.Model) bool {
	a.ID, a.Version, b.ID, b.Version = "", 0, "", 0
	return proto.Equal(scoring.ToProto(a), scoring.ToProto(b))
}
