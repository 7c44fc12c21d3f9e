package scoring

import (
	"slices"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// FactsFold folds a lead's events, in stream order, into the Facts a
// model scores. What a merged lead's person sent while merged (an
// event's merged_from), and what that lead knew at the merge (the
// survivor's LeadMerged), counts on the survivor until the unmerge that
// gives it back, and not after.
type FactsFold struct {
	Facts Facts
	// Kept only once something came through a merged lead (nil for nearly
	// every lead): the profile as the forms built it, the first layer
	// being everything before, and the lead each activity came through.
	layers []layer
	actVia []string
}

type layer struct {
	via     string
	profile Profile
}

// HasFacts reports whether an event of this payload changes a lead's
// facts when folded.
func HasFacts(ev *eventv1.Event) bool {
	switch ev.GetPayload().(type) {
	case *eventv1.Event_LeadCaptured, *eventv1.Event_LeadResubmitted, *eventv1.Event_ActivityRecorded, *eventv1.Event_ConsentChanged:
		return true
	case *eventv1.Event_LeadMerged:
		return Absorbs(ev)
	case *eventv1.Event_LeadUnmerged:
		return envelope.SurvivorSide(ev)
	}
	return false
}

// Absorbs reports whether ev is a survivor's LeadMerged that carries the
// absorbed lead's facts (one written before 2026-12-06 carries none).
func Absorbs(ev *eventv1.Event) bool {
	return ev.GetLeadMerged().GetAbsorbedProfile() != nil && envelope.SurvivorSide(ev)
}

// Apply folds one event of the lead; others than HasFacts names change
// nothing.
func (f *FactsFold) Apply(ev *eventv1.Event) {
	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_LeadCaptured:
		f.Facts.Profile = ProfileOf(p.LeadCaptured.GetProfile())
		for _, c := range p.LeadCaptured.GetConsents() {
			f.setConsent(c)
		}
	case *eventv1.Event_LeadResubmitted:
		// A later form says what it asks: a webinar sign-up with only an
		// email must not erase the company size an earlier form gave.
		r := p.LeadResubmitted
		later := ProfileOf(r.GetProfile())
		if r.GetMergedFrom() != "" && f.layers == nil {
			f.layers = []layer{{profile: f.Facts.Profile}}
		}
		if f.layers != nil {
			f.layers = append(f.layers, layer{via: r.GetMergedFrom(), profile: later})
		}
		f.Facts.Profile = Merge(f.Facts.Profile, later)
	case *eventv1.Event_ActivityRecorded:
		a := p.ActivityRecorded
		if a.GetMergedFrom() != "" && f.actVia == nil {
			f.actVia = make([]string, len(f.Facts.Activities), len(f.Facts.Activities)+1)
		}
		if f.actVia != nil {
			f.actVia = append(f.actVia, a.GetMergedFrom())
		}
		f.Facts.Activities = append(f.Facts.Activities, Activity{Type: a.GetType(), At: ev.GetOccurredAt().AsTime()})
	case *eventv1.Event_ConsentChanged:
		f.setConsent(p.ConsentChanged.GetConsent())
	case *eventv1.Event_LeadMerged:
		if Absorbs(ev) {
			f.absorb(p.LeadMerged)
		}
	case *eventv1.Event_LeadUnmerged:
		if envelope.SurvivorSide(ev) {
			f.giveBack(p.LeadUnmerged)
		}
	}
}

// MaxAbsorbedActivities bounds the activities a survivor's LeadMerged
// carries of the absorbed lead: the latest, older ones having decayed.
const MaxAbsorbedActivities = 1000

// Absorbed fills a survivor's LeadMerged m with what f, the absorbed
// lead's fold, knows: its coarse profile (no company or title, which
// stay sealed) and its latest activities.
func (f *FactsFold) Absorbed(m *eventv1.LeadMerged) {
	p := f.Facts.Profile
	m.AbsorbedProfile = &eventv1.Profile{Seniority: p.Seniority, JobFunction: p.Function, Industry: p.Industry,
		Employees: int32(p.Employees), Country: p.Country, EmailDomain: p.EmailDomain}
	acts := f.Facts.Activities
	acts = acts[max(0, len(acts)-MaxAbsorbedActivities):]
	m.AbsorbedActivities = make([]*eventv1.ActivityFact, len(acts))
	for i, a := range acts {
		m.AbsorbedActivities[i] = &eventv1.ActivityFact{Type: a.Type, OccurredAt: timestamppb.New(a.At)}
	}
	m.AbsorbedWithdrawn = nil
	for ch, st := range f.Facts.Consents {
		if st == eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN {
			m.AbsorbedWithdrawn = append(m.AbsorbedWithdrawn, ch)
		}
	}
	slices.Sort(m.AbsorbedWithdrawn) // the same event for the same lead
}

// absorb takes in what the absorbed lead of m knew at the merge: its
// profile under the survivor's (which wins where both say), and its
// activities, each as come through that lead, so the unmerge gives them
// back; and its withdrawals, which the events after m carry too (an
// unmerge's events, not the fold, give the survivor its own back).
func (f *FactsFold) absorb(m *eventv1.LeadMerged) {
	via := m.GetAbsorbedLeadId()
	for _, ch := range m.GetAbsorbedWithdrawn() {
		f.setConsent(&eventv1.Consent{Channel: ch, Status: eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN})
	}
	if m.GetAbsorbedProfile() != nil {
		if f.layers == nil {
			f.layers = []layer{{profile: f.Facts.Profile}}
		}
		f.layers = slices.Insert(f.layers, 0, layer{via: via, profile: ProfileOf(m.GetAbsorbedProfile())})
		f.Facts.Profile = Profile{}
		for _, l := range f.layers {
			f.Facts.Profile = Merge(f.Facts.Profile, l.profile)
		}
	}
	if len(m.GetAbsorbedActivities()) > 0 && f.actVia == nil {
		f.actVia = make([]string, len(f.Facts.Activities), len(f.Facts.Activities)+len(m.GetAbsorbedActivities()))
	}
	for _, a := range m.GetAbsorbedActivities() {
		f.Facts.Activities = append(f.Facts.Activities, Activity{Type: a.GetType(), At: a.GetOccurredAt().AsTime()})
		f.actVia = append(f.actVia, via)
	}
}

// giveBack drops what came through the leads the unmerge u took out.
func (f *FactsFold) giveBack(u *eventv1.LeadUnmerged) {
	if f.layers != nil {
		f.layers = slices.DeleteFunc(f.layers, func(l layer) bool { return envelope.GivenBack(u, l.via) })
		f.Facts.Profile = Profile{}
		for _, l := range f.layers {
			f.Facts.Profile = Merge(f.Facts.Profile, l.profile)
		}
	}
	if f.actVia != nil {
		kept := f.Facts.Activities[:0]
		vias := f.actVia[:0]
		for i, a := range f.Facts.Activities {
			if !envelope.GivenBack(u, f.actVia[i]) {
				kept, vias = append(kept, a), append(vias, f.actVia[i])
			}
		}
		clear(f.Facts.Activities[len(kept):])
		f.Facts.Activities, f.actVia = kept, vias
	}
}

func (f *FactsFold) setConsent(c *eventv1.Consent) {
	if f.Facts.Consents == nil {
		f.Facts.Consents = map[eventv1.ConsentChannel]eventv1.ConsentStatus{}
	}
	f.Facts.Consents[c.GetChannel()] = c.GetStatus()
}
