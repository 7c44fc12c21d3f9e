package scoring_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

const (
	vp       = eventv1.Seniority_SENIORITY_VP
	student  = eventv1.Seniority_SENIORITY_STUDENT
	webinar  = eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED
	pricing  = eventv1.ActivityType_ACTIVITY_TYPE_PRICING_PAGE_VISIT
	unsub    = eventv1.ActivityType_ACTIVITY_TYPE_UNSUBSCRIBE
	emailCh  = eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL
	withdraw = eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN
)

// ada is the demo's MQL: a VP at a 200-person company.
func ada(acts ...scoring.Activity) scoring.Facts {
	return scoring.Facts{
		Profile:    scoring.Profile{Company: "Analytical Engines", Title: "VP Engineering", Seniority: vp, Employees: 200, Country: "GB", EmailDomain: "analytical.example"},
		Activities: acts,
	}
}

func act(t eventv1.ActivityType, ago time.Duration) scoring.Activity {
	return scoring.Activity{Type: t, At: t0.Add(-ago)}
}

func ruleIDs(r scoring.Result) []string {
	var ids []string
	for _, x := range r.Reasons {
		ids = append(ids, x.RuleID)
	}
	return ids
}

func TestScoreDefault(t *testing.T) {
	m := scoring.Default()
	if v := scoring.Validate(m); len(v) > 0 {
		t.Fatalf("the default model is invalid: %v", v)
	}
	withConsent := func(f scoring.Facts, ch eventv1.ConsentChannel, s eventv1.ConsentStatus) scoring.Facts {
		f.Consents = map[eventv1.ConsentChannel]eventv1.ConsentStatus{ch: s}
		return f
	}
	withDomain := func(f scoring.Facts, d string) scoring.Facts { f.Profile.EmailDomain = d; return f }
	tests := []struct {
		name       string
		facts      scoring.Facts
		fit, eng   int
		rules      []string
		qualifies  bool
		disqualify string
		notNow     bool
	}{
		{name: "fit alone is not enough", facts: ada(), fit: 50, rules: []string{"decision-maker", "mid-market", "target-country"}},
		{name: "webinar without pricing stays below", facts: ada(act(webinar, 0)), fit: 50, eng: 15,
			rules: []string{"decision-maker", "mid-market", "target-country", "webinar-attended"}},
		{name: "webinar and pricing cross", facts: ada(act(webinar, time.Hour), act(pricing, 0)), fit: 50, eng: 25, qualifies: true,
			rules: []string{"decision-maker", "mid-market", "target-country", "webinar-attended", "pricing-visit"}},
		{name: "a pricing visit two half-lives old counts a quarter", facts: ada(act(webinar, 0), act(pricing, 28*day)), fit: 50, eng: 18,
			rules: []string{"decision-maker", "mid-market", "target-country", "webinar-attended", "pricing-visit"}},
		{name: "three webinars are capped at 30", facts: ada(act(webinar, 0), act(webinar, 0), act(webinar, 0)), fit: 50, eng: 30, qualifies: true,
			rules: []string{"decision-maker", "mid-market", "target-country", "webinar-attended"}},
		{name: "an activity after now counts in full", facts: ada(act(webinar, -time.Hour)), fit: 50, eng: 15,
			rules: []string{"decision-maker", "mid-market", "target-country", "webinar-attended"}},
		{name: "unsubscribing takes points away", facts: ada(act(webinar, 0), act(unsub, 0)), fit: 50, eng: -5,
			rules: []string{"decision-maker", "mid-market", "target-country", "webinar-attended", "unsubscribed"}},
		{name: "competitor subdomain", facts: withDomain(ada(act(webinar, 0), act(pricing, 0)), "eu.rival.example"), fit: 50, eng: 25,
			rules: []string{"decision-maker", "mid-market", "target-country", "webinar-attended", "pricing-visit"}, disqualify: "competitor"},
		{name: "a lookalike domain is not the competitor", facts: withDomain(ada(), "notrival.example"), fit: 50,
			rules: []string{"decision-maker", "mid-market", "target-country"}},
		{name: "free mail is a penalty, not a disqualifier", facts: withDomain(ada(), "GMAIL.com"), fit: 40,
			rules: []string{"decision-maker", "mid-market", "target-country", "free-mail"}},
		{name: "email consent withdrawn", facts: withConsent(ada(), emailCh, withdraw), fit: 50,
			rules: []string{"decision-maker", "mid-market", "target-country"}, disqualify: "email-consent-withdrawn"},
		{name: "email consent granted", facts: withConsent(ada(), emailCh, eventv1.ConsentStatus_CONSENT_STATUS_GRANTED), fit: 50,
			rules: []string{"decision-maker", "mid-market", "target-country"}},
		{name: "student is not now", facts: scoring.Facts{Profile: scoring.Profile{Seniority: student, Country: "de"}}, fit: 5,
			rules: []string{"target-country"}, disqualify: "student", notNow: true},
		{name: "unknown company size matches no size rule", facts: scoring.Facts{Profile: scoring.Profile{Seniority: vp}}, fit: 25,
			rules: []string{"decision-maker"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := scoring.Score(m, tt.facts, t0)
			if r.Fit != tt.fit || r.Engagement != tt.eng || r.Total != tt.fit+tt.eng {
				t.Errorf("fit %d engagement %d total %d, want %d %d %d (%v)", r.Fit, r.Engagement, r.Total, tt.fit, tt.eng, tt.fit+tt.eng, r.Reasons)
			}
			if got := ruleIDs(r); !slices.Equal(got, tt.rules) {
				t.Errorf("reasons %v, want %v", got, tt.rules)
			}
			if r.Qualifies(m) != tt.qualifies {
				t.Errorf("qualifies %v, want %v", r.Qualifies(m), tt.qualifies)
			}
			switch {
			case tt.disqualify == "" && r.Disqualify != nil:
				t.Errorf("disqualified by %+v", r.Disqualify)
			case tt.disqualify != "" && (r.Disqualify == nil || r.Disqualify.RuleID != tt.disqualify || r.Disqualify.NotNow != tt.notNow || r.Disqualify.Reason == ""):
				t.Errorf("disqualify %+v, want %s not_now=%v", r.Disqualify, tt.disqualify, tt.notNow)
			}
		})
	}
}

