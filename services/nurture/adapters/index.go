package adapters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/deadline"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/nurture/app"
)

var _ app.Index = (*Index)(nil)

// Index keeps the last event of every lead and the last message of every
// identity claim in memory, read from the stream by an ordered consumer
// (no durable state, no acks) on lead.> and claim.>. It starts with the
// last message of each subject (DeliverLastPerSubject) and then follows
// the stream. Reading every lead's last message per call was measured too
// slow: a multi-subject direct get serves at most 1,024 subjects, and
// either way 100,000 leads took about 2 s (see README).
type Index struct {
	js     jetstream.JetStream
	stream string
	log    *slog.Logger

	mu      sync.RWMutex
	leads   []app.Head     // one per lead, in the order first seen
	pos     map[string]int // lead id -> index in leads
	claims  map[string]*app.ClaimHead
	strs    map[string]string // interned event types and owner ids
	applied atomic.Uint64     // the last stream sequence applied

	cmu  sync.Mutex
	cons jetstream.Consumer // the current ordered consumer, nil before Run
	// changed is closed and replaced whenever applied moves.
	changed chan struct{}
}

// NewIndex returns an index of stream; Run fills it.
func NewIndex(js jetstream.JetStream, stream string, log *slog.Logger) *Index {
	return &Index{js: js, stream: stream, log: log, pos: map[string]int{}, claims: map[string]*app.ClaimHead{},
		strs: map[string]string{}, changed: make(chan struct{})}
}

// Run reads the stream into the index until ctx is done.
func (x *Index) Run(ctx context.Context) error {
	var st jetstream.Stream
	var cons jetstream.Consumer
	for {
		var err error
		if st, err = x.js.Stream(ctx, x.stream); err == nil {
			cons, err = st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
				FilterSubjects: []string{eventstore.LeadSubjects, eventstore.ClaimSubjects},
				DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
			})
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		x.log.Warn("index: open", "err", err)
		if !sleepCtx(ctx, time.Second) {
			return nil
		}
	}
	x.cmu.Lock()
	x.cons = cons
	x.cmu.Unlock()
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return fmt.Errorf("index: read %s: %w", x.stream, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			if ctx.Err() != nil {
				return nil
			}
			// Closed under us: a replica with a dead index would answer
			// every no-lost-lead check with a timeout; stop it instead.
			return fmt.Errorf("index: the reader of %s closed", x.stream)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			x.log.Warn("index: next", "err", err)
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		x.apply(m)
	}
}

func (x *Index) apply(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	seq, subj := md.Sequence.Stream, m.Subject()
	x.mu.Lock()
	if id := eventstore.LeadID(subj); id != "" {
		i, ok := x.pos[id]
		var prev app.Head
		if ok {
			prev = x.leads[i]
		}
		h := x.head(prev, id, seq, md.Timestamp, m)
		if ok {
			x.leads[i] = h
		} else {
			x.pos[id] = len(x.leads)
			x.leads = append(x.leads, h)
		}
	} else if rest, ok := strings.CutPrefix(subj, "claim."); ok && m.Headers().Get(eventstore.HeaderType) == "Claim" {
		kind, _, _ := strings.Cut(rest, ".")
		c, err := eventstore.DecodeClaim(eventstore.Raw{Subject: subj, Header: m.Headers(), Data: m.Data()})
		switch {
		case err != nil:
		case c.GetLeadId() == "": // released
			delete(x.claims, subj)
		default:
			x.claims[subj] = &app.ClaimHead{Subject: subj, Kind: x.intern(kind), LeadID: c.GetLeadId(), At: md.Timestamp}
		}
	}
	x.mu.Unlock()
	x.applied.Store(seq)
	x.cmu.Lock()
	close(x.changed)
	x.changed = make(chan struct{})
	x.cmu.Unlock()
}

// undecodable marks a lead whose last event cannot be read: the check
// reports it as of an unknown status.
const undecodable = lifecycle.Status(255)

