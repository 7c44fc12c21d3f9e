package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
)

const (
	webinar = eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED
	pricing = eventv1.ActivityType_ACTIVITY_TYPE_PRICING_PAGE_VISIT
	click   = eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK
)

// A proposed model scores nobody until marketing and sales have both
// approved it; the approval that activates it re-scores the leads that
// were waiting, with reasons and the version.
func TestModelScoresOnlyOnceBothTeamsApproved(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	ctx := ctxT(t)
	p, err := s.client.ProposeModel(ctx, &qualificationv1.ProposeModelRequest{Model: scoring.ToProto(scoring.Default()), ProposedBy: marketing})
	if err != nil || p.GetVersion() != 1 {
		t.Fatalf("propose: %v %v", p, err)
	}
	ada := uuid.NewString()
	w.capture(t, ada, vpProfile("analytical.example"))
	w.activity(t, ada, webinar)
	w.settle(t)
	if got := ofType(w.events(t, ada), "LeadScored"); len(got) != 0 {
		t.Fatalf("a proposed model scored: %v", got)
	}

	a, err := s.client.ApproveModel(ctx, &qualificationv1.ApproveModelRequest{Version: 1, Approver: marketing})
	if err != nil || a.GetActivated() || a.GetModel().GetState() != qualificationv1.ModelState_MODEL_STATE_PROPOSED {
		t.Fatalf("first approval: activated %v, state %v, %v", a.GetActivated(), a.GetModel().GetState(), err)
	}
	w.activity(t, ada, pricing)
	w.settle(t)
	if got := ofType(w.events(t, ada), "LeadScored"); len(got) != 0 {
		t.Fatalf("a model approved by marketing alone scored: %v", got)
	}

	a, err = s.client.ApproveModel(ctx, &qualificationv1.ApproveModelRequest{Version: 1, Approver: sales})
	if err != nil || !a.GetActivated() || a.GetModel().GetState() != qualificationv1.ModelState_MODEL_STATE_ACTIVE ||
		len(a.GetModel().GetApprovals()) != 2 || a.GetModel().GetActivatedAt() == nil {
		t.Fatalf("second approval: activated %v, state %v, %d approvals, %v", a.GetActivated(), a.GetModel().GetState(), len(a.GetModel().GetApprovals()), err)
	}
	progress := rescored(t, s.client, 1)
	if progress.GetTotal() == 0 || progress.GetDone() != progress.GetTotal() {
		t.Errorf("re-score progress: %v", progress)
	}
	evs := w.events(t, ada)
	scored := ofType(evs, "LeadScored")
	if len(scored) != 1 || len(ofType(evs, "LeadQualified")) != 1 {
		t.Fatalf("after activation: %d scored, %d qualified", len(scored), len(ofType(evs, "LeadQualified")))
	}
	ls := scored[0].GetLeadScored()
	if ls.GetModelVersion() != 1 || ls.GetModelId() != "scoring" || ls.GetTotal() != 75 || ls.GetFit() != 50 || ls.GetEngagement() != 25 || ls.GetThreshold() != 70 {
		t.Errorf("score: %v", ls)
	}
	var ids []string
	for _, r := range ls.GetReasons() {
		ids = append(ids, r.GetRuleId())
	}
	if want := []string{"decision-maker", "mid-market", "target-country", "webinar-attended", "pricing-visit"}; !slices.Equal(ids, want) {
		t.Errorf("reasons %v, want %v", ids, want)
	}
	if st := last(evs).GetLifecycle(); st.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_MQL || st.GetOwner().GetId() != "routing" || st.GetScore() != 75 {
		t.Errorf("lifecycle after qualification: %v", st)
	}
	ex, err := s.client.ExplainScore(ctx, &qualificationv1.ExplainScoreRequest{LeadId: ada})
	if err != nil || ex.GetScore().GetTotal() != 75 || len(ex.GetScore().GetReasons()) != 5 || ex.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_MQL ||
		ex.GetCauseEventId() != scored[0].GetCausationId() || ex.GetScoredAt() == nil {
		t.Fatalf("explain: %v %v", ex, err)
	}
	if _, err := s.client.ExplainScore(ctx, &qualificationv1.ExplainScoreRequest{LeadId: uuid.NewString()}); status.Code(err) != codes.NotFound {
		t.Errorf("explain an unknown lead: %v", err)
	}
	if _, err := s.client.ExplainScore(ctx, &qualificationv1.ExplainScoreRequest{LeadId: "lead.>"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("explain with a wildcard id: %v", err)
	}
}

// With a model active, every trigger scores the lead once, with reasons
// and the version; the lead is qualified once when it crosses the
// threshold and only scored after that.
func TestScoringFromTheStream(t *testing.T) { testScoringFromTheStream(t, newWorld) }

func testScoringFromTheStream(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, scoring.Default())
	rescored(t, s.client, 1)

	ada := uuid.NewString()
	triggers := []*eventv1.Event{w.capture(t, ada, vpProfile("analytical.example"))}
	for _, a := range []eventv1.ActivityType{webinar, pricing, click, webinar} {
		triggers = append(triggers, w.activity(t, ada, a))
	}
	w.settle(t)
	evs := w.events(t, ada)
	var totals []int32
	for _, tr := range triggers {
		var by []*eventv1.Event
		for _, ev := range ofType(evs, "LeadScored") {
			if ev.GetCausationId() == tr.GetEventId() {
				by = append(by, ev)
			}
		}
		if len(by) != 1 {
			t.Fatalf("trigger %s has %d scores", tr.GetEventType(), len(by))
		}
		totals = append(totals, by[0].GetLeadScored().GetTotal())
		if by[0].GetLeadScored().GetModelVersion() != 1 || len(by[0].GetLeadScored().GetReasons()) == 0 {
			t.Errorf("score without version or reasons: %v", by[0])
		}
	}
	if want := []int32{50, 65, 75, 78, 93}; !slices.Equal(totals, want) {
		t.Errorf("totals %v, want %v", totals, want)
	}
	// A later form that leaves the profile out keeps what the lead told
	// us before; one that changes a field changes the fit.
	w.write(t, ada, lifecycle.Command{Name: lifecycle.Resubmit}, &eventv1.LeadResubmitted{MatchedBy: "email",
		Attribution: &eventv1.Attribution{Source: "webinar"}})
	w.write(t, ada, lifecycle.Command{Name: lifecycle.Resubmit}, &eventv1.LeadResubmitted{MatchedBy: "email",
		Profile: &eventv1.Profile{Seniority: eventv1.Seniority_SENIORITY_MANAGER}})
	w.settle(t)
	evs = w.events(t, ada)
	scores := ofType(evs, "LeadScored")
	if a, b := scores[len(scores)-2].GetLeadScored(), scores[len(scores)-1].GetLeadScored(); a.GetFit() != 50 || b.GetFit() != 30 {
		t.Errorf("fit after resubmissions: %d then %d, want 50 then 30", a.GetFit(), b.GetFit())
	}
	q := ofType(evs, "LeadQualified")
	if len(q) != 1 || q[0].GetLeadQualified().GetScore() != 75 || q[0].GetLeadQualified().GetThreshold() != 70 {
		t.Fatalf("qualified: %v", q)
	}
	for _, ev := range evs {
		if ev.GetLifecycle() == nil {
			t.Errorf("%s carries no lifecycle", ev.GetEventType())
		}
	}
	if st := last(evs).GetLifecycle(); st.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_MQL || st.GetScore() != 73 {
		t.Errorf("lifecycle: %v", st)
	}
}

