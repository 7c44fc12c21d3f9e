package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
)

// ScoreLeadEvent scores the lead of event ev, stored at stream sequence
// seq on the lead's subject, with the active model: facts as of ev, decay
// up to the time ev was recorded. It appends LeadScored (caused by ev),
// plus LeadQualified when the total reaches the threshold or
// LeadDisqualified when a disqualifying rule matches, each only if the
// lifecycle allows it (an MQL is not qualified again, a won lead not
// scored), each a single append at the version the one before made.
//
// It does nothing for an event that is not a trigger, when no model is
// active, when the lead already has a LeadScored caused by ev (a
// redelivered event changes nothing), or a re-score under the active
// version written after ev (it ran before this consumer reached ev, and
// saw ev's facts). meta carries the correlation and trace of ev.
func (a *App) ScoreLeadEvent(ctx context.Context, leadID string, seq uint64, ev *eventv1.Event, meta envelope.Meta) error {
	if !triggers(ev) {
		a.observe(leadID, seq, ev)
		if ev.GetLeadUnmerged() != nil {
			return a.scoreUnmerged(ctx, leadID, seq, ev)
		}
		return nil
	}
	reg, err := a.registry(ctx, seq, a.maxAge)
	if err != nil {
		return err
	}
	if reg.Active == 0 {
		return nil // a model without both approvals never scores anyone
	}
	meta.CausationID = ev.GetEventId()
	at := ev.GetRecordedAt().AsTime()
	// A cached fold whose facts are past ev (a redelivery) cannot give the
	// facts as of ev: start over from the stream.
	l, ok := a.folds.take(leadID)
	if ok && l.factsTo >= seq {
		l = nil
	}
	if !ok && ev.GetVersionBefore() == 0 && ev.GetLeadCaptured() != nil {
		// A capture appended to an empty lead is its first event: the fold
		// starts here without a load. If more was appended since, the
		// append conflicts and the next pass reads on from here.
		l = foldLead(leadID, []eventstore.Record{{Seq: seq, Event: ev}}, seq)
	}
	refreshed := false
	for attempt := range maxRaces {
		switch {
		case l == nil:
			recs, err := a.leads.Load(ctx, leadID)
			if err != nil {
				return err
			}
			l = foldLead(leadID, recs, seq)
		case attempt == 0 && (seq <= l.version || ev.GetVersionBefore() == l.version):
			// ev follows the cached fold directly (it was appended at the
			// fold's version), so fold plus ev is the lead up to ev without
			// a read; a fold already past ev, from an earlier read, holds
			// ev's facts. A gap (events this replica never saw: another
			// replica had the partition, or they came while it was away)
			// falls through to a read. If more was appended since, the
			// append conflicts and the next pass reads on from the stream.
			if seq > l.version {
				l.apply([]eventstore.Record{{Seq: seq, Event: ev}}, seq)
			} else {
				l.factsAsOf(seq)
			}
		default:
			recs, err := a.leads.LoadAfter(ctx, leadID, l.version)
			if err != nil {
				return err
			}
			l.apply(recs, seq)
		}
		// A read that does not show ev (a replica behind the consumer
		// that delivered it) would find nothing to score, or score
		// without ev's facts.
		if err := eventstore.Behind(leadID, l.version, seq); err != nil {
			return err
		}
		// Scored for ev already (a redelivery), or covered by a re-score
		// after ev that loaded ev's facts (coveredAt; a live score after
		// ev may be for an earlier event, with facts as of that one):
		// nothing to add.
		v, _ := reg.Get(reg.Active)
		if l.scored(ev.GetEventId()) {
			// A redelivery: the score is there; finish its verdict if the
			// writer died before it.
			owed, err := a.owedVerdict(l, ev.GetEventId(), ev.GetEventType())
			if err != nil || owed == nil {
				a.folds.put(l)
				return err
			}
			if err := a.appendOwn(ctx, l, seq, owed); errors.Is(err, eventstore.ErrConflict) {
				if err := eventstore.AfterConflict(ctx, attempt); err != nil {
					return err
				}
				continue
			} else if err != nil {
				return err
			}
			a.folds.put(l)
			return nil
		}
		if l.version == 0 || l.coveredAt(seq, v) {
			a.folds.put(l)
			return nil
		}
		if !refreshed && l.staleFor(reg) {
			if reg, err = a.fresh(ctx); err != nil {
				return err
			}
			refreshed = true
			continue
		}
		events, err := a.scoreEvents(l, reg.Active, v.Model, at, mayQualify(l.state, ev.GetEventType()), false, meta)
		if err != nil {
			return err
		}
		if ev.GetNurtureEnrolled() != nil && !finalVerdict(events) {
			events = nil
		}
		if len(events) == 0 {
			a.folds.put(l)
			return nil
		}
		// The score, then its verdict, each a single append: an atomic
		// batch costs milliseconds on a single-replica file stream. A
		// crash in between is finished by the redelivery (owedVerdict).
		err = a.appendOwn(ctx, l, seq, events...)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return err
			}
			continue // the next pass reads what the other writer appended
		}
		if err != nil {
			return err
		}
		a.folds.put(l)
		return nil
	}
	return fmt.Errorf("score lead %s: %w after %d races", leadID, eventstore.ErrConflict, maxRaces)
}

