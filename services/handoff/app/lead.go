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
	"github.com/leadflow/leadflow/services/handoff/routing"
	"github.com/leadflow/leadflow/services/handoff/sla"
)

type eventPayload = proto.Message

// lead is what the handoff service needs of one lead, folded from all of
// its events.
type lead struct {
	id      string
	state   lifecycle.State // after its last event
	version uint64          // its last event's sequence, 0 for none
	// lastEventID is the id of the event at version.
	lastEventID string
	profile     *eventv1.Profile
	// forms is what its forms said, once one came through a merged lead.
	forms envelope.Forms
	// sealed is every submission's sealed personal data (company,
	// title), in order: a re-submission seals only what it brought.
	sealed []sealedData
	// sealWith is the last own submission's sealed data of either kind:
	// its key seals the rep's free text (sealText). One that came through
	// a merged lead is sealed with that lead's key, which its erasure
	// shreds after an unmerge.
	sealWith []byte
	// byKey maps the request ids of handoff's commands to the first event
	// written with each; causes holds the causation ids of the lead's
	// events.
	byKey  map[string]keyed
	causes map[string]struct{}
	// journey counts qualifications; qualified is the latest's event id.
	journey   int
	qualified string
	// stepID is the event that started the current SLA step: the latest
	// LeadAssigned or LeadReassigned while ASSIGNED, LeadAccepted while
	// ACCEPTED (or, touch, a later ContactAttempted whose deadline is the
	// next touch), LeadQueued while an MQL waits in a queue; stepSeq is
	// where it is stored. A merge ends the step and keeps it in merged,
	// for an unmerge to restore.
	stepID  string
	stepSeq uint64
	touch   bool
	merged  struct {
		stepID  string
		stepSeq uint64
		touch   bool
	}
	// The current owner's terms: the pool routed from (for escalation),
	// the segment and the SLA policy.
	poolID   string
	segment  string
	policy   *eventv1.SLAPolicy
	acceptBy time.Time
	accepted *eventv1.LeadAccepted
	// acceptedID is the LeadAccepted's event id: the attempts window's
	// step, whose timers judge the window even once an attempt made after
	// it ended started a step of its own.
	acceptedID string
	connected  bool // reached the lead since acceptance
	meeting    bool // booked a meeting with it since acceptance
	// windowOver: the attempts window's deadline breached without taking
	// the lead from its rep, so it judges the lead no more.
	windowOver bool
	// opened is the company name unseal read from the sealed submissions,
	// for routing only.
	opened string
	// mergedCompany are the company names unseal read from merged leads'
	// own submissions (by lead id), for the decision it read them for:
	// the next event clears them, so no fold keeps a merged person's name.
	mergedCompany map[string]string
	// owners are the reps that held the lead in this journey; rejectedBy
	// those that rejected it, in any journey; mergedRejectedBy those that
	// rejected a lead merged into it, read by unseal as mergedCompany is.
	owners, rejectedBy, mergedRejectedBy []string
	queued                               *eventv1.LeadQueued
	routeBreached                        bool
	// waitedUntil is the end of the off-shift wait the route deadline was
	// last moved on by: a later try counts only what comes after it.
	// qualifiedAt is when the latest qualification started the route
	// clock.
	waitedUntil, qualifiedAt time.Time
	// deals are the opportunity ids of every deal the lead has had.
	deals       []string
	opportunity struct {
		id, stage string
		amount    *eventv1.Money
		// currency is the one the opportunity was converted in: every
		// later amount of it must be in it too.
		currency string
	}
}

// keyed is what a repeated request answers of the first event written
// with its key, and the event, whose content a repeat is checked against.
// Only handoff's own commands' events are kept: keyed captures are common,
// and the cache (50,000 leads by default) would keep each decoded for the
// collector to scan.
type keyed struct {
	ev            *eventv1.Event
	typ, eventID  string
	seq           uint64
	state         lifecycle.State
	opportunityID string
}

func foldLead(id string, recs []eventstore.Record) *lead {
	l := &lead{id: id, byKey: map[string]keyed{}, causes: map[string]struct{}{}}
	for _, r := range recs {
		l.apply(r)
	}
	return l
}

