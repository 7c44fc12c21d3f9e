package app

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotFound is returned for a lead or a what-if that does not exist.
var ErrNotFound = errors.New("not found")

// ErrTooManyWhatIfs is returned by StartWhatIf while a replica runs as
// many what-ifs as it may: each reads the whole stream and holds every
// lead of its period in memory, beside the live projection.
var ErrTooManyWhatIfs = fmt.Errorf("%d what-ifs run on this replica already: wait for one to finish", maxWhatIfs)

// ErrBusy is returned by StartRebuild while a rebuild runs.
var ErrBusy = errors.New("a rebuild is running")

// Violation is one refused request field.
type Violation struct {
	Field       string `json:"field"`
	Description string `json:"description"`
}

// ValidationError is a request refused for its fields.
type ValidationError struct {
	Violations []Violation
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// RefusedError is a well-formed request the data does not allow (a
// what-if of a version that was activated); Field names the field.
type RefusedError struct {
	Field  string
	Reason string
}

func (e *RefusedError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

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
