package envelope_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

func TestNewEventWrapsPayload(t *testing.T) {
	now := time.Unix(1_700_000_000, 0).UTC()
	occurred := now.Add(-time.Hour)
	payload := &eventv1.ActivityRecorded{ActivityId: "a1", Detail: "d"}
	meta := envelope.Meta{CorrelationID: "c1", CausationID: "c0", IdempotencyKey: "k", OccurredAt: occurred}
	ev, err := envelope.NewEvent("l1", payload, meta, now)
	if err != nil {
		t.Fatal(err)
	}
	id, err := uuid.Parse(ev.GetEventId())
	if err != nil || id.Version() != 7 {
		t.Errorf("event id %q is not a UUIDv7", ev.GetEventId())
	}
	if ev.GetLeadId() != "l1" || ev.GetEventType() != "ActivityRecorded" || ev.GetSchemaVersion() != envelope.SchemaVersion ||
		ev.GetCorrelationId() != "c1" || ev.GetCausationId() != "c0" || ev.GetIdempotencyKey() != "k" {
		t.Errorf("envelope %v", ev)
	}
	if !ev.GetOccurredAt().AsTime().Equal(occurred) || !ev.GetRecordedAt().AsTime().Equal(now) {
		t.Errorf("occurred %v recorded %v, want %v and %v", ev.GetOccurredAt().AsTime(), ev.GetRecordedAt().AsTime(), occurred, now)
	}
	if got := envelope.Payload(ev); !proto.Equal(got, payload) {
		t.Errorf("payload %v, want %v", got, payload)
	}
}

