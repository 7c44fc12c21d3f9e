package app

import (
	"context"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/intake/form"
)

// SetConsent is a consent change for one channel of a lead.
type SetConsent struct {
	LeadID         string
	Consent        *eventv1.Consent
	Source         string
	IdempotencyKey string
	Actor          *eventv1.Actor
}

// SetConsent appends ConsentChanged. With an idempotency key, a repeat
// returns the first answer from the key's record, and the same key with
// other content is refused. Without one, the status the channel has
// already is no change: nothing is written, and the answer is the lead's
// version, as a repeat's would be; a change sent through a merged lead,
// or the lead's own after one or after one a merge or an unmerge wrote,
// is a change of who said it (consentWord).
// A consent change of a merged lead is written on the survivor.
//
// Errors: *ValidationError, *KeyReusedError, ErrNotFound,
// lifecycle.ErrRefused, eventstore.ErrConflict after repeated races.
func (a *App) SetConsent(ctx context.Context, in SetConsent, meta envelope.Meta) (Written, error) {
	var v form.Violations
	form.LeadID(&v, "lead_id", in.LeadID)
	if in.Consent == nil {
		v.Add("consent", "is required")
	} else {
		var cv form.Violations
		form.Consents(&cv, "consent", []*eventv1.Consent{in.Consent})
		for _, x := range cv {
			v.Add("consent"+strings.TrimPrefix(x.Field, "consent[0]"), "%s", x.Description)
		}
	}
	form.Slug(&v, "source", in.Source, true)
	if in.Source == consentFromMerge {
		// An unmerge reads this source as a merge's copy: not given back.
		v.Add("source", "%q is reserved for merges", consentFromMerge)
	}
	form.Key(&v, "idempotency_key", in.IdempotencyKey)
	form.Actor(&v, "actor", in.Actor)
	if err := invalid(v); err != nil {
		return Written{}, err
	}
	meta.Actor, meta.IdempotencyKey = meta.ActorOr(in.Actor), in.IdempotencyKey
	payload := &eventv1.ConsentChanged{Consent: in.Consent, Source: in.Source}
	key, err := a.newIdemKey("idempotency_key", "consent", in.IdempotencyKey, wrapperspb.String(in.LeadID), payload, in.Actor)
	if err != nil {
		return Written{}, err
	}
	key.pure = true // planOnLead only reads
	cmd := lifecycle.Command{Name: lifecycle.ChangeConsent}
	ans, err := a.once(ctx, key, func(ctx context.Context) (*plan, error) {
		p, err := a.planOnLead(ctx, in.LeadID, cmd, meta, func(leadID string, _ lifecycle.State) (eventPayload, error) {
			if leadID == in.LeadID {
				return payload, nil
			}
			// Sent to a merged lead: its person's, which an unmerge gives back.
			via := proto.CloneOf(payload)
			via.MergedFrom = in.LeadID
			return via, nil
		})
		if err != nil || in.IdempotencyKey != "" {
			return p, err
		}
		recs, err := a.leads.Load(ctx, p.leadID)
		if err != nil {
			return nil, err
		}
		if n := len(recs); n > 0 && recs[n-1].Seq > p.expect {
			// The head read was behind the load (which asks the stream's
			// leader): the lead may have moved on, merged or erased. Plan
			// again, as a write's version check would have.
			return nil, eventstore.ErrConflict
		}
		via := ""
		if p.leadID != in.LeadID {
			via = in.LeadID
		}
		if w := (consentWord{in.Consent.GetStatus(), via}); !w.heard(consentsAsOf(recs, p.expect), in.Consent.GetChannel()) {
			// Nothing to write, unless an unmerge cut off still owes the
			// lead an older change of the channel: written after this
			// word unstored, it would stand over it. The rest first, then
			// this word again.
			if err := a.owedFirst(ctx, p.leadID, recs); err != nil {
				return nil, err
			}
			return &plan{done: &answer{LeadID: p.leadID, Outcome: p.outcome, Version: p.expect, Replayed: true}}, nil
		}
		return p, nil
	})
	return Written{LeadID: ans.LeadID, Version: ans.Version, Replayed: ans.Replayed}, err
}
