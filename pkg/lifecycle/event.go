package lifecycle

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// NewEvent decides cmd on a lead's state with the shared state
// machine and wraps payload as the resulting event, stamped with the
// state after it (Event.lifecycle). Every lead event is made here, so
// every one carries its lifecycle. It returns the state after, or the
// machine's refusal (ErrRefused, ErrInvalidCommand).
func NewEvent(leadID string, state State, cmd Command, policy Policy, payload proto.Message, meta envelope.Meta, now time.Time) (*eventv1.Event, State, error) {
	decided, err := Decide(state, cmd, policy, now)
	if err != nil {
		return nil, state, err
	}
	after := Fold(state, decided...)
	ev, err := envelope.NewEvent(leadID, payload, meta, now)
	if err != nil {
		return nil, state, err
	}
	ev.Lifecycle = ToProto(after)
	return ev, after, nil
}
