package app

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
)

// ref is one event of a lead; the zero ref is "none" (seq 0).
type ref struct {
	seq uint64
	ev  *eventv1.Event
}

func (r ref) id() string { return r.ev.GetEventId() }

// maxFacts bounds the re-engagement candidates kept per enrolment: past
// it, an older fact of a kind a newer one repeats goes first (evictable).
const maxFacts = 64

// lead is what nurture needs of one lead, folded from its events.
type lead struct {
	id      string
	version uint64 // its last event's sequence, 0 for no events
	state   lifecycle.State
	last    ref
	segment string
	// qualified counts its LeadQualified events: the journey cycle.
	qualified int
	// source is the latest event that sent the lead back to nurture:
	// LeadRejected, DealLost, LeadDisqualified with not_now, SLABreached
	// with escalation RECYCLE, or a NEW lead's LeadScored with no verdict
	// (it goes to nurture at the deadline the score set).
	source   ref
	recycled ref // the latest LeadRecycled, by anyone
	// unsold: the journey the latest recycle ended never qualified (a new
	// lead recycled unqualified, by hand, or as not now): sales never had
	// it. qualifiedAtRecycle is l.qualified then.
	unsold             bool
	qualifiedAtRecycle int
	enrolled           ref // the latest NurtureEnrolled
	exited             ref // the latest NurtureExited
	reengaged          ref // the latest LeadReengaged
	// reengagedScore is the LeadScored caused by reengaged, if any.
	reengagedScore ref
	// verdict is the latest LeadScored with a verdict: its LeadQualified
	// or LeadDisqualified is a second append and follows it.
	verdict ref
	// unmerged is the latest LeadUnmerged that gave the lead back.
	unmerged ref
	// unscored are the event ids of the facts (lifecycle.Kind.Fact) no
	// score has covered yet, oldest first: a score caused by one covers
	// it and those before it; one with another cause (a re-score under a
	// new model version) covers them all.
	unscored []string
	// givenBack is when an unmerge last gave the lead back, or a fact of
	// it (recorded then, or in a later part of a long unmerge): past the
	// deadline, the scorer gets its time from then for facts its merge
	// left unscored or gave back.
	givenBack time.Time
	// gap is the first LeadRecycled or NurtureExited since the latest
	// enrolment: what comes after it reaches no program until the next.
	gap ref
	// facts are the ActivityRecorded and LeadResubmitted events nurture
	// may not have judged yet: since the latest enrolment, or since the
	// gap before it (nobody judges what comes in between).
	facts []ref
	// byKey maps idempotency keys to the LeadRecycled they wrote.
	byKey map[string]ref
	// steps are nurture's events, for GetLeadNurture.
	steps []ref
}

// Unscored is ids, a lead's facts (lifecycle.Kind.Fact, and a merge that
// brings the absorbed lead's: scoring.Absorbs) that no score covered
// yet, oldest first, after ev: a fact joins them (the newest
// maxFacts are kept); a score caused by one covers it and those before
// it, and one with another cause (a re-score under a newly active
// version) covers them all. The lead fold and the no-lost-lead index
// both follow it, so they agree on what waits for the scorer.
func Unscored(ids []string, ev *eventv1.Event) []string {
	switch {
	case lifecycle.Kind(ev.GetEventType()).Fact() || scoring.Absorbs(ev):
		if len(ids) == maxFacts {
			ids = ids[1:]
		}
		return append(ids, ev.GetEventId())
	case ev.GetLeadScored() != nil:
		if i := slices.Index(ids, ev.GetCausationId()); i >= 0 && i+1 < len(ids) {
			return ids[i+1:]
		}
		return nil
	}
	return ids
}

func newLead(id string) *lead { return &lead{id: id, byKey: map[string]ref{}} }

// cycle is the lead's journey cycle, the lifecycle's: it begins again
// when a nurtured lead qualifies, even one never an MQL before. Leads
// written before cycles were recorded count their qualifications.
func (l *lead) cycle() uint32 { return uint32(max(1, l.state.Cycle, l.qualified)) }

