package scoring

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"

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

// Final is the first disqualifying rule of m other than "not now" that
// matches f, if any: what ends a lead already in nurture, where a "not
// now" would only send it back.
func Final(m Model, f Facts) *Disqualification {
	for _, rule := range m.Disqualify {
		if !rule.NotNow && rule.When.matches(f) {
			return &Disqualification{RuleID: rule.ID, Reason: rule.Reason}
		}
	}
	return nil
}

func anyFold(set []string, v string) bool {
	v = strings.TrimSpace(v)
	return slices.ContainsFunc(set, func(s string) bool { return strings.EqualFold(strings.TrimSpace(s), v) })
}

// inDomain reports whether domain is d or a subdomain of it: a rule on
// rival.com must catch eu.rival.com, never notrival.com.
func inDomain(domain, d string) bool {
	domain, d = canonDomain(domain), canonDomain(d)
	return domain != "" && (domain == d || strings.HasSuffix(domain, "."+d))
}

// canonDomain is a domain lower-cased and, if it is written in Unicode,
// in its ASCII form: intake keeps a lead's as its email had it, and a
// rule may name either (müller.de and xn--mller-kva.de are one domain).
func canonDomain(d string) string {
	d = strings.ToLower(strings.TrimSpace(d))
	for i := 0; i < len(d); i++ {
		if d[i] >= utf8.RuneSelf {
			if a, err := idna.Lookup.ToASCII(d); err == nil {
				return a
			}
			return d
		}
	}
	return d
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

// MaxScore is the most a lead can score under m: the positive fit rules
// that one profile can match together (maxFit), and every positive
// engagement rule at its cap. No lead can reach a threshold above it.
func MaxScore(m Model) (fit, engagement int) {
	fit = maxFit(m.Fit)
	for _, r := range m.Engagement {
		if r.Points > 0 {
			engagement += r.Cap
		}
	}
	return fit, engagement
}

// maxFitSteps bounds maxFit's search; past it, the answer is the sum of
// every positive rule, which is never below the true maximum.
const maxFitSteps = 100_000

// maxFit is the largest sum of positive fit rules whose conditions one
// profile meets together: two seniority bands never add up. Each condition
// is on its own field, so a profile is one value per field, and only the
// values the rules name matter (any other value matches fewer rules). The
// search picks them field by field and drops a branch that cannot beat
// the best found. Negative rules are left out: avoiding them can only
// raise the sum, so the answer stays an upper bound.
func maxFit(rules []FitRule) int {
	fit, _ := maxFitSearch(rules)
	return fit
}

// maxFitSearch is maxFit and how many rule sets its search summed: about
// twice maxFitSteps at most, each in time linear in the rules.
func maxFitSearch(rules []FitRule) (fit, summed int) {
	var pos []FitRule
	sum := 0
	for _, r := range rules {
		if r.Points > 0 {
			pos = append(pos, r)
			sum += r.Points
		}
	}
	if len(pos) > 64 { // beyond a bitset; Validate refuses more than MaxRules anyway
		return sum, 0
	}
	all := uint64(1)<<len(pos) - 1
	if len(pos) == 64 {
		all = ^uint64(0)
	}
	// choices[f] holds, for each value of field f the rules name, the
	// rules a profile with that value can still match. Each distinct
	// value is tried once against each rule, in constant time: a model of
	// 100 rules naming 500 values each stays fast to validate.
	var choices [][]uint64
	field := func(vals []string, match func(i int, v string) bool) {
		var sets []uint64
		seen, have := map[string]bool{}, map[uint64]bool{}
		for _, v := range vals {
			if seen[v] {
				continue
			}
			seen[v] = true
			var s uint64
			for i := range pos {
				if match(i, v) {
					s |= 1 << i
				}
			}
			if !have[s] {
				have[s] = true
				sets = append(sets, s)
			}
		}
		if len(sets) > 0 {
			choices = append(choices, sets)
		}
	}
	// named is a field whose condition is a set of values: each rule's
	// set (nil: the rule does not look at the field) and every value.
	named := func(get func(Criteria) []string) ([]map[string]bool, []string) {
		sets, vals := make([]map[string]bool, len(pos)), []string(nil)
		for i, r := range pos {
			for _, v := range get(r.When) {
				if sets[i] == nil {
					sets[i] = map[string]bool{}
				}
				sets[i][v] = true
				vals = append(vals, v)
			}
		}
		return sets, vals
	}
	in := func(sets []map[string]bool) func(i int, v string) bool {
		return func(i int, v string) bool { return sets[i] == nil || sets[i][v] }
	}
	// Industries and countries match as anyFold compares them; domains as
	// inDomain does.
	fold := func(key func(string) string) func([]string) []string {
		return func(vs []string) []string {
			out := make([]string, len(vs))
			for i, v := range vs {
				out[i] = key(strings.TrimSpace(v))
			}
			return out
		}
	}
	equalFold, domain := fold(foldKey), fold(canonDomain)
	enum := func(get func(Criteria) []int32) func(Criteria) []string {
		return func(c Criteria) []string {
			var out []string
			for _, e := range get(c) {
				out = append(out, strconv.Itoa(int(e)))
			}
			return out
		}
	}
	for _, get := range []func(Criteria) []string{
		enum(func(c Criteria) []int32 { return int32s(c.SeniorityIn) }),
		enum(func(c Criteria) []int32 { return int32s(c.FunctionIn) }),
		func(c Criteria) []string { return equalFold(c.IndustryIn) },
		func(c Criteria) []string { return equalFold(c.CountryIn) },
	} {
		sets, vals := named(get)
		field(vals, in(sets))
	}
	// A domain matches its own rules and its parents' (inDomain).
	domains, vals := named(func(c Criteria) []string { return domain(c.EmailDomainIn) })
	field(vals, func(i int, v string) bool {
		if domains[i] == nil {
			return true
		}
		for d := v; d != ""; {
			if domains[i][d] {
				return true
			}
			_, d, _ = strings.Cut(d, ".")
		}
		return false
	})
	// Company size: a bound is the only place the rules it meets change.
	var sizes []string
	for _, r := range pos {
		for _, n := range []int{r.When.MinEmployees, r.When.MaxEmployees, 1} {
			if n > 0 {
				sizes = append(sizes, strconv.Itoa(n))
			}
		}
	}
	field(sizes, func(i int, v string) bool {
		n, _ := strconv.Atoi(v)
		c := pos[i].When
		return (c.MinEmployees <= 0 || n >= c.MinEmployees) && (c.MaxEmployees <= 0 || n <= c.MaxEmployees)
	})
	slices.SortFunc(choices, func(a, b []uint64) int { return len(a) - len(b) })

	points := func(s uint64) int {
		summed++
		n := 0
		for ; s != 0; s &= s - 1 {
			n += pos[bits.TrailingZeros64(s)].Points
		}
		return n
	}
	// Every choice tried counts, pruned or not: a field of many choices
	// deep in the search is where the work is.
	best, tried := 0, 0
	var search func(f int, s uint64) bool
	search = func(f int, s uint64) bool {
		if f == len(choices) {
			best = max(best, points(s))
			return true
		}
		for _, c := range choices[f] {
			if tried++; tried > maxFitSteps {
				return false
			}
			if next := s & c; points(next) > best && !search(f+1, next) {
				return false
			}
		}
		return true
	}
	if !search(0, all) {
		return sum, summed
	}
	return best, summed
}

// foldKey is s with each rune replaced by the least of its case-folding
// orbit, so that two strings strings.EqualFold calls equal have one key
// (strings.ToLower would keep σ and ς apart).
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, s)
}

func int32s[E ~int32](es []E) []int32 {
	out := make([]int32, len(es))
	for i, e := range es {
		out[i] = int32(e)
	}
	return out
}
