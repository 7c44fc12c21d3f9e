package app

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/nurture/program"
)

// Nurture decides from the lead's state, not from the event that woke it:
// whatever event, timer or re-drive arrives, owed says the one step
// nurture owes the lead now, if any. A redelivered event finds its step
// done; a crash between two steps leaves the second owed, and the next
// wake-up writes it. Every step names what caused it (causation_id).
//
//   - LOST after DealLost, ACCEPTED after an SLABreached that recycles
//     (attempts exhausted), RECYCLED after LeadRejected or a "not now"
//     LeadDisqualified, with no LeadRecycled since: LeadRecycled. So is
//     a NEW lead past the deadline its last score (no verdict) set: no
//     engagement qualified it in time.
//   - RECYCLED after a LeadRecycled or NurtureExited with no enrolment
//     since: NurtureEnrolled, into the program the recycle names, the
//     exit names, or the entry rules choose.
//   - NURTURING, with an activity or re-submission since the enrolment
//     (or the recycle or exit before it) that the program's exit rules
//     count: LeadReengaged (qualification re-scores the lead).
//   - NURTURING, re-engaged and re-scored below the threshold: another
//     LeadReengaged if such a fact came after the re-engagement (its
//     score did not see it), else NurtureExited back into the program,
//     until its review date (past it, on to the next program).
//   - NURTURING past the review date without re-engagement: NurtureExited,
//     then (RECYCLED again) NurtureEnrolled in the exit rules' next
//     program with the next review date.
func (a *App) owed(l *lead, cat *program.Catalog, now time.Time, meta envelope.Meta) (*eventv1.Event, error) {
	switch st := l.state.Status; st {
	case lifecycle.StatusNew, lifecycle.StatusLost, lifecycle.StatusAccepted:
		if l.recycleDue(now) {
			return a.recycle(l, now, meta)
		}
	case lifecycle.StatusRecycled:
		if l.recycleDue(now) {
			return a.recycle(l, now, meta)
		}
		anchor := l.recycled
		if l.exited.seq > anchor.seq {
			anchor = l.exited
		}
		if anchor.seq > l.enrolled.seq {
			return a.enrol(l, cat, anchor, now, meta)
		}
	case lifecycle.StatusNurturing:
		return a.nurtured(l, cat, now, meta)
	}
	return nil, nil
}

// unscoredGrace bounds how long past its deadline, or past an unmerge
// that gave it back since, a new lead waits for the score of a fact: one
// the scorer will never score (its dead letter skipped) must not keep it
// NEW for good.
const unscoredGrace = time.Hour

// unscoredBy is when a new lead past its deadline stops waiting for the
// scores of its facts. Only an unmerge moves it (the scores its merge
// refused, of its own facts or of those it gave back, come after it):
// facts that keep coming must not put a lead the scorer never answers
// off for good.
func (l *lead) unscoredBy() time.Time {
	from := l.state.Deadline
	if l.givenBack.After(from) {
		from = l.givenBack
	}
	return from.Add(unscoredGrace)
}

// verdictOwed reports whether a score after the source gave the lead a
// verdict whose event has not come yet: a re-score under a new version,
// or an unmerge's score, keeps the deadline, and qualification appends
// its LeadQualified after it. That decides, for up to unscoredGrace
// after the score (a verdict refused, or its dead letter skipped, must
// not keep the lead NEW for good).
func (l *lead) verdictOwed(now time.Time) bool {
	return l.verdict.seq > l.source.seq && now.Before(l.verdictBy())
}

func (l *lead) verdictBy() time.Time {
	return l.verdict.ev.GetRecordedAt().AsTime().Add(unscoredGrace)
}

// reengagedVerdictBy is when a nurtured lead stops waiting for the
// verdict event of its re-engagement's score.
func (l *lead) reengagedVerdictBy() time.Time {
	return l.reengagedScore.ev.GetRecordedAt().AsTime().Add(unscoredGrace)
}

// reengagedGrace bounds how long past its deadline a nurtured lead waits
// for the score of its re-engagement: long past any scorer outage, as a
// score decides the lead whenever it comes.
const reengagedGrace = 24 * time.Hour

