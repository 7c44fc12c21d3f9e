package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
	"github.com/leadflow/leadflow/services/handoff/sla"
)

// RouteQualified routes the lead of a LeadQualified event ev, stored at
// stream sequence seq, with the routing data as of ev: LeadAssigned to
// the rep routing chose, or LeadQueued in the fallback queue with a
// deadline and a retry. Either is caused by ev, so a redelivered ev
// changes nothing; so does an ev that is not the lead's latest
// qualification, or a lead no longer an MQL. redelivered: ev may have
// been handled before by a process that died after taking a pool's turn
// for it; that turn is used, not another (see decide).
func (a *App) RouteQualified(ctx context.Context, leadID string, seq uint64, ev *eventv1.Event, redelivered bool, meta envelope.Meta) error {
	return a.route(ctx, leadID, seq, ev, redelivered, meta, func(l *lead) bool { return l.qualified == ev.GetEventId() })
}

// route routes the lead for ev, stored at seq, if it is an MQL that owes
// routing to ev, caused by ev.
func (a *App) route(ctx context.Context, leadID string, seq uint64, ev *eventv1.Event, redelivered bool, meta envelope.Meta, owed func(*lead) bool) error {
	// Routing data as of ev: every change stored before it; for a
	// redelivery, as of now, so a turn taken before goes to its rep only
	// if the rep is still there (in the pool, in the office).
	fence, seen, since := seq, time.Time{}, uint64(0)
	if redelivered {
		fence, seen, since = 0, a.now(), seq
	}
	if a.decided.wasTried(ev.GetEventId()) {
		since = seq // tried here before (this is a retry): a turn it took is used
	}
	cfg, err := a.config(ctx, fence, seen)
	if err != nil {
		return err
	}
	meta.Actor, meta.CausationID = Actor, ev.GetEventId()
	// The fold the consumer kept, if it ends just before ev: then the lead
	// is known without a read. If more was appended since, the append
	// conflicts and the next pass reads the lead.
	l, ok := a.folds.take(leadID)
	if ok && (ev.GetVersionBefore() != l.version || seq <= l.version) {
		l = nil
	}
	if l != nil {
		l.apply(eventstore.Record{Seq: seq, Event: ev})
	}
	// lost is the rep a decision reserved whose LeadAssigned lost its race
	// (the lead moved on meanwhile: a stale fold, another replica).
	lost := ""
	defer func() {
		if lost == "" {
			return
		}
		// Given back unless the lead went to that rep after all.
		if err := a.releaseLeft(context.WithoutCancel(ctx), lost, leadID); err != nil {
			a.log.WarnContext(ctx, "give back a reservation", "rep", lost, "lead", leadID, "err", err)
		}
	}()
	for attempt := range maxRaces {
		if l == nil {
			// A read without ev (a replica behind the consumer that
			// delivered it) would find the lead not qualified by ev.
			if l, err = a.loadThrough(ctx, leadID, seq); l == nil || err != nil {
				return err
			}
		}
		if _, done := l.causes[ev.GetEventId()]; done {
			a.folds.put(l)
			return nil
		}
		if l.state.Status != lifecycle.StatusMQL || !owed(l) {
			a.folds.put(l)
			return nil
		}
		events, err := a.routeEvents(ctx, cfg, l, ev.GetEventId(), nil, since, meta)
		if err != nil {
			return err
		}
		v, err := a.leads.Append(ctx, leadID, l.version, events...)
		if errors.Is(err, eventstore.ErrConflict) {
			// The assignment comes last (after a late routing's breach).
			if o := events[len(events)-1].GetLeadAssigned().GetOwner(); o.GetKind() == eventv1.OwnerKind_OWNER_KIND_REP {
				lost = o.GetId()
			}
			l = nil
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		lost = ""
		first := v - uint64(len(events)-1)
		for i, e := range events {
			l.apply(eventstore.Record{Seq: first + uint64(i), Event: e})
		}
		a.folds.put(l)
		return nil
	}
	return fmt.Errorf("route lead %s: %w after %d races", leadID, eventstore.ErrConflict, maxRaces)
}

// Cached reports whether the lead's fold is cached: only then is an event
// worth decoding for Observe (or when it is a lead's first).
func (a *App) Cached(leadID string) bool { return a.folds.has(leadID) }

// Forget drops the lead's cached fold: the next use reads the lead.
func (a *App) Forget(leadID string) { a.folds.take(leadID) }

// Observe folds a lead event the consumer does not act on into the
// lead's cached fold, if it extends it, so the fold stays whole without
// reading the stream. A lead not cached starts a fold with its first
// event; any other is read in full when routing next needs it.
func (a *App) Observe(leadID string, seq uint64, ev *eventv1.Event) {
	l, ok := a.folds.take(leadID)
	switch {
	case ok && seq > l.version && ev.GetVersionBefore() == l.version:
		l.apply(eventstore.Record{Seq: seq, Event: ev})
	case ok:
		// A gap: the fold stays where it is and is read on next time.
	case ev.GetVersionBefore() == 0 && ev.GetLeadCaptured() != nil:
		l = foldLead(leadID, []eventstore.Record{{Seq: seq, Event: ev}})
	default:
		return
	}
	a.folds.put(l)
}

// routeEvents decides who gets an MQL and returns the events that say
// so: LeadAssigned, or on the first try LeadQueued. A retry (a fired ROUTE
// timer) that finds no rep schedules the next retry, before anything is
// written so a crash cannot break the chain, and writes only the
// SLABreached of a route deadline that has passed, once; or, finding the
// pool off shift, LeadQueued again with the deadline moved on by the
// wait (its timers are the chain's next link). since: see decide.
func (a *App) routeEvents(ctx context.Context, cfg *routing.Config, l *lead, cause string, retry *eventv1.SLATimer, since uint64, meta envelope.Meta) ([]*eventv1.Event, error) {
	now := a.now()
	if err := a.unseal(ctx, cfg, l); err != nil {
		return nil, err
	}
	d, err := a.decide(ctx, cfg, l.id, cause, since, func(pools map[string]routing.PoolState, loads routing.Loads) routing.Decision {
		return cfg.Route(l.routingLead(), pools, loads, now)
	})
	if err != nil {
		return nil, err
	}
	if d.RepID != "" {
		return a.assignedEvents(cfg, l, d, meta, now)
	}
	// The queue's deadline is the lifecycle's: the route deadline the
	// lead got when it qualified, moved on by the wait whenever a try
	// finds no rep of its pool on shift (route time is working time).
	// The wait began when the last of them went off shift, not when a
	// try found them off (retries come every -route-retry), and never
	// before the lead qualified or the wait already counted ended: a
	// deadline that fell after the shift's end has not passed. One that
	// breached stays breached.
	deadline := l.state.Deadline
	var due, waited time.Time
	if d.OffShift && !l.routeBreached && d.RetryAt.After(now) {
		from := now
		if !d.OffSince.IsZero() && d.OffSince.Before(from) {
			from = d.OffSince
		}
		for _, t := range []time.Time{l.qualifiedAt, l.waitedUntil} {
			if t.After(from) {
				from = t
			}
		}
		if wait := d.RetryAt.Sub(from); wait > 0 && deadline.After(from) {
			deadline = deadline.Add(wait)
			due, waited = deadline, d.RetryAt
		}
	}
	next := now.Add(a.retryEvery)
	if !d.RetryAt.IsZero() && d.RetryAt.Before(next) {
		next = d.RetryAt
	}
	if deadline.After(now) && deadline.Before(next) {
		next = deadline
	}
	if !next.After(now) {
		next = now.Add(time.Second)
	}
	if fire := retry.GetFireAt().AsTime(); retry != nil && !next.After(fire) && now.Before(fire) {
		// This retry fired early by this clock, behind the server's, and
		// asks for its own time again (a rep back, a shift open, by this
		// clock): at once, round after round. As far past it instead,
		// about when this clock shows it.
		next = fire.Add(fire.Sub(now))
	}
	if retry == nil || !due.IsZero() {
		// A retry that moved the deadline queues the lead again: a step
		// whose timers carry the new deadline, in place of the retries'.
		queue := lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: d.Queue}
		q, _, err := a.leadEvent(l.id, l.state, lifecycle.Command{Name: lifecycle.Queue, Owner: queue, Due: due}, a.policy, &eventv1.LeadQueued{
			Queue: d.Queue, Deadline: pbTime(deadline), RetryAt: timestamppb.New(next), Decision: d.Record, WaitedUntil: pbTime(waited),
		}, meta, now)
		if err != nil {
			return nil, err
		}
		return []*eventv1.Event{q}, nil
	}
	again := moved(retry, timestamppb.New(next))
	again.Attempt++
	again.TimerId = TimerID(retry.GetStepEventId(), eventv1.SLAKind_SLA_KIND_ROUTE, eventv1.TimerPhase_TIMER_PHASE_DUE) + "-" + strconv.Itoa(int(again.GetAttempt()))
	if err := a.timers.Schedule(ctx, again); err != nil {
		return nil, err
	}
	if deadline.IsZero() || now.Before(deadline) || l.routeBreached {
		return nil, nil
	}
	ev, _, err := a.leadEvent(l.id, l.state, lifecycle.Command{Name: lifecycle.BreachSLA}, a.policy, &eventv1.SLABreached{
		Sla: eventv1.SLAKind_SLA_KIND_ROUTE, Owner: ownerProto(l.state.Owner), DueAt: timestamppb.New(deadline), StepEventId: l.stepID,
		Escalation: eventv1.SLAEscalation_SLA_ESCALATION_REQUEUE, Segment: d.Segment,
	}, meta, now)
	if err != nil {
		return nil, err
	}
	return []*eventv1.Event{ev}, nil
}