// A disqualifying rule emits LeadDisqualified with its reason: terminal,
// or with not_now back to nurture (RECYCLED). A disqualified lead is not
// scored again.
func TestDisqualifiers(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, scoring.Default())

	rival, student, withdrawn := uuid.NewString(), uuid.NewString(), uuid.NewString()
	w.capture(t, rival, vpProfile("eu.rival.example"))
	w.capture(t, student, &eventv1.Profile{Seniority: eventv1.Seniority_SENIORITY_STUDENT, Country: "DE", EmailDomain: "uni.example"})
	w.capture(t, withdrawn, vpProfile("acme.example"))
	w.settle(t)
	w.consent(t, withdrawn, eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN)
	w.activity(t, rival, webinar) // a fact about a finished lead: recorded, not scored
	w.settle(t)

	for _, tt := range []struct {
		lead, rule, reason string
		notNow             bool
		status             eventv1.LeadStatus
		owner              string
		scores             int
	}{
		{rival, "competitor", "works for a competitor", false, eventv1.LeadStatus_LEAD_STATUS_DISQUALIFIED, "", 1},
		{student, "student", "student, not a buyer yet", true, eventv1.LeadStatus_LEAD_STATUS_RECYCLED, "nurture", 1},
		{withdrawn, "email-consent-withdrawn", "withdrew email consent", false, eventv1.LeadStatus_LEAD_STATUS_DISQUALIFIED, "", 2},
	} {
		evs := w.events(t, tt.lead)
		d := ofType(evs, "LeadDisqualified")
		if len(d) != 1 {
			t.Fatalf("%s: %d LeadDisqualified", tt.rule, len(d))
		}
		ld := d[0].GetLeadDisqualified()
		if ld.GetRuleId() != tt.rule || !strings.HasPrefix(ld.GetReason(), tt.reason) || ld.GetNotNow() != tt.notNow || ld.GetModelVersion() != 1 {
			t.Errorf("%s: %v", tt.rule, ld)
		}
		if st := last(evs).GetLifecycle(); st.GetStatus() != tt.status || st.GetOwner().GetId() != tt.owner {
			t.Errorf("%s: lifecycle %v", tt.rule, st)
		}
		if n := len(ofType(evs, "LeadScored")); n != tt.scores {
			t.Errorf("%s: %d scores, want %d", tt.rule, n, tt.scores)
		}
		if len(ofType(evs, "LeadQualified")) != 0 {
			t.Errorf("%s: a disqualified lead was qualified", tt.rule)
		}
	}
}