// reengagedBy is when a nurtured lead stops waiting for the score of its
// latest re-engagement: reengagedGrace past the deadline the
// re-engagement set, or past the time the scorer has after an unmerge
// that gave the lead back (the score was refused while it was merged).
// One the scorer will never score (its dead letter skipped) then counts
// as scored below the threshold, so the lead is not left NURTURING, past
// its deadline, for good.
func (a *App) reengagedBy(l *lead) time.Time {
	due := lifecycle.FromProto(l.reengaged.ev.GetLifecycle()).Deadline
	if after := a.afterUnmerge(l.unmerged.ev); l.unmerged.seq > l.reengaged.seq && after.After(due) {
		due = after
	}
	return due.Add(reengagedGrace)
}

// afterUnmerge is when the scorer's time to score what an unmerge, ev,
// gave back ends.
func (a *App) afterUnmerge(ev *eventv1.Event) time.Time {
	return ev.GetRecordedAt().AsTime().Add(a.policy.ScoreWithin)
}

// recycleDue reports whether the lead's latest recycle source still
// stands at now and has no LeadRecycled after it.
func (l *lead) recycleDue(now time.Time) bool {
	src := l.source
	if src.seq == 0 || src.seq < l.recycled.seq {
		return false
	}
	switch src.ev.GetPayload().(type) {
	case *eventv1.Event_DealLost:
		return l.state.Status == lifecycle.StatusLost
	case *eventv1.Event_LeadScored:
		// Still NEW at the deadline: no score since qualified it, and a
		// later one would be the source, with its own deadline. A fact
		// waiting for its score (the scorer behind or down) is engagement
		// the score decides on, for up to unscoredBy.
		return l.state.Status == lifecycle.StatusNew && !now.Before(l.state.Deadline) &&
			(len(l.unscored) == 0 || !now.Before(l.unscoredBy())) && !l.verdictOwed(now)
	case *eventv1.Event_SlaBreached:
		// The breach recycles the lead only if nobody acted on it since:
		// same rep, same attempts.
		at := lifecycle.FromProto(src.ev.GetLifecycle())
		return l.state.Status == lifecycle.StatusAccepted && at.Owner == l.state.Owner && at.Attempts == l.state.Attempts
	default: // LeadRejected, LeadDisqualified not now: RECYCLED by the event itself
		return l.state.Status == lifecycle.StatusRecycled && src.seq > l.enrolled.seq && src.seq > l.exited.seq
	}
}

// recycle is the LeadRecycled the lead's source owes.
func (a *App) recycle(l *lead, now time.Time, meta envelope.Meta) (*eventv1.Event, error) {
	p := sourceRecycle(l)
	cmd := lifecycle.Command{Name: lifecycle.Recycle, Reason: p.Note}
	ev, _, err := lifecycle.NewEvent(l.id, l.state, cmd, a.policy, p, stepMeta(meta, l.source.ev), now)
	return ev, err
}

