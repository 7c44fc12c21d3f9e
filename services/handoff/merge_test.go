package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// A merge keeps the survivor with its rep, so the rep's capacity still
// counts it; an unmerge that gives the absorbed lead back to its rep
// counts it again. dan (pool us) holds one lead at most.
func TestMergeKeepsTheRepsCapacity(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 1)
	us := &eventv1.Profile{Country: "US", Industry: "software"}
	danIsFull := func(why string) {
		t.Helper()
		w.settle(t)
		queued := w.mql(t, &eventv1.Profile{Country: "BR"})
		w.waitFor(t, queued, "LeadQueued", 1)
		_, err := s.client.AssignLead(ctxT(t), &handoffv1.AssignLeadRequest{LeadId: queued, RepId: "dan", RequestId: "by-hand", AssignedBy: ops})
		wantCode(t, err, codes.FailedPrecondition, "")
		if !strings.Contains(err.Error(), "at capacity: 1 of 1") {
			t.Fatalf("%s: dan should be full: %v", why, err)
		}
	}

	survivor := w.mql(t, us)
	if owner := ownerOf(w.waitFor(t, survivor, "LeadAssigned", 1)[0]); owner != "dan" {
		t.Fatalf("assigned to %s, want dan", owner)
	}
	absorbed := uuid.NewString()
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: us, Attribution: &eventv1.Attribution{Source: "web-form"}}, intakeActor)
	w.merge(t, survivor, absorbed)
	danIsFull("the survivor was merged into")

	// dan's lead merged into another: released; unmerged: dan's again.
	other := uuid.NewString()
	w.write(t, other, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: us, Attribution: &eventv1.Attribution{Source: "web-form"}}, intakeActor)
	before := w.state(t, survivor)
	w.merge(t, other, survivor)
	w.settle(t)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: before.Status, Owner: before.Owner, Due: before.Deadline},
		&eventv1.LeadUnmerged{SurvivorLeadId: other, AbsorbedLeadId: survivor, Reason: "two people"}, intakeActor)
	if st := w.state(t, survivor); st.Status != lifecycle.StatusAssigned || st.Owner.ID != "dan" {
		t.Fatalf("unmerged lead: %v", st)
	}
	danIsFull("dan's lead was unmerged back to him")
}

// merge writes what intake's MergeLeads does: the survivor records the
// merge as it stands, the absorbed lead becomes MERGED.
func (w *world) merge(t *testing.T, survivor, absorbed string) {
	t.Helper()
	payload := &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "one person"}
	ev, err := envelope.NewEvent(survivor, payload, envelope.Meta{Actor: intakeActor, CorrelationID: uuid.NewString()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	head := w.lastEvent(t, survivor)
	ev.Lifecycle = head.Event.GetLifecycle()
	if _, err := w.store.Append(ctxT(t), eventstore.LeadSubject(survivor), head.Seq, ev); err != nil {
		t.Fatal(err)
	}
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, payload, intakeActor)
}
