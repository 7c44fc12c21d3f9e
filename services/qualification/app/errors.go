package app

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// ErrNotFound is returned for an unknown model version or lead, or a lead
// never scored.
var ErrNotFound = errors.New("not found")

// Violation is one refused request field.
type Violation struct {
	Field       string
	Description string
}

// ValidationError lists the refused fields of a request; nothing was
// written.
type ValidationError struct {
	Violations []Violation
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + " " + v.Description
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

type violations []Violation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	return &ValidationError{Violations: v}
}

type eventPayload = proto.Message

// checkLeadID refuses a lead id Leadflow would not have given.
func checkLeadID(v *violations, field, id string) {
	if !envelope.ValidLeadID(id) {
		v.add(field, envelope.LeadIDRule)
	}
}

const maxActorID = 128

// checkActor checks who is acting: an id is required, and the kind and
// team must be values the schema defines.
func checkActor(v *violations, field string, a *eventv1.Actor) {
	switch id := strings.TrimSpace(a.GetId()); {
	case a == nil:
		v.add(field, "is required")
		return
	case id == "":
		v.add(field+".id", "is required")
	case len(id) > maxActorID:
		v.add(field+".id", "must be at most %d characters", maxActorID)
	}
	if _, ok := eventv1.ActorKind_name[int32(a.GetKind())]; !ok {
		v.add(field+".kind", "%d is not a known actor kind", a.GetKind())
	}
	if _, ok := eventv1.Team_name[int32(a.GetTeam())]; !ok {
		v.add(field+".team", "%d is not a known team", a.GetTeam())
	}
}

// blank reports whether an optional key was sent as spaces only: trimmed,
// it would be no key at all.
func blank(key string) bool { return key != "" && strings.TrimSpace(key) == "" }
