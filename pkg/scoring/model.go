// Package model is the shared scoring model as data: fit rules on a lead's
// profile, engagement rules on its activity with time decay, an MQL
// threshold and disqualifying rules. Validate says what is wrong with a
// model, Score applies one to a lead's facts, Diff compares two versions.
//
// The package is pure: no I/O and no clock. Score is deterministic given
// (model, facts, now), so a redelivered event, a re-score and a score from
// scratch agree.
package scoring

import (
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// ID is the id of Leadflow's one scoring model (subject model.scoring).
const ID = "scoring"

// Model is one version of the scoring model.
type Model struct {
	ID          string
	Version     uint32 // assigned on proposal
	Description string
	// Threshold is the total at which a lead becomes an MQL.
	Threshold  int
	Fit        []FitRule
	Engagement []EngagementRule
	// Disqualify is checked in order; the first rule that matches decides.
	Disqualify []DisqualifyRule
}

// Criteria are conditions on a lead's profile and consents. Every set
// condition must hold; a list holds when any of its values matches. Text
// compares without regard to case.
type Criteria struct {
	SeniorityIn []eventv1.Seniority
	// MinEmployees and MaxEmployees bound the company size, inclusive; 0
	// leaves that side open. An unknown size (0) matches neither bound.
	MinEmployees int
	MaxEmployees int
	IndustryIn   []string
	CountryIn    []string
	// TitleContains holds keywords, any of which the title contains.
	// Intake seals titles, so Validate refuses it in new versions; older
	// versions keep it, and it matches only profiles given a title.
	TitleContains []string
	// FunctionIn holds job functions (the coarse department intake
	// derives from the title).
	FunctionIn []eventv1.JobFunction
	// EmailDomainIn holds domains; a subdomain matches its parent.
	EmailDomainIn []string
	// Required names profile fields that must be present (see Fields).
	Required []string
	// ConsentWithdrawn holds channels whose consent the lead withdrew.
	ConsentWithdrawn []eventv1.ConsentChannel
}

// FitRule adds Points when the lead's profile matches When.
type FitRule struct {
	ID          string
	Description string
	Points      int
	When        Criteria
}

// EngagementRule adds Points per activity of one type, halved every
// HalfLife since the activity occurred; the rule gives at most Cap in all
// (for negative points, at least -Cap).
type EngagementRule struct {
	ID          string
	Description string
	Activity    eventv1.ActivityType
	Points      int
	Cap         int
	HalfLife    time.Duration
}

// DisqualifyRule takes a lead out of the funnel when it matches When: for
// good, or with NotNow back to nurture.
type DisqualifyRule struct {
	ID          string
	Description string
	When        Criteria
	Reason      string
	NotNow      bool
}

// Profile is what a lead said about itself, from its latest submission.
type Profile struct {
	Company     string
	Title       string
	Seniority   eventv1.Seniority
	Function    eventv1.JobFunction
	Industry    string
	Employees   int
	Country     string
	EmailDomain string
}

// Activity is one engagement signal and when it occurred.
type Activity struct {
	Type eventv1.ActivityType
	At   time.Time
}

// Facts are everything a model looks at for one lead.
type Facts struct {
	Profile    Profile
	Consents   map[eventv1.ConsentChannel]eventv1.ConsentStatus
	Activities []Activity // in the order they were recorded
}

// Reason is one rule that contributed to a score.
type Reason struct {
	RuleID      string
	Part        eventv1.ScorePart
	Points      int
	Description string
}

// Disqualification is the disqualifying rule that matched.
type Disqualification struct {
	RuleID string
	Reason string
	NotNow bool
}

// Result is a lead's score under one model at one time. Fit and
// Engagement are the sums of their reasons' points; Total is their sum.
type Result struct {
	Fit        int
	Engagement int
	Total      int
	Reasons    []Reason
	// Disqualify is set when a disqualifying rule matched.
	Disqualify *Disqualification
}

// Qualifies reports whether the result crosses m's threshold and no
// disqualifying rule matched.
func (r Result) Qualifies(m Model) bool { return r.Disqualify == nil && r.Total >= m.Threshold }