func assertField(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want %s", err, code)
	}
	if code != codes.InvalidArgument {
		if !strings.Contains(status.Convert(err).Message(), field) {
			t.Fatalf("%v does not name %s", err, field)
		}
		return
	}
	for _, v := range grpcserver.Violations(err) {
		if v.Field == field {
			return
		}
	}
	t.Fatalf("no violation on %s: %v", field, grpcserver.Violations(err))
}

// Bad models are refused with INVALID_ARGUMENT naming the rule, and
// nothing is written.
func TestBadModelsAreRefused(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	ctx := ctxT(t)
	tests := []struct {
		name  string
		edit  func(m *eventv1.ScoringModel)
		field string
	}{
		{"contradictory size", func(m *eventv1.ScoringModel) { m.FitRules[3].When.MinEmployees = 9000 }, "model.fit_rules[3].when.max_employees"},
		{"unknown field", func(m *eventv1.ScoringModel) { m.FitRules[0].When.Required = []string{"shoe_size"} }, "model.fit_rules[0].when.required[0]"},
		{"points out of range", func(m *eventv1.ScoringModel) { m.FitRules[1].Points = 5000 }, "model.fit_rules[1].points"},
		{"duplicate rule id", func(m *eventv1.ScoringModel) { m.EngagementRules[1].Id = "demo-request" }, "model.engagement_rules[1].id"},
		{"cap below points", func(m *eventv1.ScoringModel) { m.EngagementRules[0].Cap = 10 }, "model.engagement_rules[0].cap"},
		{"no half-life", func(m *eventv1.ScoringModel) { m.EngagementRules[2].HalfLife = nil }, "model.engagement_rules[2].half_life"},
		{"unreachable threshold", func(m *eventv1.ScoringModel) { m.Threshold = 100_000 }, "model.threshold"},
		{"version set", func(m *eventv1.ScoringModel) { m.Version = 7 }, "model.version"},
		{"empty condition", func(m *eventv1.ScoringModel) { m.DisqualifyRules[0].When = nil }, "model.disqualify_rules[0].when"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := scoring.ToProto(scoring.Default())
			tt.edit(m)
			_, err := s.client.ProposeModel(ctx, &qualificationv1.ProposeModelRequest{Model: m, ProposedBy: marketing})
			assertField(t, err, codes.InvalidArgument, tt.field)
		})
	}
	_, err := s.client.ProposeModel(ctx, &qualificationv1.ProposeModelRequest{Model: scoring.ToProto(scoring.Default())})
	assertField(t, err, codes.InvalidArgument, "proposed_by")
	list, err := s.client.ListModelVersions(ctx, &qualificationv1.ListModelVersionsRequest{})
	if err != nil || len(list.GetVersions()) != 0 {
		t.Fatalf("refused proposals were recorded: %v %v", list, err)
	}
}

