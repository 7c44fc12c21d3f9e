// Package routing is the handoff service's routing data and decisions,
// pure: teams, reps, out-of-office, pools, accounts, rules and SLA
// policies folded from RoutingChanged events (Config); lead-to-account
// matching; and the decision that gives a lead to a rep or a queue,
// recording every rule tried and every rep considered (Route, Escalate).
package routing

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/maildomain"
	"github.com/leadflow/leadflow/services/handoff/sla"
)

// Config is the routing data at one version. A Config is never changed
// once shared: Apply works on a Clone.
type Config struct {
	// Version counts the changes applied, 1, 2, ...; Seq is the stream
	// sequence of the last.
	Version  uint32
	Seq      uint64
	Teams    map[string]*eventv1.SalesTeam
	Reps     map[string]*eventv1.Rep
	Absences map[string][]*eventv1.Absence
	Pools    map[string]*eventv1.Pool
	Accounts map[string]*eventv1.Account
	// Rules is nil until the first rule set.
	Rules *eventv1.RoutingRules
	// SLAs by segment; "" is the default policy.
	SLAs map[string]*eventv1.SLAPolicy

	calendars map[string]sla.Calendar // by team
	domains   map[string]string       // normalized domain -> account
	names     map[string]string       // normalized company name -> account
	given     map[string]bool         // every segment any rules gave
}

// New returns the empty routing data (version 0).
func New() *Config {
	return &Config{
		Teams: map[string]*eventv1.SalesTeam{}, Reps: map[string]*eventv1.Rep{}, Absences: map[string][]*eventv1.Absence{},
		Pools: map[string]*eventv1.Pool{}, Accounts: map[string]*eventv1.Account{}, SLAs: map[string]*eventv1.SLAPolicy{},
		calendars: map[string]sla.Calendar{}, domains: map[string]string{}, names: map[string]string{}, given: map[string]bool{},
	}
}

// Clone returns a copy that Apply may change; the proto values are shared
// and must not be changed.
func (c *Config) Clone() *Config {
	n := *c
	n.Teams, n.Reps, n.Absences = maps.Clone(c.Teams), maps.Clone(c.Reps), maps.Clone(c.Absences)
	n.Pools, n.Accounts, n.SLAs = maps.Clone(c.Pools), maps.Clone(c.Accounts), maps.Clone(c.SLAs)
	n.calendars, n.domains, n.names = maps.Clone(c.calendars), maps.Clone(c.domains), maps.Clone(c.names)
	n.given = maps.Clone(c.given)
	return &n
}

// DefaultQueue is the fallback queue while no rule set names one.
const DefaultQueue = "unrouted"

// DefaultSegment is the segment of a lead no rule matched, while the rule
// set names none.
const DefaultSegment = "default"

// Apply applies one recorded change, stored at stream sequence seq. It
// never fails: the change was validated before it was recorded.
func (c *Config) Apply(seq uint64, ch *eventv1.RoutingChanged) {
	c.Version, c.Seq = ch.GetVersion(), seq
	switch x := ch.GetChange().(type) {
	case *eventv1.RoutingChanged_Team:
		c.Teams[x.Team.GetTeamId()] = x.Team
		cal, _ := sla.NewCalendar("", x.Team.GetHours())
		c.calendars[x.Team.GetTeamId()] = cal
	case *eventv1.RoutingChanged_Rep:
		c.Reps[x.Rep.GetRepId()] = x.Rep
	case *eventv1.RoutingChanged_OutOfOffice:
		c.Absences[x.OutOfOffice.GetRepId()] = x.OutOfOffice.GetAbsences()
	case *eventv1.RoutingChanged_Pool:
		c.Pools[x.Pool.GetPoolId()] = x.Pool
	case *eventv1.RoutingChanged_Account:
		if old, ok := c.Accounts[x.Account.GetAccountId()]; ok {
			for _, d := range old.GetDomains() {
				if nd := NormalizeDomain(d); c.domains[nd] == x.Account.GetAccountId() {
					delete(c.domains, nd)
				}
			}
			if n := NormalizeCompany(old.GetName()); c.names[n] == x.Account.GetAccountId() {
				delete(c.names, n)
			}
		}
		c.Accounts[x.Account.GetAccountId()] = x.Account
		for _, d := range x.Account.GetDomains() {
			// One recorded before Validate refused it would take every
			// company's leads.
			if nd := NormalizeDomain(d); maildomain.Shared(nd) == "" {
				c.domains[nd] = x.Account.GetAccountId()
			}
		}
		// The first account to claim a name keeps it: names recorded as
		// distinct may fold alike under a later normalization.
		if n := NormalizeCompany(x.Account.GetName()); n != "" {
			if _, taken := c.names[n]; !taken {
				c.names[n] = x.Account.GetAccountId()
			}
		}
	case *eventv1.RoutingChanged_Rules:
		c.Rules = x.Rules
		for _, seg := range c.Segments() {
			c.given[seg] = true
		}
	case *eventv1.RoutingChanged_SlaPolicy:
		c.SLAs[x.SlaPolicy.GetSegment()] = x.SlaPolicy
	}
}

