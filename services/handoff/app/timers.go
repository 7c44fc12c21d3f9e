package app

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
	"github.com/leadflow/leadflow/services/handoff/sla"
)

// Every SLA step starts with an event that records its deadlines
// (LeadAssigned, LeadReassigned, LeadAccepted, LeadQueued, and a
// ContactAttempted that makes the next touch due). The lead
// consumer turns that event into timers, so a step's timers are
// scheduled at least once whatever crashes; a timer is named after its
// step, SLA and phase, so scheduling it again replaces it, and the events
// it causes name it, so firing it again is a no-op. When a timer fires,
// the lead is read: a step that is over (accepted, contacted, moved on)
// makes it a no-op.

// TimersFor returns the timers the step ev, stored at seq, starts; none
// for other events. A contact attempt's need the lead and the routing
// data (stepTimers).
func TimersFor(seq uint64, ev *eventv1.Event) []*eventv1.SLATimer {
	var out []*eventv1.SLATimer
	add := func(kind eventv1.SLAKind, phase eventv1.TimerPhase, due, fire *timestamppb.Timestamp) {
		if t := stepTimer(seq, ev, kind, phase, due, fire); t != nil {
			out = append(out, t)
		}
	}
	const warn, due = eventv1.TimerPhase_TIMER_PHASE_WARN, eventv1.TimerPhase_TIMER_PHASE_DUE
	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_LeadAssigned:
		add(eventv1.SLAKind_SLA_KIND_ACCEPT, warn, p.LeadAssigned.GetAcceptBy(), p.LeadAssigned.GetWarnAt())
		add(eventv1.SLAKind_SLA_KIND_ACCEPT, due, p.LeadAssigned.GetAcceptBy(), p.LeadAssigned.GetAcceptBy())
	case *eventv1.Event_LeadReassigned:
		add(eventv1.SLAKind_SLA_KIND_ACCEPT, warn, p.LeadReassigned.GetAcceptBy(), p.LeadReassigned.GetWarnAt())
		add(eventv1.SLAKind_SLA_KIND_ACCEPT, due, p.LeadReassigned.GetAcceptBy(), p.LeadReassigned.GetAcceptBy())
	case *eventv1.Event_LeadAccepted:
		a := p.LeadAccepted
		add(eventv1.SLAKind_SLA_KIND_FIRST_CONTACT, warn, a.GetContactBy(), a.GetContactWarnAt())
		add(eventv1.SLAKind_SLA_KIND_FIRST_CONTACT, due, a.GetContactBy(), a.GetContactBy())
		add(eventv1.SLAKind_SLA_KIND_FOLLOW_UP, warn, a.GetAttemptsDueAt(), a.GetAttemptsWarnAt())
		add(eventv1.SLAKind_SLA_KIND_FOLLOW_UP, due, a.GetAttemptsDueAt(), a.GetAttemptsDueAt())
	case *eventv1.Event_LeadQueued:
		add(eventv1.SLAKind_SLA_KIND_ROUTE, due, p.LeadQueued.GetDeadline(), p.LeadQueued.GetRetryAt())
	}
	return out
}

func stepTimer(seq uint64, ev *eventv1.Event, kind eventv1.SLAKind, phase eventv1.TimerPhase, due, fire *timestamppb.Timestamp) *eventv1.SLATimer {
	if fire == nil || due == nil {
		return nil
	}
	return &eventv1.SLATimer{TimerId: TimerID(ev.GetEventId(), kind, phase), LeadId: ev.GetLeadId(), Sla: kind, Phase: phase,
		StepEventId: ev.GetEventId(), StepSequence: seq, DueAt: due, FireAt: fire}
}

