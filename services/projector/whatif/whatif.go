// Package whatif replays a proposed scoring model over past leads and
// compares it with the active one, judged by what really happened to
// those leads (won, rejected). It is pure: the caller feeds it the
// stream; the scoring is qualification's own scoring.Score, with the facts
// and the time qualification uses, so "active" here is what the live
// scorer would say with the active version. It is not what was said
// then: a lead scored under an earlier version may have gone otherwise,
// so over a period before the active version's activation the active
// column may differ from the funnel. Both columns are one model each,
// replayed over the same facts.
package whatif

import (
	"cmp"
	"slices"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/projector/lead"
)

// Versions is the scoring model's history: every proposed version, the
// activated ones, and the active one (0: none).
type Versions struct {
	Models    map[uint32]scoring.Model
	Activated map[uint32]bool
	Active    uint32
}

// Fold reads the events of subject model.scoring, in order.
func (v *Versions) Fold(ev *eventv1.Event) {
	if v.Models == nil {
		v.Models, v.Activated = map[uint32]scoring.Model{}, map[uint32]bool{}
	}
	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_ScoringModelProposed:
		m := scoring.FromProto(p.ScoringModelProposed.GetModel())
		v.Models[m.Version] = m
	case *eventv1.Event_ScoringModelActivated:
		v.Activated[p.ScoringModelActivated.GetVersion()] = true
		v.Active = p.ScoringModelActivated.GetVersion()
	}
}

// Row compares the two versions on some leads.
type Row struct {
	// Campaign is the leads' first-touch campaign, "" for none.
	Campaign     string
	Leads        int64
	MQLsActive   int64
	MQLsProposed int64
	// Gained: qualified by the proposal only. Lost: by the active only.
	Gained int64
	Lost   int64
	// Of the leads that became won deals, how many the proposal
	// qualifies in a journey that was won (WonQualified) and how many
	// it misses (WonMissed).
	Won          int64
	WonQualified int64
	WonMissed    int64
	// Of the leads sales rejected, how many the proposal keeps out: it
	// qualifies none of the journeys sales rejected.
	Rejected        int64
	RejectedKeptOut int64
}

// Result is a what-if's answer: a row per campaign (by campaign id) and
// the total.
type Result struct {
	Campaigns []Row
	Total     Row
}

// Replay compares two versions over the leads captured in a period.
type Replay struct {
	active   *scoring.Model
	proposed scoring.Model
	from, to time.Time
	leads    map[string]*leadState
	seq      uint64 // events applied: their order, for ties
	// wait is how long a new lead waits for engagement after a score
	// (qualification's -engage-within), as the latest capture's first
	// live score gave it (0 until one is read: the default policy's).
	wait time.Duration
}

type leadState struct {
	in bool // captured in the period
	// capture is its LeadCaptured's id, and wait the wait for engagement
	// its score gave (0: unknown).
	capture string
	wait    time.Duration
	// campaign is the first touch (at campaignAt) before the first
	// opportunity (at oppAt), by when each happened.
	campaign   string
	campaignAt time.Time
	// via are the touches that came through leads merged into this one,
	// and own the first of its own while there are any, as the read
	// model keeps them.
	via   []lead.TouchAt
	own   *lead.TouchAt
	opp   bool
	oppAt time.Time
	facts scoring.FactsFold
	// acted: sales took the lead on (accepted, rejected, converted), or
	// a person disqualified it for good: scoring after that decided
	// nothing, under any version.
	acted    bool
	active   verdict
	proposed verdict
	won      bool
	rejected bool
	// wonIn, rejectedIn: a journey the proposal qualified ended won, was
	// rejected. Each outcome is judged by its own journey's verdict: a
	// deal of a later journey the proposal never qualified is one it
	// misses, whatever it made of an earlier one.
	wonIn, rejectedIn bool
	// merged: absorbed into another lead, so not a lead of its own, as
	// the reports count leads.
	merged bool
	// nurtured: in nurture (recycled, enrolled) whatever the version:
	// as live, only the score of a re-engagement may qualify it; other
	// triggers may only disqualify it.
	nurtured bool
	// ruleNotNow: the lead's latest way to nurture is a rule's "not
	// now", the active version's verdict, which each version's replay
	// decides for itself.
	ruleNotNow bool
}