func TestCriteria(t *testing.T) {
	p := scoring.Profile{Company: "Acme", Title: "Head of Revenue Operations", Seniority: vp, Industry: "Software",
		Employees: 120, Country: "US", EmailDomain: "acme.com", Function: eventv1.JobFunction_JOB_FUNCTION_OPERATIONS}
	tests := []struct {
		name string
		when scoring.Criteria
		want bool
	}{
		{"seniority in", scoring.Criteria{SeniorityIn: []eventv1.Seniority{vp}}, true},
		{"seniority not in", scoring.Criteria{SeniorityIn: []eventv1.Seniority{student}}, false},
		{"employees in range", scoring.Criteria{MinEmployees: 100, MaxEmployees: 120}, true},
		{"employees above max", scoring.Criteria{MaxEmployees: 119}, false},
		{"employees below min", scoring.Criteria{MinEmployees: 121}, false},
		{"industry ignores case and spaces", scoring.Criteria{IndustryIn: []string{" software "}}, true},
		{"country", scoring.Criteria{CountryIn: []string{"us"}}, true},
		{"title keyword", scoring.Criteria{TitleContains: []string{"REVENUE"}}, true},
		{"title keyword missing", scoring.Criteria{TitleContains: []string{"marketing"}}, false},
		{"domain", scoring.Criteria{EmailDomainIn: []string{"acme.com"}}, true},
		{"function in", scoring.Criteria{FunctionIn: []eventv1.JobFunction{eventv1.JobFunction_JOB_FUNCTION_SALES, eventv1.JobFunction_JOB_FUNCTION_OPERATIONS}}, true},
		{"function not in", scoring.Criteria{FunctionIn: []eventv1.JobFunction{eventv1.JobFunction_JOB_FUNCTION_ENGINEERING}}, false},
		{"required present", scoring.Criteria{Required: []string{"company", "industry", "employees"}}, true},
		{"all conditions must hold", scoring.Criteria{SeniorityIn: []eventv1.Seniority{vp}, CountryIn: []string{"GB"}}, false},
		{"consent withdrawn, none recorded", scoring.Criteria{ConsentWithdrawn: []eventv1.ConsentChannel{emailCh}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := scoring.Model{Threshold: 1, Fit: []scoring.FitRule{{ID: "r", Points: 1, When: tt.when}}}
			if got := scoring.Score(m, scoring.Facts{Profile: p}, t0).Fit == 1; got != tt.want {
				t.Errorf("matches = %v, want %v", got, tt.want)
			}
		})
	}
	noTitle := scoring.Model{Fit: []scoring.FitRule{{ID: "r", Points: 1, When: scoring.Criteria{Required: []string{"title"}}}}}
	if scoring.Score(noTitle, scoring.Facts{}, t0).Fit != 0 {
		t.Error("a required title matched an empty profile")
	}
}