// sourceRecycle is the payload of the LeadRecycled the lead's source
// owes: its cause, and the note that says why.
func sourceRecycle(l *lead) *eventv1.LeadRecycled {
	src := l.source.ev
	p := &eventv1.LeadRecycled{Segment: l.segment, Score: int32(l.state.Score), Cycle: l.cycle(), SourceEventType: src.GetEventType()}
	switch x := src.GetPayload().(type) {
	case *eventv1.Event_LeadRejected:
		r := x.LeadRejected
		p.Cause, p.RejectReason = eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED, r.GetReason()
		p.Note = "rejected by rep " + r.GetRepId() + ": " + strings.TrimPrefix(r.GetReason().String(), "REJECT_REASON_")
		if n := strings.TrimSpace(r.GetNote()); n != "" { // written in the clear before notes were sealed
			p.Note += " (" + n + ")"
		}
		p.SealedNote = r.GetSealedNote()
	case *eventv1.Event_DealLost:
		p.Cause, p.Note = eventv1.RecycleCause_RECYCLE_CAUSE_LOST, "deal lost"
		if n := strings.TrimSpace(x.DealLost.GetReason()); n != "" {
			p.Note += ": " + n
		}
		p.SealedNote = x.DealLost.GetSealedReason()
	case *eventv1.Event_LeadDisqualified:
		p.Cause, p.Note = eventv1.RecycleCause_RECYCLE_CAUSE_NOT_READY, "not now: "+x.LeadDisqualified.GetReason()
	case *eventv1.Event_SlaBreached:
		st := lifecycle.FromProto(src.GetLifecycle())
		p.Cause = eventv1.RecycleCause_RECYCLE_CAUSE_ATTEMPTS_EXHAUSTED
		p.Note = fmt.Sprintf("%d contact attempts by %s without reaching the lead", st.Attempts, st.Owner)
	case *eventv1.Event_LeadScored:
		sc := x.LeadScored
		p.Cause = eventv1.RecycleCause_RECYCLE_CAUSE_NOT_QUALIFIED
		p.Note = fmt.Sprintf("not qualified by %s: last scored %d, below the threshold %d",
			l.state.Deadline.UTC().Format(time.DateOnly), sc.GetTotal(), sc.GetThreshold())
	}
	return p
}

// enrol is the NurtureEnrolled that anchor (a LeadRecycled or a
// NurtureExited) owes.
func (a *App) enrol(l *lead, cat *program.Catalog, anchor ref, now time.Time, meta envelope.Meta) (*eventv1.Event, error) {
	var (
		choice program.Choice
		due    time.Time
	)
	switch x := anchor.ev.GetPayload().(type) {
	case *eventv1.Event_LeadRecycled:
		id := x.LeadRecycled.GetProgramId()
		if id == "" {
			choice = cat.Choose(l.key())
			break
		}
		e, ok := cat.Get(id)
		switch {
		case !ok:
			return nil, &PoisonError{LeadID: l.id, Reason: fmt.Sprintf("LeadRecycled %s names program %q, which does not exist: define it (PutProgram), then re-drive the lead", anchor.id(), id)}
		case e.Program.GetRetired():
			choice = cat.Choose(l.key())
			choice.Why = fmt.Sprintf("the recycle named program %q, which is retired; %s", id, choice.Why)
		default:
			choice = program.Choice{Program: e.Program, Why: "named by the recycle"}
		}
	case *eventv1.Event_NurtureExited:
		ex := x.NurtureExited
		back, inCat := cat.Get(ex.GetProgramId())
		backUntil := ex.GetCause() == eventv1.NurtureExitCause_NURTURE_EXIT_CAUSE_NOT_QUALIFIED && ex.GetNextProgramId() == ex.GetProgramId()
		if r := ex.GetNextReviewAt(); backUntil && inCat && r != nil && !r.AsTime().After(now) {
			// Back to its own program until its review, which passed
			// while this enrolment waited (a crash, an outage): where the
			// review would have taken it.
			p := a.next(l, cat, back.Program)
			choice = program.Choice{Program: p, Why: fmt.Sprintf("after program %q, whose review passed before the lead was back in it: %s", ex.GetProgramId(), ex.GetReason())}
		} else if p, ok := cat.Active(ex.GetNextProgramId()); ok {
			choice = program.Choice{Program: p, Why: fmt.Sprintf("after program %q: %s", ex.GetProgramId(), ex.GetReason())}
		} else if backUntil && inCat {
			// Back to its own program until its review: retiring a program
			// turns new leads away, not those in it.
			choice = program.Choice{Program: back.Program, Why: fmt.Sprintf("back to program %q (retired) until its review: %s", ex.GetProgramId(), ex.GetReason())}
		} else {
			choice = cat.Choose(l.key())
			choice.Why = fmt.Sprintf("program %q is retired; %s", ex.GetNextProgramId(), choice.Why)
		}
		if next := ex.GetNextReviewAt(); next != nil && next.AsTime().After(now) {
			due = next.AsTime()
		}
	}
	if due.IsZero() {
		due = now.Add(cat.Duration(choice.Program))
	}
	p := choice.Program
	payload := &eventv1.NurtureEnrolled{ProgramId: p.GetProgramId(), ProgramRevision: p.GetRevision(), RuleId: choice.RuleID,
		ReviewAt: timestamppb.New(due), Cycle: l.cycle(), Why: choice.Why}
	cmd := lifecycle.Command{Name: lifecycle.Enroll, Owner: lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: p.GetProgramId()}, Due: due}
	ev, _, err := lifecycle.NewEvent(l.id, l.state, cmd, a.policy, payload, stepMeta(meta, anchor.ev), now)
	return ev, err
}

