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
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// Brief is a lead's story for the rep, assembled from its events and
// those of the leads merged into it. An entry's LeadID names the merged
// lead it comes from; empty: the brief's own.
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
	LeadID      string
	sealed      []byte // the capture's personal data, sealed: its UTM tags, once opened
}

// Activity is one engagement signal.
type Activity struct {
	At         time.Time
	Type       eventv1.ActivityType
	CampaignID string
	Detail     string
	LeadID     string
	sealed     []byte // the detail, sealed
	via        string // the merged lead it came through, whose key sealed it
}

// Ownership is one rep's time with the lead.
type Ownership struct {
	Owner      lifecycle.Owner
	From, To   time.Time
	How, Ended string
	Journey    int
	LeadID     string
	AcceptedAt time.Time // zero: not accepted
	Contacts   []Contact
}

// Contact is one logged contact attempt.
type Contact struct {
	At      time.Time
	Channel eventv1.ContactChannel
	Outcome eventv1.ContactOutcome
}

// Rejection is sales turning the lead down.
type Rejection struct {
	At     time.Time
	RepID  string
	Reason eventv1.RejectReason
	Note   string
	LeadID string
	sealed []byte // the note, sealed
}

// Recycle is the lead going back to marketing: once per hand-back,
// though the event that hands it back (a rejection, a loss, a "not now")
// and nurture's LeadRecycled that takes it up both record it.
type Recycle struct {
	At            time.Time
	Cause, Detail string
	LeadID        string
	sealed        []byte // the rep's words, sealed: added to Detail once opened
	source        string // the event type that handed it back, "" for nurture's own
}

// SLAEntry is one warning or breach.
type SLAEntry struct {
	At         time.Time
	Kind       eventv1.SLAKind
	Breached   bool
	Owner      *eventv1.Owner
	Due        time.Time
	Escalation eventv1.SLAEscalation
	Journey    int
}

// Opportunity is the lead's latest deal, of the journey it was made in.
type Opportunity struct {
	ID, Stage     string
	Amount        *eventv1.Money
	ExpectedClose time.Time
	Outcome       string
	LostReason    string
	Journey       int
	sealedLost    []byte // LostReason, sealed
}

const maxActivities = 50

// maxMergeHops bounds how far the brief follows merges into merges:
// intake refuses longer chains (its maxMergeDepth), so this only guards
// a broken stream.
const maxMergeHops = 8

