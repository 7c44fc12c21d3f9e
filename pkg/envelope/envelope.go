// Package envelope wraps event payloads in the Event envelope every
// Leadflow event is stored in (see docs/events.md), and unwraps them. It is
// pure: no I/O, and it depends only on the generated schema, protobuf,
// uuid and a currency list, so a writer needs neither the store nor the
// domain to build events.
package envelope

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/bojanz/currency"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// SchemaVersion is the version of the envelope and payloads written now.
const SchemaVersion = 1

// Meta is the envelope of the events one command writes: who, why, and
// the trace they belong to.
type Meta struct {
	Actor *eventv1.Actor
	// Caller is who called the API (set with Actor by the gRPC server);
	// an event names it beside Actor when the request named another.
	Caller         *eventv1.Actor
	CorrelationID  string
	CausationID    string
	IdempotencyKey string
	Trace          *eventv1.TraceContext
	// OccurredAt defaults to the recording time.
	OccurredAt time.Time
}

// ActorOr is the actor a request names, else the caller the envelope
// names (the token's subject, set by the gRPC server): a call's events
// name its caller unless the request names a more precise actor, such as
// an integration acting for a person. With auth off there is no caller.
func (m Meta) ActorOr(named *eventv1.Actor) *eventv1.Actor {
	if named != nil {
		return named
	}
	return m.Actor
}

// payloadFields maps a payload's message name to its field in the
// Event's oneof, read once from the schema so that adding an event to
// the proto needs no code here.
var payloadFields = func() map[protoreflect.FullName]protoreflect.FieldDescriptor {
	oneof := (&eventv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("payload")
	m := make(map[protoreflect.FullName]protoreflect.FieldDescriptor, oneof.Fields().Len())
	for i := range oneof.Fields().Len() {
		f := oneof.Fields().Get(i)
		m[f.Message().FullName()] = f
	}
	return m
}()

// NewEvent wraps payload (e.g. *eventv1.LeadCaptured) in an envelope with a
// new UUIDv7 event id, its type name and the recording time now.
func NewEvent(leadID string, payload proto.Message, meta Meta, now time.Time) (*eventv1.Event, error) {
	desc := payload.ProtoReflect().Descriptor()
	field, ok := payloadFields[desc.FullName()]
	if !ok {
		return nil, fmt.Errorf("envelope: %s is not an event payload", desc.FullName())
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("event id: %w", err)
	}
	occurred := meta.OccurredAt
	if occurred.IsZero() {
		occurred = now
	}
	ev := &eventv1.Event{
		EventId:        id.String(),
		LeadId:         leadID,
		EventType:      string(desc.Name()),
		OccurredAt:     timestamppb.New(occurred),
		RecordedAt:     timestamppb.New(now),
		Actor:          meta.Actor,
		CorrelationId:  meta.CorrelationID,
		CausationId:    meta.CausationID,
		SchemaVersion:  SchemaVersion,
		IdempotencyKey: meta.IdempotencyKey,
		Trace:          meta.Trace,
	}
	if meta.Caller != nil && !proto.Equal(meta.Caller, meta.Actor) {
		ev.Caller = meta.Caller
	}
	ev.ProtoReflect().Set(field, protoreflect.ValueOfMessage(payload.ProtoReflect()))
	return ev, nil
}

// Payload returns the event's payload message, or nil.
func Payload(ev *eventv1.Event) proto.Message {
	r := ev.ProtoReflect()
	f := r.WhichOneof(r.Descriptor().Oneofs().ByName("payload"))
	if f == nil {
		return nil
	}
	return r.Get(f).Message().Interface()
}

// ValidLeadID reports whether id is a lead id as Leadflow gives them: a
// UUID in canonical, lower-case form. Every service checks the lead ids
// callers send with it, so no caller's text becomes a subject token.
func ValidLeadID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

// emailIn finds something shaped like an email address in text, its
// domain's last label in any script.
var emailIn = regexp.MustCompile(`[^\s@<>()]+@[^\s@<>()]+\.\pL{2,}`)

// atSigns are the other ways an @ is written into ids (in lower case):
// percent-encoded (a key built from a URL), quoted-printable, full-width
// and small, an HTML entity, spelled out in brackets.
var atSigns = strings.NewReplacer("%40", "@", "=40", "@", "＠", "@", "﹫", "@",
	"&#64;", "@", "&#x40;", "@", "&commat;", "@", "[at]", "@", "(at)", "@")

// HoldsEmail reports whether s holds something shaped like an email
// address, its @ encoded or not, with invisible characters in it or not.
// Text every event keeps in the clear (an idempotency key, a correlation
// id, an erasure's reason) must not: it would go on naming the person
// after the lead's erasure.
func HoldsEmail(s string) bool {
	s = strings.ToLower(strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Cf, r) {
			return -1 // a zero-width space between the dot and "com"
		}
		return r
	}, s))
	for range 3 { // %40 encoded again (%2540), and again
		s = strings.ReplaceAll(s, "%25", "%")
	}
	return emailIn.MatchString(atSigns.Replace(s))
}

