// Package lead is the projector's fold of one lead: what the read model
// keeps of a lead, built from its events in order. It is pure, no I/O
// and no clock: the same events give the same Lead, live or in a rebuild,
// which is what makes the two agree.
//
// Stage milestones follow the lifecycle status every lead event carries
// (the state after it), so they do not depend on any one service's
// payloads; the payloads add the details (segment, rep, amounts).
package lead

import (
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Lead is one lead in the read model. Times are the events' occurred_at,
// in UTC; zero means never, and is left out of the stored fold (most are
// zero, and writing them was a third of a rebuild's JSON encoding).
type Lead struct {
	ID      string `json:"id"`
	Version uint64 `json:"version"`

	Status    eventv1.LeadStatus `json:"status"`
	OwnerKind eventv1.OwnerKind  `json:"owner_kind,omitempty"`
	OwnerID   string             `json:"owner_id,omitempty"`
	Deadline  time.Time          `json:"deadline,omitzero"`
	Score     int                `json:"score,omitempty"`

	CapturedAt time.Time `json:"captured_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
	Source     string    `json:"source,omitempty"`

	// Campaign touches that happened before the first opportunity, first
	// and last by when they happened (FirstTouchAt, LastTouchAt).
	FirstCampaign string    `json:"first_campaign,omitempty"`
	LastCampaign  string    `json:"last_campaign,omitempty"`
	FirstTouchAt  time.Time `json:"first_touch_at,omitzero"`
	LastTouchAt   time.Time `json:"last_touch_at,omitzero"`
	TouchCount    int       `json:"touch_count,omitempty"`
	Touches       Touches   `json:"touches,omitempty"`
	// Via are the touches counted here that came through a lead merged
	// into this one (another person's), and Own the first and last of
	// this lead's own touches while there are any: an unmerge takes back
	// those of the events it names as given back, and leaves the rest.
	Via []TouchAt   `json:"via,omitempty"`
	Own *OwnTouches `json:"own,omitempty"`

	Country     string            `json:"country,omitempty"`
	Industry    string            `json:"industry,omitempty"`
	Seniority   eventv1.Seniority `json:"seniority,omitempty"`
	Employees   int               `json:"employees,omitempty"`
	EmailDomain string            `json:"email_domain,omitempty"`

	// Forms is what its forms said, once one came through a merged lead:
	// an unmerge takes that lead's answers back (coarse fields only).
	Forms envelope.Forms `json:"forms,omitzero"`

	Segment    string `json:"segment,omitempty"`
	AccountID  string `json:"account_id,omitempty"`
	RepID      string `json:"rep_id,omitempty"`
	MergedInto string `json:"merged_into,omitempty"`

	// Cycle is the lead's journey cycle (Lifecycle.cycle: 1 from capture,
	// one more each time it qualifies again after nurture). For events
	// written before the lifecycle carried it, each MQL starts the next.
	Cycle int `json:"cycle,omitempty"`

	// First time the lead reached each status.
	MQLAt          time.Time `json:"mql_at,omitzero"`
	AssignedAt     time.Time `json:"assigned_at,omitzero"`
	AcceptedAt     time.Time `json:"accepted_at,omitzero"`
	OpportunityAt  time.Time `json:"opportunity_at,omitzero"`
	WonAt          time.Time `json:"won_at,omitzero"`
	LostAt         time.Time `json:"lost_at,omitzero"`
	RecycledAt     time.Time `json:"recycled_at,omitzero"`
	DisqualifiedAt time.Time `json:"disqualified_at,omitzero"`

	Attempts int `json:"attempts,omitempty"`
	Breaches int `json:"breaches,omitempty"`

	Stages        []Stage       `json:"stages,omitempty"`
	Journeys      []Journey     `json:"journeys,omitempty"`
	Handoffs      []Handoff     `json:"handoffs,omitempty"`
	Opportunities []Opportunity `json:"opportunities,omitempty"`
	BreachList    []Breach      `json:"breach_list,omitempty"`
}

// TouchAt is one touch: its campaign, when it happened, and the event
// (id, stream sequence) that brought it.
type TouchAt struct {
	Event    string    `json:"event,omitempty"`
	Seq      uint64    `json:"seq,omitempty"`
	Campaign string    `json:"campaign"`
	At       time.Time `json:"at,omitzero"`
}

// After reports whether t comes after u: it happened later, or at the
// same time and was recorded later.
func (t TouchAt) After(u TouchAt) bool {
	return t.At.After(u.At) || (t.At.Equal(u.At) && t.Seq > u.Seq)
}

// OwnTouches are the first and last of a lead's own touches.
type OwnTouches struct {
	First TouchAt `json:"first"`
	Last  TouchAt `json:"last"`
}

// Stage is one stay in a status, from the event that entered it.
type Stage struct {
	Seq     uint64             `json:"seq"`
	Status  eventv1.LeadStatus `json:"status"`
	Entered time.Time          `json:"entered,omitzero"`
	Left    time.Time          `json:"left,omitzero"`
	Dirty   bool               `json:"-"`
}

// Journey is one cycle from becoming an MQL on.
type Journey struct {
	Cycle         int                  `json:"cycle"`
	MQLAt         time.Time            `json:"mql_at,omitzero"`
	Segment       string               `json:"segment,omitempty"`
	AssignedAt    time.Time            `json:"assigned_at,omitzero"`
	AcceptedAt    time.Time            `json:"accepted_at,omitzero"`
	RejectedAt    time.Time            `json:"rejected_at,omitzero"`
	RejectReason  eventv1.RejectReason `json:"reject_reason,omitempty"`
	OpportunityAt time.Time            `json:"opportunity_at,omitzero"`
	WonAt         time.Time            `json:"won_at,omitzero"`
	LostAt        time.Time            `json:"lost_at,omitzero"`
	RecycledAt    time.Time            `json:"recycled_at,omitzero"`
	Dirty         bool                 `json:"-"`
}

// Handoff is one assignment to a rep, from LeadAssigned or
// LeadReassigned until the next one (or until a reassignment to a
// queue).
type Handoff struct {
	Seq                   uint64    `json:"seq"`
	Cycle                 int       `json:"cycle"`
	RepID                 string    `json:"rep_id"`
	Segment               string    `json:"segment,omitempty"`
	AssignedAt            time.Time `json:"assigned_at,omitzero"`
	AcceptBy              time.Time `json:"accept_by,omitzero"`
	AcceptedAt            time.Time `json:"accepted_at,omitzero"`
	AcceptedWithinSLA     bool      `json:"accepted_within_sla,omitempty"`
	ContactBy             time.Time `json:"contact_by,omitzero"`
	FirstAttemptAt        time.Time `json:"first_attempt_at,omitzero"`
	FirstAttemptWithinSLA bool      `json:"first_attempt_within_sla,omitempty"`
	Attempts              int       `json:"attempts,omitempty"`
	EndedAt               time.Time `json:"ended_at,omitzero"`
	Dirty                 bool      `json:"-"`
}

// Opportunity is one CRM opportunity.
type Opportunity struct {
	ID            string    `json:"id"`
	Seq           uint64    `json:"seq"`
	Cycle         int       `json:"cycle"`
	Currency      string    `json:"currency,omitempty"`
	AmountMinor   int64     `json:"amount_minor,omitempty"`
	Stage         string    `json:"stage,omitempty"`
	RepID         string    `json:"rep_id,omitempty"`
	Segment       string    `json:"segment,omitempty"`
	CreatedAt     time.Time `json:"created_at,omitzero"`
	ExpectedClose time.Time `json:"expected_close,omitzero"`
	WonAt         time.Time `json:"won_at,omitzero"`
	WonCurrency   string    `json:"won_currency,omitempty"`
	WonMinor      int64     `json:"won_minor,omitempty"`
	LostAt        time.Time `json:"lost_at,omitzero"`
	LossReason    string    `json:"loss_reason,omitempty"`
	Dirty         bool      `json:"-"`
}

// Breach is one SLA breach.
type Breach struct {
	Seq       uint64            `json:"seq"`
	SLA       eventv1.SLAKind   `json:"sla"`
	OwnerKind eventv1.OwnerKind `json:"owner_kind"`
	OwnerID   string            `json:"owner_id"`
	Segment   string            `json:"segment,omitempty"`
	DueAt     time.Time         `json:"due_at,omitzero"`
	At        time.Time         `json:"at,omitzero"`
	Dirty     bool              `json:"-"`
}

// New returns the fold of a lead without events.
func New(id string) *Lead { return &Lead{ID: id} }

// Apply folds one event of the lead, stored at stream sequence seq. It
// never fails: an event is a fact; one that says nothing the read model
// keeps only moves the version.
func (l *Lead) Apply(seq uint64, ev *eventv1.Event) {
	at := when(ev)
	l.Version = seq
	// When the stream recorded its last change: a late sync's event
	// (occurred hours ago) is a change now, for a "changed since" reader.
	if rec := timeOf(ev.GetRecordedAt()); rec.After(l.UpdatedAt) {
		l.UpdatedAt = rec
	} else if rec.IsZero() && at.After(l.UpdatedAt) {
		l.UpdatedAt = at
	}
	before := l.Status
	cycle := 0 // the cycle the event carries, if it does
	if lc := ev.GetLifecycle(); lc != nil {
		l.Status = lc.GetStatus()
		l.OwnerKind, l.OwnerID = lc.GetOwner().GetKind(), lc.GetOwner().GetId()
		l.Deadline = timeOf(lc.GetDeadline())
		l.Score = int(lc.GetScore())
		cycle = int(lc.GetCycle())
	}
	if l.Status != before {
		l.enter(seq, before, at, cycle)
	}
	if cycle > 0 {
		l.Cycle = cycle
	}
	if envelope.Check(ev, l.ID, "") != nil {
		return // not this lead's (docs/events.md): its lifecycle stands, nothing else
	}

	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_LeadCaptured:
		c := p.LeadCaptured
		if l.CapturedAt.IsZero() {
			l.CapturedAt = at
		}
		l.Source = c.GetAttribution().GetSource()
		l.profile(c.GetProfile())
		l.touch(TouchAt{Seq: seq, Campaign: c.GetAttribution().GetCampaignId(), At: at}, "")
	case *eventv1.Event_LeadResubmitted:
		r := p.LeadResubmitted
		l.Forms.Add(l.coarse(), r.GetMergedFrom(), coarse(r.GetProfile()))
		l.profile(r.GetProfile())
		l.touchOf(TouchAt{Event: ev.GetEventId(), Seq: seq, Campaign: r.GetAttribution().GetCampaignId(), At: at},
			r.GetMergedFrom(), r.GetGivenBackBy(), r.GetGivenBackEventId())
	case *eventv1.Event_ActivityRecorded:
		a := p.ActivityRecorded
		l.touchOf(TouchAt{Event: ev.GetEventId(), Seq: seq, Campaign: ActivityCampaign(a), At: at},
			a.GetMergedFrom(), a.GetGivenBackBy(), a.GetGivenBackEventId())
	case *eventv1.Event_LeadMerged:
		if s := p.LeadMerged.GetSurvivorLeadId(); s != l.ID {
			l.MergedInto = s
		}
	case *eventv1.Event_LeadUnmerged:
		u := p.LeadUnmerged
		if u.GetAbsorbedLeadId() == l.ID {
			l.MergedInto = ""
		} else {
			if back, ok := l.Forms.GiveBack(u); ok {
				l.Country, l.Industry, l.EmailDomain, l.Seniority, l.Employees = "", "", "", 0, 0
				l.profile(back)
			}
			l.untouch(u.GetGivenBackEventIds())
		}

	case *eventv1.Event_LeadAssigned:
		a := p.LeadAssigned
		l.segment(a.GetSegment())
		if id := a.GetAccountId(); id != "" {
			l.AccountID = id
		} else if id := a.GetDecision().GetAccountId(); id != "" {
			l.AccountID = id
		}
		l.startHandoff(seq, a.GetOwner().GetId(), a.GetSegment(), at, timeOf(a.GetAcceptBy()))
	case *eventv1.Event_LeadQueued:
		// Queued (off shift, no rep free, no rule matched): routing
		// decided its segment and account already.
		d := p.LeadQueued.GetDecision()
		l.segment(d.GetSegment())
		if id := d.GetAccountId(); id != "" {
			l.AccountID = id
		}
	case *eventv1.Event_LeadReassigned:
		r := p.LeadReassigned
		l.segment(r.GetSegment())
		if before == eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY {
			// An open deal changing hands (its rep left): no hand-off to
			// accept, so no SLA row; the deal and the lead are the new
			// rep's from here.
			l.RepID = r.GetTo().GetId()
			for i := range l.Opportunities {
				if o := &l.Opportunities[i]; o.WonAt.IsZero() && o.LostAt.IsZero() {
					o.RepID, o.Dirty = l.RepID, true
				}
			}
			break
		}
		if r.GetTo().GetKind() == eventv1.OwnerKind_OWNER_KIND_QUEUE {
			// An escalation to a manager's queue: no rep holds it until the
			// manager hands it on.
			l.endHandoff(at)
			break
		}
		l.startHandoff(seq, r.GetTo().GetId(), r.GetSegment(), at, timeOf(r.GetAcceptBy()))
	case *eventv1.Event_LeadAccepted:
		a := p.LeadAccepted
		l.segment(a.GetSegment())
		if h := l.handoff(); h != nil && h.AcceptedAt.IsZero() {
			by := timeOf(a.GetAcceptBy())
			if by.IsZero() {
				by = h.AcceptBy
			}
			h.AcceptedAt = at
			h.AcceptedWithinSLA = by.IsZero() || !at.After(by)
			h.ContactBy = timeOf(a.GetContactBy())
			h.Dirty = true
		}
	case *eventv1.Event_LeadRejected:
		r := p.LeadRejected
		l.segment(r.GetSegment())
		if j := l.journey(); j != nil && j.RejectedAt.IsZero() {
			j.RejectedAt, j.RejectReason, j.Dirty = at, r.GetReason(), true
		}
		l.endHandoff(at)
	case *eventv1.Event_ContactAttempted:
		l.Attempts++
		if h := l.handoff(); h != nil {
			h.Attempts++
			if h.FirstAttemptAt.IsZero() {
				h.FirstAttemptAt = at
				h.FirstAttemptWithinSLA = h.ContactBy.IsZero() || !at.After(h.ContactBy)
			}
			h.Dirty = true
		}
	case *eventv1.Event_SlaBreached:
		b := p.SlaBreached
		l.Breaches++
		l.BreachList = append(l.BreachList, Breach{Seq: seq, SLA: b.GetSla(), OwnerKind: b.GetOwner().GetKind(), OwnerID: b.GetOwner().GetId(),
			Segment: b.GetSegment(), DueAt: timeOf(b.GetDueAt()), At: at, Dirty: true})
	case *eventv1.Event_OpportunityCreated:
		o := p.OpportunityCreated
		l.segment(o.GetSegment())
		l.Opportunities = append(l.Opportunities, Opportunity{ID: o.GetOpportunityId(), Seq: seq, Cycle: l.Cycle,
			Currency: o.GetAmount().GetCurrency(), AmountMinor: o.GetAmount().GetMinorUnits(), Stage: o.GetStage(),
			RepID: o.GetRepId(), Segment: o.GetSegment(), CreatedAt: at, ExpectedClose: timeOf(o.GetExpectedClose()), Dirty: true})
		l.endHandoff(at)
	case *eventv1.Event_OpportunityStageChanged:
		s := p.OpportunityStageChanged
		if o := l.opportunity(s.GetOpportunityId()); o != nil {
			o.Stage = s.GetToStage()
			if m := s.GetAmount(); m != nil {
				o.Currency, o.AmountMinor = m.GetCurrency(), m.GetMinorUnits()
			}
			if c := s.GetExpectedClose(); c != nil {
				o.ExpectedClose = c.AsTime()
			}
			o.Dirty = true
		}
	case *eventv1.Event_DealWon:
		w := p.DealWon
		l.segment(w.GetSegment())
		if o := l.opportunity(w.GetOpportunityId()); o != nil && o.WonAt.IsZero() {
			o.WonAt, o.WonCurrency, o.WonMinor = at, o.Currency, o.AmountMinor
			if m := w.GetAmount(); m != nil {
				o.WonCurrency, o.WonMinor = m.GetCurrency(), m.GetMinorUnits()
			}
			o.Dirty = true
		}
	case *eventv1.Event_DealLost:
		d := p.DealLost
		l.segment(d.GetSegment())
		if o := l.opportunity(d.GetOpportunityId()); o != nil && o.LostAt.IsZero() {
			o.LostAt, o.LossReason, o.Dirty = at, d.GetReason(), true
		}
	}
}

// enter records a change of status: the stay in the old one ends, one in
// the new begins, and milestones and journeys move on.
func (l *Lead) enter(seq uint64, from eventv1.LeadStatus, at time.Time, cycle int) {
	// A step dated before the stay it ends began (a form's clock ahead of
	// the scorer's, within the minutes intake allows) is taken as made at
	// its start: no stay lasts less than nothing, no milestone comes
	// before the one it follows.
	if n := len(l.Stages); n > 0 && at.Before(l.Stages[n-1].Entered) {
		at = l.Stages[n-1].Entered
	}
	if n := len(l.Stages); n > 0 && l.Stages[n-1].Left.IsZero() {
		l.Stages[n-1].Left, l.Stages[n-1].Dirty = at, true
	}
	l.Stages = append(l.Stages, Stage{Seq: seq, Status: l.Status, Entered: at, Dirty: true})
	switch l.Status {
	case eventv1.LeadStatus_LEAD_STATUS_ASSIGNED, eventv1.LeadStatus_LEAD_STATUS_ACCEPTED, eventv1.LeadStatus_LEAD_STATUS_MERGED:
		// Still the rep's (a merged lead counts nowhere; an unmerge gives
		// it back as it was).
	default:
		// Out of the rep's hands (recycled, erased, disqualified,
		// converted): a deadline after this is not the rep's to miss.
		l.endHandoff(at)
	}
	first := func(t *time.Time) {
		if t.IsZero() {
			*t = at
		}
	}
	j := l.journey()
	switch l.Status {
	case eventv1.LeadStatus_LEAD_STATUS_MQL:
		first(&l.MQLAt)
		if cycle == 0 {
			cycle = len(l.Journeys) + 1
		}
		if j == nil || j.Cycle != cycle {
			// A new journey's segment is its own routing's, none before.
			l.Cycle, l.Segment = cycle, ""
			l.Journeys = append(l.Journeys, Journey{Cycle: cycle, MQLAt: at, Dirty: true})
		}
	case eventv1.LeadStatus_LEAD_STATUS_ASSIGNED:
		first(&l.AssignedAt)
		if j != nil && j.AssignedAt.IsZero() {
			j.AssignedAt, j.Dirty = at, true
		}
	case eventv1.LeadStatus_LEAD_STATUS_ACCEPTED:
		first(&l.AcceptedAt)
		if j != nil && j.AcceptedAt.IsZero() {
			j.AcceptedAt, j.Dirty = at, true
		}
	case eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY:
		first(&l.OpportunityAt)
		if j != nil && j.OpportunityAt.IsZero() {
			j.OpportunityAt, j.Dirty = at, true
		}
	case eventv1.LeadStatus_LEAD_STATUS_WON:
		first(&l.WonAt)
		if j != nil && j.WonAt.IsZero() {
			j.WonAt, j.Dirty = at, true
		}
	case eventv1.LeadStatus_LEAD_STATUS_LOST:
		first(&l.LostAt)
		if j != nil && j.LostAt.IsZero() {
			j.LostAt, j.Dirty = at, true
		}
	case eventv1.LeadStatus_LEAD_STATUS_RECYCLED:
		first(&l.RecycledAt)
		if j != nil && j.RecycledAt.IsZero() {
			j.RecycledAt, j.Dirty = at, true
		}
	case eventv1.LeadStatus_LEAD_STATUS_DISQUALIFIED:
		first(&l.DisqualifiedAt)
	}
}

// coarse is the lead's profile as the read model keeps it.
func (l *Lead) coarse() *eventv1.Profile {
	return &eventv1.Profile{Country: l.Country, Industry: l.Industry, EmailDomain: l.EmailDomain, Seniority: l.Seniority, Employees: int32(l.Employees)}
}

// coarse is what the read model keeps of a form's profile: no company
// or title, which intake seals.
func coarse(p *eventv1.Profile) *eventv1.Profile {
	return &eventv1.Profile{Country: p.GetCountry(), Industry: p.GetIndustry(), EmailDomain: p.GetEmailDomain(), Seniority: p.GetSeniority(),
		Employees: p.GetEmployees()}
}

func (l *Lead) profile(p *eventv1.Profile) {
	if p == nil {
		return
	}
	// A later form says what it asks: fields it leaves out keep their value.
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&l.Country, p.GetCountry())
	set(&l.Industry, p.GetIndustry())
	set(&l.EmailDomain, p.GetEmailDomain())
	if s := p.GetSeniority(); s != eventv1.Seniority_SENIORITY_UNSPECIFIED {
		l.Seniority = s
	}
	if e := p.GetEmployees(); e > 0 {
		l.Employees = int(e)
	}
}

// touch counts a campaign touch that happened at at, unless that was
// once the lead was an opportunity: touches after it did not create the
// pipeline. It goes by when touches happened, not by when they were
// recorded, so a platform's late upload of an earlier activity counts,
// and can be the first or last touch. (A touch counted before an
// opportunity recorded later but backdated before it stays counted.)
// via names the merged lead it came through, "" for the lead's own.
// ActivityCampaign is the campaign an activity touches: none for an
// unsubscribe, which is not interest, so no credit for revenue after it.
func ActivityCampaign(a *eventv1.ActivityRecorded) string {
	if a.GetType() == eventv1.ActivityType_ACTIVITY_TYPE_UNSUBSCRIBE {
		return ""
	}
	return a.GetCampaignId()
}

func (l *Lead) touch(t TouchAt, via string) {
	if t.Campaign == "" || (!l.OpportunityAt.IsZero() && !t.At.Before(l.OpportunityAt)) {
		return
	}
	switch {
	case via != "" && l.Own == nil:
		// Every touch so far was the lead's own, and came before this one.
		l.Own = &OwnTouches{First: TouchAt{Campaign: l.FirstCampaign, At: l.FirstTouchAt}, Last: TouchAt{Campaign: l.LastCampaign, At: l.LastTouchAt}}
	case via == "" && l.Own != nil:
		firstLast(&l.Own.First, &l.Own.Last, t)
	}
	if via != "" {
		l.Via = append(l.Via, t)
	}
	l.Touches.add(t.Campaign)
	l.TouchCount++
	first, last := TouchAt{Campaign: l.FirstCampaign, At: l.FirstTouchAt}, TouchAt{Campaign: l.LastCampaign, At: l.LastTouchAt}
	firstLast(&first, &last, t)
	l.FirstCampaign, l.FirstTouchAt, l.LastCampaign, l.LastTouchAt = first.Campaign, first.At, last.Campaign, last.At
}

// firstLast moves the first and last touch to t if it comes before or
// after them: touches come in the order recorded, so ties keep that
// order. A fold stored before the touch times were kept has them zero:
// its first stays, its last moves on.
func firstLast(first, last *TouchAt, t TouchAt) {
	if first.Campaign == "" || (!first.At.IsZero() && t.At.Before(first.At)) {
		*first = t
	}
	if last.At.IsZero() || !t.At.Before(last.At) {
		*last = t
	}
}

// touchOf counts the touch of a submission or activity: a replay an
// unmerge gave back only if it names the event it replays, which that
// unmerge took back from its survivor (an older one left it there).
func (l *Lead) touchOf(t TouchAt, via, givenBackBy, givenBackEventID string) {
	if givenBackBy == "" || givenBackEventID != "" {
		l.touch(t, via)
	}
}

// untouch takes back the touches of the events an unmerge gave back to
// their person's lead, which counts them now.
func (l *Lead) untouch(gone []string) {
	kept := l.Via[:0]
	for _, v := range l.Via {
		if slices.Contains(gone, v.Event) {
			l.Touches.sub(v.Campaign)
			l.TouchCount--
		} else {
			kept = append(kept, v)
		}
	}
	if len(kept) == len(l.Via) {
		return
	}
	l.Via = kept
	// Own and the kept touches, by when they happened and then in the
	// order recorded.
	first, last := l.Own.First, l.Own.Last
	for _, v := range kept {
		if first.Campaign == "" || first.After(v) {
			first = v
		}
		if last.Campaign == "" || v.After(last) {
			last = v
		}
	}
	l.FirstCampaign, l.FirstTouchAt, l.LastCampaign, l.LastTouchAt = first.Campaign, first.At, last.Campaign, last.At
	if len(kept) == 0 {
		l.Via, l.Own = nil, nil
	}
}

func (l *Lead) segment(s string) {
	if s != "" {
		l.Segment = s
		if j := l.journey(); j != nil && j.Segment != s {
			j.Segment, j.Dirty = s, true
		}
	}
}

func (l *Lead) journey() *Journey {
	if n := len(l.Journeys); n > 0 {
		return &l.Journeys[n-1]
	}
	return nil
}

func (l *Lead) handoff() *Handoff {
	if n := len(l.Handoffs); n > 0 && l.Handoffs[n-1].EndedAt.IsZero() {
		return &l.Handoffs[n-1]
	}
	return nil
}

func (l *Lead) startHandoff(seq uint64, rep, segment string, at, acceptBy time.Time) {
	l.endHandoff(at)
	if rep != "" {
		l.RepID = rep
	}
	l.Handoffs = append(l.Handoffs, Handoff{Seq: seq, Cycle: l.Cycle, RepID: rep, Segment: segment, AssignedAt: at,
		AcceptBy: acceptBy, Dirty: true})
}

// endHandoff closes the running hand-over when the lead leaves the rep's
// hands (reassigned, rejected, converted, or out of ASSIGNED and ACCEPTED).
func (l *Lead) endHandoff(at time.Time) {
	if h := l.handoff(); h != nil {
		h.EndedAt, h.Dirty = at, true
	}
}

func (l *Lead) opportunity(id string) *Opportunity {
	for i := len(l.Opportunities) - 1; i >= 0; i-- {
		if l.Opportunities[i].ID == id {
			return &l.Opportunities[i]
		}
	}
	return nil
}

// Clean forgets what changed: the caller has written it.
func (l *Lead) Clean() {
	for i := range l.Touches {
		l.Touches[i].Dirty = false
	}
	for i := range l.Stages {
		l.Stages[i].Dirty = false
	}
	for i := range l.Journeys {
		l.Journeys[i].Dirty = false
	}
	for i := range l.Handoffs {
		l.Handoffs[i].Dirty = false
	}
	for i := range l.Opportunities {
		l.Opportunities[i].Dirty = false
	}
	for i := range l.BreachList {
		l.BreachList[i].Dirty = false
	}
}

// when is when an event happened: occurred_at, else recorded_at.
func when(ev *eventv1.Event) time.Time {
	if t := ev.GetOccurredAt(); t != nil {
		return t.AsTime()
	}
	return timeOf(ev.GetRecordedAt())
}

func timeOf(t *timestamppb.Timestamp) time.Time {
	if t == nil || !t.IsValid() {
		return time.Time{}
	}
	return t.AsTime()
}
