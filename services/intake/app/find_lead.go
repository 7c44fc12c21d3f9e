package app

import (
	"context"
	"fmt"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/intake/form"
)

// Found is the lead an identity leads to.
type Found struct {
	// LeadID holds the identity; Survivor is the lead it was merged into
	// (the last of a chain of merges), "" when it is not merged.
	LeadID, Survivor string
	// MatchedBy names the identity: "email" or "external_id".
	MatchedBy string
}

// FindLead looks a person up by an identity they gave, an email or an
// external id (one of the two), normalized as a capture's, and writes
// nothing: a data subject's access or erasure request names a person,
// not a lead, and a capture to find out would write.
//
// Errors: *ValidationError, ErrNotFound (nobody holds it: never captured,
// or erased, as an erasure gives its identities up).
func (a *App) FindLead(ctx context.Context, email string, ext *eventv1.ExternalId) (Found, error) {
	var v form.Violations
	var key ClaimKey
	switch x := form.ExternalID(&v, "external_id", ext); {
	case x != nil && email != "":
		v.Add("email", "must be empty with external_id: one identity is looked up")
	case x != nil:
		key = ClaimKey{KindExt, a.keys.BlindID(KindExt, x.GetSystem()+"\x00"+x.GetId())}
	default:
		e, _ := form.Email(&v, "email", email)
		key = ClaimKey{KindEmail, a.keys.BlindID(KindEmail, e)}
	}
	if err := invalid(v); err != nil {
		return Found{}, err
	}
	held, err := a.leads.Holders(ctx, key)
	if err != nil {
		return Found{}, err
	}
	h := held[key]
	if h.LeadID == "" {
		return Found{}, fmt.Errorf("no lead holds this %s: %w", matchedBy(key.Kind), ErrNotFound)
	}
	found := Found{LeadID: h.LeadID, MatchedBy: matchedBy(key.Kind)}
	id, head := h.LeadID, h.Head
	for range maxHops {
		if head == nil {
			if head, err = a.leads.Head(ctx, id); err != nil {
				return Found{}, err
			}
		}
		state, _ := headState(head)
		switch {
		case head == nil || state.Status == lifecycle.StatusErased && id == found.LeadID:
			// A claim whose capture has no event yet, or one an erasure
			// is still giving up: nobody's data.
			return Found{}, fmt.Errorf("no lead holds this %s: %w", found.MatchedBy, ErrNotFound)
		case state.Status != lifecycle.StatusMerged || head.Event.GetLeadMerged().GetSurvivorLeadId() == "":
			if id != found.LeadID {
				found.Survivor = id
			}
			return found, nil
		}
		id, head = head.Event.GetLeadMerged().GetSurvivorLeadId(), nil
	}
	return Found{}, fmt.Errorf("lead %s: more than %d merges in a row", found.LeadID, maxHops)
}