// scoreUnmerged writes the score an unmerge ev, stored at seq, calls for
// and no other event would give. The survivor is scored without what went
// back, with facts as of ev and decay to its time (caused by ev; a new
// lead keeps its deadline, as an unmerge is no engagement), unless the
// score stays as it was and decides nothing; so is the absorbed lead
// given back NEW, unless facts the unmerge gave back follow (each is
// scored), and with a fact no score followed (its merge refused it) the
// score starts its wait for engagement, as the live one would have. A
// lead given back in nurture gets the score its merge refused its latest
// re-engagement, as the live scorer would have written it then: nurture
// waits for that score, caused by the re-engagement. A lead given back
// further on, scored under a version older than the active one, gets the
// active version's score (its re-score skipped it). A verdict a crash
// cut off after either score is written when ev comes again.
func (a *App) scoreUnmerged(ctx context.Context, leadID string, seq uint64, ev *eventv1.Event) error {
	reg, err := a.registry(ctx, seq, a.maxAge)
	if err != nil || reg.Active == 0 {
		return err
	}
	survivor := envelope.SurvivorSide(ev)
	refreshed := false
	return a.writeOwn(ctx, leadID, "score after an unmerge", func() (*lead, []*eventv1.Event, error) {
		recs, err := a.leads.Load(ctx, leadID)
		if err != nil {
			return nil, nil, err
		}
		l := foldLead(leadID, recs, 0)
		if err := eventstore.Behind(leadID, l.version, seq); err != nil {
			return nil, nil, err
		}
		cause, typ, asOf, at := ev.GetEventId(), string(lifecycle.KindUnmerged), seq, ev.GetRecordedAt().AsTime()
		v, _ := reg.Get(reg.Active)
		switch {
		case survivor && !l.scored(cause) && l.coveredAt(seq, v):
			// A later score, on facts after ev, says what this one
			// would: ev handled again (a redelivery), or after a re-score.
			return l, nil, nil
		case survivor:
		case l.state.Status == lifecycle.StatusNurturing && l.reengaged != "":
			cause, typ, asOf = l.reengaged, string(lifecycle.KindReengaged), l.reengagedSeq
			if i, ok := slices.BinarySearchFunc(recs, asOf, func(r eventstore.Record, seq uint64) int { return cmp.Compare(r.Seq, seq) }); ok {
				at = recs[i].Event.GetRecordedAt().AsTime()
			}
		case l.state.Status == lifecycle.StatusNew && !factAfter(recs, seq):
			// Given back NEW: its merge refused the score of a fact, or
			// a version activated while it was merged skipped it, so it
			// is scored as the survivor is. Facts the unmerge gave back
			// are scored each, and cover this.
		case (l.hasScore && l.lastScore.modelVersion < reg.Active || l.scored(cause)) && !factAfter(recs, seq):
			// Given back further on (an MQL, a rep's) with the score of a
			// version older than the active one, whose re-score skipped
			// it while merged: scored as that re-score would have (and
			// handled again, the verdict a crash cut off is written).
		default:
			return l, nil, nil
		}
		l.factsAsOf(asOf)
		if l.scored(cause) {
			owed, err := a.owedVerdict(l, cause, typ)
			if owed == nil || err != nil {
				return l, nil, err
			}
			return l, []*eventv1.Event{owed}, nil
		}
		if !refreshed && l.staleFor(reg) {
			// A later version scored it already: this copy is behind.
			if reg, err = a.fresh(ctx); err != nil {
				return nil, nil, err
			}
			refreshed = true
		}
		v, _ = reg.Get(reg.Active)
		meta := envelope.Meta{CorrelationID: ev.GetCorrelationId(), CausationID: cause}
		// An unmerge is no engagement: the deadline stays, unless the
		// absorbed lead's facts were never all scored (its first score
		// starts the wait for engagement, as a re-score's does).
		asUnmerge := typ == string(lifecycle.KindUnmerged)
		keep := asUnmerge && (survivor || !l.triggeredSinceScore())
		events, err := a.scoreEvents(l, reg.Active, v.Model, at, mayQualify(l.state, typ), keep, meta)
		if err != nil || (keep && l.sameScore(events)) {
			return l, nil, err
		}
		return l, events, nil
	})
}

