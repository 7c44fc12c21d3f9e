package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/nurture/program"
)

// RecycleLead is a person sending a lead back to nurture.
type RecycleLead struct {
	LeadID, Note, ProgramID, RequestID string
	Actor                              *eventv1.Actor
}

// Recycled is the answer to a manual recycle.
type Recycled struct {
	LeadID                           string
	RecycledEventID, EnrolledEventID string
	ProgramID                        string
	ReviewAt                         time.Time
	Cycle                            uint32
	Replayed                         bool
}

// RecycleLead appends LeadRecycled (cause MANUAL, naming the program if
// one is given; without one, for a lead whose rejection, lost deal or
// other cause owes a recycle not written yet, that cause, caused by that
// event) where the
// lifecycle allows a recycle, and, without a program, the lead is not
// recycled already with its enrolment still owed; then enrols the
// lead as for any recycle; an enrolment that fails then is left to the
// consumer, and the answer has none. A repeated request_id returns the first
// answer, found from the id's record (sent after the recycle), and
// writes nothing, whatever became of its program since.
//
// Errors: *ValidationError (a field; an unknown or retired program_id,
// judged after the lead is found);
// ErrNotFound (no such lead); lifecycle.ErrRefused (a lead that is won,
// erased, or anywhere a recycle is not allowed, named in the error);
// eventstore.ErrConflict after repeated races.
func (a *App) RecycleLead(ctx context.Context, in RecycleLead, meta envelope.Meta) (Recycled, error) {
	var v violations
	checkLeadID(&v, "lead_id", in.LeadID)
	checkText(&v, "note", in.Note, maxNote, true)
	if envelope.HoldsEmail(in.Note) {
		v.add("note", "must not name the person: it is kept in the clear, also after the lead's erasure, and this one holds an email address")
	}
	in.Actor = meta.ActorOr(in.Actor)
	checkActor(&v, "actor", in.Actor)
	if len(in.RequestID) > maxKey {
		v.add("request_id", "must be at most %d characters", maxKey)
	} else if in.RequestID != "" && strings.TrimSpace(in.RequestID) == "" {
		v.add("request_id", "must not be blank: a blank id is no id, and a retry would not get the first answer")
	} else if envelope.HoldsEmail(in.RequestID) {
		v.add("request_id", "must not hold an email address: it is kept in the clear, also after the lead's erasure")
	}
	if in.ProgramID != "" {
		if msg := program.CheckID(in.ProgramID); msg != "" {
			v.add("program_id", "%s", msg)
		}
	}
	if err := v.err(); err != nil {
		return Recycled{}, err
	}
	meta.Actor, meta.IdempotencyKey = in.Actor, strings.TrimSpace(in.RequestID)
	key := meta.IdempotencyKey
	// same: the recycle a request id first wrote is this request's.
	same := func(ev *eventv1.Event) bool {
		r := ev.GetLeadRecycled()
		return r.GetNote() == in.Note && r.GetProgramId() == in.ProgramID && ev.GetActor().GetId() == in.Actor.GetId()
	}
	for attempt := range maxRaces {
		if key != "" && attempt == 0 { // after a lost race, the reload shows a repeat
			if out, ok, err := a.recycledByKey(ctx, in.LeadID, key, same); err != nil || ok {
				return out, err
			}
		}
		l, err := a.load(ctx, in.LeadID)
		if err != nil {
			return Recycled{}, err
		}
		if l.version == 0 {
			return Recycled{}, fmt.Errorf("lead %s: %w", in.LeadID, ErrNotFound)
		}
		// A recycle without a record (keyed before records, or its record
		// not stored) is found in the lead's events.
		if r, ok := l.byKey[key]; ok && key != "" {
			if err := keyReused(r.ev.GetEventType(), r.ev, same); err != nil {
				return Recycled{}, err
			}
			out := recycledOf(l, r)
			out.Replayed = true
			return out, nil
		}
		if err := a.enrolmentOwed(ctx, l, in.ProgramID); err != nil {
			return Recycled{}, err
		}
		// The program is judged only for a new recycle: a retry answers
		// what the first wrote, even once its program is retired.
		if err := a.checkRecycleProgram(ctx, in.ProgramID); err != nil {
			return Recycled{}, err
		}
		by := meta // this attempt's
		payload := &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_MANUAL, Note: in.Note, Segment: l.segment,
			Score: int32(l.state.Score), Cycle: l.cycle(), ProgramId: in.ProgramID, SourceEventType: "RecycleLead"}
		if in.ProgramID == "" && l.recycleDue(a.now()) {
			// The recycle its rejection, lost deal, "not now" or deadline
			// owes, not written yet (nurture behind, parked or passed
			// over): by hand it takes that cause all the same, and so the
			// program the cause leads to, and is caused by that event, as
			// nurture's own would be (the brief shows one hand-back).
			src := sourceRecycle(l)
			payload.Cause, payload.RejectReason, payload.SealedNote = src.GetCause(), src.GetRejectReason(), src.GetSealedNote()
			by.CausationID = l.source.ev.GetEventId()
		}
		ev, _, err := lifecycle.NewEvent(l.id, l.state, lifecycle.Command{Name: lifecycle.Recycle, Reason: in.Note}, a.policy, payload, by, a.now())
		if err != nil {
			return Recycled{}, err
		}
		var v uint64
		if key != "" {
			v, err = a.leads.AppendKeyed(ctx, l.id, l.version, key, typeRecycled, ev)
		} else {
			v, err = a.leads.Append(ctx, l.id, l.version, ev)
		}
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return Recycled{}, err
			}
			continue
		}
		if err != nil {
			return Recycled{}, err
		}
		if a.afterAppend != nil {
			a.afterAppend(ev)
		}
		// Stored: the answer says so whatever follows (an error would have
		// the caller's retry refused, or recycle the lead twice). The
		// enrolment is what nurture owes any recycled lead; should it fail
		// here, the consumer writes it when the LeadRecycled reaches it.
		if _, err := a.Reconcile(ctx, l.id, meta); err != nil {
			a.log.WarnContext(ctx, "enrol a lead recycled by hand", "lead", l.id, "err", err)
		} else if fresh, err := a.load(ctx, in.LeadID); err == nil {
			l = fresh
		}
		return recycledOf(l, ref{seq: v, ev: ev}), nil
	}
	return Recycled{}, fmt.Errorf("recycle lead %s: %w after %d races", in.LeadID, eventstore.ErrConflict, maxRaces)
}

