package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// Kinds of break replay reports.
const (
	breakRefused   = "refused"   // the state machine does not allow the event after the one before
	breakGap       = "gap"       // version_before is not the lead's previous event
	breakStamp     = "stamp"     // the state stamped on the event is not what the rules make of it
	breakInvariant = "invariant" // a live lead left without an owner or a deadline
	breakOverdue   = "overdue"   // the lead ends waiting for a step whose deadline has passed
	breakMalformed = "malformed" // the event does not fit the lead it is stored under: consumers dead-letter it
)

// replayBreak is one place a lead's journey broke.
type replayBreak struct {
	Lead      string    `json:"lead"`
	Seq       uint64    `json:"seq"`
	EventType string    `json:"event_type"`
	At        time.Time `json:"at"`
	Kind      string    `json:"kind"`
	Detail    string    `json:"detail"`
}

// replayStep is a lead's state after one event (replay --lead).
type replayStep struct {
	Seq       uint64    `json:"seq"`
	EventType string    `json:"event_type"`
	At        time.Time `json:"at"`
	Status    string    `json:"status"`
	Owner     string    `json:"owner,omitempty"`
	Deadline  string    `json:"deadline,omitempty"`
	Cycle     int       `json:"cycle"`
	Breaks    []string  `json:"breaks,omitempty"`
}

// mergeCandidate is two leads that hold one person's identities
// (MergeCandidateFound on both) and were neither merged nor ended since.
type mergeCandidate struct {
	Lead     string    `json:"lead"`
	Other    string    `json:"other_lead"`
	Identity string    `json:"identity"`
	Seq      uint64    `json:"seq"`
	At       time.Time `json:"at"`
}

// replayResult is what replay prints with -o json.
type replayResult struct {
	FromSeq   uint64         `json:"from_seq"`
	ToSeq     uint64         `json:"to_seq"`
	Events    int            `json:"events"`
	Leads     int            `json:"leads"`
	JudgedAt  time.Time      `json:"judged_at"`
	Unchecked map[string]int `json:"unchecked"`
	Broken    int            `json:"broken_leads"`
	Breaks    []replayBreak  `json:"breaks"`
	Steps     []replayStep   `json:"steps,omitempty"`
	// MergeCandidates are the open ones: both leads neither merged into
	// anyone nor erased.
	MergeCandidates []mergeCandidate `json:"merge_candidates"`
	Seconds         float64          `json:"seconds"`
}

// replayWindow bounds what is replayed: stream sequences and stored times,
// both inclusive; zero is open.
type replayWindow struct {
	fromSeq, toSeq uint64
	since, until   time.Time
}

func (w replayWindow) holds(seq uint64, at time.Time) bool {
	return (w.fromSeq == 0 || seq >= w.fromSeq) && (w.toSeq == 0 || seq <= w.toSeq) &&
		(w.since.IsZero() || !at.Before(w.since)) && (w.until.IsZero() || !at.After(w.until))
}

