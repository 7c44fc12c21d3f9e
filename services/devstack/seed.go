package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
)

type demoLead struct {
	email, first, last, company, title, country, industry string
	seniority                                             eventv1.Seniority
	employees                                             int32
	campaign                                              string
	activities                                            []eventv1.ActivityType
}

var demoLeads = []demoLead{
	{"ada@analytical.example", "Ada", "Lovelace", "Analytical Engines", "VP Engineering", "GB", "software", eventv1.Seniority_SENIORITY_VP, 250, "webinar-q4",
		[]eventv1.ActivityType{eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED, eventv1.ActivityType_ACTIVITY_TYPE_PRICING_PAGE_VISIT, eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST}},
	{"grace@cobol.example", "Grace", "Hopper", "Compiler Corp", "Director of Platform", "US", "software", eventv1.Seniority_SENIORITY_DIRECTOR, 1200, "webinar-q4",
		[]eventv1.ActivityType{eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED, eventv1.ActivityType_ACTIVITY_TYPE_PRICING_PAGE_VISIT}},
	{"alan@enigma.example", "Alan", "Turing", "Bletchley Labs", "Research Engineer", "GB", "research", eventv1.Seniority_SENIORITY_INDIVIDUAL, 40, "paid-search-nov",
		[]eventv1.ActivityType{eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}},
	{"katherine@orbit.example", "Katherine", "Johnson", "Orbital Math", "CTO", "US", "aerospace", eventv1.Seniority_SENIORITY_EXECUTIVE, 600, "paid-search-nov",
		[]eventv1.ActivityType{eventv1.ActivityType_ACTIVITY_TYPE_CONTENT_DOWNLOAD, eventv1.ActivityType_ACTIVITY_TYPE_PRICING_PAGE_VISIT, eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK}},
	{"edsger@paths.example", "Edsger", "Dijkstra", "Shortest Paths BV", "Engineering Manager", "NL", "software", eventv1.Seniority_SENIORITY_MANAGER, 90, "webinar-q4",
		[]eventv1.ActivityType{eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_REGISTERED}},
	{"barbara@clu.example", "Barbara", "Liskov", "Substitution Inc", "VP Product", "US", "software", eventv1.Seniority_SENIORITY_VP, 300, "webinar-q4",
		[]eventv1.ActivityType{eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED, eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST}},
	{"student@uni.example", "Sam", "Student", "State University", "Student", "DE", "education", eventv1.Seniority_SENIORITY_STUDENT, 0, "paid-search-nov", nil},
	{"linus@kernel.example", "Linus", "Torvalds", "Kernel Co", "Maintainer", "FI", "software", eventv1.Seniority_SENIORITY_INDIVIDUAL, 15, "", nil},
}

// demoCurrency is the demo's money: the printed report asks for it, as a
// report over data in two currencies must name one.
const demoCurrency = "EUR"

// asCaller is ctx with a token for who granting scopes.
type asCaller func(ctx context.Context, who *eventv1.Actor, scopes ...string) (context.Context, error)

// seedDemo loads the demo data through the public APIs. Every write has an
// idempotency key or caller id, so seeding again on restart changes
// nothing. It returns one lead id to show in the help and when it was
// captured, once known, even when a later step fails.
func seedDemo(ctx context.Context, conns map[string]*grpc.ClientConn, as asCaller, out io.Writer) (first string, captured time.Time, err error) {
	if err := seedSetup(ctx, conns, as, out); err != nil {
		return "", time.Time{}, err
	}
	intake := intakev1.NewIntakeServiceClient(conns["intake"])

	fmt.Fprintln(out, "\nDemo leads (captured through intake; repeated runs replay, they do not duplicate):")
	ids := make([]string, len(demoLeads))
	for i, d := range demoLeads {
		res, err := captureDemo(ctx, intake, i)
		if err != nil {
			return first, captured, err
		}
		if first == "" {
			first = res.GetLeadId()
			lead, err := intake.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: first})
			if err != nil {
				return first, captured, err
			}
			captured = lead.GetLead().GetCapturedAt().AsTime()
		}
		ids[i] = res.GetLeadId()
		fmt.Fprintf(out, "  %-26s %s  %s%s\n", d.email, res.GetLeadId(), res.GetOutcome(), replayed(res.GetReplayed()))
	}
	// The same person again, typed differently: recorded on the same lead.
	again, err := intake.CaptureLead(ctx, &intakev1.CaptureLeadRequest{
		IdempotencyKey: "demo-capture-again",
		Contact:        &eventv1.Contact{Email: "  ADA@Analytical.Example "},
		Attribution:    &eventv1.Attribution{Source: "webinar"},
	})
	if err != nil {
		return first, captured, err
	}
	fmt.Fprintf(out, "  %-26s %s  %s%s (same person, deduplicated)\n", "ADA@Analytical.Example", again.GetLeadId(), again.GetOutcome(), replayed(again.GetReplayed()))

	if conns["qualification"] != nil {
		if err := showScores(ctx, conns, ids, out); err != nil {
			return first, captured, err
		}
		if err := showHandoff(ctx, conns, as, ids, out); err != nil {
			return first, captured, err
		}
	}

	// Bad input is refused, and says which field.
	_, err = intake.CaptureLead(ctx, &intakev1.CaptureLeadRequest{Contact: &eventv1.Contact{Email: "not-an-email", Phone: "call me"}, Attribution: &eventv1.Attribution{Source: "web-form"}})
	fmt.Fprintln(out, "\nA bad request is refused with INVALID_ARGUMENT and the fields:")
	for _, v := range grpcserver.Violations(err) {
		fmt.Fprintf(out, "  %s: %s\n", v.Field, v.Description)
	}
	return first, captured, nil
}