func (l *lead) apply(r eventstore.Record) {
	ev := r.Event
	l.version, l.lastEventID = r.Seq, ev.GetEventId()
	l.mergedCompany, l.mergedRejectedBy = nil, nil
	before := l.state.Deadline
	l.state = lifecycle.FromProto(ev.GetLifecycle())
	if envelope.Check(ev, l.id, r.Type) != nil {
		return // malformed (docs/events.md): its lifecycle stands, nothing else
	}
	// Only handoff's own commands' keys: another service's key (a form's,
	// say) is another request, even spelled the same.
	if k := ev.GetIdempotencyKey(); k != "" && commandTypes[ev.GetEventType()] {
		if _, ok := l.byKey[k]; !ok {
			l.byKey[k] = keyed{ev: ev, typ: ev.GetEventType(), eventID: ev.GetEventId(), seq: r.Seq, state: l.state,
				opportunityID: ev.GetOpportunityCreated().GetOpportunityId()}
		}
	}
	if c := ev.GetCausationId(); c != "" {
		l.causes[c] = struct{}{}
	}
	switch ev.GetPayload().(type) {
	case *eventv1.Event_LeadCaptured, *eventv1.Event_LeadResubmitted, *eventv1.Event_LeadErased:
		// A later form may name another company; an erased person's name
		// is not kept.
		l.opened = ""
	}
	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_LeadCaptured:
		l.profile, l.forms = proto.CloneOf(p.LeadCaptured.GetProfile()), envelope.Forms{}
		l.sealed = nil
		if b := p.LeadCaptured.GetSealedPersonal(); len(b) > 0 {
			l.sealed = []sealedData{{b: b}}
		}
		l.sealWith = nonEmpty(p.LeadCaptured.GetSealedPersonal(), p.LeadCaptured.GetSealedContact())
	case *eventv1.Event_LeadResubmitted:
		via := p.LeadResubmitted.GetMergedFrom()
		l.forms.Add(l.profile, via, p.LeadResubmitted.GetProfile())
		l.profile = envelope.MergeProfile(l.profile, p.LeadResubmitted.GetProfile())
		if b := p.LeadResubmitted.GetSealedPersonal(); len(b) > 0 {
			l.sealed = append(l.sealed, sealedData{via: via, b: b})
		}
		if via == "" {
			l.sealWith = nonEmpty(p.LeadResubmitted.GetSealedPersonal(), p.LeadResubmitted.GetSealedContact(), l.sealWith)
		}
	case *eventv1.Event_LeadQualified:
		l.journey++
		l.qualified = ev.GetEventId()
		l.owners, l.queued, l.routeBreached, l.stepID, l.waitedUntil = nil, nil, false, "", time.Time{}
		l.qualifiedAt = ev.GetRecordedAt().AsTime()
		l.poolID, l.policy, l.accepted, l.acceptedID, l.connected, l.meeting = "", nil, nil, "", false, false
	case *eventv1.Event_LeadQueued:
		l.queued, l.stepID, l.stepSeq, l.touch = p.LeadQueued, ev.GetEventId(), r.Seq, false
		if w := p.LeadQueued.GetWaitedUntil(); w != nil {
			l.waitedUntil = w.AsTime()
		} else if moved := l.state.Deadline.Sub(before); moved > 0 && !before.IsZero() {
			// Moved on by the wait to the first opening, counted from
			// where the last counted wait ended if that is later (as
			// routeEvents counts it).
			from := ev.GetRecordedAt().AsTime()
			if l.waitedUntil.After(from) {
				from = l.waitedUntil
			}
			l.waitedUntil = from.Add(moved)
		}
	case *eventv1.Event_LeadAssigned:
		a := p.LeadAssigned
		l.stepID, l.stepSeq, l.queued, l.touch = ev.GetEventId(), r.Seq, nil, false
		l.owners = append(l.owners, a.GetOwner().GetId())
		l.poolID, l.segment, l.policy = a.GetDecision().GetPoolId(), a.GetSegment(), a.GetSla()
		l.acceptBy = a.GetAcceptBy().AsTime()
	case *eventv1.Event_LeadReassigned:
		a := p.LeadReassigned
		l.stepID, l.stepSeq, l.touch = ev.GetEventId(), r.Seq, false
		if to := a.GetTo(); to.GetKind() == eventv1.OwnerKind_OWNER_KIND_REP {
			l.owners = append(l.owners, to.GetId())
		}
		if pool := a.GetDecision().GetPoolId(); pool != "" {
			l.poolID = pool
		}
		if a.GetSla() != nil {
			l.policy = a.GetSla()
		}
		l.acceptBy = a.GetAcceptBy().AsTime()
		l.accepted, l.acceptedID, l.connected, l.meeting = nil, "", false, false
	case *eventv1.Event_LeadAccepted:
		l.stepID, l.stepSeq, l.accepted, l.connected, l.meeting = ev.GetEventId(), r.Seq, p.LeadAccepted, false, false
		l.acceptedID = ev.GetEventId()
		l.touch, l.windowOver = false, false
	case *eventv1.Event_LeadMerged:
		if !envelope.SurvivorSide(ev) {
			l.merged.stepID, l.merged.stepSeq, l.merged.touch = l.stepID, l.stepSeq, l.touch
		} else if m := p.LeadMerged; m.GetAbsorbedProfile() != nil {
			// Routed on the profile the merge's score used (pkg/scoring).
			l.profile = l.forms.Absorb(l.profile, m.GetAbsorbedLeadId(), m.GetAbsorbedProfile())
		}
	case *eventv1.Event_LeadUnmerged:
		if !envelope.SurvivorSide(ev) {
			l.stepID, l.stepSeq, l.touch = l.merged.stepID, l.merged.stepSeq, l.merged.touch
		} else {
			l.sealed, l.opened = withoutVia(l.sealed, p.LeadUnmerged), ""
			if profile, ok := l.forms.GiveBack(p.LeadUnmerged); ok {
				l.profile = profile // routed by its own person's answers again
			}
		}
	case *eventv1.Event_ContactAttempted:
		// The deadline the attempt set (the next touch) is a step with
		// timers of its own, unless the attempts window, whose timers
		// stand behind it, is still to judge the lead: as the command
		// decided, at the attempt's time.
		reached := reaches(p.ContactAttempted.GetOutcome())
		if !l.windowJudges(ev.GetRecordedAt().AsTime(), reached) {
			// A booked meeting is the next step, whenever it is: its
			// deadline stands (the no-lost-lead check sees it pass), but no
			// timer takes the lead from the rep who booked it, nor after a
			// later attempt (a call to confirm it).
			l.meeting = l.meeting || p.ContactAttempted.GetOutcome() == eventv1.ContactOutcome_CONTACT_OUTCOME_MEETING_BOOKED
			l.stepID, l.stepSeq, l.touch = ev.GetEventId(), r.Seq, !l.meeting
		}
		l.connected = l.connected || reached
	case *eventv1.Event_SlaBreached:
		switch b := p.SlaBreached; {
		case b.GetSla() == eventv1.SLAKind_SLA_KIND_ROUTE:
			l.routeBreached = true
		case b.GetSla() == eventv1.SLAKind_SLA_KIND_FOLLOW_UP && l.acceptedID != "" && b.GetStepEventId() == l.acceptedID:
			l.windowOver = true
		case b.GetSla() == eventv1.SLAKind_SLA_KIND_FIRST_CONTACT && l.accepted.GetAttemptsDueAt() != nil &&
			!l.accepted.GetAttemptsDueAt().AsTime().After(b.GetDueAt().AsTime()):
			// A window ending no later than first contact defers to its
			// breach (onTimer), and ends with it.
			l.windowOver = true
		}
	case *eventv1.Event_LeadRejected:
		if rep := p.LeadRejected.GetRepId(); rep != "" && !slices.Contains(l.rejectedBy, rep) {
			l.rejectedBy = append(l.rejectedBy, rep)
		}
	case *eventv1.Event_OpportunityCreated:
		o := p.OpportunityCreated
		l.opportunity.id, l.opportunity.stage, l.opportunity.amount = o.GetOpportunityId(), o.GetStage(), o.GetAmount()
		l.opportunity.currency = o.GetAmount().GetCurrency()
		l.deals = append(l.deals, o.GetOpportunityId())
	case *eventv1.Event_OpportunityStageChanged:
		o := p.OpportunityStageChanged
		l.opportunity.stage = o.GetToStage()
		if o.GetAmount() != nil {
			l.opportunity.amount = o.GetAmount()
		}
	}
	switch l.state.Status {
	case lifecycle.StatusAssigned, lifecycle.StatusAccepted, lifecycle.StatusMQL:
	default:
		l.stepID, l.stepSeq = "", 0
	}
}