// key is what the entry rules look at: the latest recycle's cause, and
// the segment and score it recorded.
func (l *lead) key() program.Key {
	r := l.recycled.ev.GetLeadRecycled()
	if r == nil {
		return program.Key{Segment: l.segment, Score: l.state.Score}
	}
	k := program.Key{Cause: r.GetCause(), RejectReason: r.GetRejectReason(), Segment: r.GetSegment(), Score: int(r.GetScore())}
	if r.GetCycle() == 0 {
		// Written by handoff (leads whose contact attempts ran out)
		// before 2026-12-07, which recorded no segment, score or cycle.
		k.Segment, k.Score = l.segment, lifecycle.FromProto(l.recycled.ev.GetLifecycle()).Score
	}
	return k
}

// nurtured is the step a NURTURING lead owes: re-engagement, the way back
// after a re-score below the threshold, or the end of its program.
func (a *App) nurtured(l *lead, cat *program.Catalog, now time.Time, meta envelope.Meta) (*eventv1.Event, error) {
	e := l.enrolled.ev.GetNurtureEnrolled()
	if e == nil {
		return nil, nil // nurtured by someone else; nothing of ours to review
	}
	prog := cat.Choose(program.Key{}).Program // the default, should the program be unknown here
	if p, ok := cat.Get(e.GetProgramId()); ok {
		prog = p.Program
	}
	review := e.GetReviewAt().AsTime()
	pending := l.reengaged.seq > l.enrolled.seq
	// decided is what decided a pending re-engagement: its score, or the
	// re-engagement itself when no score came (see reengagedBy).
	decided := l.reengagedScore.ev
	if pending {
		// Re-engaged: qualification re-scores the lead. Wait for that
		// score; with no verdict in it, back to the program.
		switch sc := decided.GetLeadScored(); {
		case sc == nil && !now.Before(a.reengagedBy(l)):
			decided = l.reengaged.ev
		case sc == nil:
			return nil, nil // not scored yet
		case VerdictFollows(sc, lifecycle.StatusNurturing) && now.Before(l.reengagedVerdictBy()):
			// Its LeadQualified (LeadDisqualified) follows; one that never
			// comes (its dead letter skipped) does not hold the lead here.
			return nil, nil
		}
	}
	// Judge what no score has seen (facts after the latest re-engagement)
	// before any exit: the enrolment after an exit keeps only later facts.
	for i := len(l.facts) - 1; i >= 0; i-- {
		f := l.facts[i]
		if f.seq <= l.reengaged.seq {
			break // scored already, with the re-engagement
		}
		// By the rules in force when it came, however late it is judged
		// (nurture behind, or a re-engagement's score awaited): an edit
		// since neither counts it nor drops it.
		rules := prog
		if p, ok := cat.At(e.GetProgramId(), f.seq); ok {
			rules = p.Program
		}
		switch x := f.ev.GetPayload().(type) {
		case *eventv1.Event_ActivityRecorded:
			if program.ReengagesOn(rules, x.ActivityRecorded.GetType()) {
				return a.reengage(l, prog, f.ev, x.ActivityRecorded.GetActivityId(), x.ActivityRecorded.GetType(), now, meta)
			}
		case *eventv1.Event_LeadResubmitted:
			if rules.GetExitRules().GetReengageOnResubmission() {
				return a.reengage(l, prog, f.ev, "", eventv1.ActivityType_ACTIVITY_TYPE_UNSPECIFIED, now, meta)
			}
		}
	}
	switch {
	case pending && now.Before(review):
		return a.exit(l, prog, eventv1.NurtureExitCause_NURTURE_EXIT_CAUSE_NOT_QUALIFIED, a.notQualified(l, decided)+": back to the program until its review",
			prog, review, decided, now, meta)
	case pending:
		next := a.next(l, cat, prog)
		return a.exit(l, prog, eventv1.NurtureExitCause_NURTURE_EXIT_CAUSE_NOT_QUALIFIED,
			fmt.Sprintf("%s, after the program's review: on to program %q", a.notQualified(l, decided), next.GetProgramId()),
			next, now.Add(cat.Duration(next)), decided, now, meta)
	case !now.Before(review):
		next := a.next(l, cat, prog)
		return a.exit(l, prog, eventv1.NurtureExitCause_NURTURE_EXIT_CAUSE_ENDED, fmt.Sprintf("program %q ended without re-engagement", prog.GetProgramId()),
			next, now.Add(cat.Duration(next)), l.enrolled.ev, now, meta)
	}
	return nil, nil
}