func TestNewEventOccurredDefaultsToNow(t *testing.T) {
	now := time.Unix(1_700_000_000, 0).UTC()
	ev, err := envelope.NewEvent("", &eventv1.ScoringModelApproved{Version: 1}, envelope.Meta{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !ev.GetOccurredAt().AsTime().Equal(now) {
		t.Errorf("occurred %v, want %v", ev.GetOccurredAt().AsTime(), now)
	}
}

func TestNewEventRefusesNonPayloads(t *testing.T) {
	if _, err := envelope.NewEvent("l", &eventv1.Claim{}, envelope.Meta{}, time.Now()); err == nil {
		t.Fatal("a Claim was accepted as an event payload")
	}
}

func TestPayloadOfEmptyEventIsNil(t *testing.T) {
	if p := envelope.Payload(&eventv1.Event{}); p != nil {
		t.Fatalf("payload %v, want nil", p)
	}
}

// Of the two records of a merge or an unmerge, the survivor's is told
// from the absorbed lead's; no other event is either.
func TestSurvivorSide(t *testing.T) {
	merged := &eventv1.LeadMerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"}
	unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"}
	for _, c := range []struct {
		ev   *eventv1.Event
		want bool
	}{
		{&eventv1.Event{LeadId: "s", Payload: &eventv1.Event_LeadMerged{LeadMerged: merged}}, true},
		{&eventv1.Event{LeadId: "a", Payload: &eventv1.Event_LeadMerged{LeadMerged: merged}}, false},
		{&eventv1.Event{LeadId: "s", Payload: &eventv1.Event_LeadUnmerged{LeadUnmerged: unmerged}}, true},
		{&eventv1.Event{LeadId: "a", Payload: &eventv1.Event_LeadUnmerged{LeadUnmerged: unmerged}}, false},
		{&eventv1.Event{LeadId: "s", Payload: &eventv1.Event_LeadCaptured{LeadCaptured: &eventv1.LeadCaptured{}}}, false},
		{&eventv1.Event{Payload: &eventv1.Event_LeadMerged{LeadMerged: &eventv1.LeadMerged{}}}, false},
	} {
		if got := envelope.SurvivorSide(c.ev); got != c.want {
			t.Errorf("SurvivorSide(%v) = %v, want %v", c.ev, got, c.want)
		}
	}
}

// A lead id is a UUID in canonical form and nothing else: no caller's text
// becomes a subject token, and one lead has one spelling.
func TestValidLeadID(t *testing.T) {
	for id, want := range map[string]bool{
		"0199aaaa-0000-7000-8000-000000000000":          true,
		"0199AAAA-0000-7000-8000-000000000000":          false,
		"{0199aaaa-0000-7000-8000-000000000000}":        false,
		"urn:uuid:0199aaaa-0000-7000-8000-000000000000": false,
		"0199aaaa00007000800000000000000000":            false,
		"lead.>":                                        false,
		"no-such-lead":                                  false,
		"":                                              false,
	} {
		if got := envelope.ValidLeadID(id); got != want {
			t.Errorf("ValidLeadID(%q) = %v, want %v", id, got, want)
		}
	}
}

// Check passes what NewEvent writes and a newer writer's unknown type, and
// refuses what would fold a lead into a state nobody wrote.
func TestCheckRefusesMalformedEvents(t *testing.T) {
	good := func() *eventv1.Event {
		ev, err := envelope.NewEvent("l1", &eventv1.LeadQualified{Score: 70}, envelope.Meta{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ev.Lifecycle = &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_MQL}
		return ev
	}
	if err := envelope.Check(good(), "l1", "LeadQualified"); err != nil {
		t.Fatalf("a well-formed event: %v", err)
	}
	newer := &eventv1.Event{LeadId: "l1", EventType: "LeadTeleported"}
	if err := envelope.Check(newer, "l1", "LeadTeleported"); err != nil {
		t.Fatalf("an event type of a newer schema: %v", err)
	}
	newStatus := good()
	newStatus.Lifecycle.Status = 40
	if err := envelope.Check(newStatus, "l1", "LeadQualified"); err != nil {
		t.Fatalf("a status of a newer schema: %v", err)
	}
	for name, c := range map[string]struct {
		edit func(*eventv1.Event)
		id   string
		typ  string
	}{
		"another lead's":       {func(*eventv1.Event) {}, "l2", "LeadQualified"},
		"header of other type": {func(*eventv1.Event) {}, "l1", "LeadDisqualified"},
		"empty body":           {func(ev *eventv1.Event) { *ev = eventv1.Event{LeadId: "l1", EventType: "LeadQualified"} }, "l1", "LeadQualified"},
		"payload of other type": {func(ev *eventv1.Event) {
			ev.Payload = &eventv1.Event_LeadDisqualified{LeadDisqualified: &eventv1.LeadDisqualified{}}
		}, "l1", "LeadQualified"},
		"status past a byte": {func(ev *eventv1.Event) { ev.Lifecycle.Status = 268 }, "l1", "LeadQualified"},
		"owner kind past a byte": {func(ev *eventv1.Event) {
			ev.Lifecycle.Owner = &eventv1.Owner{Kind: 300, Id: "x"}
		}, "l1", "LeadQualified"},
	} {
		ev := good()
		c.edit(ev)
		if err := envelope.Check(ev, c.id, c.typ); !errors.Is(err, envelope.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// An email address is found however its @ is written into an id, and in
// any script; ordinary ids are not.
func TestHoldsEmail(t *testing.T) {
	for s, want := range map[string]bool{
		"ann@example.com":             true,
		"crm:ann@example.com:42":      true,
		"signup-ann%40example.com":    true,
		"ann%2Bnews%40example.com":    true,
		"ann=40example.com":           true,
		"ann＠example.com":             true,
		"ann@пример.рф":               true,
		"ann&#64;example.com":         true,
		"ann﹫example.com":             true,
		"ann%2540example.com":         true,
		"ann@example.\u200bcom":       true,
		"ANN(AT)EXAMPLE.COM":          true,
		"ann[at]example.com":          true,
		"form-2026-12-07-0001":        false,
		"0199aaaa-0000-7000-8000-000": false,
		"order=40":                    false,
		"import:row:12":               false,
	} {
		if got := envelope.HoldsEmail(s); got != want {
			t.Errorf("HoldsEmail(%q) = %v, want %v", s, got, want)
		}
	}
}

// Currencies ISO 4217 lists now, upper case; not a made-up or withdrawn
// one, nor the codes for no currency or for tests.
func TestCurrency(t *testing.T) {
	for code, want := range map[string]bool{"EUR": true, "JPY": true, "BHD": true, "VES": true, "SLE": true,
		"eur": false, "XYZ": false, "HRK": false, "XXX": false, "XTS": false, "": false, "EURO": false} {
		if got := envelope.Currency(code); got != want {
			t.Errorf("Currency(%q) = %v, want %v", code, got, want)
		}
	}
}