// factAfter reports whether a fact (lifecycle.Kind.Fact) follows seq in
// recs.
func factAfter(recs []eventstore.Record, seq uint64) bool {
	for i := len(recs) - 1; i >= 0 && recs[i].Seq > seq; i-- {
		if lifecycle.Kind(recs[i].Event.GetEventType()).Fact() {
			return true
		}
	}
	return false
}

// writeOwn decides and appends qualification's own events on a lead:
// decide reads the lead afresh and returns it with the events (none:
// nothing to write), which go out one by one at the lead's version
// (appendOwn); a lost race decides again.
func (a *App) writeOwn(ctx context.Context, leadID, what string, decide func() (*lead, []*eventv1.Event, error)) error {
	for attempt := range maxRaces {
		l, events, err := decide()
		if err != nil || len(events) == 0 {
			return err
		}
		err = a.appendOwn(ctx, l, ^uint64(0), events...)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return err
			}
			continue
		}
		return err
	}
	return fmt.Errorf("%s of lead %s: %w after %d races", what, leadID, eventstore.ErrConflict, maxRaces)
}

// mayQualify reports whether a score for a trigger of type typ may make
// the lead an MQL. A nurtured lead's way back is nurture's to open: its
// program's exit rules say which activities re-engage it, and only the
// score of its LeadReengaged may qualify it. Its other triggers are
// scored, and may still disqualify it (a withdrawn consent ends its
// nurture too).
func mayQualify(s lifecycle.State, typ string) bool {
	return s.Status != lifecycle.StatusNurturing || typ == string(lifecycle.KindReengaged)
}

// finalVerdict reports whether events end in a disqualification that is
// not "not now". An enrolment is scored for that alone: a lead that
// withdrew its email consent while sales held it (no disqualification
// then) must not stay in a program that writes to it. Anything else would
// be a score nobody asked for, and a "not now" would send the lead back to
// nurture, which enrols it again.
func finalVerdict(events []*eventv1.Event) bool {
	return len(events) == 2 && events[1].GetLeadDisqualified() != nil && !events[1].GetLeadDisqualified().GetNotNow()
}

