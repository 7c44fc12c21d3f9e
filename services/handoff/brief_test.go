package main

import (
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
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{SealedPersonal: w.sealed(t, id, &eventv1.Personal{Contact: &eventv1.Contact{Email: "ada@example.com"}}), Profile: dach(50),
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

	_, err = c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: uuid.NewString()})
	wantCode(t, err, codes.NotFound, "")
	_, err = c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: "lead.*"})
	wantCode(t, err, codes.InvalidArgument, "lead_id")
}

// Marketing's SLA targets are data: set, replaced, listed, validated.
func TestMarketingTargets(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	ctx := ctxT(t)
	c := s.client
	mia := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "mia", Team: eventv1.Team_TEAM_MARKETING}
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
	l, err := c.ListMarketingTargets(ctx, &handoffv1.ListMarketingTargetsRequest{})
	if err != nil || len(l.GetTargets()) != 2 || l.GetTargets()[1].GetSegment() != "smb" || l.GetTargets()[1].GetMinMqls() != 450 {
		t.Fatalf("targets: %v %v", l, err)
	}
	_, err = c.SetMarketingTarget(ctx, &handoffv1.SetMarketingTargetRequest{Target: &eventv1.MarketingTarget{Period: "Q1-2026"}, SetBy: mia})
	wantCode(t, err, codes.InvalidArgument, "target.period")
	_, err = c.SetMarketingTarget(ctx, &handoffv1.SetMarketingTargetRequest{Target: &eventv1.MarketingTarget{Period: "2026", MinAcceptanceRateBps: 12000}, SetBy: mia})
	wantCode(t, err, codes.InvalidArgument, "target.min_acceptance_rate_bps")
}