// A domain written in Unicode (as intake keeps a lead's) and its ASCII
// form are one domain, whichever a rule names; so is a domain with an
// underscore, which intake takes.
func TestARuleMatchesADomainInEitherForm(t *testing.T) {
	for _, tc := range []struct{ rule, lead string }{
		{"müller-gmbh.de", "müller-gmbh.de"},
		{"xn--mller-gmbh-9db.de", "müller-gmbh.de"},
		{"Müller-GmbH.de", "eu.xn--mller-gmbh-9db.de"},
		{"my_co.com", "my_co.com"},
	} {
		m := scoring.Default()
		m.Disqualify = append(m.Disqualify, scoring.DisqualifyRule{ID: "rival-de", Reason: "competitor",
			When: scoring.Criteria{EmailDomainIn: []string{tc.rule}}})
		if v := scoring.Validate(m); len(v) > 0 {
			t.Errorf("a rule on %s: %v", tc.rule, v)
			continue
		}
		if r := scoring.Score(m, scoring.Facts{Profile: scoring.Profile{EmailDomain: tc.lead}}, t0); r.Disqualify == nil || r.Disqualify.RuleID != "rival-de" {
			t.Errorf("a rule on %s missed a lead of %s: %+v", tc.rule, tc.lead, r.Disqualify)
		}
	}
	m := scoring.Default()
	m.Disqualify = append(m.Disqualify, scoring.DisqualifyRule{ID: "rival-de", Reason: "competitor",
		When: scoring.Criteria{EmailDomainIn: []string{"müller-gmbh.de"}}})
	if r := scoring.Score(m, scoring.Facts{Profile: scoring.Profile{EmailDomain: "notmüller-gmbh.de"}}, t0); r.Disqualify != nil {
		t.Errorf("a rule on müller-gmbh.de caught notmüller-gmbh.de")
	}
}

