package lifecycle_test

import (
	"errors"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

func TestNewEventStampsStateAfter(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	ev, after, err := lifecycle.NewEvent("l1", lifecycle.State{}, lifecycle.Command{Name: lifecycle.Capture},
		lifecycle.DefaultPolicy(), &eventv1.LeadCaptured{}, envelope.Meta{CorrelationID: "c1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != lifecycle.StatusNew || after.Owner != lifecycle.QueueQualification {
		t.Errorf("state after %+v", after)
	}
	if got := lifecycle.FromProto(ev.GetLifecycle()); got != after {
		t.Errorf("stamped %+v, returned %+v", got, after)
	}
	if ev.GetLeadId() != "l1" || ev.GetEventType() != "LeadCaptured" || ev.GetCorrelationId() != "c1" {
		t.Errorf("envelope %v", ev)
	}
}

func TestNewEventRefusalKeepsState(t *testing.T) {
	var s lifecycle.State
	ev, after, err := lifecycle.NewEvent("l1", s, lifecycle.Command{Name: lifecycle.Accept},
		lifecycle.DefaultPolicy(), &eventv1.LeadAccepted{}, envelope.Meta{}, time.Now())
	if !errors.Is(err, lifecycle.ErrRefused) || ev != nil || after != s {
		t.Fatalf("got %v, %+v, %v; want nil, the state before, ErrRefused", ev, after, err)
	}
}
