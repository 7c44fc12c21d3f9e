package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// The brief tells the lead's real history from the stream: first touch
// and its campaign, activities, score with reasons and model version,
// every owner and how each time ended, the rejection and recycle of an
// earlier journey, consent as it stands, and the routing decision.
func TestHandoffBrief(t *testing.T) { testHandoffBrief(t, newWorld) }

func testHandoffBrief(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	ctx := ctxT(t)
	c := s.client

	// A campaign, as intake registers it.
	camp, err := envelope.NewEvent("", &eventv1.CampaignRegistered{CampaignId: "webinar-q4", Name: "Q4 product webinar", Channel: eventv1.Channel_CHANNEL_WEBINAR},
		envelope.Meta{Actor: intakeActor, CorrelationID: "c"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.Append(ctx, eventstore.CampaignSubject("webinar-q4"), 0, camp); err != nil {
		t.Fatal(err)
	}

	id := uuid.NewString()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{SealedPersonal: w.sealed(t, id, &eventv1.Personal{Contact: &eventv1.Contact{Email: "ada@example.com"}, UtmMedium: "email", UtmCampaign: "spring"}), Profile: dach(50),
		Attribution: &eventv1.Attribution{Source: "webinar", CampaignId: "webinar-q4", UtmSource: "newsletter"},
		Consents:    []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_GRANTED}}}, intakeActor)
	for _, a := range []eventv1.ActivityType{eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED, eventv1.ActivityType_ACTIVITY_TYPE_PRICING_PAGE_VISIT} {
		w.write(t, id, lifecycle.Command{Name: lifecycle.RecordActivity}, &eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: a, CampaignId: "webinar-q4"}, intakeActor)
	}
	w.write(t, id, lifecycle.Command{Name: lifecycle.ChangeConsent}, &eventv1.ConsentChanged{
		Consent: &eventv1.Consent{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_PHONE, Status: eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN}, Source: "preference-center"}, intakeActor)
	w.qualify(t, id)
	first := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	if _, err := c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: id, RepId: first, RequestId: "r1", Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY, Note: "budget next year"}); err != nil {
		t.Fatal(err)
	}
	// Nurture picks it up and it comes back.
	w.write(t, id, lifecycle.Command{Name: lifecycle.Enroll, Owner: lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "drip"}}, &eventv1.NurtureEnrolled{ProgramId: "drip"}, intakeActor)
	w.write(t, id, lifecycle.Command{Name: lifecycle.RecordActivity}, &eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST}, intakeActor)
	w.qualify(t, id)
	second := ownerOf(w.waitFor(t, id, "LeadAssigned", 2)[1])
	if _, err := c.ReassignLead(ctx, &handoffv1.ReassignLeadRequest{LeadId: id, ToRepId: "mia", RequestId: "re1", Reason: "strategic", ReassignedBy: ops}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: "mia", RequestId: "a1"}); err != nil {
		t.Fatal(err)
	}

	r, err := c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: id})
	if err != nil {
		t.Fatal(err)
	}
	b := r.GetBrief()
	if b.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_ACCEPTED || b.GetOwner().GetId() != "mia" || b.GetJourney() != 2 || b.GetVersion() == 0 {
		t.Errorf("state: %v %v journey %d", b.GetStatus(), b.GetOwner(), b.GetJourney())
	}
	ft := b.GetFirstTouch()
	if ft.GetAttribution().GetCampaignId() != "webinar-q4" || ft.GetCampaign().GetName() != "Q4 product webinar" || ft.GetAt() == nil {
		t.Errorf("first touch: %v", ft)
	}
	// Its UTM tags, sealed with the capture's personal data (an older
	// capture's in the clear), are the rep's to read.
	if a := ft.GetAttribution(); a.GetUtmSource() != "newsletter" || a.GetUtmMedium() != "email" || a.GetUtmCampaign() != "spring" {
		t.Errorf("first touch's UTM tags: %v, want newsletter / email / spring", a)
	}
	if b.GetActivityCount() != 3 || b.GetActivities()[0].GetType() != eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST {
		t.Errorf("activities (newest first): %v", b.GetActivities())
	}
	if b.GetScore().GetModelVersion() != 1 || b.GetScore().GetTotal() != 80 || len(b.GetScore().GetReasons()) != 1 || b.GetQualifiedAt() == nil {
		t.Errorf("score: %v", b.GetScore())
	}
	var story []string
	for _, o := range b.GetOwners() {
		story = append(story, o.GetOwner().GetId()+":"+o.GetHow()+"->"+o.GetEnded())
	}
	if want := first + ":routed->rejected " + second + ":routed->reassigned mia:reassigned->"; strings.Join(story, " ") != want {
		t.Errorf("owners\n got %s\nwant %s", strings.Join(story, " "), want)
	}
	if rj := b.GetRejections(); len(rj) != 1 || rj[0].GetReason() != eventv1.RejectReason_REJECT_REASON_NOT_READY || rj[0].GetNote() != "budget next year" || rj[0].GetRepId() != first {
		t.Errorf("rejections: %v", rj)
	}
	if rc := b.GetRecycles(); len(rc) != 1 || rc[0].GetCause() != "rejected" {
		t.Errorf("recycles: %v", rc)
	}
	consent := map[eventv1.ConsentChannel]eventv1.ConsentStatus{}
	for _, cs := range b.GetConsents() {
		consent[cs.GetChannel()] = cs.GetStatus()
	}
	if consent[eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL] != eventv1.ConsentStatus_CONSENT_STATUS_GRANTED ||
		consent[eventv1.ConsentChannel_CONSENT_CHANNEL_PHONE] != eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN {
		t.Errorf("consents: %v", b.GetConsents())
	}
	if b.GetRouting().GetRuleId() != "manual" || b.GetSegment() != "smb" || b.GetProfile().GetCountry() != "DE" {
		t.Errorf("routing %v, segment %q, profile %v", b.GetRouting(), b.GetSegment(), b.GetProfile())
	}

	// Erased, its keys not shredded yet: the brief opens none of it.
	w.write(t, id, lifecycle.Command{Name: lifecycle.Erase}, &eventv1.LeadErased{Reason: "request"}, intakeActor)
	r, err = c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: id})
	if err != nil {
		t.Fatal(err)
	}
	if rj := r.GetBrief().GetRejections(); r.GetBrief().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_ERASED || len(rj) != 1 || rj[0].GetNote() != "" {
		t.Errorf("brief of an erased lead: status %v, rejections %v, want ERASED and no note", r.GetBrief().GetStatus(), rj)
	}

	_, err = c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: uuid.NewString()})
	wantCode(t, err, codes.NotFound, "")
	_, err = c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: "lead.*"})
	wantCode(t, err, codes.InvalidArgument, "lead_id")
}