// Unchanged reports whether applying ch would change nothing: the same
// record is in force already.
func (c *Config) Unchanged(ch *eventv1.RoutingChanged) bool {
	var have, want proto.Message
	switch x := ch.GetChange().(type) {
	case *eventv1.RoutingChanged_Team:
		have, want = c.Teams[x.Team.GetTeamId()], x.Team
	case *eventv1.RoutingChanged_Rep:
		have, want = c.Reps[x.Rep.GetRepId()], x.Rep
	case *eventv1.RoutingChanged_OutOfOffice:
		abs, ok := c.Absences[x.OutOfOffice.GetRepId()]
		if !ok {
			return false
		}
		have, want = &eventv1.OutOfOffice{RepId: x.OutOfOffice.GetRepId(), Absences: abs}, x.OutOfOffice
	case *eventv1.RoutingChanged_Pool:
		have, want = c.Pools[x.Pool.GetPoolId()], x.Pool
	case *eventv1.RoutingChanged_Account:
		have, want = c.Accounts[x.Account.GetAccountId()], x.Account
	case *eventv1.RoutingChanged_Rules:
		have, want = c.Rules, x.Rules
	case *eventv1.RoutingChanged_SlaPolicy:
		have, want = c.SLAs[x.SlaPolicy.GetSegment()], x.SlaPolicy
	default:
		return false
	}
	return have.ProtoReflect().IsValid() && proto.Equal(have, want)
}

// Calendar is a team's working hours; unknown teams work around the clock.
func (c *Config) Calendar(teamID string) sla.Calendar {
	if cal, ok := c.calendars[teamID]; ok {
		return cal
	}
	return sla.Always
}

// RepCalendar is the working hours of a rep's team.
func (c *Config) RepCalendar(repID string) sla.Calendar {
	return c.Calendar(c.Reps[repID].GetTeamId())
}

// Policy is a segment's SLA: its own, else the default policy ("" segment),
// else sla.Default.
func (c *Config) Policy(segment string) sla.Policy {
	p, ok := c.SLAs[segment]
	if !ok {
		p, ok = c.SLAs[""]
	}
	out := sla.Default()
	if ok {
		out = sla.FromProto(p)
	}
	out.Segment = segment
	return out
}

// FallbackQueue is where a lead no rep can take waits.
func (c *Config) FallbackQueue() string {
	if q := c.Rules.GetFallbackQueue(); q != "" {
		return q
	}
	return DefaultQueue
}

// Segments are the segments the routing rules give leads: each rule's,
// and the one a lead no rule matches gets.
func (c *Config) Segments() []string {
	out := []string{c.defaultSegment()}
	for _, r := range c.Rules.GetRules() {
		if s := r.GetSegment(); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// CheckSegment refuses a segment the routing rules do not give (field
// names it): a misspelt segment's SLA policy or target would never apply.
// past also takes one earlier rules gave, so that a period's target can
// still be set, or set again, after the rules renamed it (a policy could
// apply to no new lead).
func (c *Config) CheckSegment(field, s string, past bool) []Violation {
	if segs := c.Segments(); s != "" && ValidID(s) && !slices.Contains(segs, s) && !(past && c.given[s]) {
		return []Violation{{Field: field, Description: fmt.Sprintf("%q is not a segment the routing rules give (%s): set the rules first",
			s, strings.Join(segs, ", "))}}
	}
	return nil
}

func (c *Config) defaultSegment() string {
	if s := c.Rules.GetDefaultSegment(); s != "" {
		return s
	}
	return DefaultSegment
}

// idRE is every id and name routing data uses as a key: one subject
// token, short.
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ValidID reports whether s can be a team, rep, pool, account, rule,
// region, segment or queue id.
func ValidID(s string) bool { return idRE.MatchString(s) }