// stepTimers returns the timers of the step ev, stored at seq, of the
// lead l (read through seq). A contact attempt's step is the next touch,
// due by the attempt's deadline (FOLLOW_UP) and warned in the rep's hours;
// none when the attempt started no step or a later event ended it.
func (a *App) stepTimers(ctx context.Context, l *lead, seq uint64, ev *eventv1.Event) ([]*eventv1.SLATimer, error) {
	c := ev.GetContactAttempted()
	if c == nil {
		return TimersFor(seq, ev), nil
	}
	due := ev.GetLifecycle().GetDeadline()
	if l.stepID != ev.GetEventId() || !l.touch || due == nil {
		return nil, nil // no step, a later one, or a booked meeting
	}
	cfg, err := a.config(ctx, seq, time.Time{})
	if err != nil {
		return nil, err
	}
	const kind = eventv1.SLAKind_SLA_KIND_FOLLOW_UP
	out := []*eventv1.SLATimer{stepTimer(seq, ev, kind, eventv1.TimerPhase_TIMER_PHASE_DUE, due, due)}
	if warn, _ := l.slaPolicy(cfg).NextContact(cfg.RepCalendar(c.GetRepId()), ev.GetRecordedAt().AsTime()); !warn.IsZero() && warn.Before(due.AsTime()) {
		out = append(out, stepTimer(seq, ev, kind, eventv1.TimerPhase_TIMER_PHASE_WARN, due, timestamppb.New(warn)))
	}
	return out, nil
}

// DecodeTimer decodes a fired timer.
func DecodeTimer(data []byte) (*eventv1.SLATimer, error) {
	t := &eventv1.SLATimer{}
	if err := proto.Unmarshal(data, t); err != nil {
		return nil, fmt.Errorf("decode timer: %w", err)
	}
	if t.GetTimerId() == "" || t.GetLeadId() == "" {
		return nil, errors.New("decode timer: no timer or lead id")
	}
	return t, nil
}

// TimerID names a step's timer: one subject token, unique per step, SLA
// and phase.
func TimerID(stepEventID string, kind eventv1.SLAKind, phase eventv1.TimerPhase) string {
	k := strings.ToLower(strings.TrimPrefix(kind.String(), "SLA_KIND_"))
	p := strings.ToLower(strings.TrimPrefix(phase.String(), "TIMER_PHASE_"))
	return stepEventID + "-" + strings.ReplaceAll(k, "_", "-") + "-" + p
}

// StepStarted schedules the timers of the step ev, stored at seq, starts.
// A contact attempt reads its lead: whether it started a step, and the
// lead's SLA policy, are in the lead's history.
func (a *App) StepStarted(ctx context.Context, seq uint64, ev *eventv1.Event) error {
	timers := TimersFor(seq, ev)
	if ev.GetContactAttempted() != nil {
		l, err := a.loadThrough(ctx, ev.GetLeadId(), seq)
		if l == nil || err != nil {
			return err
		}
		if timers, err = a.stepTimers(ctx, l, seq, ev); err != nil {
			return err
		}
	}
	if t, err := a.stepAbsence(ctx, seq, ev); err != nil {
		return err
	} else if t != nil {
		timers = append(timers, t)
	}
	if len(timers) == 0 {
		return nil
	}
	return a.timers.Schedule(ctx, timers...)
}

// A lead waiting for its rep to accept it is handed on when the rep's
// recorded absence starts first: an ABSENT timer at the absence's start,
// scheduled with the step (LeadAssigned, LeadReassigned) when the
// routing data already records the absence, for the leads a rep holds
// when the rep's absences, team or team hours change (absenceChanged),
// and by an unmerge.