func TestValidate(t *testing.T) {
	fit := func(r scoring.FitRule) scoring.Model {
		m := scoring.Default()
		m.Fit = append([]scoring.FitRule{r}, m.Fit...)
		return m
	}
	eng := func(r scoring.EngagementRule) scoring.Model {
		m := scoring.Default()
		m.Engagement = append(m.Engagement[:2:2], r)
		return m
	}
	tests := []struct {
		name  string
		model scoring.Model
		field string
	}{
		{"min above max", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{MinEmployees: 500, MaxEmployees: 50}}), "fit_rules[0].when.max_employees"},
		{"negative employees", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{MinEmployees: -1}}), "fit_rules[0].when.min_employees"},
		{"no condition", fit(scoring.FitRule{ID: "x", Points: 5}), "fit_rules[0].when"},
		{"blank set value", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{IndustryIn: []string{"saas", " "}}}), "fit_rules[0].when.industry_in[1]"},
		{"repeated set value", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{CountryIn: []string{"US", "us"}}}), "fit_rules[0].when.country_in[1]"},
		{"bad country", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{CountryIn: []string{"USA"}}}), "fit_rules[0].when.country_in[0]"},
		{"no such country", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{CountryIn: []string{"DE", "UK"}}}), "fit_rules[0].when.country_in[1]"},
		{"no such country, spaced", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{CountryIn: []string{" UK "}}}), "fit_rules[0].when.country_in[0]"},
		{"bad domain", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{EmailDomainIn: []string{"a@b.com"}}}), "fit_rules[0].when.email_domain_in[0]"},
		{"control character in a description", fit(scoring.FitRule{ID: "x", Points: 5, Description: "spam\x1b[2J", When: scoring.Criteria{MinEmployees: 1}}), "fit_rules[0].description"},
		{"unknown field", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{Required: []string{"shoe_size"}}}), "fit_rules[0].when.required[0]"},
		{"field name with a space", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{Required: []string{"country "}}}), "fit_rules[0].when.required[0]"},
		{"title keywords (sealed)", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{TitleContains: []string{"sales"}}}), "fit_rules[0].when.title_contains"},
		{"required company (sealed)", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{Required: []string{"company"}}}), "fit_rules[0].when.required[0]"},
		{"unknown function", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{FunctionIn: []eventv1.JobFunction{42}}}), "fit_rules[0].when.function_in[0]"},
		{"unknown seniority", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{99}}}), "fit_rules[0].when.seniority_in[0]"},
		{"unspecified seniority", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{0}}}), "fit_rules[0].when.seniority_in[0]"},
		{"repeated seniority", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{vp, vp}}}), "fit_rules[0].when.seniority_in[1]"},
		// Each value is matched against every lead: as many as text sets.
		{"too many functions", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{
			FunctionIn: make([]eventv1.JobFunction, scoring.MaxValues+1)}}), "fit_rules[0].when.function_in"},
		{"repeated consent channel", fit(scoring.FitRule{ID: "x", Points: 5, When: scoring.Criteria{ConsentWithdrawn: []eventv1.ConsentChannel{
			eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL}}}), "fit_rules[0].when.consent_withdrawn[1]"},
		{"points too big", fit(scoring.FitRule{ID: "x", Points: 1001, When: scoring.Criteria{CountryIn: []string{"US"}}}), "fit_rules[0].points"},
		{"zero points", fit(scoring.FitRule{ID: "x", When: scoring.Criteria{CountryIn: []string{"US"}}}), "fit_rules[0].points"},
		{"bad id", fit(scoring.FitRule{ID: "Not An Id", Points: 5, When: scoring.Criteria{CountryIn: []string{"US"}}}), "fit_rules[0].id"},
		{"duplicate id", fit(scoring.FitRule{ID: "mid-market", Points: 5, When: scoring.Criteria{CountryIn: []string{"US"}}}), "fit_rules[4].id"},
		{"unknown activity", eng(scoring.EngagementRule{ID: "x", Activity: 0, Points: 5, Cap: 5, HalfLife: day}), "engagement_rules[2].activity_type"},
		{"cap below points", eng(scoring.EngagementRule{ID: "x", Activity: webinar, Points: 10, Cap: 5, HalfLife: day}), "engagement_rules[2].cap"},
		{"cap below negative points", eng(scoring.EngagementRule{ID: "x", Activity: unsub, Points: -10, Cap: 5, HalfLife: day}), "engagement_rules[2].cap"},
		{"zero half-life", eng(scoring.EngagementRule{ID: "x", Activity: webinar, Points: 10, Cap: 10}), "engagement_rules[2].half_life"},
		{"negative half-life", eng(scoring.EngagementRule{ID: "x", Activity: webinar, Points: 10, Cap: 10, HalfLife: -day}), "engagement_rules[2].half_life"},
		{"id shared across lists", eng(scoring.EngagementRule{ID: "decision-maker", Activity: webinar, Points: 10, Cap: 10, HalfLife: day}), "engagement_rules[2].id"},
		{"disqualifier without reason", func() scoring.Model {
			m := scoring.Default()
			m.Disqualify[1].Reason = " "
			return m
		}(), "disqualify_rules[1].reason"},
		{"unreachable threshold", func() scoring.Model {
			m := scoring.Default()
			fit, eng := scoring.MaxScore(m)
			m.Threshold = fit + eng + 1
			return m
		}(), "threshold"},
		{"threshold of two seniority bands together", scoring.Model{Threshold: 40, Fit: []scoring.FitRule{
			{ID: "vp", Points: 30, When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_VP}}},
			{ID: "director", Points: 20, When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_DIRECTOR}}},
		}}, "threshold"},
		{"zero threshold", func() scoring.Model { m := scoring.Default(); m.Threshold = 0; return m }(), "threshold"},
		{"empty model", scoring.Model{Threshold: 1}, "threshold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := scoring.Validate(tt.model)
			if len(vs) != 1 || vs[0].Field != tt.field || vs[0].Description == "" {
				t.Fatalf("violations %+v, want exactly one on %s", vs, tt.field)
			}
		})
	}
}