// routingLead is the lead as routing sees it: with the company unseal
// opened, when the profile has none in the clear.
func (l *lead) routingLead() routing.Lead {
	p := l.profile
	if l.opened != "" && p.GetCompany() == "" {
		p = proto.CloneOf(p)
		if p == nil {
			p = &eventv1.Profile{}
		}
		p.Company = l.opened
	}
	var merged []*eventv1.Profile
	for _, f := range l.forms.Layers {
		if f.Via == "" {
			continue
		}
		m := f.Profile
		if c := l.mergedCompany[f.Via]; c != "" && m.GetCompany() == "" {
			m = proto.CloneOf(m)
			if m == nil {
				m = &eventv1.Profile{}
			}
			m.Company = c
		}
		merged = append(merged, m)
	}
	avoid := l.rejectedBy
	for _, rep := range l.mergedRejectedBy {
		if !slices.Contains(avoid, rep) {
			avoid = append(slices.Clip(avoid), rep)
		}
	}
	return routing.Lead{ID: l.id, Profile: p, Exclude: l.owners, Avoid: avoid, Merged: merged}
}

// unseal reads what routingLead needs beyond the fold: the reps who
// rejected leads merged into this one, and the sealed company name, when
// the profile has none in the clear and routing could use it (a read of
// the lead's key). The name never goes into an event, and the fold keeps
// it only until the lead's next submission or erasure (apply).
func (a *App) unseal(ctx context.Context, cfg *routing.Config, l *lead) error {
	// Only a lead with leads merged into it reads other leads: who
	// rejected them (their person is this lead's), and, when its own
	// answers match no account, the company they named.
	merged := slices.ContainsFunc(l.forms.Layers, func(f envelope.Form) bool { return f.Via != "" })
	if merged {
		l.mergedRejectedBy = nil
		seen := map[string]bool{l.id: true}
		for _, f := range l.forms.Layers {
			if f.Via != "" {
				if err := a.mergedRejecters(ctx, l, f.Via, seen, 1); err != nil {
					return err
				}
			}
		}
	}
	if a.personal == nil {
		return nil
	}
	if l.profile.GetCompany() == "" && l.opened == "" && len(l.sealed) > 0 && cfg.NeedsCompany(l.profile) {
		company, _, err := a.sealedProfile(ctx, l.id, l.sealed, false)
		if err != nil {
			return err
		}
		l.opened = company
	}
	if !merged {
		return nil
	}
	if acct, _ := cfg.MatchAccount(l.routingLead().Profile); acct != nil {
		return nil
	}
	// A merged lead's person may have named their company on its own
	// forms, sealed with its key on its events (read for this decision
	// only; nothing of an erased one).
	for _, f := range l.forms.Layers {
		if f.Via == "" || f.Profile.GetCompany() != "" || !cfg.NeedsCompany(f.Profile) {
			continue
		}
		company, err := a.mergedCompanyOf(ctx, l.id, f.Via, map[string]bool{l.id: true})
		if err != nil {
			return err
		}
		if l.mergedCompany == nil {
			l.mergedCompany = map[string]string{}
		}
		l.mergedCompany[f.Via] = company
	}
	return nil
}