func (l *lead) apply(recs ...eventstore.Record) {
	for _, r := range recs {
		if r.Seq <= l.version {
			continue // seen already
		}
		ev := r.Event
		x := ref{seq: r.Seq, ev: ev}
		l.version, l.last = r.Seq, x
		l.state = lifecycle.FromProto(ev.GetLifecycle())
		if envelope.Check(ev, l.id, r.Type) != nil {
			continue // malformed (docs/events.md): its lifecycle stands, nothing else
		}
		l.unscored = Unscored(l.unscored, ev)
		if lifecycle.Kind(ev.GetEventType()).Fact() && givenBackBy(ev) != "" {
			l.givenBack = ev.GetRecordedAt().AsTime()
		}
		if s := segmentOf(ev); s != "" {
			l.segment = s
		}
		switch p := ev.GetPayload().(type) {
		case *eventv1.Event_LeadQualified:
			l.qualified++
			l.segment = "" // a new journey is routed afresh
		case *eventv1.Event_LeadRejected, *eventv1.Event_DealLost:
			l.source = x
		case *eventv1.Event_LeadDisqualified:
			if p.LeadDisqualified.GetNotNow() {
				l.source = x
			}
		case *eventv1.Event_SlaBreached:
			if p.SlaBreached.GetEscalation() == eventv1.SLAEscalation_SLA_ESCALATION_RECYCLE {
				l.source = x
			}
		case *eventv1.Event_LeadRecycled:
			l.recycled = x
			l.unsold, l.qualifiedAtRecycle = l.qualified == l.qualifiedAtRecycle, l.qualified
			l.openGap(x)
			if k := ev.GetIdempotencyKey(); k != "" {
				l.byKey[k] = x
			}
			l.steps = append(l.steps, x)
		case *eventv1.Event_NurtureEnrolled:
			// Facts before the gap were judged (nurture exits a lead only
			// then) or came before the lead was recycled; those in it were
			// not, so this program judges them.
			if l.gap.seq > l.enrolled.seq {
				l.facts = slices.DeleteFunc(l.facts, func(f ref) bool { return f.seq <= l.gap.seq })
			} else {
				l.facts = nil
			}
			l.enrolled = x
			l.steps = append(l.steps, x)
		case *eventv1.Event_NurtureExited:
			l.exited = x
			l.openGap(x)
			l.steps = append(l.steps, x)
		case *eventv1.Event_LeadReengaged:
			l.reengaged, l.reengagedScore = x, ref{}
			l.steps = append(l.steps, x)
		case *eventv1.Event_LeadUnmerged:
			if !envelope.SurvivorSide(ev) {
				l.unmerged, l.givenBack = x, ev.GetRecordedAt().AsTime()
			} else {
				// What came through the other lead went back with it: its
				// interest re-engages that lead, not this one.
				l.facts = slices.DeleteFunc(l.facts, func(f ref) bool { return envelope.GivenBack(p.LeadUnmerged, mergedFrom(f.ev)) })
			}
		case *eventv1.Event_LeadScored:
			if l.reengaged.seq > 0 && ev.GetCausationId() == l.reengaged.id() {
				l.reengagedScore = x
			}
			if waitsForEngagement(ev) {
				l.source = x
			}
			if VerdictFollows(p.LeadScored, lifecycle.FromProto(ev.GetLifecycle()).Status) {
				l.verdict = x
			}
		case *eventv1.Event_ActivityRecorded, *eventv1.Event_LeadResubmitted:
			// Interest that occurred before the lead was recycled, synced
			// late, was sales' to see: no program judges it. A journey
			// recycled before it qualified (unqualified, by hand, not now)
			// was never sales', and its scorer may not qualify the lead in
			// nurture: its program judges that too.
			if (l.enrolled.seq > 0 || l.gap.seq > 0) && (l.unsold ||
				!ev.GetOccurredAt().AsTime().Before(l.recycled.ev.GetOccurredAt().AsTime())) {
				if len(l.facts) == maxFacts {
					i := l.evictable()
					l.facts = slices.Delete(l.facts, i, i+1)
				}
				l.facts = append(l.facts, x)
			}
		}
	}
}