// Marketing's SLA targets are data: set, replaced, listed, validated; a
// segment's target waits for the routing rules that give the segment (a
// misspelt one would never be met, nor judged).
func TestMarketingTargets(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	ctx := ctxT(t)
	c := s.client
	mia := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "mia", Team: eventv1.Team_TEAM_MARKETING}
	_, err := c.SetMarketingTarget(ctx, &handoffv1.SetMarketingTargetRequest{Target: &eventv1.MarketingTarget{Period: "2026-Q1", Segment: "smb", MinMqls: 1}, SetBy: mia})
	wantCode(t, err, codes.InvalidArgument, "target.segment")
	routingSetup(t, c, 10)
	_, err = c.SetMarketingTarget(ctx, &handoffv1.SetMarketingTargetRequest{Target: &eventv1.MarketingTarget{Period: "2026-Q1", Segment: "smbb", MinMqls: 1}, SetBy: mia})
	wantCode(t, err, codes.InvalidArgument, "target.segment")
	for _, tg := range []*eventv1.MarketingTarget{
		{Period: "2026-Q1", Segment: "smb", MinMqls: 400, MinAcceptanceRateBps: 6000, MinMqlToOpportunityBps: 1500},
		{Period: "2026-Q1", Segment: "enterprise", MinMqls: 50, MinAcceptanceRateBps: 8000, MinMqlToOpportunityBps: 3000},
		{Period: "2026-Q1", Segment: "smb", MinMqls: 450, MinAcceptanceRateBps: 6000, MinMqlToOpportunityBps: 1500},
	} {
		if _, err := c.SetMarketingTarget(ctx, &handoffv1.SetMarketingTargetRequest{Target: tg, SetBy: mia}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := c.SetMarketingTarget(ctx, &handoffv1.SetMarketingTargetRequest{Target: &eventv1.MarketingTarget{Period: "2026-Q1", Segment: "smb",
		MinMqls: 450, MinAcceptanceRateBps: 6000, MinMqlToOpportunityBps: 1500}, SetBy: mia})
	if err != nil || !r.GetUnchanged() {
		t.Fatalf("the same target again: %v %v", r, err)
	}
	// Rules that no longer give a segment leave its targets settable: a
	// period judged on it can still be corrected.
	if _, err := c.SetRoutingRules(ctx, &handoffv1.SetRoutingRulesRequest{Rules: &eventv1.RoutingRules{DefaultSegment: "all", FallbackQueue: "triage"}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetMarketingTarget(ctx, &handoffv1.SetMarketingTargetRequest{Target: &eventv1.MarketingTarget{Period: "2026-Q1", Segment: "enterprise",
		MinMqls: 60, MinAcceptanceRateBps: 8000, MinMqlToOpportunityBps: 3000}, SetBy: mia}); err != nil {
		t.Fatalf("a target of a segment earlier rules gave: %v", err)
	}
	l, err := c.ListMarketingTargets(ctx, &handoffv1.ListMarketingTargetsRequest{})
	if err != nil || len(l.GetTargets()) != 2 || l.GetTargets()[1].GetSegment() != "smb" || l.GetTargets()[1].GetMinMqls() != 450 {
		t.Fatalf("targets: %v %v", l, err)
	}
	_, err = c.SetMarketingTarget(ctx, &handoffv1.SetMarketingTargetRequest{Target: &eventv1.MarketingTarget{Period: "Q1-2026"}, SetBy: mia})
	wantCode(t, err, codes.InvalidArgument, "target.period")
	_, err = c.SetMarketingTarget(ctx, &handoffv1.SetMarketingTargetRequest{Target: &eventv1.MarketingTarget{Period: "2026", MinAcceptanceRateBps: 12000}, SetBy: mia})
	wantCode(t, err, codes.InvalidArgument, "target.min_acceptance_rate_bps")
}

var nurtureSvc = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "nurture"}

// recycled writes what nurture writes for src, a rejection, a loss or a
// "not now" (services/nurture/app/owed.go): LeadRecycled caused by src,
// its note in the clear and the rep's words copied sealed; then the
// enrolment.
func (w *world) recycled(t testing.TB, leadID string, src *eventv1.Event) {
	t.Helper()
	p := &eventv1.LeadRecycled{SourceEventType: src.GetEventType()}
	switch x := src.GetPayload().(type) {
	case *eventv1.Event_LeadRejected:
		p.Cause, p.RejectReason, p.SealedNote = eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED, x.LeadRejected.GetReason(), x.LeadRejected.GetSealedNote()
		p.Note = "rejected by rep " + x.LeadRejected.GetRepId() + ": " + strings.TrimPrefix(x.LeadRejected.GetReason().String(), "REJECT_REASON_")
	case *eventv1.Event_DealLost:
		p.Cause, p.Note, p.SealedNote = eventv1.RecycleCause_RECYCLE_CAUSE_LOST, "deal lost", x.DealLost.GetSealedReason()
	case *eventv1.Event_LeadDisqualified:
		p.Cause, p.Note = eventv1.RecycleCause_RECYCLE_CAUSE_NOT_READY, "not now: "+x.LeadDisqualified.GetReason()
	default:
		t.Fatalf("nurture recycles no %s", src.GetEventType())
	}
	meta := envelope.Meta{Actor: nurtureSvc, CorrelationID: src.GetCorrelationId(), CausationID: src.GetEventId()}
	if _, err := w.appendLeadMeta(ctxT(t), leadID, lifecycle.Command{Name: lifecycle.Recycle, Reason: p.Note}, p, meta); err != nil {
		t.Fatal(err)
	}
	w.write(t, leadID, lifecycle.Command{Name: lifecycle.Enroll, Owner: lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "drip"}},
		&eventv1.NurtureEnrolled{ProgramId: "drip"}, nurtureSvc)
}

// A "not now", a rejection and a lost deal, each recycled by nurture:
// the brief lists each once, with the rep's words opened.
func TestBriefListsEachRecycleOnce(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	ctx := ctxT(t)
	c := s.client
	id := uuid.NewString()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{
		SealedPersonal: w.sealed(t, id, &eventv1.Personal{Contact: &eventv1.Contact{Email: "ada@example.com"}}), Profile: dach(5000)}, intakeActor)
	notNow := w.write(t, id, lifecycle.Command{Name: lifecycle.Disqualify, Reason: "no budget this year", NotNow: true},
		&eventv1.LeadDisqualified{Reason: "no budget this year", NotNow: true}, qualifyActor)
	w.recycled(t, id, notNow)

	w.qualify(t, id)
	first := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	if _, err := c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: id, RepId: first, RequestId: "r1", Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY,
		Note: "budget next year"}); err != nil {
		t.Fatal(err)
	}
	w.recycled(t, id, last(w.events(t, id)))

	w.qualify(t, id)
	second := ownerOf(w.waitFor(t, id, "LeadAssigned", 2)[1])
	if _, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: second, RequestId: "a2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: second, RequestId: "o2", Amount: eur(100_00), Stage: "discovery"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CloseLost(ctx, &handoffv1.CloseLostRequest{LeadId: id, RepId: second, RequestId: "l2", Reason: "went with a rival"}); err != nil {
		t.Fatal(err)
	}
	w.recycled(t, id, last(w.events(t, id)))

	r, err := c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: id})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rc := range r.GetBrief().GetRecycles() {
		got = append(got, rc.GetCause()+": "+rc.GetDetail())
	}
	want := []string{"not now: no budget this year", "rejected: NOT_READY: budget next year", "lost: went with a rival"}
	if !slices.Equal(got, want) {
		t.Errorf("recycles\n got %q\nwant %q", got, want)
	}

	// Back for a third journey, the lost deal is the second's: a rep
	// reading the brief does not take it for the lead's open deal.
	w.qualify(t, id)
	w.waitFor(t, id, "LeadAssigned", 3)
	r, err = c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: id})
	if err != nil {
		t.Fatal(err)
	}
	// The journeys are the lifecycle's cycles, as every event carries them:
	// nurtured before it first qualified, the lead is in its fourth.
	evs := w.events(t, id)
	cycle := func(typ string) int32 { return ofType(evs, typ)[len(ofType(evs, typ))-1].GetLifecycle().GetCycle() }
	if b := r.GetBrief(); cycle("LeadQualified") != 4 || b.GetJourney() != cycle("LeadQualified") || b.GetOpportunity().GetOutcome() != "lost" ||
		b.GetOpportunity().GetJourney() != cycle("OpportunityCreated") {
		t.Errorf("journey %d, deal %v; want journey %d, the deal lost in journey %d", b.GetJourney(), b.GetOpportunity(), cycle("LeadQualified"), cycle("OpportunityCreated"))
	}
}