// routeDue is the MQL's route deadline as the tries would have moved it
// had one come while cal (the chosen rep's hours) was closed: the time it
// had left when its wait was last counted, in cal's working hours. No try
// came (handoff was down), so its deadline was never moved: counted in
// wall-clock time, a lead qualified at night would breach by morning.
func (l *lead) routeDue(cal sla.Calendar) time.Time {
	due, from := l.state.Deadline, l.qualifiedAt
	if l.waitedUntil.After(from) {
		from = l.waitedUntil
	}
	if due.IsZero() || from.IsZero() || !due.After(from) {
		return due
	}
	return cal.Add(from, due.Sub(from))
}

// assignedEvents is LeadAssigned for a decision that chose a rep, with the
// acceptance deadlines of the segment's SLA in the rep's working hours;
// after the SLABreached of an MQL's route deadline that passed unrecorded
// (handoff was down when it came, or its retry had not fired): the miss
// happened, whoever routes the lead now.
func (a *App) assignedEvents(cfg *routing.Config, l *lead, d routing.Decision, meta envelope.Meta, now time.Time) ([]*eventv1.Event, error) {
	state := l.state
	var out []*eventv1.Event
	if due := l.routeDue(cfg.RepCalendar(d.RepID)); state.Status == lifecycle.StatusMQL && !l.routeBreached && !due.IsZero() && now.After(due) {
		bm := meta
		bm.IdempotencyKey = "" // a hand's request id answers with its LeadAssigned
		b, st, err := a.leadEvent(l.id, state, lifecycle.Command{Name: lifecycle.BreachSLA}, a.policy, &eventv1.SLABreached{
			Sla: eventv1.SLAKind_SLA_KIND_ROUTE, Owner: ownerProto(state.Owner), DueAt: timestamppb.New(due), StepEventId: l.stepID,
			Escalation: eventv1.SLAEscalation_SLA_ESCALATION_NONE, Segment: d.Segment,
		}, bm, now)
		if err != nil {
			return nil, err
		}
		out, state = append(out, b), st
	}
	policy := cfg.Policy(d.Segment)
	steps := policy.Accept(cfg.RepCalendar(d.RepID), now)
	p := a.policy
	p.AcceptWithin = within(now, steps.DueAt)
	owner := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: d.RepID}
	ev, _, err := a.leadEvent(l.id, state, lifecycle.Command{Name: lifecycle.Assign, Owner: owner}, p, &eventv1.LeadAssigned{
		Owner: ownerProto(owner), Rule: d.Record.GetRuleId(), AccountId: d.Record.GetAccountId(), AcceptBy: timestamppb.New(steps.DueAt),
		Decision: d.Record, Segment: d.Segment, WarnAt: pbTime(steps.WarnAt), Sla: policy.ToProto(),
	}, meta, now)
	if err != nil {
		return nil, err
	}
	return append(out, ev), nil
}

func ownerProto(o lifecycle.Owner) *eventv1.Owner {
	if o.IsZero() {
		return nil
	}
	return &eventv1.Owner{Kind: eventv1.OwnerKind(o.Kind), Id: o.ID}
}

func pbTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
