package app

import (
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
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/form"
)

// LeadView is a lead folded from its events.
type LeadView struct {
	LeadID      string
	State       lifecycle.State
	Contact     *eventv1.Contact // nil once erased
	Profile     *eventv1.Profile
	Attribution *eventv1.Attribution
	Consents    []*eventv1.Consent
	CapturedAt  time.Time
	UpdatedAt   time.Time
	Version     uint64
	Submissions int
	Activities  int
	Erased      bool
	// MergedInto is the survivor while this lead is merged into it.
	MergedInto string
	// Absorbed are the leads merged into this one.
	Absorbed []string
}

// GetLead folds a lead's events into its current view, opening its
// submissions' personal fields with the lead's key.
//
// Errors: *ValidationError, ErrNotFound.
func (a *App) GetLead(ctx context.Context, leadID string) (LeadView, error) {
	recs, err := a.load(ctx, leadID)
	if err != nil {
		return LeadView{}, err
	}
	view, subs := fold(leadID, recs)
	if view.Erased {
		return view, nil
	}
	view.Contact = &eventv1.Contact{}
	for _, sub := range subs {
		if sub.gone {
			continue
		}
		p, err := a.openPersonal(ctx, leadID, sub)
		switch {
		case sub.via != "" && errors.Is(err, vault.ErrShredded):
			// Sealed for the lead it came through, erased (a survivor's
			// erasure cut short after it): that person's, gone with it.
			continue
		case errors.Is(err, vault.ErrShredded):
			view.Erased, view.Contact = true, nil
			return view, nil
		case errors.Is(err, vault.ErrNoKey):
			// Its key never reached the bucket (a capture cut short
			// after its event was stored): that submission is lost.
			a.log.WarnContext(ctx, "submission without its key", "lead", leadID, "seq", sub.rec.Seq)
			continue
		case err != nil:
			return LeadView{}, err
		}
		// A later submission adds what it says and keeps the rest; a new
		// phone comes with its own extension, or none.
		if p.GetContact().GetPhone() != "" {
			view.Contact.PhoneExtension = ""
		}
		proto.Merge(view.Contact, p.GetContact())
		proto.Merge(view.Profile, &eventv1.Profile{Company: p.GetCompany(), Title: p.GetTitle()})
		if sub.first {
			proto.Merge(view.Attribution, &eventv1.Attribution{UtmSource: p.GetUtmSource(), UtmMedium: p.GetUtmMedium(), UtmCampaign: p.GetUtmCampaign()})
		}
	}
	return view, nil
}

// submission is one form fill in a lead's history.
type submission struct {
	rec   eventstore.Record
	first bool // LeadCaptured
	// sealed is a Personal, or a Contact in events older than Personal.
	sealed      []byte
	legacy      bool
	profile     *eventv1.Profile
	attribution *eventv1.Attribution
	consents    []*eventv1.Consent
	// via is the merged lead it came through (merged_from), gone true
	// once that lead was unmerged from this one: it went back with it.
	via  string
	gone bool
}

// fold is the view of a lead's events without opening anything sealed,
// and the submissions to open.
func fold(leadID string, recs []eventstore.Record) (LeadView, []submission) {
	state, version := stateOf(recs)
	view := LeadView{LeadID: leadID, State: state, Version: version, Profile: &eventv1.Profile{}, Attribution: &eventv1.Attribution{},
		Erased: state.Status == lifecycle.StatusErased}
	var subs []submission
	var activities []submission // only via and gone: what an unmerge took back
	consents := map[eventv1.ConsentChannel]*eventv1.Consent{}
	var order []eventv1.ConsentChannel
	setConsent := func(c *eventv1.Consent) {
		if _, ok := consents[c.GetChannel()]; !ok {
			order = append(order, c.GetChannel())
		}
		consents[c.GetChannel()] = c
	}
	for _, r := range recs {
		ev := r.Event
		view.UpdatedAt = r.Time
		switch p := envelope.Payload(ev).(type) {
		// A later submission adds what it says and keeps the rest: its
		// set fields win (proto.Merge copies only populated fields).
		case *eventv1.LeadCaptured:
			view.CapturedAt = ev.GetOccurredAt().AsTime()
			sub := submission{rec: r, first: true, sealed: p.GetSealedPersonal(), profile: p.GetProfile(), attribution: p.GetAttribution(), consents: p.GetConsents()}
			if len(sub.sealed) == 0 {
				sub.sealed, sub.legacy = p.GetSealedContact(), true
			}
			subs = append(subs, sub)
			proto.Merge(view.Profile, p.GetProfile())
			proto.Merge(view.Attribution, p.GetAttribution())
			for _, c := range p.GetConsents() {
				setConsent(c)
			}
		case *eventv1.LeadResubmitted:
			sub := submission{rec: r, sealed: p.GetSealedPersonal(), profile: p.GetProfile(), attribution: p.GetAttribution(), via: p.GetMergedFrom()}
			if len(sub.sealed) == 0 {
				sub.sealed, sub.legacy = p.GetSealedContact(), true
			}
			subs = append(subs, sub)
		case *eventv1.ActivityRecorded:
			activities = append(activities, submission{via: p.GetMergedFrom()})
		case *eventv1.ConsentChanged:
			setConsent(p.GetConsent())
		case *eventv1.LeadMerged:
			if p.GetSurvivorLeadId() == leadID {
				view.Absorbed = append(view.Absorbed, p.GetAbsorbedLeadId())
			} else {
				view.MergedInto = p.GetSurvivorLeadId()
			}
		case *eventv1.LeadUnmerged:
			if p.GetSurvivorLeadId() == leadID {
				view.Absorbed = slices.DeleteFunc(view.Absorbed, func(id string) bool { return id == p.GetAbsorbedLeadId() })
				// What came through it, or a lead merged into it, went
				// back with it (UnmergeLeads).
				for _, s := range [][]submission{subs, activities} {
					for i := range s {
						s[i].gone = s[i].gone || envelope.GivenBack(p, s[i].via)
					}
				}
			} else {
				view.MergedInto = ""
			}
		case *eventv1.LeadErased:
			view.Erased = true
		}
	}
	for _, ch := range order {
		view.Consents = append(view.Consents, consents[ch])
	}
	// A later submission adds what it says and keeps the rest.
	for _, sub := range subs {
		if sub.gone {
			continue
		}
		view.Submissions++
		if !sub.first {
			proto.Merge(view.Profile, sub.profile)
		}
	}
	for _, act := range activities {
		if !act.gone {
			view.Activities++
		}
	}
	return view, subs
}