func TestProtoRoundTrip(t *testing.T) {
	m := scoring.Default()
	m.Version = 3
	back := scoring.FromProto(scoring.ToProto(m))
	if d := scoring.Diff(m, back); len(d) > 0 || back.Version != 3 || back.ID != scoring.ID {
		t.Fatalf("round trip changed the model: %+v", d)
	}
}

func TestDiff(t *testing.T) {
	a := scoring.Default()
	b := scoring.Default()
	b.Threshold = 60
	b.Fit = slices.Delete(slices.Clone(b.Fit), 2, 3) // manager
	b.Fit[0].Points = 30
	b.Fit[0].When.SeniorityIn = []eventv1.Seniority{vp}
	b.Engagement = append(slices.Clone(b.Engagement), scoring.EngagementRule{ID: "event-registered", Activity: eventv1.ActivityType_ACTIVITY_TYPE_EVENT_ATTENDED, Points: 2, Cap: 4, HalfLife: day})
	b.Disqualify = []scoring.DisqualifyRule{a.Disqualify[1], a.Disqualify[0], a.Disqualify[2], a.Disqualify[3]}
	var got []string
	for _, c := range scoring.Diff(a, b) {
		got = append(got, c.Path)
		if c.Kind == scoring.Changed && (c.From == "" || c.To == "") {
			t.Errorf("%s: changed needs both sides: %+v", c.Path, c)
		}
	}
	want := []string{"threshold", "fit_rules[decision-maker].points", "fit_rules[decision-maker].when.seniority_in",
		"fit_rules[manager]", "engagement_rules[event-registered]", "disqualify_rules.order"}
	if !slices.Equal(got, want) {
		t.Fatalf("diff paths\n got %v\nwant %v", got, want)
	}
	if d := scoring.Diff(a, a); len(d) != 0 {
		t.Fatalf("a model differs from itself: %v", d)
	}
	for _, c := range scoring.Diff(a, b) {
		if c.Path == "fit_rules[manager]" && (c.Kind != scoring.Removed || !strings.Contains(c.From, "points=5")) {
			t.Errorf("removed rule: %+v", c)
		}
	}
	// Two industries made one that holds a comma: a change to review.
	two, one := scoring.Default(), scoring.Default()
	two.Fit[0].When.IndustryIn = []string{"Software", "Fintech"}
	one.Fit[0].When.IndustryIn = []string{"Software, Fintech"}
	if d := scoring.Diff(two, one); len(d) != 1 || d[0].Path != "fit_rules[decision-maker].when.industry_in" {
		t.Fatalf("two industries made one: %+v, want the change", d)
	}
}

const day = 24 * time.Hour