// stepAbsence is the ABSENT timer of the step ev, stored at seq, if it
// gives a rep a lead to accept by a deadline their absence starts before.
// The routing data read is at most a second old, and no older than the
// version that routed the lead; an absence recorded in the moment
// between is left to the acceptance SLA.
func (a *App) stepAbsence(ctx context.Context, seq uint64, ev *eventv1.Event) (*eventv1.SLATimer, error) {
	var to *eventv1.Owner
	var due *timestamppb.Timestamp
	var version uint32
	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_LeadAssigned:
		to, due, version = p.LeadAssigned.GetOwner(), p.LeadAssigned.GetAcceptBy(), p.LeadAssigned.GetDecision().GetRoutingVersion()
	case *eventv1.Event_LeadReassigned:
		to, due, version = p.LeadReassigned.GetTo(), p.LeadReassigned.GetAcceptBy(), p.LeadReassigned.GetDecision().GetRoutingVersion()
	}
	if to.GetKind() != eventv1.OwnerKind_OWNER_KIND_REP || due == nil {
		return nil, nil
	}
	cfg, err := a.config(ctx, 0, time.Time{})
	if err == nil && cfg.Version < version {
		cfg, err = a.config(ctx, seq, time.Time{})
	}
	if err != nil {
		return nil, err
	}
	from, until := ev.GetRecordedAt().AsTime(), due.AsTime()
	if absenceTimer(cfg, ev.GetLeadId(), to.GetId(), ev.GetEventId(), seq, from, until) == nil {
		return nil, nil // most steps: no read beyond the cached copy
	}
	// The timer replaces the one SetOutOfOffice scheduled, which may know
	// a change this copy does not.
	if cfg, err = a.freshConfig(ctx); err != nil {
		return nil, err
	}
	return absenceTimer(cfg, ev.GetLeadId(), to.GetId(), ev.GetEventId(), seq, from, until), nil
}

// absenceTimer is the ABSENT timer of a lead's acceptance step (stepID,
// stored at stepSeq) given to repID at from and due by due; nil when no
// absence of the rep starts before due.
func absenceTimer(cfg *routing.Config, leadID, repID, stepID string, stepSeq uint64, from, due time.Time) *eventv1.SLATimer {
	start, ok := cfg.AbsentDuring(repID, from, due)
	if !ok {
		return nil
	}
	const kind, phase = eventv1.SLAKind_SLA_KIND_ACCEPT, eventv1.TimerPhase_TIMER_PHASE_ABSENT
	return &eventv1.SLATimer{TimerId: TimerID(stepID, kind, phase), LeadId: leadID, Sla: kind, Phase: phase,
		StepEventId: stepID, StepSequence: stepSeq, DueAt: timestamppb.New(due), FireAt: timestamppb.New(start)}
}

// absenceChanged schedules, after a change of repID's absences or hours
// (cfg includes it), the ABSENT timers of the leads the rep holds unaccepted;
// scheduling one again replaces it. A timer whose absence was withdrawn
// finds the rep present and does nothing.
func (a *App) absenceChanged(ctx context.Context, cfg *routing.Config, repID string) error {
	res, _, err := a.loads.Get(ctx, repID, true)
	if err != nil {
		return err
	}
	var timers []*eventv1.SLATimer
	var errs []error // one lead that cannot be read keeps none of the others from their timers
	for _, leadID := range SortedKeys(res) {
		l, err := a.load(ctx, leadID)
		if errors.Is(err, ErrNotFound) {
			continue // reserved, not yet assigned: its step schedules it
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("lead %s: %w", leadID, err))
			continue
		}
		if l.state.Status != lifecycle.StatusAssigned || !l.ownedBy(repID) || l.stepID == "" || l.acceptBy.IsZero() {
			continue
		}
		if t := absenceTimer(cfg, l.id, repID, l.stepID, l.stepSeq, a.now(), l.acceptBy); t != nil {
			timers = append(timers, t)
		}
	}
	if len(timers) > 0 {
		errs = append(errs, a.timers.Reschedule(ctx, timers...))
	}
	return errors.Join(errs...)
}

// Released ends a rep's hold on a lead when ev takes the lead from the
// rep (reassigned, rejected, converted, recycled, merged into another,
// erased), so the rep's capacity counts it no more.
func (a *App) Released(ctx context.Context, leadID string, ev *eventv1.Event) error {
	var from *eventv1.Owner
	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_LeadReassigned:
		from = p.LeadReassigned.GetFrom()
	case *eventv1.Event_OpportunityCreated:
		from = ev.GetLifecycle().GetOwner()
	case *eventv1.Event_LeadMerged:
		if envelope.SurvivorSide(ev) {
			return nil // the survivor stays with its owner
		}
		return a.releasePrevious(ctx, leadID, ev)
	case *eventv1.Event_LeadRejected, *eventv1.Event_LeadRecycled, *eventv1.Event_LeadErased:
		return a.releasePrevious(ctx, leadID, ev)
	}
	return a.releaseFrom(ctx, from, leadID)
}