// verdict is what a version made of the lead: qualified (in any
// journey; journey: in the current one), out for good, or sent to
// nurture by one of its "not now" rules, or by the wait for engagement
// that ran out since its last score (last).
type verdict struct {
	qualified, journey, out, nurtured bool
	last                              time.Time
}

// New returns a replay of proposed against active (nil: no version is
// active, so none qualifies) over leads captured in [from, to) (a zero
// side is open).
func New(active *scoring.Model, proposed scoring.Model, from, to time.Time) *Replay {
	return &Replay{active: active, proposed: proposed, from: from, to: to, leads: map[string]*leadState{}}
}

// Apply folds one lead event, in stream order. A lead counts only when
// its capture is seen: one captured before the replay's start is ignored.
func (r *Replay) Apply(leadID string, ev *eventv1.Event) {
	r.seq++
	l := r.leads[leadID]
	if l == nil {
		c := ev.GetLeadCaptured()
		if c == nil {
			r.leads[leadID] = &leadState{}
			return
		}
		at := occurred(ev)
		l = &leadState{in: (r.from.IsZero() || !at.Before(r.from)) && (r.to.IsZero() || at.Before(r.to)), capture: ev.GetEventId()}
		r.leads[leadID] = l
	}
	// The wait in force: the deadline a capture's first score set (a
	// re-score keeps one, so it says less).
	if lc := ev.GetLifecycle(); ev.GetLeadScored() != nil && ev.GetCausationId() == l.capture && l.capture != "" &&
		lc.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_NEW && lc.GetDeadline() != nil {
		l.wait = lc.GetDeadline().AsTime().Sub(ev.GetRecordedAt().AsTime())
		r.wait = l.wait
	}
	if !l.in {
		return
	}
	l.facts.Apply(ev)
	trigger := false
	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_LeadCaptured:
		l.touch(lead.TouchAt{Campaign: p.LeadCaptured.GetAttribution().GetCampaignId(), At: occurred(ev), Seq: r.seq}, "")
		trigger = true
	case *eventv1.Event_LeadResubmitted:
		rs := p.LeadResubmitted
		l.touchOf(lead.TouchAt{Event: ev.GetEventId(), Campaign: rs.GetAttribution().GetCampaignId(), At: occurred(ev), Seq: r.seq},
			rs.GetMergedFrom(), rs.GetGivenBackBy(), rs.GetGivenBackEventId())
		trigger = true
	case *eventv1.Event_ActivityRecorded:
		a := p.ActivityRecorded
		l.touchOf(lead.TouchAt{Event: ev.GetEventId(), Campaign: lead.ActivityCampaign(a), At: occurred(ev), Seq: r.seq},
			a.GetMergedFrom(), a.GetGivenBackBy(), a.GetGivenBackEventId())
		trigger = true
	case *eventv1.Event_ConsentChanged:
		trigger = true
	case *eventv1.Event_LeadReengaged:
		trigger = true
	case *eventv1.Event_LeadRecycled, *eventv1.Event_NurtureEnrolled:
		// Back to nurture after sales had it: a new cycle, whose
		// re-engagement may qualify it again, as live. One a rule's "not
		// now" sent there is in nurture only under a version that says
		// so, until it comes back to nurture another way.
		if r := ev.GetLeadRecycled(); r != nil && r.GetCause() != eventv1.RecycleCause_RECYCLE_CAUSE_NOT_READY {
			l.ruleNotNow = false
		}
		if l.acted || l.active.journey || ev.GetLeadRecycled().GetCause() == eventv1.RecycleCause_RECYCLE_CAUSE_MANUAL {
			// Back from sales, or sent back by a person: the journey
			// ended under every version, and each qualifies the next
			// one afresh.
			l.active.journey, l.proposed.journey = false, false
		}
		l.nurtured, l.acted = l.nurtured || !l.ruleNotNow, false
	case *eventv1.Event_LeadAccepted, *eventv1.Event_DealLost:
		l.acted = true
	case *eventv1.Event_LeadRejected:
		l.acted, l.rejected = true, true
		l.rejectedIn = l.rejectedIn || l.proposed.journey
	case *eventv1.Event_OpportunityCreated:
		if !l.opp {
			l.oppAt = occurred(ev)
		}
		l.acted, l.opp = true, true
	case *eventv1.Event_LeadDisqualified:
		// A rule's verdict is the active version's, which the replay
		// scores itself; a person's ends the lead whatever the version.
		switch d := p.LeadDisqualified; {
		case d.GetNotNow() && d.GetRuleId() != "":
			l.ruleNotNow = true
		case d.GetNotNow():
			// A person's: in nurture under any version, whichever had
			// qualified the journey it ends.
			l.nurtured, l.ruleNotNow = true, false
			l.active.journey, l.proposed.journey = false, false
		case d.GetRuleId() == "":
			l.acted = true
		}
	case *eventv1.Event_DealWon:
		l.acted, l.won = true, true
		l.wonIn = l.wonIn || l.proposed.journey
	case *eventv1.Event_LeadMerged, *eventv1.Event_LeadUnmerged:
		switch u := ev.GetLeadUnmerged(); {
		case !envelope.SurvivorSide(ev):
			l.merged = ev.GetLeadMerged() != nil
			if u != nil && ev.GetLifecycle().GetStatus() == eventv1.LeadStatus_LEAD_STATUS_NEW {
				// As live: given back new, the scores of what comes back
				// start its wait for engagement again.
				l.active.restart(ev.GetRecordedAt().AsTime())
				l.proposed.restart(ev.GetRecordedAt().AsTime())
			}
		case u != nil:
			// As live: the survivor is scored on its own facts again.
			l.untouch(u.GetGivenBackEventIds())
			trigger = true
		default:
			// As live: the survivor is scored on both leads' facts, when
			// its LeadMerged carries them.
			trigger = scoring.Absorbs(ev)
		}
	}
	if !trigger || l.acted {
		return
	}
	// As the live scorer does: facts as of the trigger, decay up to the
	// time it was recorded.
	at := ev.GetRecordedAt().AsTime()
	reengaged := ev.GetLeadReengaged() != nil
	w := wait{cmp.Or(l.wait, r.wait, lifecycle.DefaultPolicy().EngageWithin), ev.GetLeadUnmerged() != nil}
	if r.active != nil {
		l.active.score(*r.active, l.facts.Facts, at, l.nurtured, reengaged, w)
	}
	l.proposed.score(r.proposed, l.facts.Facts, at, l.nurtured, reengaged, w)
}