// end is when the window ends, for judging deadlines: what a lead did
// after it is not replayed, so a deadline it met after is not missed.
func (w replayWindow) end(ctx context.Context, o *options) (time.Time, error) {
	end := time.Now()
	if !w.until.IsZero() && w.until.Before(end) {
		end = w.until
	}
	if w.toSeq == 0 {
		return end, nil
	}
	s, closeConn, err := o.store()
	if err != nil {
		return time.Time{}, err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	raw, err := s.Get(ctx, w.toSeq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return end, nil // past the stream's end, or gone: the window ends with the stream
	case err != nil:
		return time.Time{}, fmt.Errorf("read %s at --to-seq %d: %w", o.stream, w.toSeq, err)
	case raw.Time.Before(end):
		return raw.Time, nil
	}
	return end, nil
}

func replayCmd(o *options) *cobra.Command {
	var (
		lead, since, until string
		win                replayWindow
		limit              int
	)
	c := &cobra.Command{
		Use:   "replay",
		Short: "Replay lead events through the shared state machine and show where journeys broke",
		Long: `replay reads lead events from the stream, in order, and checks each one
against pkg/lifecycle, the rules every service decides with. It reports:
  refused    an event the rules do not allow after the lead's previous one
  gap        an event appended at a version that is not the lead's previous event
  stamp      a state stamped on the event that is not what the rules make of it
  invariant  a live lead left without an owner or a deadline
  overdue    a lead that ends waiting for a step whose deadline has passed
             (judged when the window ends: at --until, or when the
             message at --to-seq was stored, whichever is earlier; else now)
and the open merge candidates: pairs of leads that hold one person's
identities, neither merged nor erased since.
Bounds: --since/--until (stored time, RFC 3339) and --from-seq/--to-seq;
given together, an event is replayed only inside all of them.
With --lead it replays one lead and prints its state after each event.
Exit status 3 when a lead broke (as lost), 1 when the replay could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, b := range []struct {
				flag, v string
				to      *time.Time
			}{{"since", since, &win.since}, {"until", until, &win.until}} {
				if b.v == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339, b.v)
				if err != nil {
					return fmt.Errorf("%w: --%s %q: want RFC 3339, like 2026-12-01T09:30:00Z", errUsage, b.flag, b.v)
				}
				*b.to = t
			}
			switch {
			case win.toSeq != 0 && win.fromSeq > win.toSeq:
				return fmt.Errorf("%w: --from-seq %d is after --to-seq %d", errUsage, win.fromSeq, win.toSeq)
			case !win.since.IsZero() && !win.until.IsZero() && win.since.After(win.until):
				return fmt.Errorf("%w: --since is after --until", errUsage)
			case limit < 0:
				return fmt.Errorf("%w: --limit must not be negative", errUsage)
			}
			if lead != "" {
				if err := leadIDs(&lead); err != nil {
					return err
				}
			}
			judgeAt, err := win.end(cmd.Context(), o)
			if err != nil {
				return err
			}
			start := time.Now()
			var res *replayResult
			if lead != "" {
				res, err = replayLead(cmd.Context(), o, lead, win, judgeAt)
			} else {
				res, err = replayStream(cmd, o, win, judgeAt)
			}
			if err != nil {
				return err
			}
			res.Seconds = time.Since(start).Seconds()
			if o.output == "json" {
				err = writeJSON(cmd.OutOrStdout(), res)
			} else {
				err = writeReplay(cmd.OutOrStdout(), res, lead != "", limit)
			}
			if err == nil && res.Broken > 0 {
				// As lost: exit status 3, for a cron job or an alert.
				err = &foundError{what: fmt.Sprintf("%d leads broke", res.Broken)}
			}
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&lead, "lead", "", "replay only this lead and print its state after each event")
	f.StringVar(&since, "since", "", "first stored time replayed (RFC 3339)")
	f.StringVar(&until, "until", "", "last stored time replayed (RFC 3339); deadlines are judged then")
	f.Uint64Var(&win.fromSeq, "from-seq", 0, "first stream sequence replayed")
	f.Uint64Var(&win.toSeq, "to-seq", 0, "last stream sequence replayed; deadlines are judged when it was stored")
	f.IntVar(&limit, "limit", 100, "breaks listed in text output (0: all; -o json lists all)")
	return c
}

// journey is one lead's replay so far.
type journey struct {
	id       string
	state    lifecycle.State
	lastSeq  uint64
	lastType string
	lastAt   time.Time
	started  bool
	broken   bool
}

// replayer checks events one by one; it holds every lead's journey.
type replayer struct {
	res      *replayResult
	journeys map[string]*journey
	order    []string
	// seed reads the lead's event at seq, for a lead whose first event in
	// the window is not its first; errNoEarlier when seq holds no event of
	// that lead.
	seed func(lead string, seq uint64) (*eventv1.Event, error)
	// candidates are the merge candidates seen, by their pair of leads.
	candidates map[[2]string]*mergeCandidate
}

// errNoEarlier: the sequence a lead's first event names as its version
// holds no event of that lead.
var errNoEarlier = errors.New("no earlier event of the lead")

func newReplayer() *replayer {
	return &replayer{res: &replayResult{Unchecked: map[string]int{}, Breaks: []replayBreak{}, MergeCandidates: []mergeCandidate{}},
		journeys: map[string]*journey{}, candidates: map[[2]string]*mergeCandidate{}}
}

func pairOf(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

// merges follows the merge candidates: found on both leads, settled by a
// merge of the two (an unmerge is a decision too: they stay apart).
func (r *replayer) merges(seq uint64, ev *eventv1.Event, at time.Time) {
	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_MergeCandidateFound:
		k := pairOf(ev.GetLeadId(), p.MergeCandidateFound.GetOtherLeadId())
		if r.candidates[k] == nil {
			r.candidates[k] = &mergeCandidate{Lead: ev.GetLeadId(), Other: p.MergeCandidateFound.GetOtherLeadId(),
				Identity: p.MergeCandidateFound.GetIdentity(), Seq: seq, At: at.UTC()}
		}
	case *eventv1.Event_LeadMerged:
		delete(r.candidates, pairOf(p.LeadMerged.GetSurvivorLeadId(), p.LeadMerged.GetAbsorbedLeadId()))
	case *eventv1.Event_LeadUnmerged:
		delete(r.candidates, pairOf(p.LeadUnmerged.GetSurvivorLeadId(), p.LeadUnmerged.GetAbsorbedLeadId()))
	}
}

func (r *replayer) flag(j *journey, seq uint64, eventType string, at time.Time, kind, detail string) string {
	j.broken = true
	r.res.Breaks = append(r.res.Breaks, replayBreak{Lead: j.id, Seq: seq, EventType: eventType, At: at.UTC(), Kind: kind, Detail: detail})
	return kind + ": " + detail
}

// apply checks one event, stored under lead id's subject with type
// header typ ("" when not read), against the lead's journey and moves it
// on. It returns the breaks it found, for people.
func (r *replayer) apply(seq uint64, id, typ string, ev *eventv1.Event, at time.Time) ([]string, error) {
	j := r.journey(id)
	r.res.Events++
	vb := ev.GetVersionBefore()
	if !j.started {
		j.started = true
		if vb != 0 && vb != eventstore.VersionUnknown && r.seed != nil {
			// The window starts inside this lead's life: start from the
			// state its previous event recorded.
			prev, err := r.seed(id, vb)
			if errors.Is(err, errNoEarlier) {
				// Nothing of the lead's to start from: there is only its
				// own stamp to go on from.
				j.state, j.lastSeq = lifecycle.FromProto(ev.GetLifecycle()), seq
				j.lastType, j.lastAt = ev.GetEventType(), at
				return []string{r.flag(j, seq, ev.GetEventType(), at, breakGap,
					fmt.Sprintf("appended at version %d, but seq %d holds no event of this lead: its events before are missing", vb, vb))}, nil
			}
			if err != nil {
				return nil, fmt.Errorf("read lead %s's event at seq %d: %w", id, vb, err)
			}
			j.state, j.lastSeq, j.lastType = lifecycle.FromProto(prev.GetLifecycle()), vb, prev.GetEventType()
		} else if vb != 0 {
			// Mid-commit or no way to read back: trust what it says.
			j.state, j.lastSeq = lifecycle.FromProto(ev.GetLifecycle()), seq
			j.lastType, j.lastAt = ev.GetEventType(), at
			r.res.Unchecked["(first in window)"]++
			return nil, nil
		}
	}
	var breaks []string
	if vb != eventstore.VersionUnknown && vb != j.lastSeq {
		what := fmt.Sprintf("appended at version %d, but the lead's previous event is at seq %d", vb, j.lastSeq)
		if vb < j.lastSeq {
			what += ": written without seeing it (a write that bypassed the concurrency check)"
		} else {
			what += ": events in between are missing"
		}
		breaks = append(breaks, r.flag(j, seq, ev.GetEventType(), at, breakGap, what))
	}
	if err := envelope.Check(ev, id, typ); err != nil {
		// What the services' readers do: its payload counts for nothing,
		// its stamp stands as the lead's state.
		breaks = append(breaks, r.flag(j, seq, ev.GetEventType(), at, breakMalformed, err.Error()))
		if ev.GetLifecycle() != nil {
			j.state = lifecycle.FromProto(ev.GetLifecycle())
		}
		j.lastSeq, j.lastType, j.lastAt = seq, ev.GetEventType(), at
		return breaks, nil
	}
	recorded := lifecycle.FromProto(ev.GetLifecycle())
	kind := lifecycle.Kind(ev.GetEventType())
	i := slices.IndexFunc(lifecycle.Transitions, func(t lifecycle.Transition) bool { return t.Kind == kind })
	unchecked := ev.GetEventType()
	if envelope.SurvivorSide(ev) {
		// A merge's or unmerge's record on the survivor: it stays as it was.
		i, unchecked = -1, unchecked+" (survivor)"
	}
	next := recorded
	if i < 0 {
		// Not a step of the state machine (MergeCandidateFound,
		// OpportunityStageChanged, ...): its writer stamps the state.
		r.res.Unchecked[unchecked]++
		if ev.GetLifecycle() == nil {
			next = j.state
		}
	} else {
		t := lifecycle.Transitions[i]
		cmd := lifecycle.Command{Name: t.Command}
		if t.NeedsReason {
			cmd.Reason = "replay"
		}
		// Only a command that names the owner takes it from the stamp; the
		// others' owner is the rules' (a queue, or unchanged), below.
		if t.TakesOwner != lifecycle.OwnerNone {
			cmd.Owner = recorded.Owner
		}
		e := lifecycle.Event{Kind: kind, At: at, Owner: recorded.Owner, Deadline: recorded.Deadline}
		if t.Restores {
			cmd.Status, cmd.Owner, cmd.Due = recorded.Status, recorded.Owner, recorded.Deadline
			e.Status = recorded.Status
		}
		switch p := ev.GetPayload().(type) {
		case *eventv1.Event_LeadDisqualified:
			cmd.NotNow, e.NotNow = p.LeadDisqualified.GetNotNow(), p.LeadDisqualified.GetNotNow()
		case *eventv1.Event_LeadScored:
			e.Score = int(p.LeadScored.GetTotal())
		}
		if decided, err := lifecycle.Decide(j.state, cmd, lifecycle.DefaultPolicy(), at); err != nil {
			// Refused: the rules give it no owner; the refusal is the break.
			breaks = append(breaks, r.flag(j, seq, ev.GetEventType(), at, breakRefused, err.Error()))
		} else {
			// Decide's, special cases included ("not now" to nurture);
			// zero keeps the owner before.
			e.Owner = decided[0].Owner
		}
		want := lifecycle.Evolve(j.state, e)
		switch {
		case ev.GetLifecycle() == nil:
			breaks = append(breaks, r.flag(j, seq, ev.GetEventType(), at, breakStamp, "no state stamped; the rules make it "+want.Status.String()))
			next = want
		case want.Status != recorded.Status:
			breaks = append(breaks, r.flag(j, seq, ev.GetEventType(), at, breakStamp, fmt.Sprintf("stamped %s, the rules make it %s", recorded.Status, want.Status)))
		case want.Owner != recorded.Owner:
			breaks = append(breaks, r.flag(j, seq, ev.GetEventType(), at, breakStamp, fmt.Sprintf("stamped owner %q, the rules make it %q", recorded.Owner.String(), want.Owner.String())))
		}
	}
	if ev.GetLifecycle() != nil {
		if err := lifecycle.Check(recorded); err != nil {
			breaks = append(breaks, r.flag(j, seq, ev.GetEventType(), at, breakInvariant, err.Error()))
		}
	}
	// Services decide on the stamped state, so the journey goes on from it.
	j.state, j.lastSeq, j.lastType, j.lastAt = next, seq, ev.GetEventType(), at
	r.merges(seq, ev, at)
	return breaks, nil
}

func (r *replayer) journey(id string) *journey {
	j := r.journeys[id]
	if j == nil {
		j = &journey{id: id}
		r.journeys[id] = j
		r.order = append(r.order, id)
	}
	return j
}

// undecodable breaks the journey of lead id at an event that cannot be
// decoded: consumers dead-letter it, and the lead's state stays as it was.
func (r *replayer) undecodable(seq uint64, id, typ string, at time.Time, err error) {
	j := r.journey(id)
	r.res.Events++
	j.started = true
	r.flag(j, seq, typ, at, breakMalformed, err.Error())
	j.lastSeq, j.lastType, j.lastAt = seq, typ, at
}

// finish judges where each lead ended, at judgeAt.
func (r *replayer) finish(judgeAt time.Time) {
	r.res.JudgedAt = judgeAt.UTC()
	for _, id := range r.order {
		j := r.journeys[id]
		st := j.state
		if st.Status.Terminal() || st.Status == lifecycle.StatusNone || st.Deadline.IsZero() {
			continue
		}
		if late := judgeAt.Sub(st.Deadline); late > 0 {
			r.flag(j, j.lastSeq, j.lastType, j.lastAt, breakOverdue, fmt.Sprintf("%s, waiting for %s (owner %s), was due %s: %s late",
				st.Status, lifecycle.NextStep(st, lifecycle.Kind(j.lastType)), orDash(st.Owner.String()), st.Deadline.UTC().Format(time.RFC3339), late.Round(time.Second)))
		}
	}
	r.res.Leads = len(r.order)
	for _, j := range r.journeys {
		if j.broken {
			r.res.Broken++
		}
	}
	ended := func(id string) bool {
		j := r.journeys[id]
		return j != nil && (j.state.Status == lifecycle.StatusMerged || j.state.Status == lifecycle.StatusErased)
	}
	for _, c := range r.candidates {
		if !ended(c.Lead) && !ended(c.Other) {
			r.res.MergeCandidates = append(r.res.MergeCandidates, *c)
		}
	}
	slices.SortFunc(r.res.MergeCandidates, func(a, b mergeCandidate) int { return cmp.Compare(a.Seq, b.Seq) })
}

// replayLead replays one lead from its first event, reporting only what
// falls in the window.
func replayLead(ctx context.Context, o *options, id string, win replayWindow, judgeAt time.Time) (*replayResult, error) {
	recs, err := loadLead(ctx, o, id)
	if err != nil {
		return nil, err
	}
	r := newReplayer()
	// recs is the lead's whole history: a first event appended after an
	// earlier version has nothing before it.
	r.seed = func(string, uint64) (*eventv1.Event, error) { return nil, errNoEarlier }
	for _, rec := range recs {
		at := rec.Time
		if (win.toSeq != 0 && rec.Seq > win.toSeq) || (!win.until.IsZero() && at.After(win.until)) {
			break
		}
		n, unchecked := len(r.res.Breaks), maps.Clone(r.res.Unchecked)
		var pair [2]string
		if c := rec.Event.GetMergeCandidateFound(); c != nil && r.candidates[pairOf(id, c.GetOtherLeadId())] == nil {
			pair = pairOf(id, c.GetOtherLeadId())
		}
		breaks, err := r.apply(rec.Seq, id, rec.Type, rec.Event, at)
		if err != nil {
			return nil, err
		}
		if !win.holds(rec.Seq, at) {
			// Before the window: it only sets the state the window starts
			// from, and counts nothing (a candidate it found included).
			r.res.Breaks, r.res.Events, r.res.Unchecked = r.res.Breaks[:n], r.res.Events-1, unchecked
			delete(r.candidates, pair)
			continue
		}
		if r.res.FromSeq == 0 {
			r.res.FromSeq = rec.Seq
		}
		r.res.ToSeq = rec.Seq
		st := r.journeys[id].state
		r.res.Steps = append(r.res.Steps, replayStep{Seq: rec.Seq, EventType: rec.Event.GetEventType(), At: at.UTC(), Status: st.Status.String(),
			Owner: owner(st.Owner), Deadline: deadline(st.Deadline), Cycle: st.Cycle, Breaks: breaks})
	}
	if r.res.Events == 0 {
		return nil, fmt.Errorf("lead %s has no events in the window", id)
	}
	// Broken only by what the window holds.
	r.journeys[id].broken = len(r.res.Breaks) > 0
	r.finish(judgeAt)
	return r.res, nil
}

// replayStream replays every lead event in the window, in stream order,
// through an ordered consumer, with a progress bar on stderr.
func replayStream(cmd *cobra.Command, o *options, win replayWindow, judgeAt time.Time) (*replayResult, error) {
	ctx := cmd.Context()
	nc, js, err := o.connect()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	ictx, cancel := context.WithTimeout(ctx, o.timeout)
	st, err := js.Stream(ictx, o.stream)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", o.stream, err)
	}
	// What the stream holds now is replayed; what comes later is not.
	end := st.CachedInfo().State.LastSeq
	if win.fromSeq > end+1 { // one past the end is the next run of a chained replay: nothing yet
		return nil, fmt.Errorf("%w: --from-seq %d is past %s's last message, seq %d", errUsage, win.fromSeq, o.stream, end)
	}
	if win.toSeq != 0 {
		end = min(end, win.toSeq)
	}
	store := eventstore.New(js, o.stream)
	r := newReplayer()
	r.seed = func(lead string, seq uint64) (*eventv1.Event, error) {
		raw, err := store.Get(ctx, seq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return nil, errNoEarlier
		case err != nil:
			return nil, err
		case raw.Subject != eventstore.LeadSubject(lead):
			// Another lead's event or a claim: not a state to start from.
			return nil, errNoEarlier
		}
		return eventstore.DecodeEvent(raw.Data)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{eventstore.LeadSubjects}}
	bySeq := win.fromSeq > 0
	if bySeq && !win.since.IsZero() {
		// Both bounds: start from the later. The loop below drops what
		// falls before either, so this only saves reading it.
		raw, err := store.Get(ctx, win.fromSeq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			bySeq = false // gone: the time finds where to start
		case err != nil:
			return nil, fmt.Errorf("read %s at --from-seq %d: %w", o.stream, win.fromSeq, err)
		default:
			bySeq = !raw.Time.Before(win.since)
		}
	}
	switch {
	case bySeq:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, win.fromSeq
	case !win.since.IsZero():
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &win.since
	}
	bar := newProgress(cmd.ErrOrStderr(), "replay", 0)
	r.res.FromSeq = max(win.fromSeq, 1)
	if end == 0 || end < r.res.FromSeq {
		bar.finish(0, "nothing to replay")
		r.finish(judgeAt)
		return r.res, nil
	}
	cons, err := js.OrderedConsumer(ctx, o.stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", o.stream, err)
	}
	ictx, cancel = context.WithTimeout(ctx, o.timeout)
	info, err := cons.Info(ictx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", o.stream, err)
	}
	pending := info.NumPending
	first := true
	// Progress counts stream sequences from the first message read, to
	// the end as the bar's whole, first line to last.
	var base uint64
	stop := end // the last sequence the replay covered
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 256)), jetstream.FetchMaxWait(o.timeout))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", o.stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			seq := meta.Sequence.Stream
			pending = meta.NumPending
			if base == 0 {
				base = seq
			}
			if seq > end || (!win.until.IsZero() && meta.Timestamp.After(win.until)) {
				pending, stop = 0, min(seq-1, end)
				break
			}
			bar.set(int64(seq-base+1), int64(end-base+1), "")
			// The consumer starts at one bound; an event before the other
			// (stored before --since, or before --from-seq) is not replayed.
			if !win.holds(seq, meta.Timestamp) {
				continue
			}
			if first {
				first = false
				r.res.FromSeq = seq
			}
			r.res.ToSeq = seq
			typ := m.Headers().Get(eventstore.HeaderType)
			if typ == "Claim" {
				continue
			}
			lead := eventstore.LeadID(m.Subject())
			ev, err := eventstore.DecodeEvent(m.Data())
			if err != nil {
				r.undecodable(seq, lead, typ, meta.Timestamp, err)
				continue
			}
			if _, err := r.apply(seq, lead, typ, ev, meta.Timestamp); err != nil {
				return nil, err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("read %s: %w", o.stream, err)
		}
		if got == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("read %s: no event came within %s though %d are pending", o.stream, o.timeout, pending)
		}
	}
	done := int64(0)
	if base != 0 && stop >= base {
		done = int64(stop - base + 1)
	}
	bar.complete(done, fmt.Sprintf("%d events of %d leads", r.res.Events, len(r.order)))
	r.finish(judgeAt)
	return r.res, nil
}

func writeReplay(w io.Writer, res *replayResult, one bool, limit int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if one {
		fmt.Fprintln(tw, "SEQ\tSTORED\tEVENT\tSTATUS\tOWNER\tDEADLINE\tCYCLE\tCHECK")
		for _, s := range res.Steps {
			check := "ok"
			if len(s.Breaks) > 0 {
				check = strings.Join(s.Breaks, "; ")
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Seq, s.At.Format(time.DateTime), s.EventType, s.Status, orDash(s.Owner), orDash(s.Deadline), s.Cycle, check)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "replayed %d events of %d leads (stream seq %d to %d) in %s, judged at %s: %d leads broke\n",
		res.Events, res.Leads, res.FromSeq, res.ToSeq, time.Duration(res.Seconds*float64(time.Second)).Round(time.Millisecond),
		res.JudgedAt.Format(time.RFC3339), res.Broken)
	if len(res.Unchecked) > 0 {
		var parts []string
		for t, n := range res.Unchecked {
			parts = append(parts, fmt.Sprintf("%s %d", t, n))
		}
		slices.Sort(parts)
		fmt.Fprintf(w, "not steps of the state machine, taken as stamped: %s\n", strings.Join(parts, ", "))
	}
	if n := len(res.MergeCandidates); n > 0 && !one {
		fmt.Fprintf(w, "%d open merge candidate(s): two leads hold one person's identities; to join them, leadctl merge <survivor> <absorbed> --reason <why>\n", n)
		fmt.Fprintln(tw, "LEAD\tOTHER LEAD\tIDENTITY\tSEQ\tFOUND")
		for _, c := range res.MergeCandidates {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", c.Lead, c.Other, c.Identity, c.Seq, c.At.Format(time.DateTime))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(res.Breaks) == 0 || one {
		if one && len(res.Breaks) > 0 {
			for _, b := range res.Breaks {
				if b.Kind == breakOverdue {
					fmt.Fprintf(w, "ends overdue: %s\n", b.Detail)
				}
			}
		}
		return nil
	}
	fmt.Fprintln(tw, "\nLEAD\tSEQ\tEVENT\tRECORDED\tBREAK\tDETAIL")
	for i, b := range res.Breaks {
		if limit > 0 && i == limit {
			fmt.Fprintf(tw, "… %d more (--limit 0 or -o json lists them all)\n", len(res.Breaks)-limit)
			break
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", b.Lead, b.Seq, b.EventType, b.At.UTC().Format(time.DateTime), b.Kind, b.Detail)
	}
	return tw.Flush()
}