// enrolmentOwed refuses a recycle without a program of a lead recycled
// (or sent on by its program's exit) whose enrolment nurture has not
// written yet: a second LeadRecycled would count the one hand-back twice,
// and its enrolment would no longer follow the first's cause or exit.
// Naming a program is another matter: the lead goes there instead. So
// is a recycle naming a program that does not exist: that enrolment
// never comes (enrol's PoisonError), and this one's entry rules choose.
func (a *App) enrolmentOwed(ctx context.Context, l *lead, programID string) error {
	anchor, what := l.recycled, "its LeadRecycled"
	if l.exited.seq > anchor.seq {
		anchor, what = l.exited, "its NurtureExited"
	}
	if programID != "" || l.state.Status != lifecycle.StatusRecycled || anchor.seq <= l.enrolled.seq {
		return nil
	}
	if id := anchor.ev.GetLeadRecycled().GetProgramId(); id != "" {
		cat, err := a.catalog(ctx, 0)
		if err != nil {
			return err
		}
		if _, ok := cat.Get(id); !ok {
			return nil
		}
	}
	return &lifecycle.RefusedError{Command: lifecycle.Recycle, Status: l.state.Status, Reason: fmt.Sprintf(
		"lead is recycled already (%s at version %d) and nurture owes its enrolment, which its consumer writes when it reaches that event (`leadctl lost --redrive` if it is held up); name a program_id to send it to another program",
		what, anchor.seq)}
}

// checkRecycleProgram refuses a recycle into a program that is unknown
// or retired, read fresh; "" names none.
func (a *App) checkRecycleProgram(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	cat, err := a.catalog(ctx, 0)
	if err != nil {
		return err
	}
	switch e, ok := cat.Get(id); {
	case !ok:
		return &ValidationError{Violations: []Violation{{Field: "program_id", Description: fmt.Sprintf("%q is an unknown program", id)}}}
	case e.Program.GetRetired():
		return &ValidationError{Violations: []Violation{{Field: "program_id", Description: fmt.Sprintf("program %q is retired", id)}}}
	}
	return nil
}

// typeRecycled is the event a recycle writes, and its record's outcome.
const typeRecycled = "LeadRecycled"

// keyReused refuses a request id whose first event, of type typ, is not
// a recycle that said what this request says (same).
func keyReused(typ string, first *eventv1.Event, same func(*eventv1.Event) bool) error {
	if typ == typeRecycled && same(first) {
		return nil
	}
	return &ValidationError{Violations: []Violation{{Field: "request_id",
		Description: "was used for an earlier " + typ + " on this lead: a new request needs a new id"}}}
}

// recycledByKey is the first answer of request id key, from its record:
// the recycle, and the enrolment it caused, which is read from the
// lead's next event (the whole lead is read only when that is something
// else). false: the id has no record.
func (a *App) recycledByKey(ctx context.Context, leadID, key string, same func(*eventv1.Event) bool) (Recycled, bool, error) {
	typ, r, found, err := a.leads.Keyed(ctx, leadID, key)
	if err != nil || !found {
		return Recycled{}, false, err
	}
	if err := keyReused(typ, r.Event, same); err != nil {
		return Recycled{}, false, err
	}
	l := newLead(leadID)
	next, ok, err := a.leads.After(ctx, leadID, r.Seq)
	switch {
	case err != nil:
		return Recycled{}, false, err
	case ok && next.Event.GetNurtureEnrolled() != nil && next.Event.GetCausationId() == r.Event.GetEventId():
		l.steps = []ref{{seq: next.Seq, ev: next.Event}}
	case ok:
		if l, err = a.load(ctx, leadID); err != nil {
			return Recycled{}, false, err
		}
	}
	out := recycledOf(l, ref{seq: r.Seq, ev: r.Event})
	out.Replayed = true
	return out, true, nil
}

// recycledOf is the answer for recycle r of l: r and the enrolment it
// caused, if written yet.
func recycledOf(l *lead, r ref) Recycled {
	out := Recycled{LeadID: l.id, RecycledEventID: r.id(), Cycle: r.ev.GetLeadRecycled().GetCycle()}
	for _, s := range l.steps {
		if e := s.ev.GetNurtureEnrolled(); e != nil && s.ev.GetCausationId() == r.id() {
			out.EnrolledEventID, out.ProgramID, out.ReviewAt = s.id(), e.GetProgramId(), e.GetReviewAt().AsTime()
		}
	}
	return out
}