// mergedRejecters adds to l.mergedRejectedBy the reps who rejected lead
// id, merged into l at depth, and the leads merged into it (each read
// once: seen; as deep as the brief follows merges).
func (a *App) mergedRejecters(ctx context.Context, l *lead, id string, seen map[string]bool, depth int) error {
	if seen[id] || depth > maxMergeHops {
		return nil
	}
	seen[id] = true
	m, err := a.load(ctx, id)
	if err != nil {
		return fmt.Errorf("lead %s merged into %s: %w", id, l.id, err)
	}
	l.mergedRejectedBy = append(l.mergedRejectedBy, m.rejectedBy...)
	for _, f := range m.forms.Layers {
		if f.Via != "" {
			if err := a.mergedRejecters(ctx, l, f.Via, seen, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// mergedCompanyOf is the company a lead merged into survivor named last
// on its own forms, else one a lead merged into it named (as deep as the
// brief follows merges, each lead read once: seen); "" for an erased one.
func (a *App) mergedCompanyOf(ctx context.Context, survivor, id string, seen map[string]bool) (string, error) {
	if seen[id] || len(seen) > maxMergeHops {
		return "", nil
	}
	seen[id] = true
	m, err := a.load(ctx, id)
	if err != nil {
		return "", fmt.Errorf("lead %s merged into %s: %w", id, survivor, err)
	}
	if m.state.Status == lifecycle.StatusErased {
		return "", nil
	}
	company, _, err := a.sealedProfile(ctx, id, m.sealed, false)
	for _, f := range m.forms.Layers {
		if company != "" || err != nil {
			break
		}
		if f.Via != "" {
			company, err = a.mergedCompanyOf(ctx, id, f.Via, seen)
		}
	}
	return company, err
}

// slaPolicy is the current owner's SLA policy: as recorded when the lead
// was given to them, else the segment's now.
func (l *lead) slaPolicy(cfg *routing.Config) sla.Policy {
	if l.policy != nil {
		return sla.FromProto(l.policy)
	}
	return cfg.Policy(l.segment)
}

// windowJudges reports whether the attempts window still judges a contact
// attempt made at at (reached: it reached the lead): the window is set
// and runs past at, was not breached, and nobody was reached. If not, the
// attempt's deadline is the next touch, a step of its own. The command
// (the deadline) and the fold (the step, so its timers) both ask this, so
// an attempt's deadline is never left without timers.
func (l *lead) windowJudges(at time.Time, reached bool) bool {
	due := l.accepted.GetAttemptsDueAt()
	return due != nil && due.AsTime().After(at) && !reached && !l.connected && !l.windowOver
}

// reaches reports whether a contact attempt's outcome reached the lead.
func reaches(o eventv1.ContactOutcome) bool {
	return o == eventv1.ContactOutcome_CONTACT_OUTCOME_CONNECTED || o == eventv1.ContactOutcome_CONTACT_OUTCOME_MEETING_BOOKED
}

// ownedBy reports whether rep owns the lead.
func (l *lead) ownedBy(repID string) bool {
	return l.state.Owner == lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: repID}
}

// loadThrough reads and folds a lead that has its event at seq:
// eventstore.ErrBehind when the read does not reach seq yet (a replica
// behind the stream's leader), to be tried again; nil and no error for a
// lead with no events and nothing to wait for.
func (a *App) loadThrough(ctx context.Context, leadID string, seq uint64) (*lead, error) {
	l, err := a.load(ctx, leadID)
	if errors.Is(err, ErrNotFound) {
		return nil, eventstore.Behind(leadID, 0, seq)
	}
	if err != nil {
		return nil, err
	}
	if err := eventstore.Behind(leadID, l.version, seq); err != nil {
		return nil, err
	}
	return l, nil
}

// load reads and folds a lead; ErrNotFound when it has no events.
func (a *App) load(ctx context.Context, leadID string) (*lead, error) {
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("lead %s: %w", leadID, ErrNotFound)
	}
	return foldLead(leadID, recs), nil
}

// sealedProfile is the company (and, withTitle, the title) a lead gave
// last, from its submissions' sealed personal data (sealed, in order),
// opened newest first until found; "" for an erased lead's.
func (a *App) sealedProfile(ctx context.Context, leadID string, sealed []sealedData, withTitle bool) (company, title string, err error) {
	for i := len(sealed) - 1; i >= 0 && (company == "" || (withTitle && title == "")); i-- {
		p, err := a.personal.Personal(ctx, leadID, sealed[i].via, sealed[i].b)
		if err != nil || p == nil {
			return company, title, err
		}
		company, title = cmp.Or(company, p.GetCompany()), cmp.Or(title, p.GetTitle())
	}
	return company, title, nil
}

// sealedData is a submission's sealed personal data, and the merged lead
// it came through (its key sealed it), "" for the lead's own.
type sealedData struct {
	via string
	b   []byte
}

// withoutVia is sealed without what came through the lead an unmerge
// gave back, or through a lead merged into it.
func withoutVia(sealed []sealedData, u *eventv1.LeadUnmerged) []sealedData {
	var out []sealedData // a new slice: folds are copied shallowly
	for _, s := range sealed {
		if !envelope.GivenBack(u, s.via) {
			out = append(out, s)
		}
	}
	return out
}

// throughMerged is a merged lead's sealed submissions as its survivor
// opens them: its own with its key, the rest as they came to it.
func throughMerged(id string, sealed []sealedData) []sealedData {
	out := make([]sealedData, len(sealed))
	for i, s := range sealed {
		out[i] = sealedData{via: cmp.Or(s.via, id), b: s.b}
	}
	return out
}

// nonEmpty is the first of bs that holds anything.
func nonEmpty(bs ...[]byte) []byte {
	for _, b := range bs {
		if len(b) > 0 {
			return b
		}
	}
	return nil
}