// releasePrevious releases the lead from the owner its previous event
// recorded.
func (a *App) releasePrevious(ctx context.Context, leadID string, ev *eventv1.Event) error {
	if ev.GetVersionBefore() == 0 {
		return nil
	}
	before, err := a.leads.Event(ctx, ev.GetVersionBefore())
	if err != nil {
		return err
	}
	return a.releaseFrom(ctx, before.GetLifecycle().GetOwner(), leadID)
}

func (a *App) releaseFrom(ctx context.Context, from *eventv1.Owner, leadID string) error {
	// A queue (a manager's) holds no reservations.
	if from.GetKind() != eventv1.OwnerKind_OWNER_KIND_REP {
		return nil
	}
	return a.releaseLeft(ctx, from.GetId(), leadID)
}

// Unmerged takes up a lead that the unmerge ev, stored at seq, gives back
// as it was before its merge: its rep holds it again and its step's
// timers are scheduled again (one that fired while it was merged did
// nothing); an MQL, queued or never routed, is routed now, caused by ev.
// redelivered: as for RouteQualified.
func (a *App) Unmerged(ctx context.Context, leadID string, seq uint64, ev *eventv1.Event, redelivered bool, meta envelope.Meta) error {
	if envelope.SurvivorSide(ev) {
		return nil
	}
	if err := a.restored(ctx, leadID, ev); err != nil {
		return err
	}
	l, err := a.loadThrough(ctx, leadID, seq)
	if l == nil || err != nil {
		return err
	}
	if l.state.Status == lifecycle.StatusMQL {
		// Routed afresh, queued or not: a queue's retries, named by
		// attempt, would start again at one and stop at the attempt
		// whose breach the lead recorded before its merge.
		return a.route(ctx, leadID, seq, ev, redelivered, meta, func(l *lead) bool { return l.qualified != "" })
	}
	if l.stepID == "" {
		return nil
	}
	step, err := a.leads.Event(ctx, l.stepSeq)
	if err != nil {
		return err
	}
	timers, err := a.stepTimers(ctx, l, l.stepSeq, step)
	if err != nil {
		return err
	}
	if l.state.Status == lifecycle.StatusAssigned && l.state.Owner.Kind == lifecycle.OwnerRep && !l.acceptBy.IsZero() {
		// An absence that started, or was recorded, while it was merged
		// found no lead to hand on.
		cfg, err := a.freshConfig(ctx)
		if err != nil {
			return err
		}
		if t := absenceTimer(cfg, l.id, l.state.Owner.ID, l.stepID, l.stepSeq, a.now(), l.acceptBy); t != nil {
			timers = append(timers, t)
		}
	}
	if len(timers) == 0 {
		return nil
	}
	return a.timers.Reschedule(ctx, timers...)
}

// restored holds the lead for its rep again when an unmerge gives it back
// ASSIGNED or ACCEPTED: the merge released it. The rep was chosen before,
// so the hold counts even past the rep's capacity.
func (a *App) restored(ctx context.Context, leadID string, ev *eventv1.Event) error {
	st := lifecycle.FromProto(ev.GetLifecycle())
	if st.Owner.Kind != lifecycle.OwnerRep ||
		(st.Status != lifecycle.StatusAssigned && st.Status != lifecycle.StatusAccepted) {
		return nil
	}
	_, err := a.reserve(ctx, st.Owner.ID, math.MaxInt, leadID)
	return err
}