// wait is the wait for engagement a score starts (keep: none, as the
// survivor's score at an unmerge keeps its deadline live).
type wait struct {
	within time.Duration
	keep   bool
}

func (v *verdict) score(m scoring.Model, f scoring.Facts, at time.Time, nurtured, reengaged bool, w wait) {
	if v.journey || v.out {
		return
	}
	// As live, a lead no score qualified waits for engagement until the
	// wait after its last score, then nurture recycles it (cause
	// NOT_QUALIFIED): only a re-engagement qualifies it after that, also
	// where the stream shows another version's way (its "not now", its
	// final rule) and no recycle.
	if !v.last.IsZero() && at.Sub(v.last) > w.within {
		v.nurtured = true
	}
	if !w.keep || v.last.IsZero() {
		v.last = at
	}
	res := scoring.Score(m, f, at)
	if d := res.Disqualify; d != nil && d.NotNow && (nurtured || v.nurtured) {
		// As live: in nurture already, a "not now" qualifies nothing
		// and only a final rule ends it.
		v.out = scoring.Final(m, f) != nil
		return
	}
	switch {
	case res.Disqualify != nil && !res.Disqualify.NotNow:
		v.out = true // disqualified for good: never an MQL under m
	case res.Disqualify != nil:
		v.nurtured = true // not now: to nurture, under m
	case (reengaged || !nurtured && !v.nurtured) && res.Qualifies(m):
		v.qualified, v.journey = true, true
	}
}

