package app

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/qualification/registry"
)

// IsTrigger reports whether a lead event of this type is scored: new
// facts about the person (lifecycle.Kind.Fact), a merge (the survivor is
// scored on both leads' facts; a merged lead is not scored), re-engagement
// from nurture, and the enrolment in a program, which only a final
// disqualification answers (enrolledVerdict). Everything else,
// qualification's own events included, leaves the score as it is.
func IsTrigger(eventType string) bool {
	k := lifecycle.Kind(eventType)
	return k.Fact() || k == lifecycle.KindMerged || k == lifecycle.KindReengaged || k == lifecycle.KindNurtureEnrolled
}

// triggers reports whether ev is scored (IsTrigger): of a merge, only the
// survivor's LeadMerged that brings the absorbed lead's facts (not one
// stored before it carried them: a re-score would take it for new
// engagement).
func triggers(ev *eventv1.Event) bool {
	return IsTrigger(ev.GetEventType()) && (ev.GetLeadMerged() == nil || scoring.Absorbs(ev))
}

// IsOwn reports whether qualification writes lead events of this type: the
// live consumer skips them unread, since the writer folded them in already
// (a verdict by hand, DisqualifyLead, is not in the scorer's fold: the
// lead's next event shows the gap, and the scorer reads on).
func IsOwn(eventType string) bool {
	switch lifecycle.Kind(eventType) {
	case lifecycle.KindScored, lifecycle.KindQualified, lifecycle.KindDisqualified:
		return true
	}
	return false
}

// lead is what scoring needs of one lead, folded from its events. Facts
// run to factsTo, everything else to version: scoring an event uses facts
// as of that event, however late it is handled, but the lead's state and
// scores as they are now.
type lead struct {
	id      string
	state   lifecycle.State // after its last event
	version uint64          // its last event's sequence, 0 for no events
	created uint64          // its first event's sequence
	facts   scoring.FactsFold
	factsTo uint64
	// pending are events after factsTo whose facts are not applied yet.
	pending []eventstore.Record
	// scoredFor maps the causation ids of its LeadScored events (the
	// events it was scored for) to the score's sequence.
	scoredFor map[eventKey]uint64
	// lastScore is its latest LeadScored, if hasScore.
	lastScore scoreRef
	hasScore  bool
	// verdicts holds the causation ids of its LeadQualified and
	// LeadDisqualified events: the LeadScored events they follow.
	verdicts map[eventKey]bool
	// reengaged is the event id of its latest LeadReengaged, if any, and
	// reengagedSeq its sequence.
	reengaged    string
	reengagedSeq uint64
	// lastTrigger is the sequence of its latest trigger event, and
	// lastTriggerAt when it was recorded.
	lastTrigger   uint64
	lastTriggerAt time.Time
	lastTriggerID eventKey
}

// A cached lead holds no decoded events and keys its maps by 16 bytes:
// the cache keeps up to 100,000 leads, and the garbage collector scans
// every pointer in them on each cycle (a third of the process's CPU when
// each kept its last LeadScored decoded).

// eventKey is an event id as map key without pointers: the UUID's bytes
// (any other id hashed to 16 bytes).
type eventKey [16]byte

func keyOf(id string) eventKey {
	if u, err := uuid.Parse(id); err == nil {
		return eventKey(u)
	}
	return eventKey(uuid.NewSHA1(uuid.Nil, []byte(id)))
}

// scoreRef is a LeadScored as the cache keeps it: what every scoring
// checks, and the stored bytes, decoded when a verdict is owed or a score
// explained.
type scoreRef struct {
	seq uint64
	// causeSeq is the sequence of the lead's event it was caused by, 0
	// when that is not on the lead (a re-score's activation) or unknown.
	causeSeq     uint64
	modelVersion uint32
	eventID      eventKey
	causationID  eventKey
	data         []byte
}

func newScoreRef(seq uint64, ev *eventv1.Event) scoreRef {
	// A decoded event encodes again; should it not, event says so.
	data, _ := proto.Marshal(ev)
	return scoreRef{seq: seq, modelVersion: ev.GetLeadScored().GetModelVersion(),
		eventID: keyOf(ev.GetEventId()), causationID: keyOf(ev.GetCausationId()), data: data}
}