// SurvivorSide reports whether ev is the surviving lead's record of a
// merge or an unmerge: both leads record LeadMerged (LeadUnmerged), and
// only the absorbed lead's is a step of its lifecycle.
func SurvivorSide(ev *eventv1.Event) bool {
	id := ev.GetLeadId()
	return id != "" && (ev.GetLeadMerged().GetSurvivorLeadId() == id || ev.GetLeadUnmerged().GetSurvivorLeadId() == id)
}

// GivenBack reports whether what a survivor stored that came through lead
// via (an event's merged_from) went back with the unmerge u: via is the
// absorbed lead or one merged into it.
func GivenBack(u *eventv1.LeadUnmerged, via string) bool {
	return via != "" && (via == u.GetAbsorbedLeadId() || slices.Contains(u.GetGivenBackVia(), via))
}

// MaxClockAhead is how far ahead of the writer's clock an event's
// occurred_at may be (a client's clock skew); writers refuse more, so an
// event stored at t happened before t+MaxClockAhead.
const MaxClockAhead = 5 * time.Minute

// LeadIDRule is what ValidLeadID asks of an id, for error messages.
const LeadIDRule = "must be a lead id: a lower-case UUID like 0199aaaa-0000-7000-8000-000000000000"

// MaxMinorUnits bounds every amount an event carries (10^15 minor units,
// ten trillion in a two-decimal currency): the read model sums amounts in
// 64 bits, and a thousand at the bound still fit. Writers refuse more.
const MaxMinorUnits = 1e15

// Currency reports whether code is a currency ISO 4217 lists now, upper
// case (github.com/bojanz/currency's list, which follows CLDR; a code
// withdrawn, such as HRK, or a made-up one such as XYZ, is not): writers
// ask it where a deal or a campaign takes its currency, which binds every
// later amount of it.
func Currency(code string) bool { return code != "" && currency.IsValid(code) } // IsValid takes "" as none

// CurrencyRule is what Currency asks of a code, for error messages.
const CurrencyRule = "must be a current ISO 4217 code such as EUR"

// ErrMalformed is wrapped by Check's errors.
var ErrMalformed = errors.New("envelope: malformed event")

// knownTypes are the event types of this schema: payload message names.
var knownTypes = func() map[string]bool {
	m := make(map[string]bool, len(payloadFields))
	for name := range payloadFields {
		m[string(name.Name())] = true
	}
	return m
}()

// Types are the event types of this schema, sorted: payload message names.
func Types() []string {
	return slices.Sorted(maps.Keys(knownTypes))
}

// Check reports what makes ev, stored under leadID with the type header
// typ, unfit to fold: another lead's id, a type that is not its header's
// or its payload's, a type this schema knows without its payload, or a
// lifecycle status or owner kind out of the byte the lifecycle keeps it
// in (a reader would take it for another). What a newer writer may send
// passes: a type this schema does not know (readers skip it by type), a
// status or owner kind it does not name.
func Check(ev *eventv1.Event, leadID, typ string) error {
	p := Payload(ev)
	switch {
	case ev.GetLeadId() != leadID:
		return fmt.Errorf("%w: lead_id %q stored under lead %s", ErrMalformed, ev.GetLeadId(), leadID)
	case typ != "" && ev.GetEventType() != typ:
		return fmt.Errorf("%w: event_type %q under type header %q", ErrMalformed, ev.GetEventType(), typ)
	case p == nil && knownTypes[ev.GetEventType()]:
		return fmt.Errorf("%w: %s without its payload", ErrMalformed, ev.GetEventType())
	case p != nil && string(p.ProtoReflect().Descriptor().Name()) != ev.GetEventType():
		return fmt.Errorf("%w: event_type %q with a %s payload", ErrMalformed, ev.GetEventType(), p.ProtoReflect().Descriptor().Name())
	}
	if lc := ev.GetLifecycle(); lc != nil {
		if s := lc.GetStatus(); s < 0 || s > math.MaxUint8 {
			return fmt.Errorf("%w: lifecycle status %d", ErrMalformed, s)
		}
		if k := lc.GetOwner().GetKind(); k < 0 || k > math.MaxUint8 {
			return fmt.Errorf("%w: owner kind %d", ErrMalformed, k)
		}
	}
	return nil
}
