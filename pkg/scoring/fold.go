package scoring

import (
	"slices"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// FactsFold folds a lead's events, in stream order, into the Facts a
// model scores. What a merged lead's person sent while merged (an
// event's merged_from) counts on the survivor until the unmerge that
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
	case *eventv1.Event_LeadUnmerged:
		return envelope.SurvivorSide(ev)
	}
	return false
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
	case *eventv1.Event_LeadUnmerged:
		if envelope.SurvivorSide(ev) {
			f.giveBack(p.LeadUnmerged)
		}
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
