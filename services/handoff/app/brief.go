package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// Brief is a lead's story for the rep, assembled from its events.
type Brief struct {
	LeadID        string
	State         lifecycle.State
	Version       uint64
	Profile       *eventv1.Profile
	FirstTouch    FirstTouch
	Activities    []Activity // newest first, at most maxActivities
	ActivityCount int        // how many in all
	Score         *eventv1.LeadScored
	QualifiedAt   time.Time
	Journey       int
	Owners        []Ownership
	Rejections    []Rejection
	Recycles      []Recycle
	Consents      []*eventv1.Consent
	Routing       *eventv1.RoutingDecision
	Segment       string
	SLA           []SLAEntry
	Opportunity   *Opportunity
}

// FirstTouch is where the lead came from.
type FirstTouch struct {
	At          time.Time
	Attribution *eventv1.Attribution
	Campaign    *eventv1.CampaignRegistered
}

// Activity is one engagement signal.
type Activity struct {
	At         time.Time
	Type       eventv1.ActivityType
	CampaignID string
	Detail     string
	sealed     []byte // the detail, sealed
}

// Ownership is one rep's time with the lead.
type Ownership struct {
	Owner      lifecycle.Owner
	From, To   time.Time
	How, Ended string
	Journey    int
}

// Rejection is sales turning the lead down.
type Rejection struct {
	At     time.Time
	RepID  string
	Reason eventv1.RejectReason
	Note   string
	sealed []byte // the note, sealed
}

// Recycle is the lead going back to marketing.
type Recycle struct {
	At            time.Time
	Cause, Detail string
	sealed        []byte // the rep's words, sealed: Detail once opened
}

// SLAEntry is one warning or breach.
type SLAEntry struct {
	At         time.Time
	Kind       eventv1.SLAKind
	Breached   bool
	Owner      *eventv1.Owner
	Due        time.Time
	Escalation eventv1.SLAEscalation
}

// Opportunity is the lead's deal.
type Opportunity struct {
	ID, Stage     string
	Amount        *eventv1.Money
	ExpectedClose time.Time
	Outcome       string
	LostReason    string
	sealedLost    []byte // LostReason, sealed
}

const maxActivities = 50