// event decodes the LeadScored.
func (s scoreRef) event() (*eventv1.Event, error) {
	if len(s.data) == 0 {
		return nil, fmt.Errorf("LeadScored at %d could not be kept", s.seq)
	}
	return eventstore.DecodeEvent(s.data)
}

func newLead(id string) *lead {
	return &lead{id: id, scoredFor: map[eventKey]uint64{}, verdicts: map[eventKey]bool{}}
}

// scored reports whether the lead has a LeadScored caused by event id.
func (l *lead) scored(id string) bool { _, ok := l.scoredFor[keyOf(id)]; return ok }

// foldLead folds a lead's events, facts up to sequence asOf.
func foldLead(id string, recs []eventstore.Record, asOf uint64) *lead {
	l := newLead(id)
	l.apply(recs, asOf)
	return l
}

// apply folds events that follow l.version, in order; facts only up to
// sequence asOf, the rest wait in pending.
func (l *lead) apply(recs []eventstore.Record, asOf uint64) {
	// Only the last LeadScored is kept, so only it is encoded: a load of a
	// long history holds many.
	var lastScore *eventstore.Record
	var causeSeq uint64
	for i, r := range recs {
		if r.Seq <= l.version {
			continue // seen already
		}
		if l.version == 0 {
			l.created = r.Seq
		}
		l.version = r.Seq
		ev := r.Event
		l.state = lifecycle.FromProto(ev.GetLifecycle())
		if envelope.Check(ev, l.id, r.Type) != nil {
			continue // malformed (docs/events.md): its lifecycle stands, nothing else
		}
		switch ev.GetPayload().(type) {
		case *eventv1.Event_LeadScored:
			l.scoredFor[keyOf(ev.GetCausationId())] = r.Seq
			lastScore, causeSeq = &recs[i], l.causeOf(recs[:i], ev.GetCausationId())
		case *eventv1.Event_LeadQualified, *eventv1.Event_LeadDisqualified:
			l.verdicts[keyOf(ev.GetCausationId())] = true
		case *eventv1.Event_LeadReengaged:
			l.reengaged, l.reengagedSeq = ev.GetEventId(), r.Seq
		}
		if scoring.HasFacts(ev) {
			l.pending = append(l.pending, r)
		}
		if triggers(ev) {
			l.lastTrigger, l.lastTriggerAt, l.lastTriggerID = r.Seq, ev.GetRecordedAt().AsTime(), keyOf(ev.GetEventId())
		}
	}
	if lastScore != nil {
		l.lastScore, l.hasScore = newScoreRef(lastScore.Seq, lastScore.Event), true
		l.lastScore.causeSeq = causeSeq
	}
	l.factsAsOf(asOf)
}

// factsAsOf applies the pending facts up to sequence seq.
func (l *lead) factsAsOf(seq uint64) {
	n := 0
	for _, r := range l.pending {
		if r.Seq > seq {
			break
		}
		l.facts.Apply(r.Event)
		n++
	}
	if n > 0 {
		// Copy what is left: a reslice would keep the applied events'
		// decoded protos alive in the cache.
		l.pending = append([]eventstore.Record(nil), l.pending[n:]...)
	}
	l.factsTo = max(l.factsTo, min(seq, l.version))
}

// awaitsReengagedScore reports whether the lead is nurtured and its
// latest re-engagement has no score yet.
func (l *lead) awaitsReengagedScore() bool {
	return l.state.Status == lifecycle.StatusNurturing && l.reengaged != "" && !l.scored(l.reengaged)
}

// awaitsReengagedVerdict reports whether the lead is nurtured and its
// latest score, its re-engagement's, decided a verdict not written yet
// (its writer killed between the two appends, or about to append it). A
// re-score must answer the re-engagement again rather than score past
// it: a verdict is owed only by the latest score (owedVerdict), so the
// lead would stay nurtured, its way back decided and never taken.
func (l *lead) awaitsReengagedVerdict() bool {
	if l.state.Status != lifecycle.StatusNurturing || l.reengaged == "" || !l.hasScore ||
		l.lastScore.causationID != keyOf(l.reengaged) || l.verdicts[l.lastScore.eventID] {
		return false
	}
	ev, err := l.lastScore.event()
	return err == nil && ev.GetLeadScored().GetVerdict() != eventv1.ScoreVerdict_SCORE_VERDICT_NONE
}