// The routing decision and the segment are the current journey's: a
// lead queued in its second journey, in another segment, shows that.
func TestBriefRoutingIsThisJourneys(t *testing.T) {
	w, s, id, first := assignedLead(t) // enterprise
	ctx := ctxT(t)
	c := s.client
	if _, err := c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: id, RepId: first, RequestId: "r1", Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY}); err != nil {
		t.Fatal(err)
	}
	w.recycled(t, id, last(w.events(t, id)))
	w.write(t, id, lifecycle.Command{Name: lifecycle.Resubmit}, &eventv1.LeadResubmitted{Profile: &eventv1.Profile{Employees: 50}}, intakeActor) // smb now
	for _, r := range []string{"ann", "bob", "cat"} {
		if _, err := c.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: r, TeamId: "emea", Capacity: 10}, ChangedBy: ops}); err != nil {
			t.Fatal(err)
		}
	}
	w.qualify(t, id)
	w.waitFor(t, id, "LeadQueued", 1)

	r, err := c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: id})
	if err != nil {
		t.Fatal(err)
	}
	b := r.GetBrief()
	if d := b.GetRouting(); d.GetFallbackQueue() != "sales-fallback" || d.GetRuleId() != "dach-smb" || d.GetRepId() != "" || b.GetSegment() != "smb" {
		t.Errorf("journey 2 is queued in smb; the brief shows rule %q rep %q queue %q, segment %q",
			d.GetRuleId(), d.GetRepId(), d.GetFallbackQueue(), b.GetSegment())
	}
}

