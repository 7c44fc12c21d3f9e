package app

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/sla"
)

// A survivor is routed by its own person's answers again once an unmerge
// takes back what the absorbed lead's person answered while merged.
func TestUnmergedSurvivorIsRoutedByItsOwnAnswers(t *testing.T) {
	var recs []eventstore.Record
	add := func(p proto.Message) {
		ev, err := envelope.NewEvent("s", p, envelope.Meta{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, eventstore.Record{Seq: uint64(len(recs) + 1), Event: ev})
	}
	add(&eventv1.LeadCaptured{Profile: &eventv1.Profile{Country: "DE", Employees: 50, Industry: "software"}})
	add(&eventv1.LeadMerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"})
	add(&eventv1.LeadResubmitted{MergedFrom: "a", Profile: &eventv1.Profile{Country: "US", Employees: 900}})
	add(&eventv1.LeadResubmitted{Profile: &eventv1.Profile{Industry: "retail"}})
	if p := foldLead("s", recs).routingLead().Profile; p.GetCountry() != "US" || p.GetEmployees() != 900 {
		t.Fatalf("while merged: %v, want the latest form's US, 900", p)
	}
	add(&eventv1.LeadUnmerged{SurvivorLeadId: "s", AbsorbedLeadId: "a"})
	if p := foldLead("s", recs).routingLead().Profile; p.GetCountry() != "DE" || p.GetEmployees() != 50 || p.GetIndustry() != "retail" {
		t.Fatalf("after the unmerge: %v, want its own DE, 50, retail", p)
	}
}

// A route deadline no try moved (handoff was down) counts in the chosen
// rep's working hours: a lead qualified at 02:00 with 30 minutes to go is
// due at 09:30, not 02:30, so a routing at 09:05 breaches nothing.
func TestRouteDueCountsWorkingHours(t *testing.T) {
	h := &eventv1.WorkingHours{TimeZone: "UTC"}
	for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_FRIDAY; d++ {
		h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: "09:00", End: "17:00"})
	}
	cal, v := sla.NewCalendar("hours", h)
	if len(v) > 0 {
		t.Fatal(v)
	}
	night := time.Date(2026, 12, 2, 2, 0, 0, 0, time.UTC) // a Wednesday
	l := &lead{qualifiedAt: night}
	l.state.Deadline = night.Add(30 * time.Minute)
	if got, want := l.routeDue(cal), time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("qualified at night: due %v, want %v", got, want)
	}
	day := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	l = &lead{qualifiedAt: day}
	l.state.Deadline = day.Add(30 * time.Minute)
	if got := l.routeDue(cal); !got.Equal(l.state.Deadline) {
		t.Errorf("qualified in hours: due %v, want %v", got, l.state.Deadline)
	}
	none, _ := sla.NewCalendar("hours", nil)
	l = &lead{qualifiedAt: night}
	l.state.Deadline = night.Add(30 * time.Minute)
	if got := l.routeDue(none); !got.Equal(l.state.Deadline) {
		t.Errorf("no hours: due %v, want %v", got, l.state.Deadline)
	}
}

// A note's limit counts characters, as its error says: 500 of Japanese
// (1,500 bytes) are taken, 501 are not.
func TestTextLimitsCountCharacters(t *testing.T) {
	var v violations
	checkText(&v, "note", strings.Repeat("日", 500), 500, false)
	if len(v) != 0 {
		t.Fatalf("500 characters refused: %v", v)
	}
	checkText(&v, "note", strings.Repeat("日", 501), 500, false)
	if len(v) != 1 || v[0].Field != "note" {
		t.Fatalf("501 characters: %v, want refused", v)
	}
}

// An event stored under the lead that is another lead's (a bypassing
// write; its delivery was dead-lettered) leaves its lifecycle as the
// lead's state, as every reader takes it, and its id as the event at the
// lead's version (a request id's record names it), and nothing else: its
// key answers no command here.
func TestAnotherLeadsEventCountsOnlyItsLifecycle(t *testing.T) {
	id := "0195f3a0-0000-7000-8000-000000000001"
	captured := &eventv1.Event{LeadId: id, EventType: "LeadCaptured", Payload: &eventv1.Event_LeadCaptured{LeadCaptured: &eventv1.LeadCaptured{}},
		Lifecycle: &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_NEW, Cycle: 1}}
	foreign := &eventv1.Event{EventId: "foreign", LeadId: "0195f3a0-0000-7000-8000-000000000002", EventType: "LeadAccepted", IdempotencyKey: "accept-1",
		Payload: &eventv1.Event_LeadAccepted{LeadAccepted: &eventv1.LeadAccepted{}}, Lifecycle: &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_ACCEPTED, Cycle: 1}}
	l := foldLead(id, []eventstore.Record{{Seq: 1, Event: captured}, {Seq: 2, Event: foreign}})
	if _, keyed := l.byKey["accept-1"]; l.version != 2 || l.lastEventID != "foreign" || l.state.Status != lifecycle.StatusAccepted || keyed || l.accepted != nil {
		t.Fatalf("version %d, last event %q, status %v, key kept %v, accepted %v: want 2, foreign, ACCEPTED, no, nil",
			l.version, l.lastEventID, l.state.Status, keyed, l.accepted)
	}
}
