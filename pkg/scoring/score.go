package scoring

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Score applies m to a lead's facts as of now. Engagement decays from each
// activity's time to now; an activity after now counts in full. Points are
// rounded per rule, so the reasons add up to the parts exactly.
func Score(m Model, f Facts, now time.Time) Result {
	var r Result
	for _, rule := range m.Fit {
		if rule.When.matches(f) {
			r.Fit += rule.Points
			r.Reasons = append(r.Reasons, Reason{RuleID: rule.ID, Part: eventv1.ScorePart_SCORE_PART_FIT,
				Points: rule.Points, Description: describe(rule.ID, rule.Description)})
		}
	}
	for _, rule := range m.Engagement {
		pts, n := rule.points(f.Activities, now)
		if pts == 0 {
			continue // nothing matched, or it has decayed away
		}
		r.Engagement += pts
		r.Reasons = append(r.Reasons, Reason{RuleID: rule.ID, Part: eventv1.ScorePart_SCORE_PART_ENGAGEMENT, Points: pts,
			Description: fmt.Sprintf("%s (%d× %s, half-life %s, cap %d)", describe(rule.ID, rule.Description),
				n, activityName(rule.Activity), rule.HalfLife, rule.Cap)})
	}
	r.Total = r.Fit + r.Engagement
	for _, rule := range m.Disqualify {
		if rule.When.matches(f) {
			r.Disqualify = &Disqualification{RuleID: rule.ID, Reason: rule.Reason, NotNow: rule.NotNow}
			break
		}
	}
	return r
}

// points is the rule's decayed, capped and rounded contribution, and how
// many activities it counted.
func (e EngagementRule) points(acts []Activity, now time.Time) (int, int) {
	if e.HalfLife <= 0 {
		return 0, 0 // Validate refuses it; never divide by it
	}
	sum, n := 0.0, 0
	for _, a := range acts {
		if a.Type != e.Activity {
			continue
		}
		age := max(now.Sub(a.At), 0)
		w := math.Exp2(-float64(age) / float64(e.HalfLife))
		// The explicit conversion forbids a fused multiply-add, which Go
		// allows on some architectures: the score must be the same on
		// every machine that replays the stream.
		sum += float64(float64(e.Points) * w)
		n++
	}
	c := float64(e.Cap)
	return int(math.Round(min(max(sum, -c), c))), n
}

// matches reports whether every set condition holds for f.
func (c Criteria) matches(f Facts) bool {
	p := f.Profile
	switch {
	case len(c.SeniorityIn) > 0 && !slices.Contains(c.SeniorityIn, p.Seniority),
		len(c.FunctionIn) > 0 && !slices.Contains(c.FunctionIn, p.Function),
		c.MinEmployees > 0 && (p.Employees == 0 || p.Employees < c.MinEmployees),
		c.MaxEmployees > 0 && (p.Employees == 0 || p.Employees > c.MaxEmployees),
		len(c.IndustryIn) > 0 && !anyFold(c.IndustryIn, p.Industry),
		len(c.CountryIn) > 0 && !anyFold(c.CountryIn, p.Country),
		len(c.TitleContains) > 0 && !slices.ContainsFunc(c.TitleContains, func(k string) bool {
			return strings.Contains(strings.ToLower(p.Title), strings.ToLower(strings.TrimSpace(k)))
		}),
		len(c.EmailDomainIn) > 0 && !slices.ContainsFunc(c.EmailDomainIn, func(d string) bool { return inDomain(p.EmailDomain, d) }),
		len(c.ConsentWithdrawn) > 0 && !slices.ContainsFunc(c.ConsentWithdrawn, func(ch eventv1.ConsentChannel) bool {
			return f.Consents[ch] == eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN
		}):
		return false
	}
	for _, name := range c.Required {
		if present, ok := Fields[name]; !ok || !present(p) {
			return false
		}
	}
	return true
}

// Fields are the profile fields a rule may require, and whether a profile
// has each.
var Fields = map[string]func(Profile) bool{
	"company":      func(p Profile) bool { return strings.TrimSpace(p.Company) != "" },
	"title":        func(p Profile) bool { return strings.TrimSpace(p.Title) != "" },
	"seniority":    func(p Profile) bool { return p.Seniority != eventv1.Seniority_SENIORITY_UNSPECIFIED },
	"job_function": func(p Profile) bool { return p.Function != eventv1.JobFunction_JOB_FUNCTION_UNSPECIFIED },
	"industry":     func(p Profile) bool { return strings.TrimSpace(p.Industry) != "" },
	"employees":    func(p Profile) bool { return p.Employees > 0 },
	"country":      func(p Profile) bool { return strings.TrimSpace(p.Country) != "" },
	"email_domain": func(p Profile) bool { return strings.TrimSpace(p.EmailDomain) != "" },
}

func anyFold(set []string, v string) bool {
	v = strings.TrimSpace(v)
	return slices.ContainsFunc(set, func(s string) bool { return strings.EqualFold(strings.TrimSpace(s), v) })
}

// inDomain reports whether domain is d or a subdomain of it: a rule on
// rival.com must catch eu.rival.com, never notrival.com.
func inDomain(domain, d string) bool {
	domain, d = strings.ToLower(strings.TrimSpace(domain)), strings.ToLower(strings.TrimSpace(d))
	return domain != "" && (domain == d || strings.HasSuffix(domain, "."+d))
}

func describe(id, desc string) string {
	if desc != "" {
		return desc
	}
	return id
}

func activityName(t eventv1.ActivityType) string {
	return strings.TrimPrefix(t.String(), "ACTIVITY_TYPE_")
}

// MaxScore is the most a lead can score under m: every positive fit rule
// and every positive engagement rule at its cap. No lead can reach a
// threshold above it.
func MaxScore(m Model) (fit, engagement int) {
	for _, r := range m.Fit {
		fit += max(r.Points, 0)
	}
	for _, r := range m.Engagement {
		if r.Points > 0 {
			engagement += r.Cap
		}
	}
	return fit, engagement
}