// FireTimer acts on a fired timer: nothing if its step is over or it
// fired before (its events are in the lead's history); else SLAWarned at
// a warning, and at a deadline SLABreached with the escalation the
// segment's policy sets (LeadReassigned to the next rep or the manager's queue),
// LeadRecycled when the attempts were made without reaching the lead, or
// for a queued lead another routing attempt. redelivered: t may have
// been handled before by a process that died after taking a pool's turn
// for it (a routing retry, an escalation); that turn is used, not another.
func (a *App) FireTimer(ctx context.Context, t *eventv1.SLATimer, redelivered bool, meta envelope.Meta) error {
	meta.Actor, meta.CausationID = Actor, t.GetTimerId()
	var since uint64 // a turn for t comes after its step
	if redelivered || a.decided.wasTried(t.GetTimerId()) {
		since = t.GetStepSequence()
	}
	// lost are the reps a hand-on or a routing retry reserved whose append
	// lost its race (the rep accepted, a manager assigned the lead by
	// hand): given back unless the lead went to them after all.
	var lost []string
	defer func() {
		for _, rep := range lost {
			if err := a.releaseLeft(context.WithoutCancel(ctx), rep, t.GetLeadId()); err != nil {
				a.log.WarnContext(ctx, "give back a reservation", "rep", rep, "lead", t.GetLeadId(), "err", err)
			}
		}
	}()
	for attempt := range maxRaces {
		// A read without the step (a replica behind the stream's leader)
		// would find the step over and drop the timer.
		l, err := a.loadThrough(ctx, t.GetLeadId(), t.GetStepSequence())
		if l == nil || err != nil {
			return err
		}
		if _, done := l.causes[t.GetTimerId()]; done {
			return nil
		}
		cfg, err := a.config(ctx, 0, time.Time{})
		if t.GetPhase() == eventv1.TimerPhase_TIMER_PHASE_ABSENT {
			// An absence recorded a moment ago through another replica,
			// or withdrawn, is not in a second-old copy.
			cfg, err = a.freshConfig(ctx)
		}
		if err != nil {
			return err
		}
		events, err := a.onTimer(ctx, cfg, l, t, since, meta)
		if errors.Is(err, lifecycle.ErrRefused) {
			return nil // the lead moved on in a way the step did not foresee
		}
		if err != nil || len(events) == 0 {
			return err
		}
		_, err = a.leads.Append(ctx, l.id, l.version, events...)
		if errors.Is(err, eventstore.ErrConflict) {
			for _, e := range events {
				to := e.GetLeadReassigned().GetTo()
				if a := e.GetLeadAssigned(); a != nil {
					to = a.GetOwner()
				}
				if to.GetKind() == eventv1.OwnerKind_OWNER_KIND_REP && !slices.Contains(lost, to.GetId()) {
					lost = append(lost, to.GetId())
				}
			}
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return err
			}
			continue
		}
		if err == nil {
			a.log.InfoContext(ctx, "timer fired", "lead", l.id, "sla", t.GetSla().String(), "phase", t.GetPhase().String(), "events", eventTypes(events))
		}
		return err
	}
	return fmt.Errorf("timer %s: %w after %d races", t.GetTimerId(), eventstore.ErrConflict, maxRaces)
}

func eventTypes(evs []*eventv1.Event) string {
	s := make([]string, len(evs))
	for i, e := range evs {
		s[i] = e.GetEventType()
	}
	return strings.Join(s, ",")
}