// sameScore reports whether events are a score alone (no verdict event
// follows) that gives what the lead's latest score gave, under the same
// version.
func (l *lead) sameScore(events []*eventv1.Event) bool {
	if len(events) != 1 || !l.hasScore {
		return false
	}
	last, err := l.lastScore.event()
	if err != nil {
		return false
	}
	was, now := last.GetLeadScored(), events[0].GetLeadScored()
	return was.GetModelVersion() == now.GetModelVersion() &&
		was.GetFit() == now.GetFit() && was.GetEngagement() == now.GetEngagement() && was.GetTotal() == now.GetTotal()
}

// causeOf is the sequence of cause among the events just before a score
// (a score follows its cause closely), or the latest trigger's; 0 if
// neither is it.
func (l *lead) causeOf(before []eventstore.Record, cause string) uint64 {
	for i := len(before) - 1; i >= 0 && i >= len(before)-16; i-- {
		if before[i].Event.GetEventId() == cause {
			return before[i].Seq
		}
	}
	if keyOf(cause) == l.lastTriggerID {
		return l.lastTrigger
	}
	return 0
}

// coveredAt reports whether a score already covers the facts of the
// event at seq, though not caused by it: the re-score's of the active
// version v after it, that of a later re-engagement (which a re-score
// answers ahead of the live scorer, with every fact it had), or the
// latest score's, caused by a later event (the event at seq handled
// again after it: a score of its facts alone would be the lead's latest
// and leave out what came since).
func (l *lead) coveredAt(seq uint64, v registry.Version) bool {
	if v.Activation != nil && l.scoredFor[keyOf(v.Activation.EventID)] > seq {
		return true
	}
	if l.hasScore && l.lastScore.causeSeq > seq {
		return true
	}
	return l.reengaged != "" && l.reengagedSeq > seq && l.scored(l.reengaged)
}

// triggeredSinceScore reports whether the lead has a trigger that no
// score followed: engagement the live scorer has not scored yet. Stream
// order suffices: a score stored after a trigger it was not caused by
// was decided after that trigger was stored (else its append conflicts),
// so the deadline it set already runs from later than the trigger.
func (l *lead) triggeredSinceScore() bool {
	return !l.hasScore || l.lastTrigger > l.lastScore.seq
}

// scoredSince reports whether the lead has a LeadScored under version n
// written after stream sequence seq.
func (l *lead) scoredSince(n uint32, seq uint64) bool {
	return l.hasScore && l.lastScore.seq > seq && l.lastScore.modelVersion == n
}

// staleFor reports whether the lead was scored, after reg's active version
// activated, by another version: some writer knows of a later activation,
// so reg is out of date.
func (l *lead) staleFor(reg *registry.Registry) bool {
	v, ok := reg.Get(reg.Active)
	if !ok || v.Activation == nil || !l.hasScore {
		return false
	}
	return l.lastScore.seq > v.Activation.Seq && l.lastScore.modelVersion != reg.Active
}

// owedVerdict is the verdict event the lead's latest score, caused by
// cause (an event of type typ), decided but that was never written (its
// writer crashed between the score and the verdict), if the lifecycle
// still allows it, and if the lead may still qualify on it: one nurtured
// since qualifies only through its re-engagement (mayQualify).
func (a *App) owedVerdict(l *lead, cause, typ string) (*eventv1.Event, error) {
	if !l.hasScore || l.lastScore.causationID != keyOf(cause) || l.verdicts[l.lastScore.eventID] {
		return nil, nil
	}
	scored, err := l.lastScore.event()
	if err != nil {
		return nil, err
	}
	meta := envelope.Meta{Actor: Actor, CorrelationID: scored.GetCorrelationId(), CausationID: scored.GetEventId(), OccurredAt: scored.GetOccurredAt().AsTime()}
	return a.verdictEvent(l.id, l.state, scored.GetLeadScored(), mayQualify(l.state, typ), meta)
}
