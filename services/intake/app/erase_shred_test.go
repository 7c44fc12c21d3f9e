package app_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/adapters"
	"github.com/leadflow/leadflow/services/intake/app"
)

// unreleasing is the real lead store whose releases of identity claims
// fail, as a server outage would fail them.
type unreleasing struct{ *adapters.Leads }

var errReleaseDown = errors.New("claims unreachable")

func (l unreleasing) Claim(ctx context.Context, k app.ClaimKey, seen app.Holder, c *eventv1.Claim) error {
	if strings.HasPrefix(c.GetEventId(), "release-") {
		return errReleaseDown
	}
	return l.Leads.Claim(ctx, k, seen, c)
}

// An erasure whose identity releases fail has still shredded the lead's
// keys: LeadErased names what to release, so nothing waits on the keys,
// and nobody reads an erased person's data while the releases are retried.
func TestErasureShredsEvenWhenReleasesFail(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	id := captured(t, f.app, "shred-first@erase.example")
	recs, err := f.store.Load(ctx, eventstore.LeadSubject(id))
	if err != nil || len(recs) == 0 {
		t.Fatalf("load: %d events, %v", len(recs), err)
	}
	sealed := recs[0].Event.GetLeadCaptured().GetSealedPersonal()
	if _, err := f.keys.Open(ctx, id, sealed); err != nil {
		t.Fatalf("open before the erasure: %v", err)
	}

	broken := app.New(unreleasing{adapters.NewLeads(f.store)}, adapters.NewCampaigns(f.store), f.keys)
	_, err = broken.EraseLead(ctx, app.EraseLead{LeadID: id, Reason: "request"}, meta)
	if !errors.Is(err, errReleaseDown) {
		t.Fatalf("erase with releases failing: %v, want %v", err, errReleaseDown)
	}
	if _, err := f.keys.Open(ctx, id, sealed); !errors.Is(err, vault.ErrShredded) {
		t.Fatalf("open after the erasure: %v, want %v", err, vault.ErrShredded)
	}
	// Asked again once the claims answer, it releases the identities.
	if _, err := f.app.EraseLead(ctx, app.EraseLead{LeadID: id, Reason: "request"}, meta); err != nil {
		t.Fatalf("erase again: %v", err)
	}
	if again := captured(t, f.app, "shred-first@erase.example"); again == id {
		t.Fatalf("the person captured after the erasure went to the erased lead %s", id)
	}
}