func (a *App) onTimer(ctx context.Context, cfg *routing.Config, l *lead, t *eventv1.SLATimer, since uint64, meta envelope.Meta) ([]*eventv1.Event, error) {
	// The attempts window judges the lead at its end, also when an attempt
	// made after that end (before this timer was handled) started a step
	// of its own: else a lead whose attempts ran out would never recycle.
	window := t.GetSla() == eventv1.SLAKind_SLA_KIND_FOLLOW_UP && l.acceptedID != "" && t.GetStepEventId() == l.acceptedID && !l.windowOver
	if l.stepID != t.GetStepEventId() && !window {
		return nil, nil // the step is over
	}
	if t.GetPhase() == eventv1.TimerPhase_TIMER_PHASE_ABSENT {
		return a.absent(ctx, cfg, l, t, since, meta)
	}
	st := l.state
	warn := t.GetPhase() == eventv1.TimerPhase_TIMER_PHASE_WARN
	exhausted := false
	switch t.GetSla() {
	case eventv1.SLAKind_SLA_KIND_ACCEPT:
		if st.Status != lifecycle.StatusAssigned {
			return nil, nil
		}
	case eventv1.SLAKind_SLA_KIND_FIRST_CONTACT:
		if st.Status != lifecycle.StatusAccepted || st.Attempts > 0 {
			return nil, nil
		}
	case eventv1.SLAKind_SLA_KIND_FOLLOW_UP:
		if st.Status != lifecycle.StatusAccepted {
			return nil, nil
		}
		if l.touch && !window {
			break // the next touch after an attempt: due like a first contact, reached or not
		}
		if l.connected {
			return nil, nil
		}
		// Nobody tried yet: the first-contact SLA, due no earlier, is the
		// one that breaches (a shorter attempts window ends with it).
		if contactBy := l.accepted.GetContactBy(); st.Attempts == 0 && contactBy != nil && !contactBy.AsTime().Before(t.GetDueAt().AsTime()) {
			if warn || !contactBy.AsTime().After(t.GetDueAt().AsTime()) {
				return nil, nil
			}
			// A lead accepted before windows ended no earlier: the window
			// is judged again when first contact is due, or attempts made
			// meanwhile would leave it with no timer at all.
			again := moved(t, contactBy)
			again.DueAt = contactBy
			return nil, a.timers.Reschedule(ctx, again)
		}
		if need := l.slaPolicy(cfg).MinAttempts; st.Attempts >= need {
			if warn {
				return nil, nil
			}
			exhausted = true
		}
	case eventv1.SLAKind_SLA_KIND_ROUTE:
		if st.Status != lifecycle.StatusMQL {
			return nil, nil
		}
		return a.routeEvents(ctx, cfg, l, t.GetTimerId(), t, since, meta)
	default:
		return nil, nil
	}
	if warn {
		if due := t.GetDueAt(); due != nil && !a.now().Before(due.AsTime()) {
			return nil, nil // a warning fired late (the service or NATS was down) warns of nothing: the breach follows
		}
		if fire := t.GetFireAt().AsTime(); t.GetFireAt() != nil && a.now().Before(fire) {
			// Fired early by this clock, behind the server's: as for a
			// deadline, again as far past its time.
			return nil, a.waitFor(ctx, t, fire, a.now())
		}
		ev, _, err := a.leadEvent(l.id, st, lifecycle.Command{Name: lifecycle.WarnSLA}, a.policy, &eventv1.SLAWarned{
			Sla: t.GetSla(), Owner: ownerProto(st.Owner), DueAt: t.GetDueAt(), StepEventId: t.GetStepEventId(), Segment: l.segment,
		}, meta, a.now())
		if err != nil {
			return nil, err
		}
		return []*eventv1.Event{ev}, nil
	}
	if due := t.GetDueAt().AsTime(); a.now().Before(due) {
		// Fired early by this clock, behind the server's: again as far
		// past due by the server's clock, about when this one shows due.
		return nil, a.waitFor(ctx, t, due, a.now())
	}
	if exhausted {
		// Every attempt the SLA asks for was made and nobody was
		// reached: back to marketing, for nurture to pick up.
		ev, _, err := a.leadEvent(l.id, st, lifecycle.Command{Name: lifecycle.Recycle, Reason: "attempts exhausted"}, a.policy,
			&eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_ATTEMPTS_EXHAUSTED,
				Note:    fmt.Sprintf("%d contact attempts by %s without reaching the lead", st.Attempts, st.Owner.ID),
				Segment: l.segment, Score: int32(st.Score), Cycle: uint32(st.Cycle)}, meta, a.now())
		if err != nil {
			return nil, err
		}
		return []*eventv1.Event{ev}, nil
	}
	return a.breach(ctx, cfg, l, t, since, meta)
}

