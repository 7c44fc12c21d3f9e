package routing

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/maildomain"
	"github.com/leadflow/leadflow/services/handoff/sla"
)

// Violation is one refused field.
type Violation = sla.Violation

type violations []Violation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (v *violations) id(field, id string) {
	switch {
	case id == "":
		v.add(field, "is required")
	case !ValidID(id):
		v.add(field, "must be 1-64 letters, digits, '-' or '_', starting with a letter or digit")
	}
}

func (v *violations) text(field, s string, required bool) {
	switch {
	case required && strings.TrimSpace(s) == "":
		v.add(field, "is required")
	case utf8.RuneCountInString(s) > 200:
		v.add(field, "must be at most 200 characters")
	case strings.ContainsFunc(s, unicode.IsControl):
		// Names are stored as text by the read model: PostgreSQL takes no NUL.
		v.add(field, "must not contain control characters")
	}
}

const (
	maxCapacity = 10_000
	maxMembers  = 200
	maxWeight   = 100
	maxRules    = 500
)

var (
	// After NormalizeDomain: an internationalized name, or top-level
	// domain, is in its punycode form (xn--…).
	domainRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59})$`)
)

// Validate checks one change against the data it would apply to; field
// is the change's name in the request ("team", "rules"). Unknown
// references (a rep's team, a pool's reps) are violations too.
func (c *Config) Validate(field string, ch *eventv1.RoutingChanged) []Violation {
	var v violations
	switch x := ch.GetChange().(type) {
	case *eventv1.RoutingChanged_Team:
		c.validateTeam(&v, field, x.Team)
	case *eventv1.RoutingChanged_Rep:
		c.validateRep(&v, field, x.Rep)
	case *eventv1.RoutingChanged_OutOfOffice:
		c.validateOOO(&v, field, x.OutOfOffice)
	case *eventv1.RoutingChanged_Pool:
		c.validatePool(&v, field, x.Pool)
	case *eventv1.RoutingChanged_Account:
		c.validateAccount(&v, field, x.Account)
	case *eventv1.RoutingChanged_Rules:
		c.validateRules(&v, field, x.Rules)
	case *eventv1.RoutingChanged_SlaPolicy:
		if s := x.SlaPolicy.GetSegment(); s != "" && !ValidID(s) {
			v.add(field+".segment", "must be empty (the default policy) or a segment id")
		}
		v = append(v, sla.Validate(field, x.SlaPolicy)...)
		v = append(v, c.CheckSegment(field+".segment", x.SlaPolicy.GetSegment(), false)...)
	default:
		v.add(field, "is required")
	}
	return v
}

func (c *Config) knownRep(v *violations, field, id string) {
	if _, ok := c.Reps[id]; !ok && ValidID(id) {
		v.add(field, "%q is not a known rep", id)
	}
}

func (c *Config) validateTeam(v *violations, f string, t *eventv1.SalesTeam) {
	if t == nil {
		v.add(f, "is required")
		return
	}
	v.id(f+".team_id", t.GetTeamId())
	v.text(f+".name", t.GetName(), false)
	_, cv := sla.NewCalendar(f+".hours", t.GetHours())
	*v = append(*v, cv...)
	if m := t.GetManagerRepId(); m != "" {
		v.id(f+".manager_rep_id", m)
		if _, ok := c.Reps[m]; !ok && ValidID(m) {
			// A rep needs a team first: the way out of the circle.
			v.add(f+".manager_rep_id", "%q is not a known rep: put the team without a manager, then the rep, then the team again naming them", m)
		}
	}
}

func (c *Config) validateRep(v *violations, f string, r *eventv1.Rep) {
	if r == nil {
		v.add(f, "is required")
		return
	}
	v.id(f+".rep_id", r.GetRepId())
	v.text(f+".name", r.GetName(), false)
	v.id(f+".team_id", r.GetTeamId())
	if _, ok := c.Teams[r.GetTeamId()]; !ok && ValidID(r.GetTeamId()) {
		v.add(f+".team_id", "%q is not a known team", r.GetTeamId())
	}
	if n := r.GetCapacity(); n < 1 || n > maxCapacity {
		v.add(f+".capacity", "must be 1 to %d open leads", maxCapacity)
	}
}

func (c *Config) validateOOO(v *violations, f string, o *eventv1.OutOfOffice) {
	if o == nil {
		v.add(f, "is required")
		return
	}
	v.id(f+".rep_id", o.GetRepId())
	c.knownRep(v, f+".rep_id", o.GetRepId())
	if len(o.GetAbsences()) > 100 {
		v.add(f+".absences", "must hold at most 100 periods")
	}
	for i, a := range o.GetAbsences() {
		af := fmt.Sprintf("%s.absences[%d]", f, i)
		switch {
		case a.GetFrom() == nil || a.GetFrom().CheckValid() != nil:
			v.add(af+".from", "is required")
		case a.GetUntil() == nil || a.GetUntil().CheckValid() != nil:
			v.add(af+".until", "is required")
		case !a.GetUntil().AsTime().After(a.GetFrom().AsTime()):
			v.add(af+".until", "must be after from")
		}
	}
}

func (c *Config) validatePool(v *violations, f string, p *eventv1.Pool) {
	if p == nil {
		v.add(f, "is required")
		return
	}
	v.id(f+".pool_id", p.GetPoolId())
	v.text(f+".name", p.GetName(), false)
	switch n := len(p.GetMembers()); {
	case n == 0:
		v.add(f+".members", "needs at least one rep")
	case n > maxMembers:
		v.add(f+".members", "must hold at most %d reps", maxMembers)
	}
	seen := map[string]bool{}
	for i, m := range p.GetMembers() {
		mf := fmt.Sprintf("%s.members[%d]", f, i)
		v.id(mf+".rep_id", m.GetRepId())
		c.knownRep(v, mf+".rep_id", m.GetRepId())
		if seen[m.GetRepId()] {
			v.add(mf+".rep_id", "%q is in the pool twice", m.GetRepId())
		}
		seen[m.GetRepId()] = true
		if w := m.GetWeight(); w < 1 || w > maxWeight {
			v.add(mf+".weight", "must be 1 to %d", maxWeight)
		}
	}
}

// storedName is the normalized name account id is stored with, "" if none.
func (c *Config) storedName(id string) string {
	if a, ok := c.Accounts[id]; ok {
		return NormalizeCompany(a.GetName())
	}
	return ""
}

func (c *Config) validateAccount(v *violations, f string, a *eventv1.Account) {
	if a == nil {
		v.add(f, "is required")
		return
	}
	v.id(f+".account_id", a.GetAccountId())
	v.text(f+".name", a.GetName(), true)
	if a.GetName() != "" {
		// An account may keep a name it was given before names folded
		// alike (edited for a new owner, say); no account may take one.
		if n := NormalizeCompany(a.GetName()); n == "" {
			v.add(f+".name", "has no letters or digits")
		} else if other, ok := c.names[n]; ok && other != a.GetAccountId() && n != c.storedName(a.GetAccountId()) {
			v.add(f+".name", "matches account %q (both are %q once normalized)", other, n)
		}
	}
	if len(a.GetDomains()) > 50 {
		v.add(f+".domains", "must hold at most 50 domains")
	}
	for i, d := range a.GetDomains() {
		df := fmt.Sprintf("%s.domains[%d]", f, i)
		nd := NormalizeDomain(d)
		switch {
		case !domainRE.MatchString(nd):
			v.add(df, "%q is not a domain name", d)
		case maildomain.Shared(nd) != "":
			v.add(df, "%q %s: it matches people of every company", d, maildomain.Shared(nd))
		default:
			if other, ok := c.domains[nd]; ok && other != a.GetAccountId() {
				v.add(df, "%q belongs to account %q", nd, other)
			}
		}
	}
	v.id(f+".owner_rep_id", a.GetOwnerRepId())
	c.knownRep(v, f+".owner_rep_id", a.GetOwnerRepId())
}

func (c *Config) validateRules(v *violations, f string, rs *eventv1.RoutingRules) {
	if rs == nil {
		v.add(f, "is required")
		return
	}
	regions := map[string]bool{}
	for i, r := range rs.GetRegions() {
		rf := fmt.Sprintf("%s.regions[%d]", f, i)
		v.id(rf+".region_id", r.GetRegionId())
		if regions[r.GetRegionId()] {
			v.add(rf+".region_id", "%q is defined twice", r.GetRegionId())
		}
		regions[r.GetRegionId()] = true
		if len(r.GetCountries()) == 0 {
			v.add(rf+".countries", "needs at least one country")
		}
		for j, cc := range r.GetCountries() {
			if !envelope.IsCountry(cc) {
				v.add(fmt.Sprintf("%s.countries[%d]", rf, j), "%q is not an ISO 3166-1 alpha-2 code in capitals (GB, not UK)", cc)
			}
		}
	}
	if len(rs.GetRules()) > maxRules {
		v.add(f+".rules", "must hold at most %d rules", maxRules)
	}
	ids := map[string]bool{}
	for i, r := range rs.GetRules() {
		rf := fmt.Sprintf("%s.rules[%d]", f, i)
		v.id(rf+".rule_id", r.GetRuleId())
		if ids[r.GetRuleId()] {
			v.add(rf+".rule_id", "%q is used twice", r.GetRuleId())
		}
		switch id := r.GetRuleId(); id {
		case RuleAccount, RuleEscalation, RuleManual:
			// One stored before these were refused stays allowed, so the
			// rule set can still be edited.
			if !slices.ContainsFunc(c.Rules.GetRules(), func(old *eventv1.RoutingRule) bool { return old.GetRuleId() == id }) {
				v.add(rf+".rule_id", "%q names decisions no rule made (an account's owner, an escalation, an assignment by hand): choose another", id)
			}
		}
		ids[r.GetRuleId()] = true
		v.text(rf+".description", r.GetDescription(), false)
		v.id(rf+".segment", r.GetSegment())
		v.id(rf+".pool_id", r.GetPoolId())
		if _, ok := c.Pools[r.GetPoolId()]; !ok && ValidID(r.GetPoolId()) {
			v.add(rf+".pool_id", "%q is not a known pool", r.GetPoolId())
		}
		w := r.GetWhen()
		for j, cc := range w.GetCountryIn() {
			if !envelope.IsCountry(cc) {
				v.add(fmt.Sprintf("%s.when.country_in[%d]", rf, j), "%q is not an ISO 3166-1 alpha-2 code in capitals (GB, not UK)", cc)
			}
		}
		for j, reg := range w.GetRegionIn() {
			if !regions[reg] {
				v.add(fmt.Sprintf("%s.when.region_in[%d]", rf, j), "%q is not a region of this rule set", reg)
			}
		}
		if w.GetMinEmployees() < 0 {
			v.add(rf+".when.min_employees", "must not be negative")
		}
		if w.GetMaxEmployees() < 0 || (w.GetMaxEmployees() > 0 && w.GetMaxEmployees() < w.GetMinEmployees()) {
			v.add(rf+".when.max_employees", "must be 0 (open) or at least min_employees")
		}
		for j, ind := range w.GetIndustryIn() {
			if strings.TrimSpace(ind) == "" {
				v.add(fmt.Sprintf("%s.when.industry_in[%d]", rf, j), "must not be empty")
			}
		}
	}
	v.id(f+".fallback_queue", rs.GetFallbackQueue())
	switch q := rs.GetFallbackQueue(); q {
	case lifecycle.QueueQualification.ID, lifecycle.QueueRouting.ID, lifecycle.QueueNurture.ID:
		// Its leads would read as the lifecycle's own queue's: routing's
		// would seem not routed yet, nurture's would hold MQLs.
		v.add(f+".fallback_queue", "must not be %q, a queue of the lifecycle's own", q)
	}
	if s := rs.GetDefaultSegment(); s != "" {
		v.id(f+".default_segment", s)
	}
}