// The survivor of a merge tells the absorbed lead's story too: its
// earlier first touch and campaign, its activities, its rep and that
// rep's rejection, each opened with the absorbed lead's key and named
// by it.
func TestBriefTellsTheAbsorbedLeadsStory(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	ctx := ctxT(t)
	c := s.client
	camp, err := envelope.NewEvent("", &eventv1.CampaignRegistered{CampaignId: "webinar-q1", Name: "Q1 webinar", Channel: eventv1.Channel_CHANNEL_WEBINAR},
		envelope.Meta{Actor: intakeActor, CorrelationID: "c"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.Append(ctx, eventstore.CampaignSubject("webinar-q1"), 0, camp); err != nil {
		t.Fatal(err)
	}

	absorbed := uuid.NewString()
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{
		SealedPersonal: w.sealed(t, absorbed, &eventv1.Personal{Contact: &eventv1.Contact{Email: "ada@old.example"}, Company: "Old Corp", Title: "VP Sales"}), Profile: dach(50),
		Attribution: &eventv1.Attribution{Source: "webinar", CampaignId: "webinar-q1"}}, intakeActor)
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.RecordActivity}, &eventv1.ActivityRecorded{ActivityId: uuid.NewString(),
		Type: eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST, SealedDetail: w.sealedText(t, absorbed, "wants a demo for 40 seats")}, intakeActor)
	w.qualify(t, absorbed)
	oldRep := ownerOf(w.waitFor(t, absorbed, "LeadAssigned", 1)[0])
	if _, err := c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: absorbed, RepId: oldRep, RequestId: "r1", Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY,
		Note: "call back in spring"}); err != nil {
		t.Fatal(err)
	}

	survivor := w.mql(t, dach(50))
	newRep := ownerOf(w.waitFor(t, survivor, "LeadAssigned", 1)[0])
	w.merge(t, survivor, absorbed)

	r, err := c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: survivor})
	if err != nil {
		t.Fatal(err)
	}
	b := r.GetBrief()
	if ft := b.GetFirstTouch(); ft.GetAttribution().GetCampaignId() != "webinar-q1" || ft.GetCampaign().GetName() != "Q1 webinar" || ft.GetLeadId() != absorbed {
		t.Errorf("first touch: %v, want the absorbed lead's earlier webinar", ft)
	}
	if a := b.GetActivities(); b.GetActivityCount() != 1 || a[0].GetDetail() != "wants a demo for 40 seats" || a[0].GetLeadId() != absorbed {
		t.Errorf("activities: %v", a)
	}
	var story []string
	for _, o := range b.GetOwners() {
		story = append(story, o.GetLeadId()+"/"+o.GetOwner().GetId()+":"+o.GetHow()+"->"+o.GetEnded())
	}
	if want := absorbed + "/" + oldRep + ":routed->rejected /" + newRep + ":routed->"; strings.Join(story, " ") != want {
		t.Errorf("owners\n got %s\nwant %s", strings.Join(story, " "), want)
	}
	if rj := b.GetRejections(); len(rj) != 1 || rj[0].GetNote() != "call back in spring" || rj[0].GetRepId() != oldRep || rj[0].GetLeadId() != absorbed {
		t.Errorf("rejections: %v", rj)
	}
	if rc := b.GetRecycles(); len(rc) != 1 || rc[0].GetDetail() != "NOT_READY: call back in spring" || rc[0].GetLeadId() != absorbed {
		t.Errorf("recycles: %v", rc)
	}
	// The survivor's own form sealed no company: the absorbed lead's
	// person told theirs, sealed with its key (over the clear one, as the
	// lead's own would be).
	if p := b.GetProfile(); p.GetCompany() != "Old Corp" || p.GetTitle() != "VP Sales" {
		t.Errorf("profile %v: want the company and title the absorbed lead's person gave", p)
	}
	if b.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_ASSIGNED || b.GetOwner().GetId() != newRep || b.GetJourney() != 1 {
		t.Errorf("the survivor's own state: %v %v journey %d", b.GetStatus(), b.GetOwner(), b.GetJourney())
	}

	// What the absorbed lead's person sends while merged lands on the
	// survivor sealed with the absorbed lead's key, and opens so.
	w.fact(t, survivor, &eventv1.LeadResubmitted{MergedFrom: absorbed, Profile: &eventv1.Profile{Country: "US", Employees: 900},
		SealedPersonal: w.sealed(t, absorbed, &eventv1.Personal{Company: "Zeta Holdings", Title: "CFO"})})
	w.fact(t, survivor, &eventv1.ActivityRecorded{ActivityId: uuid.NewString(), MergedFrom: absorbed,
		Type: eventv1.ActivityType_ACTIVITY_TYPE_PRICING_PAGE_VISIT, SealedDetail: w.sealedText(t, absorbed, "priced 90 seats")})
	brief := func() *handoffv1.HandoffBrief {
		t.Helper()
		r, err := c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: survivor})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetBrief()
	}
	details := func(b *handoffv1.HandoffBrief) (out []string) {
		for _, a := range b.GetActivities() {
			out = append(out, a.GetDetail())
		}
		return out
	}
	if b := brief(); !slices.Contains(details(b), "priced 90 seats") || b.GetProfile().GetCompany() != "Zeta Holdings" ||
		b.GetProfile().GetCountry() != "US" || b.GetProfile().GetEmployees() != 900 {
		t.Errorf("while merged: activities %v, profile %v; want what came through the absorbed lead, opened", details(b), b.GetProfile())
	}
	for _, a := range brief().GetActivities() {
		if a.GetLeadId() != absorbed {
			t.Errorf("activity %q is named %q's, want the absorbed lead's, whose person did it", a.GetDetail(), a.GetLeadId())
		}
	}
	// The absorbed lead erased (its keys not shredded yet): nothing of it
	// is opened in the survivor's brief.
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Erase}, &eventv1.LeadErased{Reason: "access request"}, intakeActor)
	if b := brief(); slices.ContainsFunc(details(b), func(d string) bool { return d != "" }) || b.GetProfile().GetCompany() != "Beispiel AG" ||
		b.GetRejections()[0].GetNote() != "" {
		t.Errorf("the absorbed lead erased: activities %v, company %q, rejection %v; want none of its words opened", details(b), b.GetProfile().GetCompany(), b.GetRejections())
	}
	// The unmerge gives it back with the absorbed lead.
	w.fact(t, survivor, &eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "two people"})
	if b := brief(); len(details(b)) != 0 || b.GetProfile().GetCompany() != "Beispiel AG" || b.GetProfile().GetTitle() != "" ||
		b.GetProfile().GetCountry() != "DE" || b.GetProfile().GetEmployees() != 50 {
		t.Errorf("after the unmerge: activities %v, profile %v; want none of the absorbed lead's", details(b), b.GetProfile())
	}
}