// waitFor schedules t again for a time at that came early by this clock
// (now), behind the server's: as far past at as it was early, about when
// this clock shows at. At at itself, it would fire at once, round after
// round. Its fire_at stays: moved, a clock steadily behind would find
// the next firing early again, every round.
func (a *App) waitFor(ctx context.Context, t *eventv1.SLATimer, at, now time.Time) error {
	again := proto.CloneOf(t)
	again.ScheduledAt = timestamppb.New(at.Add(at.Sub(now)))
	return a.timers.Reschedule(ctx, again)
}

// moved is t for another moment: fire_at set, an earlier wait's
// scheduled_at dropped.
func moved(t *eventv1.SLATimer, fire *timestamppb.Timestamp) *eventv1.SLATimer {
	again := proto.CloneOf(t)
	again.FireAt, again.ScheduledAt = fire, nil
	return again
}

// absent hands on a lead still waiting for its rep to accept it once the
// rep's absence has started: to the next rep of the pool it was routed
// from, else to the queue of the rep's manager, whatever the segment's
// escalation policy, and with no breach (none is due yet). An absence
// withdrawn meanwhile changes nothing; one moved later waits for its
// start. Past the deadline, the breach escalates instead.
func (a *App) absent(ctx context.Context, cfg *routing.Config, l *lead, t *eventv1.SLATimer, since uint64, meta envelope.Meta) ([]*eventv1.Event, error) {
	st, now, due := l.state, a.now(), t.GetDueAt().AsTime()
	if st.Status != lifecycle.StatusAssigned || st.Owner.Kind != lifecycle.OwnerRep || !now.Before(due) {
		return nil, nil
	}
	rep := st.Owner.ID
	start, ok := cfg.AbsentDuring(rep, now, due)
	if !ok {
		return nil, nil
	}
	if start.After(now) {
		// Fired early by this clock, behind the server's (set for the
		// start or later, or less than a minute before it): waitFor.
		// Else the absence was moved later: at its start.
		if start.Sub(now) < time.Minute || !start.After(t.GetFireAt().AsTime()) {
			return nil, a.waitFor(ctx, t, start, now)
		}
		return nil, a.timers.Reschedule(ctx, moved(t, timestamppb.New(start)))
	}
	d, err := a.decide(ctx, cfg, l.id, t.GetTimerId(), since, func(pools map[string]routing.PoolState, loads routing.Loads) routing.Decision {
		return cfg.Escalate(l.routingLead(), rep, l.poolID, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP, pools, loads, now)
	})
	if err != nil {
		return nil, err
	}
	to, cal := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: d.RepID}, cfg.RepCalendar(d.RepID)
	inactive := cfg.Inactive(rep)
	switch {
	case d.Queue != "":
		to, cal = lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: d.Queue}, cfg.RepCalendar(rep)
	case d.RepID == "":
		return nil, nil // nobody to take it (no manager): the deadline stands
	}
	why, cause := rep+" is out of office", eventv1.ReassignCause_REASSIGN_CAUSE_OUT_OF_OFFICE
	if inactive {
		why, cause = rep+" is inactive", eventv1.ReassignCause_REASSIGN_CAUSE_REP_INACTIVE
	}
	re, err := a.reassignedEvent(cfg, l, st, to, cal, why, cause, d.Record, meta, now)
	if err != nil {
		return nil, err
	}
	return []*eventv1.Event{re}, nil
}

