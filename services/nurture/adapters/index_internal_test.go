package adapters

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/nurture/app"
)

// msg is a stored event as the index reads it: its type header and data.
type msg struct {
	jetstream.Msg
	h nats.Header
	d []byte
}

func (m msg) Headers() nats.Header { return m.h }
func (m msg) Data() []byte         { return m.d }

// A breach, and the recycle it escalated to, stay the lead's next step
// through the facts, merges and scores after it: a merge cleared the
// recycle (lost then said "reassignment to another rep", which handoff
// never does for it); the rep's attempt ends the breach.
func TestTheIndexKeepsABreachThroughFactsAndMerges(t *testing.T) {
	step := heads(t, &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_ACCEPTED,
		Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}})
	step(&eventv1.LeadAccepted{RepId: "ann"})
	step(&eventv1.SLABreached{Sla: eventv1.SLAKind_SLA_KIND_FOLLOW_UP, Escalation: eventv1.SLAEscalation_SLA_ESCALATION_RECYCLE})
	step(&eventv1.ActivityRecorded{Type: eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK})
	if got := step(&eventv1.LeadMerged{SurvivorLeadId: "l", AbsorbedLeadId: "a", AbsorbedProfile: &eventv1.Profile{}}); !got.RecycleDue || !got.Breached {
		t.Fatalf("after a click and a merge: recycle due %v, breached %v; want both", got.RecycleDue, got.Breached)
	}
	if got := step(&eventv1.ContactAttempted{RepId: "ann", Attempt: 4}); got.RecycleDue || got.Breached {
		t.Errorf("after the rep's attempt: recycle due %v, breached %v; want neither", got.RecycleDue, got.Breached)
	}
}

// A re-engaged lead waits for its score through a merge (the survivor's
// facts grow) or a merge candidate, as through a fact: the lost check
// names the scorer, not the program.
func TestTheIndexKeepsAReengagementThroughMerges(t *testing.T) {
	step := heads(t, &eventv1.Lifecycle{Status: eventv1.LeadStatus_LEAD_STATUS_NURTURING,
		Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_PROGRAM, Id: "p"}})
	re := step(&eventv1.LeadReengaged{ProgramId: "p"}).Reengaged
	if got := step(&eventv1.LeadMerged{SurvivorLeadId: "l", AbsorbedLeadId: "a", AbsorbedProfile: &eventv1.Profile{}}); got.Reengaged != re {
		t.Fatalf("after a merge: re-engagement %q, want %q", got.Reengaged, re)
	}
	if got := step(&eventv1.MergeCandidateFound{OtherLeadId: "b"}); got.Reengaged != re {
		t.Fatalf("after a merge candidate: re-engagement %q, want %q", got.Reengaged, re)
	}
}

// heads folds one lead's events, each with lifecycle lc, through an
// index's head, and returns the head after each.
func heads(t *testing.T, lc *eventv1.Lifecycle) func(proto.Message) app.Head {
	x := &Index{strs: map[string]string{}}
	var h app.Head
	seq := uint64(0)
	return func(p proto.Message) app.Head {
		t.Helper()
		ev, err := envelope.NewEvent("l", p, envelope.Meta{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ev.Lifecycle = lc
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		h = x.head(h, "l", seq, time.Now(), msg{h: nats.Header{eventstore.HeaderType: []string{ev.GetEventType()}}, d: b})
		return h
	}
}