// evictable is the fact to drop from a full list: the oldest of a kind
// a newer fact repeats (the judgement takes the newest fact that counts,
// so the older says nothing more), else the oldest. Dropping the oldest
// alone lost a demo request behind 64 page views that came while nurture
// was behind: it was never judged.
func (l *lead) evictable() int {
	type kind struct {
		resubmitted bool
		typ         eventv1.ActivityType
		via         string
	}
	kindOf := func(f ref) kind {
		return kind{f.ev.GetLeadResubmitted() != nil, f.ev.GetActivityRecorded().GetType(), mergedFrom(f.ev) + "/" + givenBackBy(f.ev)}
	}
	newer := map[kind]bool{}
	oldest := 0
	for i := len(l.facts) - 1; i >= 0; i-- {
		k := kindOf(l.facts[i])
		if newer[k] {
			oldest = i
		}
		newer[k] = true
	}
	return oldest
}

// mergedFrom is the lead a fact came through while merged, if any.
func mergedFrom(ev *eventv1.Event) string {
	return cmp.Or(ev.GetActivityRecorded().GetMergedFrom(), ev.GetLeadResubmitted().GetMergedFrom())
}

// givenBackBy is the survivor whose unmerge gave the fact back, if any.
func givenBackBy(ev *eventv1.Event) string {
	return cmp.Or(ev.GetActivityRecorded().GetGivenBackBy(), ev.GetLeadResubmitted().GetGivenBackBy())
}

// openGap records x as the start of the gap, unless one is open already.
func (l *lead) openGap(x ref) {
	if l.gap.seq <= l.enrolled.seq {
		l.gap = x
	}
}

// waitsForEngagement reports whether ev is a NEW lead's score with no
// verdict: the lead waits for engagement until the deadline it carries,
// then goes to nurture.
func waitsForEngagement(ev *eventv1.Event) bool {
	sc := ev.GetLeadScored()
	return sc != nil && sc.GetVerdict() == eventv1.ScoreVerdict_SCORE_VERDICT_NONE &&
		lifecycle.FromProto(ev.GetLifecycle()).Status == lifecycle.StatusNew
}

// VerdictFollows reports whether qualification appends a verdict event
// (LeadQualified, LeadDisqualified) after sc, a score of a lead in
// status: a qualification or a disqualification, but no "not now" for a
// nurtured lead, which it never sends back to nurture.
func VerdictFollows(sc *eventv1.LeadScored, status lifecycle.Status) bool {
	switch sc.GetVerdict() {
	case eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY:
		return true
	case eventv1.ScoreVerdict_SCORE_VERDICT_DISQUALIFY:
		return status != lifecycle.StatusNurturing || !sc.GetDisqualify().GetNotNow()
	}
	return false
}

// segmentOf is the routing segment an event names, "" if none.
func segmentOf(ev *eventv1.Event) string {
	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_LeadAssigned:
		return p.LeadAssigned.GetSegment()
	case *eventv1.Event_LeadQueued:
		return p.LeadQueued.GetDecision().GetSegment()
	case *eventv1.Event_LeadAccepted:
		return p.LeadAccepted.GetSegment()
	case *eventv1.Event_LeadRejected:
		return p.LeadRejected.GetSegment()
	case *eventv1.Event_LeadReassigned:
		return p.LeadReassigned.GetSegment()
	case *eventv1.Event_OpportunityCreated:
		return p.OpportunityCreated.GetSegment()
	case *eventv1.Event_DealWon:
		return p.DealWon.GetSegment()
	case *eventv1.Event_DealLost:
		return p.DealLost.GetSegment()
	case *eventv1.Event_SlaWarned:
		return p.SlaWarned.GetSegment()
	case *eventv1.Event_SlaBreached:
		return p.SlaBreached.GetSegment()
	case *eventv1.Event_LeadRecycled:
		return p.LeadRecycled.GetSegment()
	}
	return ""
}

// load reads a lead's events and folds them; a lead with no events has
// version 0.
func (a *App) load(ctx context.Context, leadID string) (*lead, error) {
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return nil, err
	}
	l := newLead(leadID)
	l.apply(recs...)
	return l, nil
}

// unjudged reports whether the lead has a fact since its enrolment that
// no re-engagement's score has seen: nurtured judges it by its program.
func (l *lead) unjudged() bool {
	return len(l.facts) > 0 && l.facts[len(l.facts)-1].seq > l.reengaged.seq && l.facts[len(l.facts)-1].seq > l.enrolled.seq
}