// restart starts the wait for engagement again at at, for a lead a
// score has not yet decided.
func (v *verdict) restart(at time.Time) {
	if !v.last.IsZero() {
		v.last = at
	}
}

// touch keeps the first campaign that touched the lead before it became
// an opportunity, by when the touches happened, as the read model's
// first-touch attribution does (lead.Lead). via names the merged lead it
// came through, "" for the lead's own.
func (l *leadState) touch(t lead.TouchAt, via string) {
	if t.Campaign == "" || (l.opp && !t.At.Before(l.oppAt)) {
		return
	}
	first := lead.TouchAt{Campaign: l.campaign, At: l.campaignAt}
	switch {
	case via != "" && l.own == nil:
		own := first // every touch so far was its own, and came before this one
		l.own = &own
	case via == "" && l.own != nil && (l.own.Campaign == "" || l.own.After(t)):
		*l.own = t
	}
	if via != "" {
		l.via = append(l.via, t)
	}
	if l.campaign == "" || t.At.Before(l.campaignAt) {
		l.campaign, l.campaignAt = t.Campaign, t.At
	}
}

// touchOf counts the touch of a submission or activity: a replay an
// unmerge gave back only if it names the event it replays.
func (l *leadState) touchOf(t lead.TouchAt, via, givenBackBy, givenBackEventID string) {
	if givenBackBy == "" || givenBackEventID != "" {
		l.touch(t, via)
	}
}

// untouch takes back the touches of the events an unmerge gave back.
func (l *leadState) untouch(gone []string) {
	kept := l.via[:0]
	for _, v := range l.via {
		if !slices.Contains(gone, v.Event) {
			kept = append(kept, v)
		}
	}
	if len(kept) == len(l.via) {
		return
	}
	first := *l.own
	for _, v := range kept {
		if first.Campaign == "" || first.After(v) {
			first = v
		}
	}
	l.campaign, l.campaignAt = first.Campaign, first.At
	l.via = kept
	if len(kept) == 0 {
		l.via, l.own = nil, nil
	}
}

func occurred(ev *eventv1.Event) time.Time {
	if t := ev.GetOccurredAt(); t != nil {
		return t.AsTime()
	}
	return ev.GetRecordedAt().AsTime()
}

// Leads is how many leads of the period the replay has seen.
func (r *Replay) Leads() int {
	n := 0
	for _, l := range r.leads {
		if l.in {
			n++
		}
	}
	return n
}

// Result counts what the replay found, per campaign and in total; a lead
// merged into another is not counted.
func (r *Replay) Result() Result {
	rows := map[string]*Row{}
	var total Row
	for _, l := range r.leads {
		if !l.in || l.merged {
			continue
		}
		row := rows[l.campaign]
		if row == nil {
			row = &Row{Campaign: l.campaign}
			rows[l.campaign] = row
		}
		for _, x := range []*Row{row, &total} {
			x.add(l)
		}
	}
	out := Result{Total: total}
	for _, row := range rows {
		out.Campaigns = append(out.Campaigns, *row)
	}
	slices.SortFunc(out.Campaigns, func(a, b Row) int { return cmp.Compare(a.Campaign, b.Campaign) })
	return out
}

func (x *Row) add(l *leadState) {
	b := func(v bool) int64 {
		if v {
			return 1
		}
		return 0
	}
	a, p := l.active.qualified, l.proposed.qualified
	x.Leads++
	x.MQLsActive += b(a)
	x.MQLsProposed += b(p)
	x.Gained += b(p && !a)
	x.Lost += b(a && !p)
	x.Won += b(l.won)
	x.WonQualified += b(l.won && l.wonIn)
	x.WonMissed += b(l.won && !l.wonIn)
	x.Rejected += b(l.rejected)
	x.RejectedKeptOut += b(l.rejected && !l.rejectedIn)
}
