package scoring

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/leadflow/leadflow/pkg/envelope"
)

// Violation is one refused part of a model, named by its path in the
// proposal ("fit_rules[2].when.max_employees", "threshold").
type Violation struct {
	Field       string
	Description string
}

// Limits of a model, so that one proposal cannot make scoring slow or a
// single rule outweigh the rest absurdly.
const (
	MaxPoints      = 1000
	MaxCap         = 10_000
	MaxRules       = 100 // per list
	MaxValues      = 500 // per condition
	MaxText        = 200 // a description, reason or value
	MaxHalfLife    = 10 * 365 * 24 * time.Hour
	MaxEmployees   = 10_000_000
	maxDescription = 1000
)

var (
	ruleIDRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	countryRE = regexp.MustCompile(`^[A-Za-z]{2}$`)
	// Labels of letters, digits, '-' and '_' (mail domains may hold one),
	// in the ASCII form (canonDomain).
	domainRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)+$`)
)

// Validate returns everything wrong with m, or nothing. It refuses unknown
// fields and enum values, contradictory or empty conditions, duplicate rule
// ids, points out of range, a cap below the points, a non-positive
// half-life and a threshold no lead can reach. It does not look at ID or
// Version, which the service assigns.
func Validate(m Model) []Violation {
	v := &violations{}
	if utf8.RuneCountInString(m.Description) > maxDescription {
		v.add("description", "must be at most %d characters", maxDescription)
	}
	ids := map[string]string{} // rule id -> path of its first use
	id := func(path, ruleID string) {
		switch {
		case !ruleIDRE.MatchString(ruleID):
			v.add(path+".id", "must be 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit")
		case ids[ruleID] != "":
			v.add(path+".id", "%q is already the id of %s", ruleID, ids[ruleID])
		default:
			ids[ruleID] = path
		}
	}
	count := func(field string, n int) {
		if n > MaxRules {
			v.add(field, "must have at most %d rules", MaxRules)
		}
	}
	count("fit_rules", len(m.Fit))
	for i, r := range m.Fit {
		p := fmt.Sprintf("fit_rules[%d]", i)
		id(p, r.ID)
		v.text(p+".description", r.Description, false)
		v.points(p+".points", r.Points)
		v.criteria(p+".when", r.When)
	}
	count("engagement_rules", len(m.Engagement))
	for i, r := range m.Engagement {
		p := fmt.Sprintf("engagement_rules[%d]", i)
		id(p, r.ID)
		v.text(p+".description", r.Description, false)
		v.enum(p+".activity_type", r.Activity)
		v.points(p+".points", r.Points)
		switch abs := max(r.Points, -r.Points); {
		case r.Cap < abs:
			v.add(p+".cap", "must be at least the points' size (%d): a cap below one activity's points makes them meaningless", abs)
		case r.Cap > MaxCap:
			v.add(p+".cap", "must be at most %d", MaxCap)
		}
		switch {
		case r.HalfLife <= 0:
			v.add(p+".half_life", "must be positive")
		case r.HalfLife > MaxHalfLife:
			v.add(p+".half_life", "must be at most %s", MaxHalfLife)
		}
	}
	count("disqualify_rules", len(m.Disqualify))
	for i, r := range m.Disqualify {
		p := fmt.Sprintf("disqualify_rules[%d]", i)
		id(p, r.ID)
		v.text(p+".description", r.Description, false)
		v.text(p+".reason", r.Reason, true)
		v.criteria(p+".when", r.When)
	}
	if m.Threshold <= 0 {
		v.add("threshold", "must be positive: a threshold of %d qualifies leads with no fit and no engagement", m.Threshold)
		return v.list
	}
	if len(v.list) > 0 {
		// Refused already: the bound search runs only on a model within
		// every limit.
		return v.list
	}
	if fit, eng := MaxScore(m); m.Threshold > fit+eng {
		v.add("threshold", "%d cannot be reached: the most a lead can score is %d (fit %d + engagement %d)", m.Threshold, fit+eng, fit, eng)
	}
	return v.list
}

type violations struct{ list []Violation }

func (v *violations) add(field, format string, args ...any) {
	v.list = append(v.list, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (v *violations) text(field, s string, required bool) {
	switch {
	case required && strings.TrimSpace(s) == "":
		v.add(field, "is required")
	case utf8.RuneCountInString(s) > MaxText:
		v.add(field, "must be at most %d characters", MaxText)
	case strings.ContainsFunc(s, unicode.IsControl):
		// A reason goes on every lead the rule disqualifies, and into
		// operators' terminals.
		v.add(field, "must not contain control characters")
	}
}

func (v *violations) points(field string, p int) {
	switch {
	case p == 0:
		v.add(field, "must not be 0: a rule worth nothing is a mistake")
	case p > MaxPoints || p < -MaxPoints:
		v.add(field, "must be between -%d and %d", MaxPoints, MaxPoints)
	}
}

// enum refuses the zero value and numbers the schema does not define.
func (v *violations) enum(field string, e interface {
	protoreflect.Enum
	String() string
}) {
	n := e.Number()
	if n == 0 || e.Descriptor().Values().ByNumber(n) == nil {
		v.add(field, "%s is not a known value", e.String())
	}
}

func (v *violations) criteria(field string, c Criteria) {
	if c.isEmpty() {
		v.add(field, "needs at least one condition: a rule that matches every lead is a mistake")
		return
	}
	enumSet(v, field+".seniority_in", c.SeniorityIn)
	enumSet(v, field+".function_in", c.FunctionIn)
	enumSet(v, field+".consent_withdrawn", c.ConsentWithdrawn)
	for _, b := range []struct {
		name string
		n    int
	}{{"min_employees", c.MinEmployees}, {"max_employees", c.MaxEmployees}} {
		if b.n < 0 || b.n > MaxEmployees {
			v.add(field+"."+b.name, "must be between 0 (open) and %d", MaxEmployees)
		}
	}
	if c.MinEmployees > 0 && c.MaxEmployees > 0 && c.MinEmployees > c.MaxEmployees {
		v.add(field+".max_employees", "%d is below min_employees %d: no company matches", c.MaxEmployees, c.MinEmployees)
	}
	v.set(field+".industry_in", c.IndustryIn, nil)
	v.set(field+".country_in", c.CountryIn, countryRE.MatchString)
	for i, cc := range c.CountryIn {
		// Matched trimmed (score.go), so " UK" is UK.
		if cc := strings.TrimSpace(cc); countryRE.MatchString(cc) && !envelope.IsCountry(strings.ToUpper(cc)) {
			v.add(fmt.Sprintf("%s.country_in[%d]", field, i), "%q is not an ISO 3166-1 alpha-2 code (GB, not UK): no lead would match", cc)
		}
	}
	if len(c.TitleContains) > 0 {
		v.add(field+".title_contains", "titles are sealed at capture, so no lead would match: use function_in")
	}
	// Any domain a lead's email may have, in Unicode or its ASCII form
	// (they match each other: inDomain).
	v.set(field+".email_domain_in", c.EmailDomainIn, func(d string) bool { return domainRE.MatchString(canonDomain(d)) })
	v.set(field+".required", c.Required, nil)
	for i, name := range c.Required {
		// Matched as written (score.go), so " country" would never match.
		if _, ok := Fields[name]; !ok {
			v.add(fmt.Sprintf("%s.required[%d]", field, i), "%q is not a profile field (seniority, job_function, industry, employees, country, email_domain)", name)
		} else if sealed[name] {
			v.add(fmt.Sprintf("%s.required[%d]", field, i), "%s is sealed at capture, so no lead would have it", name)
		}
	}
}

// enumSet checks a list of enum values as set checks text: known, not
// repeated, at most MaxValues (each is matched against every lead).
func enumSet[E interface {
	comparable
	protoreflect.Enum
	String() string
}](v *violations, field string, values []E) {
	if len(values) > MaxValues {
		v.add(field, "must have at most %d values", MaxValues)
		return
	}
	for i, e := range values {
		p := fmt.Sprintf("%s[%d]", field, i)
		if j := slices.Index(values, e); j < i {
			v.add(p, "%s repeats %s[%d]", e.String(), field, j)
			continue
		}
		v.enum(p, e)
	}
}

// set checks a list of text values: not blank, not repeated, of the
// right shape.
func (v *violations) set(field string, values []string, shape func(string) bool) {
	if len(values) > MaxValues {
		v.add(field, "must have at most %d values", MaxValues)
		return
	}
	seen := map[string]int{}
	for i, s := range values {
		p := fmt.Sprintf("%s[%d]", field, i)
		key := strings.ToLower(strings.TrimSpace(s))
		switch j, dup := seen[key]; {
		case key == "":
			v.add(p, "must not be blank")
		case utf8.RuneCountInString(s) > MaxText:
			v.add(p, "must be at most %d characters", MaxText)
		case shape != nil && !shape(strings.TrimSpace(s)):
			v.add(p, "%q is not valid here", s)
		case dup:
			v.add(p, "%q repeats %s[%d]", s, field, j)
		default:
			seen[key] = i
		}
	}
}

func (c Criteria) isEmpty() bool {
	return len(c.SeniorityIn) == 0 && c.MinEmployees == 0 && c.MaxEmployees == 0 && len(c.IndustryIn) == 0 &&
		len(c.CountryIn) == 0 && len(c.TitleContains) == 0 && len(c.EmailDomainIn) == 0 && len(c.Required) == 0 &&
		len(c.ConsentWithdrawn) == 0 && len(c.FunctionIn) == 0
}

// sealed are the profile fields intake seals: stored leads never carry
// them in the clear.
var sealed = map[string]bool{"company": true, "title": true}