// notQualified says how a re-engagement (decided: its score, or the
// re-engagement itself when none came) failed to qualify the lead.
func (a *App) notQualified(l *lead, decided *eventv1.Event) string {
	switch sc := decided.GetLeadScored(); {
	case sc != nil && VerdictFollows(sc, lifecycle.StatusNurturing):
		return fmt.Sprintf("re-engaged and re-scored %d, and its verdict never came", sc.GetTotal())
	case sc != nil:
		return fmt.Sprintf("re-engaged and re-scored %d, below the threshold %d", sc.GetTotal(), sc.GetThreshold())
	}
	return fmt.Sprintf("re-engaged, and no score came by %s", a.reengagedBy(l).UTC().Format(time.RFC3339))
}

func (a *App) reengage(l *lead, prog *eventv1.NurtureProgram, fact *eventv1.Event, activityID string, t eventv1.ActivityType, now time.Time, meta envelope.Meta) (*eventv1.Event, error) {
	payload := &eventv1.LeadReengaged{ProgramId: prog.GetProgramId(), ActivityId: activityID, Cycle: l.cycle(),
		ActivityType: t, TriggerEventType: fact.GetEventType()}
	ev, _, err := lifecycle.NewEvent(l.id, l.state, lifecycle.Command{Name: lifecycle.Reengage}, a.policy, payload, stepMeta(meta, fact), now)
	return ev, err
}

// next is the program a lead goes to once prog is over: the exit
// rules' next (by the entry rules if that one is retired).
func (a *App) next(l *lead, cat *program.Catalog, prog *eventv1.NurtureProgram) *eventv1.NurtureProgram {
	if next, ok := cat.Active(program.Next(prog)); ok {
		return next
	}
	return cat.Choose(l.key()).Program
}

func (a *App) exit(l *lead, prog *eventv1.NurtureProgram, c eventv1.NurtureExitCause, reason string, next *eventv1.NurtureProgram, review time.Time,
	cause *eventv1.Event, now time.Time, meta envelope.Meta) (*eventv1.Event, error) {
	payload := &eventv1.NurtureExited{ProgramId: prog.GetProgramId(), Reason: reason, Cause: c, NextProgramId: next.GetProgramId(),
		NextReviewAt: timestamppb.New(review), Cycle: l.cycle()}
	ev, _, err := lifecycle.NewEvent(l.id, l.state, lifecycle.Command{Name: lifecycle.ExitNurture, Reason: reason}, a.policy, payload, stepMeta(meta, cause), now)
	return ev, err
}

// stepMeta is the envelope of a step caused by cause: nurture acts, in
// cause's correlation, within the trace of whatever woke it.
func stepMeta(meta envelope.Meta, cause *eventv1.Event) envelope.Meta {
	m := envelope.Meta{Actor: Actor, CorrelationID: cause.GetCorrelationId(), CausationID: cause.GetEventId(), Trace: meta.Trace}
	if m.CorrelationID == "" {
		m.CorrelationID = meta.CorrelationID
	}
	if m.Trace != nil {
		m.Trace = proto.CloneOf(m.Trace)
	}
	return m
}
