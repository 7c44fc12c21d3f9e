package app

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// ErrNotFound is returned for an unknown lead.
var ErrNotFound = errors.New("not found")

// ErrErased is what Personal.Seal returns once the lead's keys are
// shredded.
var ErrErased = errors.New("the lead's personal data is erased")

// Violation is one refused request field.
type Violation = routing.Violation

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

// knownEnum checks that field is a named value of its enum other than
// UNSPECIFIED, and names them all as the JSON API spells them.
func (v *violations) knownEnum(field string, e protoreflect.Enum) {
	d := e.Descriptor()
	if e.Number() != 0 && d.Values().ByNumber(e.Number()) != nil {
		return
	}
	var names []string
	for i := range d.Values().Len() {
		if n := d.Values().Get(i); n.Number() != 0 {
			names = append(names, string(n.Name()))
		}
	}
	v.add(field, "must be one of %s", strings.Join(names, ", "))
}

func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	return &ValidationError{Violations: v}
}

func invalid(field, format string, args ...any) error {
	var v violations
	v.add(field, format, args...)
	return v.err()
}

// NotOwnerError is a rep acting on a lead that someone else owns, or
// that was taken from them. Nothing was written.
type NotOwnerError struct {
	LeadID  string
	RepID   string
	Owner   lifecycle.Owner
	Status  lifecycle.Status
	Command string
}

func (e *NotOwnerError) Error() string {
	owner := e.Owner.String()
	if owner == "" {
		owner = "nobody"
	}
	return fmt.Sprintf("%s refused in %s: lead %s is owned by %s, not rep %s", e.Command, e.Status, e.LeadID, owner, e.RepID)
}

// AtCapacityError is a rep who holds as many open leads as the rep's
// capacity allows. Nothing was written.
type AtCapacityError struct {
	RepID          string
	Open, Capacity int
}

func (e *AtCapacityError) Error() string {
	return fmt.Sprintf("rep %s is at capacity: %d of %d open leads", e.RepID, e.Open, e.Capacity)
}

// UnavailableError is a rep who cannot take a lead now (inactive, out of
// office). Nothing was written.
type UnavailableError struct {
	RepID string
	Why   string
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("rep %s cannot take leads: %s", e.RepID, e.Why)
}

// CannotSealError is a rep's free text that cannot be kept sealed: this
// handoff has no key vault, or the lead no data key. Nothing was written.
type CannotSealError struct {
	Field, Why string
	// Required: the request cannot go without the text.
	Required bool
}

func (e *CannotSealError) Error() string {
	if e.Required {
		return fmt.Sprintf("%s: %s, and free text may name the person, so it is kept only sealed; it is required, so this cannot be done here until it can be sealed", e.Field, e.Why)
	}
	return fmt.Sprintf("%s: %s, and free text may name the person, so it is kept only sealed; send the request without it", e.Field, e.Why)
}

// StaleVersionError is a routing change made against a version that is
// no longer current. Nothing was written.
type StaleVersionError struct {
	Expected, Actual uint32
}

func (e *StaleVersionError) Error() string {
	return fmt.Sprintf("routing is at version %d, the change expected %d", e.Actual, e.Expected)
}

// checkLeadID refuses a lead id Leadflow would not have given.
func checkLeadID(v *violations, id string) {
	if !envelope.ValidLeadID(id) {
		v.add("lead_id", envelope.LeadIDRule)
	}
}

const maxKey = 200

func checkRequestID(v *violations, id string) {
	switch {
	case strings.TrimSpace(id) == "":
		v.add("request_id", "is required: a retry with the same id returns the first answer")
	case len(id) > maxKey:
		v.add("request_id", "must be at most %d characters", maxKey)
	case strings.ContainsFunc(id, unicode.IsControl):
		// It names the default opportunity id, which the read model stores
		// as text: PostgreSQL takes no NUL.
		v.add("request_id", "must not contain control characters")
	case envelope.HoldsEmail(id):
		v.add("request_id", "must not hold an email address: it is kept in the clear, also after the lead's erasure")
	}
}

func checkRepID(v *violations, field, id string) {
	switch {
	case id == "":
		v.add(field, "is required")
	case !routing.ValidID(id):
		v.add(field, "must be a rep id: 1-64 letters, digits, '-' or '_'")
	}
}

func checkText(v *violations, field, s string, max int, required bool) {
	switch {
	case required && strings.TrimSpace(s) == "":
		v.add(field, "is required")
	case utf8.RuneCountInString(s) > max:
		v.add(field, "must be at most %d characters", max)
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' }):
		v.add(field, "must not contain control characters")
	}
}

// checkNoEmail refuses an email address in text an operator types that
// events keep in the clear (a reassignment's reason): it would name the
// person after the lead's erasure.
func checkNoEmail(v *violations, field, s string) {
	if envelope.HoldsEmail(s) {
		v.add(field, "must not name the person: it is kept in the clear, also after the lead's erasure, and this one holds an email address")
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

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

func checkMoney(v *violations, field string, m *eventv1.Money, required bool) {
	switch {
	case m == nil && required:
		v.add(field, "is required")
	case m == nil:
	case !currencyRE.MatchString(m.GetCurrency()):
		// Whether it is one ISO 4217 lists now is asked where a deal takes
		// its currency (ConvertLead): a deal bound to a withdrawn one goes on.
		v.add(field+".currency", "must be an ISO 4217 code such as EUR")
	case m.GetMinorUnits() <= 0:
		// A deal's amount: one of 0 (a CRM that dropped the value) would
		// stand for good in pipeline and revenue, and a won deal is final.
		v.add(field+".minor_units", "must be above 0")
	case m.GetMinorUnits() > envelope.MaxMinorUnits:
		v.add(field+".minor_units", "must be at most %d", int64(envelope.MaxMinorUnits))
	}
}

func checkTime(v *violations, field string, t *timestamppb.Timestamp) {
	if t != nil && t.CheckValid() != nil {
		v.add(field, "is not a valid time")
	}
}

// stagePunct is what CRMs' stage names hold besides letters, digits and
// spaces ("Proposal/Price Quote", "Id. Decision Makers").
const stagePunct = "-_./()&,'+:#"

// checkStage checks a stage name, which callers take in NFC: one name
// spelt two ways would be two stages, and a move between them no move.
func checkStage(v *violations, field, s string) {
	if s == "" {
		v.add(field, "is required")
	} else if !stageName(s) {
		v.add(field, "must be a stage name: 1-64 letters (any language), digits, spaces or %s, starting with a letter or digit and not ending in a space", stagePunct)
	}
}

func stageName(s string) bool {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > 64 || strings.HasSuffix(s, " ") {
		return false
	}
	for i, r := range s {
		word := unicode.IsLetter(r) || unicode.IsDigit(r)
		if i == 0 && !word || !word && !unicode.IsMark(r) && r != ' ' && !strings.ContainsRune(stagePunct, r) ||
			unicode.In(r, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point) { // prints nothing
			return false
		}
	}
	return true
}