// Sign-off: one approval per team, by different people, of a version that
// exists; a repeat is a no-op; activating a new version supersedes the
// old one; versions can be listed, read and diffed.
func TestSignOff(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	ctx := ctxT(t)
	propose := &qualificationv1.ProposeModelRequest{Model: scoring.ToProto(scoring.Default()), ProposedBy: marketing, IdempotencyKey: "q3-model"}
	p, err := s.client.ProposeModel(ctx, propose)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.client.ProposeModel(ctx, propose)
	if err != nil || again.GetVersion() != p.GetVersion() || !again.GetReplayed() {
		t.Fatalf("repeated proposal: %v %v", again, err)
	}
	// The key is one proposal's: with another model it is refused, not
	// answered with a version that is not the model sent.
	other := scoring.Default()
	other.Threshold++
	_, err = s.client.ProposeModel(ctx, &qualificationv1.ProposeModelRequest{Model: scoring.ToProto(other), ProposedBy: marketing, IdempotencyKey: "q3-model"})
	assertField(t, err, codes.InvalidArgument, "idempotency_key")
	// A blank key would be no key: sent twice, two proposals.
	_, err = s.client.ProposeModel(ctx, &qualificationv1.ProposeModelRequest{Model: scoring.ToProto(other), ProposedBy: marketing, IdempotencyKey: " "})
	assertField(t, err, codes.InvalidArgument, "idempotency_key")
	// It is kept in the clear for good: no email address in it.
	_, err = s.client.ProposeModel(ctx, &qualificationv1.ProposeModelRequest{Model: scoring.ToProto(other), ProposedBy: marketing, IdempotencyKey: "from maria@example.com"})
	assertField(t, err, codes.InvalidArgument, "idempotency_key")
	approve := func(v uint32, who *eventv1.Actor) (*qualificationv1.ApproveModelResponse, error) {
		return s.client.ApproveModel(ctx, &qualificationv1.ApproveModelRequest{Version: v, Approver: who})
	}
	ops := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "olga", Team: eventv1.Team_TEAM_OPERATIONS}
	_, err = approve(1, ops)
	assertField(t, err, codes.InvalidArgument, "approver.team")
	_, err = approve(1, &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "nobody"})
	assertField(t, err, codes.InvalidArgument, "approver.team")
	_, err = approve(99, marketing)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown version: %v", err)
	}
	if _, err := approve(1, marketing); err != nil {
		t.Fatal(err)
	}
	r, err := approve(1, marketing)
	if err != nil || !r.GetReplayed() || r.GetActivated() {
		t.Fatalf("repeated approval: %v %v", r, err)
	}
	_, err = approve(1, &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "max", Team: eventv1.Team_TEAM_MARKETING})
	assertField(t, err, codes.FailedPrecondition, "approver.team")
	_, err = approve(1, &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "mia", Team: eventv1.Team_TEAM_SALES})
	assertField(t, err, codes.FailedPrecondition, "approver.id")
	if _, err := s.client.GetModel(ctx, &qualificationv1.GetModelRequest{}); status.Code(err) != codes.NotFound {
		t.Fatalf("active model before activation: %v", err)
	}
	if r, err := approve(1, sales); err != nil || !r.GetActivated() {
		t.Fatalf("sales approval: %v %v", r, err)
	}
	// Retried (its answer lost), the activating approval answers as it
	// first did; the other team's answers that it did not activate.
	if r, err := approve(1, sales); err != nil || !r.GetReplayed() || !r.GetActivated() {
		t.Fatalf("the activating approval again: %v %v", r, err)
	}
	if r, err := approve(1, marketing); err != nil || !r.GetReplayed() || r.GetActivated() {
		t.Fatalf("the first approval again, once active: %v %v", r, err)
	}

	v2 := scoring.Default()
	v2.Threshold = 60
	v2.Fit = v2.Fit[1:]
	v2n := activateFirst(t, s.client, v2)
	list, err := s.client.ListModelVersions(ctx, &qualificationv1.ListModelVersionsRequest{})
	if err != nil || list.GetActiveVersion() != 2 || len(list.GetVersions()) != 2 ||
		list.GetVersions()[0].GetState() != qualificationv1.ModelState_MODEL_STATE_SUPERSEDED ||
		list.GetVersions()[1].GetState() != qualificationv1.ModelState_MODEL_STATE_ACTIVE {
		t.Fatalf("list: %v %v", list, err)
	}
	got, err := s.client.GetModel(ctx, &qualificationv1.GetModelRequest{})
	if err != nil || got.GetModel().GetModel().GetVersion() != v2n || got.GetModel().GetModel().GetThreshold() != 60 || len(got.GetModel().GetApprovals()) != 2 {
		t.Fatalf("active model: %v %v", got, err)
	}
	diff, err := s.client.DiffModels(ctx, &qualificationv1.DiffModelsRequest{FromVersion: 1, ToVersion: 2})
	if err != nil || len(diff.GetChanges()) != 2 || diff.GetChanges()[0].GetPath() != "threshold" ||
		diff.GetChanges()[1].GetPath() != "fit_rules[decision-maker]" || diff.GetChanges()[1].GetKind() != qualificationv1.ChangeKind_CHANGE_KIND_REMOVED {
		t.Fatalf("diff: %v %v", diff, err)
	}
	if _, err := s.client.DiffModels(ctx, &qualificationv1.DiffModelsRequest{FromVersion: 1, ToVersion: 3}); status.Code(err) != codes.NotFound {
		t.Fatalf("diff with an unknown version: %v", err)
	}
	// Its state is why, whoever approves: it was activated already.
	_, err = approve(1, &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "zoe", Team: eventv1.Team_TEAM_SALES})
	assertField(t, err, codes.FailedPrecondition, "version")
	p1, err := s.client.GetRescoreProgress(ctx, &qualificationv1.GetRescoreProgressRequest{Version: 1})
	if err != nil || (p1.GetState() != qualificationv1.RescoreState_RESCORE_STATE_COMPLETED && p1.GetState() != qualificationv1.RescoreState_RESCORE_STATE_ABANDONED) {
		t.Fatalf("progress of a superseded version: %v %v", p1, err)
	}
}

