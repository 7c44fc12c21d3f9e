package lifecycle

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Every lead event carries the state after it (Event.lifecycle), so any
// reader knows a lead's state from its last event alone. Status and
// OwnerKind share their numbering with the proto enums; TestProtoMapping
// holds them to it by name.

// ToProto is the envelope form of s.
func ToProto(s State) *eventv1.Lifecycle {
	lc := &eventv1.Lifecycle{
		Status:   eventv1.LeadStatus(s.Status),
		Attempts: int32(s.Attempts),
		Score:    int32(s.Score),
		Cycle:    int32(s.Cycle),
	}
	if !s.Owner.IsZero() {
		lc.Owner = &eventv1.Owner{Kind: eventv1.OwnerKind(s.Owner.Kind), Id: s.Owner.ID}
	}
	if !s.Deadline.IsZero() {
		lc.Deadline = timestamppb.New(s.Deadline)
	}
	return lc
}

// FromProto is the State an envelope describes; nil is StatusNone.
func FromProto(lc *eventv1.Lifecycle) State {
	if lc == nil {
		return State{}
	}
	s := State{
		Status:   Status(lc.GetStatus()),
		Owner:    Owner{Kind: OwnerKind(lc.GetOwner().GetKind()), ID: lc.GetOwner().GetId()},
		Attempts: int(lc.GetAttempts()),
		Score:    int(lc.GetScore()),
		Cycle:    int(lc.GetCycle()),
	}
	if lc.GetDeadline() != nil {
		s.Deadline = lc.GetDeadline().AsTime()
	}
	return s
}