// sealedText is free text of the lead sealed as intake seals an
// activity's detail.
func (w *world) sealedText(t testing.TB, leadID, text string) []byte {
	t.Helper()
	k, err := w.vault.Take(ctxT(t), leadID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Seal([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A lead qualified again after its rep rejected it goes to another rep
// of the pool, and the decision says why the rejecting rep was passed
// over.
func TestARequalifiedLeadGoesToAnotherRepThanTheOneWhoRejectedIt(t *testing.T) {
	w, s, id, first := assignedLead(t)
	if _, err := s.client.RejectLead(ctxT(t), &handoffv1.RejectLeadRequest{LeadId: id, RepId: first, RequestId: "r1", Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY}); err != nil {
		t.Fatal(err)
	}
	w.recycled(t, id, last(w.events(t, id)))
	w.qualify(t, id)
	again := w.waitFor(t, id, "LeadAssigned", 2)[1].GetLeadAssigned()
	if again.GetOwner().GetId() == first {
		t.Fatalf("journey 2 went back to %s, who rejected the lead: %s", first, again.GetDecision().GetSummary())
	}
	for _, cd := range again.GetDecision().GetCandidates() {
		if cd.GetRepId() == first && cd.GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_PRIOR_OWNER {
			t.Errorf("%s recorded as %v %q, want passed over for the rejection", first, cd.GetOutcome(), cd.GetDetail())
		}
	}
}

// A rep who takes a lead over sees what the one before did with it: when
// they accepted it, and each contact attempt and what came of it, under
// that rep's time with the lead.
func TestBriefTellsEachRepsAcceptanceAndAttempts(t *testing.T) {
	_, s, id, first := assignedLead(t)
	ctx := ctxT(t)
	c := s.client
	if _, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: first, RequestId: "a1"}); err != nil {
		t.Fatal(err)
	}
	for i, o := range []eventv1.ContactOutcome{eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER, eventv1.ContactOutcome_CONTACT_OUTCOME_MEETING_BOOKED} {
		if _, err := c.LogContactAttempt(ctx, &handoffv1.LogContactAttemptRequest{LeadId: id, RepId: first, RequestId: "c" + strconv.Itoa(i),
			Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: o}); err != nil {
			t.Fatal(err)
		}
	}
	next := "mia"
	if first == next {
		next = "ann"
	}
	if _, err := c.ReassignLead(ctx, &handoffv1.ReassignLeadRequest{LeadId: id, ToRepId: next, RequestId: "re1", Reason: "strategic", ReassignedBy: ops}); err != nil {
		t.Fatal(err)
	}
	r, err := c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: id})
	if err != nil {
		t.Fatal(err)
	}
	owners := r.GetBrief().GetOwners()
	if len(owners) != 2 {
		t.Fatalf("owners %v, want %s then %s", owners, first, next)
	}
	was, now := owners[0], owners[1]
	var got []string
	for _, x := range was.GetContacts() {
		got = append(got, x.GetChannel().String()+" "+x.GetOutcome().String())
	}
	want := []string{"CONTACT_CHANNEL_PHONE CONTACT_OUTCOME_NO_ANSWER", "CONTACT_CHANNEL_PHONE CONTACT_OUTCOME_MEETING_BOOKED"}
	if was.GetOwner().GetId() != first || was.GetAcceptedAt() == nil || was.GetAcceptedAt().AsTime().Before(was.GetFrom().AsTime()) || !slices.Equal(got, want) {
		t.Errorf("%s's time: accepted %v, attempts %q; want accepted after %v and %q", was.GetOwner().GetId(), was.GetAcceptedAt(), got, was.GetFrom(), want)
	}
	if now.GetOwner().GetId() != next || now.GetAcceptedAt() != nil || len(now.GetContacts()) != 0 {
		t.Errorf("%s's time: accepted %v, attempts %v; want neither yet", now.GetOwner().GetId(), now.GetAcceptedAt(), now.GetContacts())
	}
}
