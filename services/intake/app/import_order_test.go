package app_test

import (
	"testing"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/intake/app"
)

// Two rows of one chunk on one lead, linked only through that lead (one
// by its external id, the next by its email), are written in row order:
// the lead shows the later row's answers.
func TestImportRowsOnOneLeadKeepTheirOrder(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	known := capture("known@order.example", "")
	known.ExternalID = &eventv1.ExternalId{System: "crm", Id: "order-1"}
	r, err := f.app.CaptureLead(ctx, known, meta)
	if err != nil {
		t.Fatal(err)
	}
	byExt := capture("other@order.example", "")
	byExt.ExternalID, byExt.Contact.FirstName = known.ExternalID, "Old"
	byEmail := capture("known@order.example", "")
	byEmail.Contact.FirstName = "New"
	res := f.app.ImportLeads(ctx, []app.ImportRow{{Row: 1, Capture: byExt}, {Row: 2, Capture: byEmail}}, meta)
	for _, x := range res {
		if x.Err != nil || x.Result.LeadID != r.LeadID {
			t.Fatalf("row %d: %+v, %v; want it on %s", x.Row, x.Result, x.Err, r.LeadID)
		}
	}
	if res[1].Result.Version <= res[0].Result.Version {
		t.Errorf("row 2 written at %d, before row 1 at %d", res[1].Result.Version, res[0].Result.Version)
	}
	if v, err := f.app.GetLead(ctx, r.LeadID); err != nil || v.Contact.GetFirstName() != "New" {
		t.Fatalf("the lead after the import: %q, %v; want the later row's New", v.Contact.GetFirstName(), err)
	}
}
