package app_test

import (
	"errors"
	"testing"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/intake/app"
)

// A data subject's request names a person: FindLead finds their lead by
// an email or an external id as a capture matches it, follows a merge,
// writes nothing, and finds nobody once the lead is erased.
func TestFindLeadByAnIdentity(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	c := capture("Ann.Lee@Example.com", "")
	c.ExternalID = &eventv1.ExternalId{System: "crm", Id: "ann-7"}
	ann, err := f.app.CaptureLead(ctx, c, meta)
	if err != nil {
		t.Fatal(err)
	}
	ben := f.named(t, "ben@example.com", "Ben")
	before := f.lastSeq(t)
	for _, q := range []struct {
		email string
		ext   *eventv1.ExternalId
		by    string
	}{
		{" ann.lee@example.COM ", nil, "email"},
		{"", &eventv1.ExternalId{System: "crm", Id: "\ufeffann-7 "}, "external_id"},
	} {
		got, err := f.app.FindLead(ctx, q.email, q.ext)
		if err != nil || got.LeadID != ann.LeadID || got.Survivor != "" || got.MatchedBy != q.by {
			t.Fatalf("FindLead(%q, %v) = %+v, %v; want %s by %s", q.email, q.ext, got, err, ann.LeadID, q.by)
		}
	}
	if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: ben, Absorbed: ann.LeadID, Reason: "same person"}, meta); err != nil {
		t.Fatal(err)
	}
	after := f.lastSeq(t)
	if got, err := f.app.FindLead(ctx, "ann.lee@example.com", nil); err != nil || got.LeadID != ann.LeadID || got.Survivor != ben {
		t.Fatalf("after the merge: %+v, %v; want %s merged into %s", got, err, ann.LeadID, ben)
	}
	if _, err := f.app.FindLead(ctx, "nobody@example.com", nil); !errors.Is(err, app.ErrNotFound) {
		t.Fatalf("an unknown email: %v", err)
	}
	if n := f.lastSeq(t); n != after || after <= before {
		t.Fatalf("look-ups wrote %d messages", n-after)
	}
	for _, bad := range []struct {
		email string
		ext   *eventv1.ExternalId
		field string
	}{
		{"", nil, "email"},
		{"not-an-email", nil, "email"},
		{"ann.lee@example.com", &eventv1.ExternalId{System: "crm", Id: "ann-7"}, "email"},
		{"", &eventv1.ExternalId{System: "crm"}, "external_id.id"},
	} {
		var ve *app.ValidationError
		if _, err := f.app.FindLead(ctx, bad.email, bad.ext); !errors.As(err, &ve) || ve.Violations[0].Field != bad.field {
			t.Errorf("FindLead(%q, %v): %v; want a violation on %s", bad.email, bad.ext, err, bad.field)
		}
	}
	if _, err := f.app.UnmergeLeads(ctx, app.MergeLeads{Survivor: ben, Absorbed: ann.LeadID, Reason: "not the same"}, meta); err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.EraseLead(ctx, app.EraseLead{LeadID: ann.LeadID, Reason: "request"}, meta); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []*eventv1.ExternalId{nil, {System: "crm", Id: "ann-7"}} {
		email := "ann.lee@example.com"
		if ext != nil {
			email = ""
		}
		if got, err := f.app.FindLead(ctx, email, ext); !errors.Is(err, app.ErrNotFound) {
			t.Errorf("after the erasure, FindLead(%q, %v) = %+v, %v; want nobody", email, ext, got, err)
		}
	}
}