// HandoffBrief reads a lead's events and tells its story: where it came
// from (source and campaign of the first touch), what it did (key
// activities), its score with reasons and model version, every owner it
// had and how each time ended, rejections and recycles, consent as it
// stands, the routing decision that gave it to its owner in this journey
// (or queued it), and its SLAs. The leads merged into it add their
// activities, owners, rejections and recycles, and the earliest capture
// is the first touch. With the vault (Personal), the company, the title,
// the activities' details and the reps' notes are opened; contact data
// is intake's to hand out.
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
	b, sealed, absorbed := briefOf(leadID, recs)
	seen := map[string]bool{leadID: true}
	erased := map[string]bool{} // merged leads erased (their keys may outlive it a moment)
	for range maxMergeHops {
		var next []string
		for _, id := range absorbed {
			if seen[id] {
				continue
			}
			seen[id] = true
			recs, err := a.leads.Load(ctx, id)
			if err != nil {
				return Brief{}, fmt.Errorf("lead %s merged into %s: %w", id, leadID, err)
			}
			x, told, more := briefOf(id, recs)
			if x.State.Status == lifecycle.StatusErased {
				erased[id] = true
			}
			b.absorb(x)
			// Its person's own answers (company, title) are sealed with its
			// key: beneath this lead's, as its profile is (envelope.Forms).
			sealed = slices.Concat(throughMerged(id, told), sealed)
			next = append(next, more...)
		}
		absorbed = next
	}
	slices.SortStableFunc(b.Activities, func(p, q Activity) int { return p.At.Compare(q.At) })
	slices.SortStableFunc(b.Owners, func(p, q Ownership) int { return p.From.Compare(q.From) })
	slices.SortStableFunc(b.Rejections, func(p, q Rejection) int { return p.At.Compare(q.At) })
	slices.SortStableFunc(b.Recycles, func(p, q Recycle) int { return p.At.Compare(q.At) })
	b.ActivityCount = len(b.Activities)
	slices.Reverse(b.Activities)
	if len(b.Activities) > maxActivities {
		b.Activities = b.Activities[:maxActivities]
	}
	// An erased lead's keys may outlive LeadErased for a moment (or until
	// its erasure's timer finishes a cut-short one): open nothing of it,
	// nor of a merged lead erased, nor what came through one.
	if len(erased) > 0 {
		b.forget(erased)
		sealed = slices.DeleteFunc(sealed, func(s sealedData) bool { return erased[s.via] })
	}
	if b.State.Status != lifecycle.StatusErased {
		if err := a.openBrief(ctx, &b, sealed); err != nil {
			return Brief{}, err
		}
	}
	// What a merged lead's person did through this lead is theirs: named
	// so, as that lead's own entries are (opened above with this lead's id
	// for data sealed before 2026-12-05).
	for i := range b.Activities {
		if v := b.Activities[i].via; v != "" {
			b.Activities[i].LeadID = v
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

// forget drops the sealed data of the entries of the erased leads, and of
// what came through them, so none is opened.
func (b *Brief) forget(erased map[string]bool) {
	if erased[b.FirstTouch.LeadID] {
		b.FirstTouch.sealed = nil
	}
	for i := range b.Activities {
		if e := &b.Activities[i]; erased[e.LeadID] || erased[e.via] {
			e.sealed = nil
		}
	}
	for i := range b.Rejections {
		if erased[b.Rejections[i].LeadID] {
			b.Rejections[i].sealed = nil
		}
	}
	for i := range b.Recycles {
		if erased[b.Recycles[i].LeadID] {
			b.Recycles[i].sealed = nil
		}
	}
}

// absorb adds the story of x, a lead merged into b's, to b: its first
// touch if earlier, its activities, owners, rejections and recycles.
// The rest (state, score, consent, routing, SLAs) is b's own: intake
// carried what counts of it over at the merge.
func (b *Brief) absorb(x Brief) {
	if t := x.FirstTouch; !t.At.IsZero() && (b.FirstTouch.At.IsZero() || t.At.Before(b.FirstTouch.At)) {
		b.FirstTouch, b.FirstTouch.LeadID = t, x.LeadID
	}
	for _, e := range x.Activities {
		e.LeadID = x.LeadID
		b.Activities = append(b.Activities, e)
	}
	for _, e := range x.Owners {
		e.LeadID = x.LeadID
		b.Owners = append(b.Owners, e)
	}
	for _, e := range x.Rejections {
		e.LeadID = x.LeadID
		b.Rejections = append(b.Rejections, e)
	}
	for _, e := range x.Recycles {
		e.LeadID = x.LeadID
		b.Recycles = append(b.Recycles, e)
	}
}

// recycleSources are the events that hand a lead back to marketing,
// which nurture's LeadRecycled then takes up (its source_event_type).
var recycleSources = map[string]bool{
	string(lifecycle.KindRejected): true, string(lifecycle.KindDealLost): true, string(lifecycle.KindDisqualified): true,
}

// briefOf is one lead's story from its own events, activities in the
// order they came; sealed is every submission's sealed personal data,
// absorbed the leads merged into it (and not unmerged since).
func briefOf(leadID string, recs []eventstore.Record) (b Brief, sealed []sealedData, absorbed []string) {
	b.LeadID = leadID
	consents := map[eventv1.ConsentChannel]*eventv1.Consent{}
	var (
		profile *eventv1.Profile
		forms   envelope.Forms
	)
	// current is the ownership still running, if any.
	current := func() *Ownership {
		if n := len(b.Owners); n > 0 && b.Owners[n-1].To.IsZero() {
			return &b.Owners[n-1]
		}
		return nil
	}
	endOwner := func(at time.Time, how string) {
		if o := current(); o != nil {
			o.To, o.Ended = at, how
		}
	}
	// The recycle entry each handing-back event made, by event id, and
	// the latest one no LeadRecycled took up yet: nurture's recycle of
	// it (caused by it) is that entry, not another.
	handedBack := map[string]int{}
	unclaimed := -1
	handBack := func(ev *eventv1.Event, r Recycle) {
		r.source = ev.GetEventType()
		b.Recycles = append(b.Recycles, r)
		unclaimed = len(b.Recycles) - 1
		handedBack[ev.GetEventId()] = unclaimed
	}
	for _, r := range recs {
		ev := r.Event
		at := ev.GetOccurredAt().AsTime()
		b.State, b.Version = lifecycle.FromProto(ev.GetLifecycle()), r.Seq
		switch p := ev.GetPayload().(type) {
		case *eventv1.Event_LeadCaptured:
			profile, forms = proto.CloneOf(p.LeadCaptured.GetProfile()), envelope.Forms{}
			sealed = []sealedData{{b: p.LeadCaptured.GetSealedPersonal()}}
			b.FirstTouch = FirstTouch{At: at, Attribution: p.LeadCaptured.GetAttribution(), sealed: p.LeadCaptured.GetSealedPersonal()}
			for _, c := range p.LeadCaptured.GetConsents() {
				consents[c.GetChannel()] = c
			}
		case *eventv1.Event_LeadResubmitted:
			forms.Add(profile, p.LeadResubmitted.GetMergedFrom(), p.LeadResubmitted.GetProfile())
			profile = envelope.MergeProfile(profile, p.LeadResubmitted.GetProfile())
			sealed = append(sealed, sealedData{via: p.LeadResubmitted.GetMergedFrom(), b: p.LeadResubmitted.GetSealedPersonal()})
		case *eventv1.Event_ActivityRecorded:
			x := p.ActivityRecorded
			b.Activities = append(b.Activities, Activity{At: at, Type: x.GetType(), CampaignID: x.GetCampaignId(), Detail: x.GetDetail(),
				sealed: x.GetSealedDetail(), via: x.GetMergedFrom()})
		case *eventv1.Event_ConsentChanged:
			consents[p.ConsentChanged.GetConsent().GetChannel()] = p.ConsentChanged.GetConsent()
		case *eventv1.Event_LeadScored:
			b.Score = p.LeadScored
		case *eventv1.Event_LeadQualified:
			// A new journey: an earlier one's routing is not this one's. Its
			// number is the lifecycle's cycle, which every event carries (a
			// lead nurtured before it first qualified is in its second);
			// events from before cycles were recorded count qualifications.
			b.Journey = max(b.Journey+1, int(ev.GetLifecycle().GetCycle()))
			b.QualifiedAt = at
			b.Routing, b.Segment = nil, ""
		case *eventv1.Event_LeadDisqualified:
			if p.LeadDisqualified.GetNotNow() {
				handBack(ev, Recycle{At: at, Cause: "not now", Detail: p.LeadDisqualified.GetReason()})
			}
		case *eventv1.Event_LeadQueued:
			// No rep could take it: the decision says why, and names the queue.
			b.Routing, b.Segment = p.LeadQueued.GetDecision(), p.LeadQueued.GetDecision().GetSegment()
		case *eventv1.Event_LeadAssigned:
			how := "routed"
			if p.LeadAssigned.GetRule() == routing.RuleManual {
				how = "assigned"
			}
			b.Owners = append(b.Owners, Ownership{Owner: ownerOf(p.LeadAssigned.GetOwner()), From: at, How: how, Journey: b.Journey})
			b.Routing, b.Segment = p.LeadAssigned.GetDecision(), p.LeadAssigned.GetSegment()
		case *eventv1.Event_LeadReassigned:
			how := "reassigned"
			switch p.LeadReassigned.GetCause() {
			case eventv1.ReassignCause_REASSIGN_CAUSE_ESCALATION:
				how = "escalated"
			case eventv1.ReassignCause_REASSIGN_CAUSE_OUT_OF_OFFICE:
				how = "out of office"
			case eventv1.ReassignCause_REASSIGN_CAUSE_REP_INACTIVE:
				how = "rep inactive"
			}
			endOwner(at, how)
			b.Owners = append(b.Owners, Ownership{Owner: ownerOf(p.LeadReassigned.GetTo()), From: at, How: how, Journey: b.Journey})
			if d := p.LeadReassigned.GetDecision(); d != nil {
				b.Routing = d
			}
		case *eventv1.Event_LeadAccepted:
			if o := current(); o != nil {
				o.AcceptedAt = at
			}
		case *eventv1.Event_ContactAttempted:
			if o := current(); o != nil {
				o.Contacts = append(o.Contacts, Contact{At: at, Channel: p.ContactAttempted.GetChannel(), Outcome: p.ContactAttempted.GetOutcome()})
			}
		case *eventv1.Event_LeadRejected:
			x := p.LeadRejected
			endOwner(at, "rejected")
			b.Rejections = append(b.Rejections, Rejection{At: at, RepID: x.GetRepId(), Reason: x.GetReason(), Note: x.GetNote(), sealed: x.GetSealedNote()})
			detail := strings.TrimPrefix(x.GetReason().String(), "REJECT_REASON_")
			if n := strings.TrimSpace(x.GetNote()); n != "" { // in the clear before notes were sealed
				detail += ": " + n
			}
			handBack(ev, Recycle{At: at, Cause: "rejected", Detail: detail, sealed: x.GetSealedNote()})
		case *eventv1.Event_LeadRecycled:
			x := p.LeadRecycled
			endOwner(at, "recycled")
			i, ok := handedBack[ev.GetCausationId()]
			if !ok && unclaimed >= 0 && recycleSources[x.GetSourceEventType()] && b.Recycles[unclaimed].source == x.GetSourceEventType() {
				i, ok = unclaimed, true // written without its cause's id
			}
			if ok {
				if len(b.Recycles[i].sealed) == 0 {
					b.Recycles[i].sealed = x.GetSealedNote()
				}
				if i == unclaimed {
					unclaimed = -1
				}
				break
			}
			cause := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(x.GetCause().String(), "RECYCLE_CAUSE_"), "_", " "))
			b.Recycles = append(b.Recycles, Recycle{At: at, Cause: cause, Detail: x.GetNote(), sealed: x.GetSealedNote()})
		case *eventv1.Event_SlaWarned:
			x := p.SlaWarned
			b.SLA = append(b.SLA, SLAEntry{At: at, Kind: x.GetSla(), Owner: x.GetOwner(), Due: x.GetDueAt().AsTime(), Journey: b.Journey})
		case *eventv1.Event_SlaBreached:
			x := p.SlaBreached
			b.SLA = append(b.SLA, SLAEntry{At: at, Kind: x.GetSla(), Breached: true, Owner: x.GetOwner(), Due: x.GetDueAt().AsTime(), Escalation: x.GetEscalation(),
				Journey: b.Journey})
		case *eventv1.Event_OpportunityCreated:
			x := p.OpportunityCreated
			b.Opportunity = &Opportunity{ID: x.GetOpportunityId(), Stage: x.GetStage(), Amount: x.GetAmount(), Outcome: "open", Journey: b.Journey}
			if d := ev.GetLifecycle().GetDeadline(); d != nil { // the one given, else the policy's
				b.Opportunity.ExpectedClose = d.AsTime()
			}
		case *eventv1.Event_OpportunityStageChanged:
			if b.Opportunity != nil {
				b.Opportunity.Stage = p.OpportunityStageChanged.GetToStage()
				if m := p.OpportunityStageChanged.GetAmount(); m != nil {
					b.Opportunity.Amount = m
				}
				if c := p.OpportunityStageChanged.GetExpectedClose(); c != nil {
					b.Opportunity.ExpectedClose = c.AsTime()
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
			handBack(ev, Recycle{At: at, Cause: "lost", Detail: p.DealLost.GetReason(), sealed: p.DealLost.GetSealedReason()})
		case *eventv1.Event_LeadMerged:
			if !envelope.SurvivorSide(ev) { // the survivor keeps its owner
				endOwner(at, "merged")
			} else if id := p.LeadMerged.GetAbsorbedLeadId(); !slices.Contains(absorbed, id) {
				absorbed = append(absorbed, id)
			}
			if m := p.LeadMerged; envelope.SurvivorSide(ev) && m.GetAbsorbedProfile() != nil {
				profile = forms.Absorb(profile, m.GetAbsorbedLeadId(), m.GetAbsorbedProfile())
			}
		case *eventv1.Event_LeadUnmerged:
			if envelope.SurvivorSide(ev) {
				absorbed = slices.DeleteFunc(absorbed, func(id string) bool { return id == p.LeadUnmerged.GetAbsorbedLeadId() })
				// What came through it went back with it (intake's unmerge).
				sealed = withoutVia(sealed, p.LeadUnmerged)
				b.Activities = slices.DeleteFunc(b.Activities, func(x Activity) bool { return envelope.GivenBack(p.LeadUnmerged, x.via) })
				if back, ok := forms.GiveBack(p.LeadUnmerged); ok {
					profile = back
				}
			}
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
	for _, ch := range []eventv1.ConsentChannel{eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, eventv1.ConsentChannel_CONSENT_CHANNEL_PHONE,
		eventv1.ConsentChannel_CONSENT_CHANNEL_SMS, eventv1.ConsentChannel_CONSENT_CHANNEL_TRACKING} {
		if c, ok := consents[ch]; ok {
			b.Consents = append(b.Consents, c)
		}
	}
	return b, sealed, absorbed
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
func (a *App) openBrief(ctx context.Context, b *Brief, sealed []sealedData) error {
	if a.personal == nil {
		return nil
	}
	company, title, err := a.sealedProfile(ctx, b.LeadID, slices.DeleteFunc(sealed, func(s sealedData) bool { return len(s.b) == 0 }), true)
	if err != nil {
		return err
	}
	if company != "" || title != "" {
		if b.Profile == nil {
			b.Profile = &eventv1.Profile{}
		}
		b.Profile.Company, b.Profile.Title = cmp.Or(company, b.Profile.GetCompany()), cmp.Or(title, b.Profile.GetTitle())
	}
	// The capture's UTM tags are sealed with the rest of its personal
	// data: a rep reads them, as the company and title.
	if t := &b.FirstTouch; len(t.sealed) > 0 {
		p, err := a.personal.Personal(ctx, cmp.Or(t.LeadID, b.LeadID), "", t.sealed)
		if err != nil {
			return err
		}
		if p.GetUtmSource() != "" || p.GetUtmMedium() != "" || p.GetUtmCampaign() != "" {
			at := proto.CloneOf(t.Attribution) // the event's own, shared with the fold
			if at == nil {
				at = &eventv1.Attribution{}
			}
			at.UtmSource, at.UtmMedium, at.UtmCampaign = cmp.Or(p.GetUtmSource(), at.GetUtmSource()), cmp.Or(p.GetUtmMedium(), at.GetUtmMedium()), cmp.Or(p.GetUtmCampaign(), at.GetUtmCampaign())
			t.Attribution = at
		}
	}
	// A merged lead's entries are sealed with that lead's key, and so is
	// what came through a lead merged into the entry's (via).
	opened := func(leadID, via string, sealed []byte) (string, error) {
		if len(sealed) == 0 {
			return "", nil
		}
		return a.personal.Text(ctx, cmp.Or(leadID, b.LeadID), via, sealed)
	}
	open := func(text *string, leadID, via string, sealed []byte) error {
		s, err := opened(leadID, via, sealed)
		*text = cmp.Or(s, *text)
		return err
	}
	var errs []error
	for i := range b.Activities {
		errs = append(errs, open(&b.Activities[i].Detail, b.Activities[i].LeadID, b.Activities[i].via, b.Activities[i].sealed))
	}
	for i := range b.Rejections {
		errs = append(errs, open(&b.Rejections[i].Note, b.Rejections[i].LeadID, "", b.Rejections[i].sealed))
	}
	for i := range b.Recycles {
		r := &b.Recycles[i]
		s, err := opened(r.LeadID, "", r.sealed)
		errs = append(errs, err)
		// The rep's words follow what the entry says in the clear (a
		// rejection's code), or are all it says (a lost deal's reason).
		switch {
		case s == "" || s == r.Detail:
		case r.Detail == "":
			r.Detail = s
		default:
			r.Detail += ": " + s
		}
	}
	if o := b.Opportunity; o != nil {
		errs = append(errs, open(&o.LostReason, "", "", o.sealedLost))
	}
	return errors.Join(errs...)
}