// scoreEvents scores l under version n of the model as of at and returns
// the events to append: LeadScored, recording its verdict (QUALIFY only
// if qualify), then the verdict (LeadQualified or LeadDisqualified) if the
// lifecycle allows it. It returns none when the lifecycle refuses a score
// (a finished lead). A rescore (under a newly active version) is no
// engagement: a new lead keeps its deadline. A nurtured lead that a "not
// now" rule matches is not qualified, and only a final rule disqualifies it.
func (a *App) scoreEvents(l *lead, n uint32, m scoring.Model, at time.Time, qualify, rescore bool, meta envelope.Meta) ([]*eventv1.Event, error) {
	r := scoring.Score(m, l.facts.Facts, at)
	if r.Disqualify != nil && r.Disqualify.NotNow && l.state.Status == lifecycle.StatusNurturing {
		// It is in nurture already: "not now" again would recycle it,
		// restart its program and count another disqualification.
		qualify, r.Disqualify = false, scoring.Final(m, l.facts.Facts)
	}
	meta.Actor, meta.OccurredAt = Actor, at
	payload := &eventv1.LeadScored{
		ModelId: scoring.ID, ModelVersion: n, Fit: int32(r.Fit), Engagement: int32(r.Engagement), Total: int32(r.Total),
		Threshold: int32(m.Threshold), Reasons: scoring.ReasonsToProto(r.Reasons), Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_NONE,
	}
	switch {
	case r.Disqualify != nil:
		payload.Verdict = eventv1.ScoreVerdict_SCORE_VERDICT_DISQUALIFY
		payload.Disqualify = &eventv1.LeadDisqualified{RuleId: r.Disqualify.RuleID, Reason: r.Disqualify.Reason, NotNow: r.Disqualify.NotNow,
			ModelId: scoring.ID, ModelVersion: n, DecidedBy: Actor}
	case qualify && r.Total >= m.Threshold:
		payload.Verdict = eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY
	}
	scored, state, err := a.leadEvent(l.id, l.state, lifecycle.Command{Name: lifecycle.Score, Score: r.Total, Rescore: rescore}, payload, meta)
	if errors.Is(err, lifecycle.ErrRefused) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// The verdict is caused by the score it rests on.
	meta.CausationID = scored.GetEventId()
	verdict, err := a.verdictEvent(l.id, state, payload, true, meta)
	if err != nil || verdict == nil {
		return []*eventv1.Event{scored}, err
	}
	return []*eventv1.Event{scored, verdict}, nil
}

// verdictEvent is the LeadQualified or LeadDisqualified a score decided,
// or nil when it decided none or the lifecycle refuses it (already an
// MQL, or past the point where scoring decides: the score is recorded,
// the status stays), or it is a "not now" for a lead nurtured since, or
// a qualification that qualify no longer allows.
func (a *App) verdictEvent(leadID string, state lifecycle.State, s *eventv1.LeadScored, qualify bool, meta envelope.Meta) (*eventv1.Event, error) {
	var (
		verdict *eventv1.Event
		err     error
	)
	switch s.GetVerdict() {
	case eventv1.ScoreVerdict_SCORE_VERDICT_DISQUALIFY:
		if s.GetDisqualify().GetNotNow() && state.Status == lifecycle.StatusNurturing {
			// A score from before its enrolment (the verdict refused while
			// RECYCLED), owed on a redelivery: see scoreEvents.
			return nil, nil
		}
		d := proto.Clone(s.GetDisqualify()).(*eventv1.LeadDisqualified)
		verdict, _, err = a.leadEvent(leadID, state, lifecycle.Command{Name: lifecycle.Disqualify, Reason: d.GetReason(), NotNow: d.GetNotNow()}, d, meta)
	case eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY:
		if !qualify {
			return nil, nil
		}
		verdict, _, err = a.leadEvent(leadID, state, lifecycle.Command{Name: lifecycle.Qualify},
			&eventv1.LeadQualified{ModelId: s.GetModelId(), ModelVersion: s.GetModelVersion(), Score: s.GetTotal(), Threshold: s.GetThreshold()}, meta)
	}
	if errors.Is(err, lifecycle.ErrRefused) {
		return nil, nil
	}
	return verdict, err
}

// appendOwn appends events to l one by one, each at the version the one
// before it made, and folds each in as it lands (facts up to asOf), so
// the next event reads on from here. A conflict leaves l as far as it got.
func (a *App) appendOwn(ctx context.Context, l *lead, asOf uint64, events ...*eventv1.Event) error {
	for _, e := range events {
		v, err := a.leads.Append(ctx, l.id, l.version, e)
		if err != nil {
			return err
		}
		l.apply([]eventstore.Record{{Seq: v, Event: e}}, asOf)
	}
	return nil
}

// observe folds a non-trigger event into the lead's cached fold, if it is
// cached, so the fold stays whole without reading the stream (see
// ScoreLeadEvent). A lead not cached is read in full when next scored.
func (a *App) observe(leadID string, seq uint64, ev *eventv1.Event) {
	l, ok := a.folds.take(leadID)
	if !ok {
		return
	}
	// Only an event that follows the fold extends it; after a gap the fold
	// stays where it is and the next score reads on from it.
	if seq > l.version && ev.GetVersionBefore() == l.version {
		l.apply([]eventstore.Record{{Seq: seq, Event: ev}}, seq)
	}
	a.folds.put(l)
}