// openPersonal opens one submission's personal fields.
func (a *App) openPersonal(ctx context.Context, leadID string, sub submission) (*eventv1.Personal, error) {
	if len(sub.sealed) == 0 {
		return &eventv1.Personal{}, nil
	}
	plain, err := a.keys.OpenVia(ctx, leadID, sub.via, sub.sealed)
	if err != nil {
		return nil, fmt.Errorf("open submission %d of %s: %w", sub.rec.Seq, leadID, err)
	}
	if sub.legacy {
		c := &eventv1.Contact{}
		if err := proto.Unmarshal(plain, c); err != nil {
			return nil, fmt.Errorf("decode contact of %s: %w", leadID, err)
		}
		return &eventv1.Personal{Contact: c}, nil
	}
	p := &eventv1.Personal{}
	if err := proto.Unmarshal(plain, p); err != nil {
		return nil, fmt.Errorf("decode personal data of %s: %w", leadID, err)
	}
	return p, nil
}

// TimelineEntry is one event of a lead with a one-line summary.
type TimelineEntry struct {
	Record  eventstore.Record
	Summary string
}

// GetLeadTimeline returns every event of a lead, read from the stream,
// each with a summary that holds no personal data.
//
// Errors: *ValidationError, ErrNotFound.
func (a *App) GetLeadTimeline(ctx context.Context, leadID string) ([]TimelineEntry, error) {
	recs, err := a.load(ctx, leadID)
	if err != nil {
		return nil, err
	}
	out := make([]TimelineEntry, len(recs))
	for i, r := range recs {
		out[i] = TimelineEntry{Record: r, Summary: Summarize(r.Event)}
	}
	return out, nil
}

func (a *App) load(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	var v form.Violations
	form.LeadID(&v, "lead_id", leadID)
	if err := invalid(v); err != nil {
		return nil, err
	}
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("lead %s: %w", leadID, ErrNotFound)
	}
	return recs, nil
}

// Summarize describes an event in one line without personal data.
func Summarize(ev *eventv1.Event) string {
	lc := ev.GetLifecycle()
	after := ""
	if lc != nil {
		after = fmt.Sprintf(" → %s", lifecycle.Status(lc.GetStatus()))
		if o := lc.GetOwner(); o.GetId() != "" {
			after += fmt.Sprintf(" (owner %s %s", lifecycle.OwnerKind(o.GetKind()), o.GetId())
			if d := lc.GetDeadline(); d != nil {
				after += ", due " + d.AsTime().Format(time.RFC3339)
			}
			after += ")"
		}
	}
	var what string
	switch p := envelope.Payload(ev).(type) {
	case *eventv1.LeadCaptured:
		what = fmt.Sprintf("captured from %s", p.GetAttribution().GetSource())
		if c := p.GetAttribution().GetCampaignId(); c != "" {
			what += " for campaign " + c
		}
	case *eventv1.LeadResubmitted:
		what = fmt.Sprintf("submitted again from %s (matched by %s)", p.GetAttribution().GetSource(), p.GetMatchedBy())
	case *eventv1.ActivityRecorded:
		what = fmt.Sprintf("activity %s", p.GetType())
	case *eventv1.ConsentChanged:
		what = fmt.Sprintf("consent %s %s", p.GetConsent().GetChannel(), p.GetConsent().GetStatus())
	case *eventv1.LeadScored:
		what = fmt.Sprintf("scored %d (fit %d, engagement %d) by model %s v%d", p.GetTotal(), p.GetFit(), p.GetEngagement(), p.GetModelId(), p.GetModelVersion())
	case *eventv1.LeadQualified:
		what = fmt.Sprintf("qualified with %d ≥ %d", p.GetScore(), p.GetThreshold())
	case *eventv1.LeadDisqualified:
		what = fmt.Sprintf("disqualified: %s", p.GetReason())
	case *eventv1.LeadMerged:
		what = fmt.Sprintf("merged: %s into %s", p.GetAbsorbedLeadId(), p.GetSurvivorLeadId())
	case *eventv1.LeadUnmerged:
		what = fmt.Sprintf("unmerged: %s from %s", p.GetAbsorbedLeadId(), p.GetSurvivorLeadId())
	case *eventv1.MergeCandidateFound:
		what = fmt.Sprintf("merge candidate: lead %s holds this person's %s", p.GetOtherLeadId(), p.GetIdentity())
	case *eventv1.LeadErased:
		what = fmt.Sprintf("erased: %s", p.GetReason())
	default:
		what = ev.GetEventType()
	}
	return what + after
}