// HandoffBrief reads a lead's events and tells its story: where it came
// from (source and campaign of the first touch), what it did (key
// activities), its score with reasons and model version, every owner it
// had and how each time ended, rejections and recycles, consent as it
// stands, the routing decision that gave it to its owner, and its SLAs.
// With the vault (Personal), the company, the title and the activities'
// details are opened; contact data is intake's to hand out.
//
// Errors: *ValidationError, ErrNotFound.
func (a *App) HandoffBrief(ctx context.Context, leadID string) (Brief, error) {
	var v violations
	checkLeadID(&v, leadID)
	if err := v.err(); err != nil {
		return Brief{}, err
	}
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return Brief{}, err
	}
	if len(recs) == 0 {
		return Brief{}, fmt.Errorf("lead %s: %w", leadID, ErrNotFound)
	}
	b := Brief{LeadID: leadID}
	consents := map[eventv1.ConsentChannel]*eventv1.Consent{}
	var profile *eventv1.Profile
	var sealed [][]byte // every submission's sealed personal data
	endOwner := func(at time.Time, how string) {
		if n := len(b.Owners); n > 0 && b.Owners[n-1].To.IsZero() {
			b.Owners[n-1].To, b.Owners[n-1].Ended = at, how
		}
	}
	var lastAssignedDecision *eventv1.RoutingDecision
	for _, r := range recs {
		ev := r.Event
		at := ev.GetOccurredAt().AsTime()
		b.State, b.Version = lifecycle.FromProto(ev.GetLifecycle()), r.Seq
		switch p := ev.GetPayload().(type) {
		case *eventv1.Event_LeadCaptured:
			profile = proto.CloneOf(p.LeadCaptured.GetProfile())
			sealed = [][]byte{p.LeadCaptured.GetSealedPersonal()}
			b.FirstTouch = FirstTouch{At: at, Attribution: p.LeadCaptured.GetAttribution()}
			for _, c := range p.LeadCaptured.GetConsents() {
				consents[c.GetChannel()] = c
			}
		case *eventv1.Event_LeadResubmitted:
			profile = mergeProfile(profile, p.LeadResubmitted.GetProfile())
			sealed = append(sealed, p.LeadResubmitted.GetSealedPersonal())
		case *eventv1.Event_ActivityRecorded:
			x := p.ActivityRecorded
			b.Activities = append(b.Activities, Activity{At: at, Type: x.GetType(), CampaignID: x.GetCampaignId(), Detail: x.GetDetail(),
				sealed: x.GetSealedDetail()})
		case *eventv1.Event_ConsentChanged:
			consents[p.ConsentChanged.GetConsent().GetChannel()] = p.ConsentChanged.GetConsent()
		case *eventv1.Event_LeadScored:
			b.Score = p.LeadScored
		case *eventv1.Event_LeadQualified:
			b.Journey++
			b.QualifiedAt = at
		case *eventv1.Event_LeadDisqualified:
			if p.LeadDisqualified.GetNotNow() {
				b.Recycles = append(b.Recycles, Recycle{At: at, Cause: "not now", Detail: p.LeadDisqualified.GetReason()})
			}
		case *eventv1.Event_LeadAssigned:
			how := "routed"
			if p.LeadAssigned.GetRule() == "manual" {
				how = "assigned"
			}
			b.Owners = append(b.Owners, Ownership{Owner: ownerOf(p.LeadAssigned.GetOwner()), From: at, How: how, Journey: b.Journey})
			b.Segment = p.LeadAssigned.GetSegment()
			lastAssignedDecision = p.LeadAssigned.GetDecision()
		case *eventv1.Event_LeadReassigned:
			how := "reassigned"
			if p.LeadReassigned.GetCause() == eventv1.ReassignCause_REASSIGN_CAUSE_ESCALATION {
				how = "escalated"
			}
			endOwner(at, how)
			b.Owners = append(b.Owners, Ownership{Owner: ownerOf(p.LeadReassigned.GetTo()), From: at, How: how, Journey: b.Journey})
			if d := p.LeadReassigned.GetDecision(); d != nil {
				lastAssignedDecision = d
			}
		case *eventv1.Event_LeadRejected:
			x := p.LeadRejected
			endOwner(at, "rejected")
			b.Rejections = append(b.Rejections, Rejection{At: at, RepID: x.GetRepId(), Reason: x.GetReason(), Note: x.GetNote(), sealed: x.GetSealedNote()})
			b.Recycles = append(b.Recycles, Recycle{At: at, Cause: "rejected", Detail: strings.TrimPrefix(x.GetReason().String(), "REJECT_REASON_")})
		case *eventv1.Event_LeadRecycled:
			endOwner(at, "recycled")
			cause := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(p.LeadRecycled.GetCause().String(), "RECYCLE_CAUSE_"), "_", " "))
			b.Recycles = append(b.Recycles, Recycle{At: at, Cause: cause, Detail: p.LeadRecycled.GetNote()})
		case *eventv1.Event_SlaWarned:
			x := p.SlaWarned
			b.SLA = append(b.SLA, SLAEntry{At: at, Kind: x.GetSla(), Owner: x.GetOwner(), Due: x.GetDueAt().AsTime()})
		case *eventv1.Event_SlaBreached:
			x := p.SlaBreached
			b.SLA = append(b.SLA, SLAEntry{At: at, Kind: x.GetSla(), Breached: true, Owner: x.GetOwner(), Due: x.GetDueAt().AsTime(), Escalation: x.GetEscalation()})
		case *eventv1.Event_OpportunityCreated:
			x := p.OpportunityCreated
			b.Opportunity = &Opportunity{ID: x.GetOpportunityId(), Stage: x.GetStage(), Amount: x.GetAmount(), Outcome: "open"}
			if x.GetExpectedClose() != nil {
				b.Opportunity.ExpectedClose = x.GetExpectedClose().AsTime()
			}
		case *eventv1.Event_OpportunityStageChanged:
			if b.Opportunity != nil {
				b.Opportunity.Stage = p.OpportunityStageChanged.GetToStage()
				if m := p.OpportunityStageChanged.GetAmount(); m != nil {
					b.Opportunity.Amount = m
				}
			}
		case *eventv1.Event_DealWon:
			endOwner(at, "won")
			if b.Opportunity != nil {
				b.Opportunity.Outcome, b.Opportunity.Amount = "won", p.DealWon.GetAmount()
			}
		case *eventv1.Event_DealLost:
			endOwner(at, "lost")
			if b.Opportunity != nil {
				b.Opportunity.Outcome, b.Opportunity.LostReason, b.Opportunity.sealedLost = "lost", p.DealLost.GetReason(), p.DealLost.GetSealedReason()
			}
			b.Recycles = append(b.Recycles, Recycle{At: at, Cause: "lost", Detail: p.DealLost.GetReason(), sealed: p.DealLost.GetSealedReason()})
		case *eventv1.Event_LeadMerged:
			if !envelope.SurvivorSide(ev) { // the survivor keeps its owner
				endOwner(at, "merged")
			}
		case *eventv1.Event_LeadUnmerged:
			switch b.State.Status {
			case lifecycle.StatusAssigned, lifecycle.StatusAccepted, lifecycle.StatusOpportunity:
				if !envelope.SurvivorSide(ev) {
					b.Owners = append(b.Owners, Ownership{Owner: b.State.Owner, From: at, How: "unmerged", Journey: b.Journey})
				}
			}
		case *eventv1.Event_LeadErased:
			endOwner(at, "erased")
		}
	}
	b.Profile = profile
	b.Routing = lastAssignedDecision
	b.ActivityCount = len(b.Activities)
	slices.Reverse(b.Activities)
	if len(b.Activities) > maxActivities {
		b.Activities = b.Activities[:maxActivities]
	}
	if err := a.openBrief(ctx, &b, sealed); err != nil {
		return Brief{}, err
	}
	for _, ch := range []eventv1.ConsentChannel{eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, eventv1.ConsentChannel_CONSENT_CHANNEL_PHONE,
		eventv1.ConsentChannel_CONSENT_CHANNEL_SMS, eventv1.ConsentChannel_CONSENT_CHANNEL_TRACKING} {
		if c, ok := consents[ch]; ok {
			b.Consents = append(b.Consents, c)
		}
	}
	if id := b.FirstTouch.Attribution.GetCampaignId(); id != "" {
		camp, err := a.campaign(ctx, id)
		if err != nil {
			return Brief{}, err
		}
		b.FirstTouch.Campaign = camp
	}
	return b, nil
}