// head is the lead's head after m, prev the one before it (zero for the
// first, and for every lead of the initial read, which reads each lead's
// last event only: a lead whose last event is neither a fact nor its
// score is then taken as waiting for the scorer).
func (x *Index) head(prev app.Head, id string, seq uint64, at time.Time, m jetstream.Msg) app.Head {
	h := app.Head{LeadID: id, Seq: seq, At: at, Type: x.intern(m.Headers().Get(eventstore.HeaderType))}
	h.Scored = prev.Scored
	ev, err := eventstore.DecodeEvent(m.Data())
	if err != nil {
		h.State.Status = undecodable
		return h
	}
	h.EventID = ev.GetEventId()
	h.State = lifecycle.FromProto(ev.GetLifecycle())
	h.State.Owner.ID = x.intern(h.State.Owner.ID)
	// A fact, a merge's facts (or a candidate for one) or a score after a
	// breach leaves the breach (and the recycle it escalated to) the
	// lead's next step; anything else the rep or a service did ends it.
	// So do facts and merges a re-engagement waiting for its score.
	passive := lifecycle.Kind(h.Type).Fact() || scoring.Absorbs(ev) || ev.GetMergeCandidateFound() != nil
	keeps := prev.State.Status == h.State.Status && prev.State.Owner == h.State.Owner &&
		(passive || ev.GetLeadScored() != nil)
	h.RecycleDue = ev.GetSlaBreached().GetEscalation() == eventv1.SLAEscalation_SLA_ESCALATION_RECYCLE || prev.RecycleDue && keeps
	h.Breached = ev.GetSlaBreached() != nil || prev.Breached && keeps
	h.Unscored = app.Unscored(prev.Unscored, ev)
	h.Partial = prev.Partial || prev.LeadID == "" && ev.GetLeadCaptured() == nil
	if ev.GetLeadScored() != nil && h.Partial && len(prev.Unscored) > 0 && !slices.Contains(prev.Unscored, ev.GetCausationId()) {
		// The score of a fact this replica never read, or a re-score:
		// it cannot tell, and the later facts it read may still wait.
		h.Unscored = prev.Unscored
	}
	if len(h.Unscored) == 0 {
		h.Partial = false // every fact before has a score covering it
	}
	switch {
	case ev.GetLeadReengaged() != nil:
		h.Reengaged = h.EventID
	case prev.Reengaged != "" && h.State.Status == lifecycle.StatusNurturing &&
		(passive || ev.GetLeadScored() != nil && (ev.GetCausationId() != prev.Reengaged || app.VerdictFollows(ev.GetLeadScored(), h.State.Status))):
		// Its own score with a verdict still waits for the scorer's
		// LeadQualified (LeadDisqualified), a second append.
		h.Reengaged = prev.Reengaged
	case prev.Reengaged != "" && (h.State.Status == lifecycle.StatusMerged || ev.GetLeadUnmerged() != nil && h.State.Status == lifecycle.StatusNurturing):
		// An unmerge (either side) leaves it waiting for that score, as a
		// merge away does (a terminal status the check skips): the scorer
		// scores an unmerged lead's re-engagement.
		h.Reengaged = prev.Reengaged
	}
	switch sc := ev.GetLeadScored(); {
	case lifecycle.Kind(h.Type).Fact() || scoring.Absorbs(ev):
		h.Scored = false
	case sc != nil:
		// Only a score without a verdict leaves nothing to the scorer, and
		// only when it covers every fact (one caused by an earlier fact,
		// stored after a later one, does not).
		h.Scored = sc.GetVerdict() == eventv1.ScoreVerdict_SCORE_VERDICT_NONE && len(h.Unscored) == 0
	}
	return h
}

// intern keeps one copy of the few distinct types and owners; x.mu is held.
func (x *Index) intern(s string) string {
	if v, ok := x.strs[s]; ok {
		return v
	}
	x.strs[s] = s
	return s
}

// View waits until the index holds every lead and claim message the
// stream stored before the call, then calls fn with it read-locked. It
// returns the last stream sequence applied. Without a deadline on ctx it
// waits 10 seconds at most (the first call after a start waits for the
// initial read of every lead).
func (x *Index) View(ctx context.Context, fn func(app.IndexView)) (uint64, error) {
	ctx, cancel := deadline.Default(ctx, 10*time.Second)
	defer cancel()
	target, err := x.target(ctx)
	if err != nil {
		return 0, err
	}
	for x.applied.Load() < target {
		x.cmu.Lock()
		ch := x.changed
		x.cmu.Unlock()
		if x.applied.Load() >= target {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("index: catching up to sequence %d (at %d): %w", target, x.applied.Load(), ctx.Err())
		}
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	fn(app.IndexView{Leads: x.leads, Pos: x.pos, Claims: x.claims})
	return x.applied.Load(), nil
}

// target is the stream sequence the index must reach to hold every lead
// and claim message stored before now: the consumer's last delivery once
// nothing is pending, or the stream's last sequence once deliveries pass
// it.
func (x *Index) target(ctx context.Context) (uint64, error) {
	st, err := x.js.Stream(ctx, x.stream)
	if err != nil {
		return 0, fmt.Errorf("index: stream %s: %w", x.stream, err)
	}
	last := st.CachedInfo().State.LastSeq
	for {
		x.cmu.Lock()
		cons := x.cons
		x.cmu.Unlock()
		if cons != nil {
			ci, err := cons.Info(ctx)
			switch {
			case err != nil:
				x.log.Debug("index: consumer info", "err", err)
			case ci.NumPending == 0:
				return min(ci.Delivered.Stream, last), nil
			case ci.Delivered.Stream >= last:
				return last, nil
			}
		}
		if !sleepCtx(ctx, 5*time.Millisecond) {
			return 0, fmt.Errorf("index: waiting to catch up: %w", ctx.Err())
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