// A late approval of a proposal older than the active version is refused,
// naming the active version, and the proposal is listed as superseded:
// sales approving v2 a month after v3 went live must not roll the model
// back (and re-score every lead) on marketing's sign-off from before v3.
func TestAProposalOlderThanTheActiveVersionCannotBeApproved(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	ctx := ctxT(t)
	activateFirst(t, s.client, scoring.Default())
	v2 := scoring.Default()
	v2.Threshold = 60
	p, err := s.client.ProposeModel(ctx, &qualificationv1.ProposeModelRequest{Model: scoring.ToProto(v2), ProposedBy: marketing})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.ApproveModel(ctx, &qualificationv1.ApproveModelRequest{Version: p.GetVersion(), Approver: marketing}); err != nil {
		t.Fatal(err)
	}
	v3 := scoring.Default()
	v3.Threshold = 80
	v3n := activateFirst(t, s.client, v3)

	_, err = s.client.ApproveModel(ctx, &qualificationv1.ApproveModelRequest{Version: p.GetVersion(), Approver: sales})
	assertField(t, err, codes.FailedPrecondition, fmt.Sprintf("version %d, which is active", v3n))
	list, err := s.client.ListModelVersions(ctx, &qualificationv1.ListModelVersionsRequest{})
	if err != nil || list.GetActiveVersion() != v3n || list.GetVersions()[p.GetVersion()-1].GetState() != qualificationv1.ModelState_MODEL_STATE_SUPERSEDED {
		t.Fatalf("after the late approval: %v %v; want v%d active and v%d superseded", list, err, v3n, p.GetVersion())
	}
}
