package app

import (
	"testing"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// A lead nurtured before it was ever an MQL starts cycle 2 when it
// qualifies from nurture, as the lifecycle counts (nurture said 1).
func TestCycleIsTheLifecycles(t *testing.T) {
	l := newLead("0195f3a0-0000-7000-8000-000000000001")
	ev := func(cycle int32, p *eventv1.Event) *eventv1.Event {
		p.LeadId, p.EventType = l.id, string(envelope.Payload(p).ProtoReflect().Descriptor().Name())
		p.Lifecycle = &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_MQL, Cycle: cycle}
		return p
	}
	l.apply(eventstore.Record{Seq: 1, Event: ev(1, &eventv1.Event{Payload: &eventv1.Event_LeadCaptured{LeadCaptured: &eventv1.LeadCaptured{}}})},
		eventstore.Record{Seq: 2, Event: ev(2, &eventv1.Event{Payload: &eventv1.Event_LeadQualified{LeadQualified: &eventv1.LeadQualified{}}})})
	if got := l.cycle(); got != 2 {
		t.Fatalf("cycle %d, want the lifecycle's 2", got)
	}
}

// An event stored under the lead that is another lead's (a bypassing
// write; its delivery was dead-lettered) leaves its lifecycle as the
// lead's state, as every reader takes it, and counts nothing else.
func TestAnotherLeadsEventCountsOnlyItsLifecycle(t *testing.T) {
	l := newLead("0195f3a0-0000-7000-8000-000000000001")
	captured := &eventv1.Event{LeadId: l.id, EventType: "LeadCaptured", Payload: &eventv1.Event_LeadCaptured{LeadCaptured: &eventv1.LeadCaptured{}},
		Lifecycle: &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_NEW, Cycle: 1}}
	foreign := &eventv1.Event{LeadId: "0195f3a0-0000-7000-8000-000000000002", EventType: "LeadQualified",
		Payload: &eventv1.Event_LeadQualified{LeadQualified: &eventv1.LeadQualified{}}, Lifecycle: &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_MQL, Cycle: 1}}
	l.apply(eventstore.Record{Seq: 1, Event: captured}, eventstore.Record{Seq: 2, Event: foreign})
	if l.version != 2 || l.state.Status != lifecycle.StatusMQL || l.qualified != 0 {
		t.Fatalf("version %d, status %v, qualified %d: want 2, MQL, 0", l.version, l.state.Status, l.qualified)
	}
}
