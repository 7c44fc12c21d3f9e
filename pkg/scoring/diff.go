package scoring

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ChangeKind says how an element changed between two models.
type ChangeKind int

// The change kinds.
const (
	Added ChangeKind = iota + 1
	Removed
	Changed
)

// Change is one difference between two models. Rules are named by id, not
// position, so inserting a rule shows as one addition: "fit_rules[vp]",
// "engagement_rules[webinar].cap".
type Change struct {
	Path string
	Kind ChangeKind
	From string // "" when added
	To   string // "" when removed
}

// Diff lists what changed from a to b: description, threshold, rules added
// or removed, each changed field of a rule, and the order of the
// disqualifying rules (the first match decides). ID and Version are not
// compared.
func Diff(a, b Model) []Change {
	var out []Change
	leaf := func(path, from, to string) {
		if from != to {
			out = append(out, Change{Path: path, Kind: kindOf(from, to), From: from, To: to})
		}
	}
	leaf("description", a.Description, b.Description)
	leaf("threshold", strconv.Itoa(a.Threshold), strconv.Itoa(b.Threshold))
	diffRules(&out, "fit_rules", mapRules(a.Fit, fitFields), mapRules(b.Fit, fitFields))
	diffRules(&out, "engagement_rules", mapRules(a.Engagement, engagementFields), mapRules(b.Engagement, engagementFields))
	diffRules(&out, "disqualify_rules", mapRules(a.Disqualify, disqualifyFields), mapRules(b.Disqualify, disqualifyFields))
	if ao, bo := common(a.Disqualify, b.Disqualify), common(b.Disqualify, a.Disqualify); !slices.Equal(ao, bo) {
		leaf("disqualify_rules.order", strings.Join(ao, ", "), strings.Join(bo, ", "))
	}
	return out
}

func kindOf(from, to string) ChangeKind {
	switch {
	case from == "":
		return Added
	case to == "":
		return Removed
	}
	return Changed
}

// field is one named value of a rule, formatted for people.
type field struct{ name, value string }

type ruleFields struct {
	id     string
	fields []field
}

func mapRules[R any](rules []R, fields func(R) (string, []field)) []ruleFields {
	out := make([]ruleFields, len(rules))
	for i, r := range rules {
		out[i].id, out[i].fields = fields(r)
	}
	return out
}

func diffRules(out *[]Change, list string, as, bs []ruleFields) {
	find := func(rs []ruleFields, id string) (ruleFields, bool) {
		i := slices.IndexFunc(rs, func(r ruleFields) bool { return r.id == id })
		if i < 0 {
			return ruleFields{}, false
		}
		return rs[i], true
	}
	for _, a := range as {
		path := list + "[" + a.id + "]"
		b, ok := find(bs, a.id)
		if !ok {
			*out = append(*out, Change{Path: path, Kind: Removed, From: summary(a.fields)})
			continue
		}
		// Rules of one list have the same fields in the same order.
		for i, f := range a.fields {
			if to := b.fields[i].value; f.value != to {
				*out = append(*out, Change{Path: path + "." + f.name, Kind: kindOf(f.value, to), From: f.value, To: to})
			}
		}
	}
	for _, b := range bs {
		if _, ok := find(as, b.id); !ok {
			*out = append(*out, Change{Path: list + "[" + b.id + "]", Kind: Added, To: summary(b.fields)})
		}
	}
}

func summary(fs []field) string {
	var parts []string
	for _, f := range fs {
		if f.value != "" {
			parts = append(parts, f.name+"="+f.value)
		}
	}
	return strings.Join(parts, "; ")
}

// common lists the ids of a's rules that b has too, in a's order.
func common(a, b []DisqualifyRule) []string {
	var out []string
	for _, r := range a {
		if slices.ContainsFunc(b, func(x DisqualifyRule) bool { return x.ID == r.ID }) {
			out = append(out, r.ID)
		}
	}
	return out
}

func fitFields(r FitRule) (string, []field) {
	return r.ID, append([]field{{"description", r.Description}, {"points", strconv.Itoa(r.Points)}}, r.When.fields()...)
}

func engagementFields(r EngagementRule) (string, []field) {
	return r.ID, []field{{"description", r.Description}, {"activity_type", activityName(r.Activity)},
		{"points", strconv.Itoa(r.Points)}, {"cap", strconv.Itoa(r.Cap)}, {"half_life", r.HalfLife.String()}}
}

func disqualifyFields(r DisqualifyRule) (string, []field) {
	return r.ID, append([]field{{"description", r.Description}, {"reason", r.Reason}, {"not_now", strconv.FormatBool(r.NotNow)}},
		r.When.fields()...)
}

func (c Criteria) fields() []field {
	num := func(n int) string {
		if n == 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	return []field{
		{"when.seniority_in", list(c.SeniorityIn)},
		{"when.min_employees", num(c.MinEmployees)},
		{"when.max_employees", num(c.MaxEmployees)},
		{"when.industry_in", texts(c.IndustryIn)},
		{"when.country_in", texts(c.CountryIn)},
		{"when.title_contains", texts(c.TitleContains)},
		{"when.function_in", list(c.FunctionIn)},
		{"when.email_domain_in", texts(c.EmailDomainIn)},
		{"when.required", texts(c.Required)},
		{"when.consent_withdrawn", list(c.ConsentWithdrawn)},
	}
}

// texts shows a list of values; one holding a comma or a quote is quoted,
// so ["a, b"] does not read as ["a", "b"].
func texts(vs []string) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		if strings.ContainsAny(v, ",\"") {
			v = strconv.Quote(v)
		}
		s[i] = v
	}
	return strings.Join(s, ", ")
}

func list[E fmt.Stringer](es []E) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.String()
	}
	return strings.Join(s, ", ")
}