// breach records an SLA breach and escalates by the policy: the lead goes
// to the next rep of its pool or to the queue of the owner's manager
// (LeadReassigned, caused by the breach, in the same atomic append). A
// lead already in a queue stays there: its breach is recorded only.
// since: see decide.
func (a *App) breach(ctx context.Context, cfg *routing.Config, l *lead, t *eventv1.SLATimer, since uint64, meta envelope.Meta) ([]*eventv1.Event, error) {
	now := a.now()
	policy := l.slaPolicy(cfg)
	current := l.state.Owner.ID
	var d routing.Decision
	if l.state.Owner.Kind == lifecycle.OwnerRep {
		var err error
		d, err = a.decide(ctx, cfg, l.id, t.GetTimerId(), since, func(pools map[string]routing.PoolState, loads routing.Loads) routing.Decision {
			return cfg.Escalate(l.routingLead(), current, l.poolID, policy.Escalation, pools, loads, now)
		})
		if err != nil {
			return nil, err
		}
	}
	escalation := eventv1.SLAEscalation_SLA_ESCALATION_NONE
	to := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: d.RepID}
	switch {
	case d.Queue != "": // Escalate queues only to a manager
		escalation = eventv1.SLAEscalation_SLA_ESCALATION_MANAGER
		to = lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: d.Queue}
	case d.RepID != "":
		escalation = eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP
	}
	breached, state, err := a.leadEvent(l.id, l.state, lifecycle.Command{Name: lifecycle.BreachSLA}, a.policy, &eventv1.SLABreached{
		Sla: t.GetSla(), Owner: ownerProto(l.state.Owner), DueAt: t.GetDueAt(), StepEventId: t.GetStepEventId(), Escalation: escalation, Segment: l.segment,
	}, meta, now)
	if err != nil {
		return nil, err
	}
	if escalation == eventv1.SLAEscalation_SLA_ESCALATION_NONE {
		return []*eventv1.Event{breached}, nil
	}
	m := meta
	m.CausationID = breached.GetEventId()
	reason := fmt.Sprintf("%s SLA breached by %s", strings.ToLower(strings.TrimPrefix(t.GetSla().String(), "SLA_KIND_")), current)
	// The next rep's step runs in that rep's team hours; the manager's
	// queue keeps the breaching rep's.
	cal := cfg.RepCalendar(current)
	if d.RepID != "" {
		cal = cfg.RepCalendar(d.RepID)
	}
	re, err := a.reassignedEvent(cfg, l, state, to, cal, reason, eventv1.ReassignCause_REASSIGN_CAUSE_ESCALATION, d.Record, m, now)
	if err != nil {
		return nil, err
	}
	return []*eventv1.Event{breached, re}, nil
}

// reassignedEvent is LeadReassigned to a rep or a queue, with the
// acceptance deadlines in cal, the new owner's working hours. An open
// deal starts no acceptance step: it keeps its close date, and its event
// carries no deadlines, so no timer follows.
func (a *App) reassignedEvent(cfg *routing.Config, l *lead, state lifecycle.State, to lifecycle.Owner, cal sla.Calendar, reason string,
	cause eventv1.ReassignCause, decision *eventv1.RoutingDecision, meta envelope.Meta, now time.Time) (*eventv1.Event, error) {
	if state.Status == lifecycle.StatusOpportunity {
		ev, _, err := a.leadEvent(l.id, state, lifecycle.Command{Name: lifecycle.Reassign, Owner: to}, a.policy, &eventv1.LeadReassigned{
			From: ownerProto(state.Owner), To: ownerProto(to), Reason: reason, Cause: cause, Decision: decision, Segment: l.segment,
		}, meta, now)
		return ev, err
	}
	policy := l.slaPolicy(cfg)
	steps := policy.Accept(cal, now)
	p := a.policy
	p.AcceptWithin = within(now, steps.DueAt)
	ev, _, err := a.leadEvent(l.id, state, lifecycle.Command{Name: lifecycle.Reassign, Owner: to}, p, &eventv1.LeadReassigned{
		From: ownerProto(state.Owner), To: ownerProto(to), Reason: reason, Cause: cause, AcceptBy: timestamppb.New(steps.DueAt),
		WarnAt: pbTime(steps.WarnAt), Sla: policy.ToProto(), Decision: decision, Segment: l.segment,
	}, meta, now)
	return ev, err
}
