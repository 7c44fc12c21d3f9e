package app

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// ErrNotFound is returned for an unknown lead or program.
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

// RefusedError is a well-formed request the current state does not allow
// (FAILED_PRECONDITION); nothing was written.
type RefusedError struct {
	Reason string
}

func (e *RefusedError) Error() string { return e.Reason }

// PoisonError is a lead event nurture cannot act on until someone fixes
// its cause (a program it names does not exist): retrying will not help,
// so the event is dead-lettered and its lead parked.
type PoisonError struct {
	LeadID string
	Reason string
}

func (e *PoisonError) Error() string { return "lead " + e.LeadID + ": " + e.Reason }

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

// checkLeadID refuses a lead id Leadflow would not have given.
func checkLeadID(v *violations, field, id string) {
	if !envelope.ValidLeadID(id) {
		v.add(field, envelope.LeadIDRule)
	}
}

const (
	maxActorID = 128
	maxNote    = 500
	maxKey     = 200
)

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

func checkText(v *violations, field, s string, maxLen int, required bool) {
	switch {
	case required && strings.TrimSpace(s) == "":
		v.add(field, "is required")
	case !utf8.ValidString(s):
		v.add(field, "must be UTF-8")
	case utf8.RuneCountInString(s) > maxLen:
		v.add(field, "must be at most %d characters", maxLen)
	}
}