func (a *App) campaign(ctx context.Context, id string) (*eventv1.CampaignRegistered, error) {
	recs, err := a.store.Campaign(id).LoadAfter(ctx, 0)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	for _, r := range recs {
		if c := r.Event.GetCampaignRegistered(); c != nil {
			return c, nil
		}
	}
	return nil, nil
}

func ownerOf(o *eventv1.Owner) lifecycle.Owner {
	return lifecycle.Owner{Kind: lifecycle.OwnerKind(o.GetKind()), ID: o.GetId()}
}

// openBrief fills in what is sealed (sealed: every submission's personal
// data): the company and title the lead gave last, its activities'
// details, and the reps' notes and lost reasons. An erased lead's stay
// empty.
func (a *App) openBrief(ctx context.Context, b *Brief, sealed [][]byte) error {
	if a.personal == nil {
		return nil
	}
	company, title, err := a.sealedProfile(ctx, b.LeadID, slices.DeleteFunc(sealed, func(s []byte) bool { return len(s) == 0 }), true)
	if err != nil {
		return err
	}
	if company != "" || title != "" {
		if b.Profile == nil {
			b.Profile = &eventv1.Profile{}
		}
		b.Profile.Company, b.Profile.Title = cmp.Or(company, b.Profile.GetCompany()), cmp.Or(title, b.Profile.GetTitle())
	}
	open := func(text *string, sealed []byte) error {
		if len(sealed) == 0 {
			return nil
		}
		s, err := a.personal.Text(ctx, b.LeadID, sealed)
		*text = cmp.Or(s, *text)
		return err
	}
	var errs []error
	for i := range b.Activities {
		errs = append(errs, open(&b.Activities[i].Detail, b.Activities[i].sealed))
	}
	for i := range b.Rejections {
		errs = append(errs, open(&b.Rejections[i].Note, b.Rejections[i].sealed))
	}
	for i := range b.Recycles {
		errs = append(errs, open(&b.Recycles[i].Detail, b.Recycles[i].sealed))
	}
	if o := b.Opportunity; o != nil {
		errs = append(errs, open(&o.LostReason, o.sealedLost))
	}
	return errors.Join(errs...)
}