// seedSetup loads what the demo leads meet: campaigns, the scoring model
// and the routing data.
func seedSetup(ctx context.Context, conns map[string]*grpc.ClientConn, as asCaller, out io.Writer) error {
	intake := intakev1.NewIntakeServiceClient(conns["intake"])
	for _, c := range []*intakev1.RegisterCampaignRequest{
		{CampaignId: "webinar-q4", Name: "Q4 product webinar", Channel: eventv1.Channel_CHANNEL_WEBINAR, Budget: &eventv1.Money{Currency: demoCurrency, MinorUnits: 800000}},
		{CampaignId: "paid-search-nov", Name: "November paid search", Channel: eventv1.Channel_CHANNEL_PAID_SEARCH, Budget: &eventv1.Money{Currency: demoCurrency, MinorUnits: 1500000}},
	} {
		if _, err := intake.RegisterCampaign(ctx, c); err != nil {
			return fmt.Errorf("register %s: %w", c.GetCampaignId(), err)
		}
		if _, err := intake.RecordCampaignCost(ctx, &intakev1.RecordCampaignCostRequest{CampaignId: c.GetCampaignId(), CostId: c.GetCampaignId() + "-invoice-1",
			Amount: &eventv1.Money{Currency: demoCurrency, MinorUnits: c.GetBudget().GetMinorUnits() / 2}}); err != nil {
			return err
		}
	}
	if err := seedModel(ctx, conns, as, out); err != nil {
		return err
	}
	return seedRouting(ctx, conns)
}

// captureDemo captures demo lead i and records its activities.
func captureDemo(ctx context.Context, intake intakev1.IntakeServiceClient, i int) (*intakev1.CaptureLeadResponse, error) {
	d := demoLeads[i]
	res, err := intake.CaptureLead(ctx, &intakev1.CaptureLeadRequest{
		IdempotencyKey: fmt.Sprintf("demo-capture-%d", i),
		Contact:        &eventv1.Contact{Email: d.email, FirstName: d.first, LastName: d.last},
		Profile:        &eventv1.Profile{Company: d.company, Title: d.title, Country: d.country, Industry: d.industry, Seniority: d.seniority, Employees: d.employees},
		Attribution:    &eventv1.Attribution{Source: "web-form", CampaignId: d.campaign},
		Consents:       []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_GRANTED}},
	})
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", d.email, err)
	}
	for j, a := range d.activities {
		if _, err := intake.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: res.GetLeadId(), ActivityId: fmt.Sprintf("demo-%d-%d", i, j), Type: a, CampaignId: d.campaign}); err != nil {
			return nil, fmt.Errorf("activity for %s: %w", d.email, err)
		}
	}
	return res, nil
}

func replayed(r bool) string {
	if r {
		return " (replayed)"
	}
	return ""
}

// showScores waits until qualification has scored every demo lead's last
// event and prints score and status: the leads that crossed the threshold
// are MQLs, routed to the routing queue with a deadline.
func showScores(ctx context.Context, conns map[string]*grpc.ClientConn, ids []string, out io.Writer) error {
	intake := intakev1.NewIntakeServiceClient(conns["intake"])
	q := qualificationv1.NewQualificationServiceClient(conns["qualification"])
	fmt.Fprintln(out, "\nScored by qualification from the stream (score / threshold → status, owner):")
	for i, id := range ids {
		var line string
		deadline := time.Now().Add(10 * time.Second)
		for {
			lead, err := intake.GetLead(ctx, &intakev1.GetLeadRequest{LeadId: id})
			if err != nil {
				return err
			}
			ex, err := q.ExplainScore(ctx, &qualificationv1.ExplainScoreRequest{LeadId: id})
			lc := lead.GetLead().GetLifecycle()
			// Scored after the lead's last intake event: nothing more to come.
			if err == nil && ex.GetCauseEventId() != "" && scoredLast(ctx, intake, id, ex.GetCauseEventId()) {
				line = fmt.Sprintf("%3d / %d → %s", ex.GetScore().GetTotal(), ex.GetScore().GetThreshold(),
					strings.TrimPrefix(lc.GetStatus().String(), "LEAD_STATUS_"))
				// A closed lead (WON on a later run) has no owner.
				if o := lc.GetOwner().GetId(); o != "" {
					line += ", owner " + o
				}
				break
			}
			if time.Now().After(deadline) {
				line = "not scored yet (is a model active?)"
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Fprintf(out, "  %-26s %s\n", demoLeads[i].email, line)
	}
	return nil
}

// scoredLast reports whether the lead's last intake event has its
// score: one caused by it (cause, the latest score's, at or after it: a
// re-engagement's), or by an event after it or on no lead (a re-score
// under a version activated since), stored after it.
func scoredLast(ctx context.Context, intake intakev1.IntakeServiceClient, leadID, cause string) bool {
	tl, err := intake.GetLeadTimeline(ctx, &intakev1.GetLeadTimelineRequest{LeadId: leadID})
	if err != nil {
		return false
	}
	at := map[string]int{} // the lead's events' places
	last, seen := -1, false
	for i, e := range tl.GetEntries() {
		ev := e.GetEvent()
		at[ev.GetEventId()] = i
		switch ev.GetPayload().(type) {
		case *eventv1.Event_LeadCaptured, *eventv1.Event_LeadResubmitted, *eventv1.Event_ActivityRecorded, *eventv1.Event_ConsentChanged:
			last, seen = i, false
		}
		if ev.GetEventId() == cause {
			seen = true
		}
		if c, ok := at[ev.GetCausationId()]; ev.GetLeadScored() != nil && (!ok || c >= last) {
			seen = true
		}
	}
	return seen
}
