package routing

import (
	"fmt"
	"slices"
	"strings"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Lead is what routing knows of a lead.
type Lead struct {
	ID      string
	Profile *eventv1.Profile
	// Exclude are reps that held the lead in this journey: an escalation
	// does not give it back to them.
	Exclude []string
	// Avoid are reps that rejected the lead, in any journey: a pool passes
	// them over while another of its reps can take it.
	Avoid []string
	// Merged are the profiles of leads merged into it, its person's too:
	// where its own matches no account (a free-mail address), one of
	// theirs may (the company address it used before).
	Merged []*eventv1.Profile
}

// Loads says how many open leads (ASSIGNED or ACCEPTED) a rep holds; nil
// is none.
type Loads func(repID string) int

// LoadMap is Loads from a map.
func LoadMap(m map[string]int) Loads { return func(rep string) int { return m[rep] } }

// PoolState is a pool's round-robin pointer: a virtual clock, and each
// rep's pass, the virtual time of its next turn. The rep with the lowest
// pass among the available ones takes the turn; its pass then moves on by
// its stride (inverse to its weight). A pass behind the clock counts as
// the clock, so a rep who was away (out of office, at capacity, a new
// member) rejoins the rotation where it is, without banking turns.
type PoolState struct {
	Seq   uint64 // stream sequence of the turn it is after, 0 for none
	Clock uint64
	Pass  map[string]uint64
	// Last is the turn it is after.
	Last *eventv1.PoolTurnTaken
}

// PoolStateOf is the pointer after a recorded turn (nil: a fresh pool).
func PoolStateOf(seq uint64, t *eventv1.PoolTurnTaken) PoolState {
	s := PoolState{Seq: seq, Pass: map[string]uint64{}, Last: t}
	if t == nil {
		return s
	}
	s.Clock = t.GetClock()
	for _, p := range t.GetPasses() {
		s.Pass[p.GetRepId()] = p.GetPass()
	}
	return s
}

// strideUnit is the virtual time a weight-1 rep's turn takes.
const strideUnit = 1_000_000

// Turn is one round-robin turn, to be recorded as PoolTurnTaken.
type Turn struct {
	PoolID, RepID string
	Clock, Pass   uint64
	// Passes is every member's pass after the turn.
	Passes map[string]uint64
}

// Event is the turn as a PoolTurnTaken for lead, caused by cause.
func (t *Turn) Event(leadID, cause string, version uint32) *eventv1.PoolTurnTaken {
	e := &eventv1.PoolTurnTaken{PoolId: t.PoolID, RepId: t.RepID, LeadId: leadID, CauseId: cause, Clock: t.Clock, Pass: t.Pass, RoutingVersion: version}
	reps := make([]string, 0, len(t.Passes))
	for r := range t.Passes {
		reps = append(reps, r)
	}
	slices.Sort(reps)
	for _, r := range reps {
		e.Passes = append(e.Passes, &eventv1.PoolPass{RepId: r, Pass: t.Passes[r]})
	}
	return e
}

// Decision is the outcome of routing one lead: a rep, or a queue.
type Decision struct {
	Record *eventv1.RoutingDecision
	// RepID is the rep chosen; "" when the lead goes to Queue.
	RepID   string
	Segment string
	// Turn is set when a pool's round robin chose the rep.
	Turn *Turn
	// Queue is the fallback queue when no rep could take the lead (for an
	// escalation, the manager's queue), and RetryAt when a rep may (a
	// skipped rep's next opening or return); zero when nothing is known.
	Queue   string
	RetryAt time.Time
	// OffShift: queued only because the reps who could take the lead
	// are outside their working hours; RetryAt is when the first opens,
	// and OffSince when the last closed.
	OffShift bool
	OffSince time.Time
}

// The rule ids a decision names when no routing rule decided: the
// account's owner, an escalation, an assignment by hand. No rule may be
// named so.
const (
	RuleAccount    = "account"
	RuleEscalation = "escalation"
	RuleManual     = "manual"
)

// Route decides who gets a lead: the owner of its account, if it matches
// one and the owner can take it; else a rep of the pool of the first rule
// it matches, by weighted round robin among the reps who are active, in
// the office, inside their working hours and below capacity; else the
// fallback queue. pools holds the pointer of every pool the decision may
// use. The decision records every rule tried and every rep considered.
func (c *Config) Route(l Lead, pools map[string]PoolState, loads Loads, now time.Time) Decision {
	rec := &eventv1.RoutingDecision{RoutingVersion: c.Version}
	rule := c.matchRule(l.Profile, rec)
	d := Decision{Record: rec, Segment: c.defaultSegment()}
	if rule != nil {
		d.Segment = rule.GetSegment()
		rec.RuleId, rec.PoolId = rule.GetRuleId(), rule.GetPoolId()
	}
	rec.Segment = d.Segment

	offOwner := "" // the account's owner, when full outside their hours
	acct, how := c.MatchAccount(l.Profile)
	for _, p := range l.Merged {
		if acct != nil {
			break
		}
		if acct, how = c.MatchAccount(p); acct != nil {
			how += ", a merged lead's"
		}
	}
	if acct != nil {
		rec.AccountId, rec.AccountMatch = acct.GetAccountId(), how
		owner := acct.GetOwnerRepId()
		// An account's owner keeps its leads outside working hours: the
		// SLA clock waits for the owner's hours instead.
		out, detail, back := c.availability(owner, loads, now, time.Time{})
		cand := &eventv1.Candidate{RepId: owner, Outcome: out, Detail: detail, Source: "account:" + acct.GetAccountId()}
		rec.Candidates = append(rec.Candidates, cand)
		if out == eventv1.CandidateOutcome_CANDIDATE_OUTCOME_CHOSEN {
			// The territory's pool stays in the decision: an escalation
			// from the account's owner goes to it.
			rec.RuleId, rec.RepId = RuleAccount, owner
			rec.Summary = fmt.Sprintf("account %s (%s) is owned by %s", acct.GetAccountId(), how, owner)
			d.RepID = owner
			return d
		}
		d.RetryAt = earliest(d.RetryAt, back)
		if cal := c.RepCalendar(owner); out == eventv1.CandidateOutcome_CANDIDATE_OUTCOME_AT_CAPACITY && !cal.Open(now) {
			// Full and off duty: for the route clock, off shift like a
			// pool's rep (whose hours are weighed before their load),
			// until the owner's next opening.
			offOwner = owner
			d.RetryAt = earliest(d.RetryAt, cal.NextOpen(now))
		}
	}
	if rule == nil {
		c.offShift(&d, offOwner, now)
		return c.queue(d, "no rule matched")
	}
	pool, ok := c.Pools[rule.GetPoolId()]
	if !ok {
		return c.queue(d, "pool "+rule.GetPoolId()+" is unknown")
	}
	rep, turn, cands, back := c.pick(pool, pools[pool.GetPoolId()], l.Exclude, l.Avoid, loads, now, now)
	rec.Candidates = append(rec.Candidates, cands...)
	d.RetryAt = earliest(d.RetryAt, back)
	if rep == "" {
		c.offShift(&d, offOwner, now)
		return c.queue(d, fmt.Sprintf("rule %s matched; no rep of pool %s can take it", rule.GetRuleId(), pool.GetPoolId()))
	}
	rec.RepId = rep
	rec.Summary = fmt.Sprintf("rule %s matched; round robin of pool %s chose %s", rule.GetRuleId(), pool.GetPoolId(), rep)
	d.RepID, d.Turn = rep, turn
	return d
}

// offShift sets d.OffShift when the lead is queued only because reps
// who could take it are off shift: some candidate is off shift (outside
// working hours, away while off shift, or the account's owner offOwner,
// full outside their hours) and every other one could not take it on
// shift either (inactive, unknown, held it). A rep away during their
// working hours means working time: the clock runs. d.OffSince is when
// the last of them closed; d.RetryAt comes no later than the first
// opening of one away (whose absence may outlast it).
func (c *Config) offShift(d *Decision, offOwner string, now time.Time) {
	var since time.Time
	off := false
	closed := func(rep string) {
		off = true
		if cl := c.RepCalendar(rep).LastClose(now); cl.After(since) {
			since = cl
		}
	}
	retry := d.RetryAt
	for _, cd := range d.Record.GetCandidates() {
		switch rep := cd.GetRepId(); {
		case offOwner != "" && rep == offOwner && strings.HasPrefix(cd.GetSource(), "account:"):
			closed(rep)
		case cd.GetOutcome() == eventv1.CandidateOutcome_CANDIDATE_OUTCOME_OUTSIDE_WORKING_HOURS:
			closed(rep)
		case cd.GetOutcome() == eventv1.CandidateOutcome_CANDIDATE_OUTCOME_OUT_OF_OFFICE:
			cal := c.RepCalendar(rep)
			if cal.Open(now) {
				return
			}
			closed(rep)
			retry = earliest(retry, cal.NextOpen(now))
		case cd.GetOutcome() == eventv1.CandidateOutcome_CANDIDATE_OUTCOME_INACTIVE, cd.GetOutcome() == eventv1.CandidateOutcome_CANDIDATE_OUTCOME_UNKNOWN_REP,
			cd.GetOutcome() == eventv1.CandidateOutcome_CANDIDATE_OUTCOME_PRIOR_OWNER:
		default:
			return
		}
	}
	if off {
		d.OffShift, d.OffSince, d.RetryAt = true, since, retry
	}
}

func (c *Config) queue(d Decision, why string) Decision {
	d.Queue = c.FallbackQueue()
	d.Record.FallbackQueue = d.Queue
	d.Record.Summary = why + "; queued in " + d.Queue
	return d
}

// maxOpenings bounds the openings an off-shift escalation looks ahead to
// for a rep at work (the first to open may be full).
const maxOpenings = 8

// ManagerQueue is the queue of a team's manager, where escalations wait
// for the manager to hand them on. ':' keeps it apart from configured
// queue ids.
func ManagerQueue(teamID string) string { return "manager:" + teamID }

// Escalate decides where a lead whose SLA owner breached goes: by the
// policy, the next rep of the pool it was routed from (never a rep who
// held it in this journey), else, or by policy, the queue of the manager
// of the current owner's team, whatever the manager's load: the manager
// hands it on. With no rep of the pool at work now, the one at work
// first takes it. RepID and Queue are both "" when there is nowhere to go.
func (c *Config) Escalate(l Lead, current, poolID string, escalation eventv1.SLAEscalation, pools map[string]PoolState, loads Loads, now time.Time) Decision {
	rec := &eventv1.RoutingDecision{RoutingVersion: c.Version, RuleId: RuleEscalation, PoolId: poolID}
	d := Decision{Record: rec}
	exclude := append(slices.Clone(l.Exclude), current)
	if pool, ok := c.Pools[poolID]; ok && escalation == eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP {
		rep, turn, cands, back := c.pick(pool, pools[poolID], exclude, l.Avoid, loads, now, now)
		if rep == "" && !back.IsZero() {
			// Nobody at work now, as when a deadline falls at closing
			// time: a rep off shift, whose step starts at their opening,
			// rather than the manager's queue. The one at work first (by
			// turn among those who open then), not the next in turn: in a
			// pool of different hours that could be days away.
			for at, i := now, 0; rep == "" && i < maxOpenings; i++ {
				var next time.Time
				for _, cd := range cands {
					if cd.GetOutcome() == eventv1.CandidateOutcome_CANDIDATE_OUTCOME_OUTSIDE_WORKING_HOURS {
						next = earliest(next, c.RepCalendar(cd.GetRepId()).NextOpen(at))
					}
				}
				if !next.After(at) {
					break
				}
				at = next
				rep, turn, cands, _ = c.pick(pool, pools[poolID], exclude, l.Avoid, loads, now, at)
			}
			if rep == "" {
				rep, turn, cands, _ = c.pick(pool, pools[poolID], exclude, l.Avoid, loads, now, time.Time{})
			}
			c.offShiftDetail(cands, now)
		}
		rec.Candidates = append(rec.Candidates, cands...)
		if rep != "" {
			rec.RepId = rep
			rec.Summary = fmt.Sprintf("escalated from %s to the next rep of pool %s: %s", current, poolID, rep)
			if cal := c.RepCalendar(rep); !cal.Open(now) {
				rec.Summary += " (off shift now; opens " + cal.NextOpen(now).In(cal.Location()).Format(time.RFC3339) + ")"
			}
			d.RepID, d.Turn = rep, turn
			return d
		}
	} else {
		rec.PoolId = ""
	}
	team := c.Teams[c.Reps[current].GetTeamId()]
	mgr := team.GetManagerRepId()
	queue := ManagerQueue(team.GetTeamId())
	switch rep, ok := c.Reps[mgr]; {
	case mgr == "":
		rec.Summary = fmt.Sprintf("escalation from %s found nobody: team %q has no manager", current, team.GetTeamId())
	case mgr == current:
		rec.Candidates = append(rec.Candidates, &eventv1.Candidate{RepId: mgr, Outcome: eventv1.CandidateOutcome_CANDIDATE_OUTCOME_PRIOR_OWNER, Detail: "is the owner", Source: queue})
		rec.Summary = fmt.Sprintf("escalation from %s found nobody: the owner is the team's manager", current)
	case !ok || !rep.GetActive():
		rec.Candidates = append(rec.Candidates, &eventv1.Candidate{RepId: mgr, Outcome: eventv1.CandidateOutcome_CANDIDATE_OUTCOME_INACTIVE, Source: queue})
		rec.Summary = fmt.Sprintf("escalation from %s found nobody: manager %s is not active", current, mgr)
	default:
		rec.Candidates = append(rec.Candidates, &eventv1.Candidate{RepId: mgr, Outcome: eventv1.CandidateOutcome_CANDIDATE_OUTCOME_CHOSEN,
			Detail: "escalations wait in the team manager's queue", Source: queue})
		rec.FallbackQueue = queue
		rec.Summary = fmt.Sprintf("escalated from %s to the queue of manager %s of team %s", current, mgr, team.GetTeamId())
		d.Queue = queue
	}
	return d
}

// pick takes a pool's next turn among the reps who can take a lead, a
// rep in avoid only when no other can. It returns the rep ("" for none),
// the turn, every member as a candidate, and the earliest time a skipped
// rep opens or returns. A rep off shift at openAt is skipped (zero: hours
// count for nothing); one away is skipped at now.
func (c *Config) pick(pool *eventv1.Pool, st PoolState, exclude, avoid []string, loads Loads, now, openAt time.Time) (string, *Turn, []*eventv1.Candidate, time.Time) {
	src := "pool:" + pool.GetPoolId()
	cands := make([]*eventv1.Candidate, len(pool.GetMembers()))
	best, bestAvoided := -1, -1
	var bestEff, avoidedEff uint64
	avoided := make([]bool, len(cands))
	var retry time.Time
	eff := func(rep string) uint64 { return max(st.Pass[rep], st.Clock) }
	for i, m := range pool.GetMembers() {
		rep := m.GetRepId()
		cands[i] = &eventv1.Candidate{RepId: rep, Source: src}
		if slices.Contains(exclude, rep) {
			cands[i].Outcome, cands[i].Detail = eventv1.CandidateOutcome_CANDIDATE_OUTCOME_PRIOR_OWNER, "held the lead before"
			continue
		}
		out, detail, back := c.availability(rep, loads, now, openAt)
		if out != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_CHOSEN {
			cands[i].Outcome, cands[i].Detail = out, detail
			retry = earliest(retry, back)
			continue
		}
		e := eff(rep)
		switch {
		case slices.Contains(avoid, rep):
			avoided[i] = true
			if bestAvoided < 0 || e < avoidedEff {
				bestAvoided, avoidedEff = i, e
			}
		case best < 0 || e < bestEff:
			best, bestEff = i, e
		}
	}
	onlyAvoided := best < 0 && bestAvoided >= 0
	if onlyAvoided {
		best, bestEff = bestAvoided, avoidedEff
	}
	if best < 0 {
		return "", nil, cands, retry
	}
	chosen := pool.GetMembers()[best]
	turn := &Turn{PoolID: pool.GetPoolId(), RepID: chosen.GetRepId(), Clock: bestEff,
		Pass: bestEff + strideUnit/uint64(max(chosen.GetWeight(), 1)), Passes: map[string]uint64{}}
	for _, m := range pool.GetMembers() {
		turn.Passes[m.GetRepId()] = st.Pass[m.GetRepId()]
	}
	turn.Passes[chosen.GetRepId()] = turn.Pass
	notNext := "available; " + chosen.GetRepId() + " was due first" // one string for every rep passed over
	for i, cd := range cands {
		switch {
		case i == best:
			cd.Outcome = eventv1.CandidateOutcome_CANDIDATE_OUTCOME_CHOSEN
			cd.Detail = fmt.Sprintf("next in turn (weight %d)", chosen.GetWeight())
			if onlyAvoided {
				cd.Detail += "; rejected the lead before, and nobody else can take it"
			}
		case avoided[i] && !onlyAvoided:
			cd.Outcome, cd.Detail = eventv1.CandidateOutcome_CANDIDATE_OUTCOME_PRIOR_OWNER, "available, but rejected the lead before"
		case cd.Outcome == eventv1.CandidateOutcome_CANDIDATE_OUTCOME_UNSPECIFIED:
			cd.Outcome = eventv1.CandidateOutcome_CANDIDATE_OUTCOME_NOT_NEXT
			cd.Detail = notNext
		}
	}
	return chosen.GetRepId(), turn, cands, retry
}

// offShiftDetail marks, in candidates picked with working hours left
// out, who is off shift at now: a rep passed over is OUTSIDE_WORKING_HOURS,
// not available, and the chosen one's detail says when they open.
func (c *Config) offShiftDetail(cands []*eventv1.Candidate, now time.Time) {
	for _, cd := range cands {
		cal := c.RepCalendar(cd.GetRepId())
		if cal.Open(now) {
			continue
		}
		opens := "opens " + cal.NextOpen(now).In(cal.Location()).Format(time.RFC3339)
		switch cd.GetOutcome() {
		case eventv1.CandidateOutcome_CANDIDATE_OUTCOME_NOT_NEXT:
			cd.Outcome, cd.Detail = eventv1.CandidateOutcome_CANDIDATE_OUTCOME_OUTSIDE_WORKING_HOURS, opens
		case eventv1.CandidateOutcome_CANDIDATE_OUTCOME_CHOSEN:
			cd.Detail += "; off shift, " + opens
		}
	}
}

// backAt is when a rep out of office at now is back: the end of the
// absences that cover now, one running on from the next (a sync that
// sends a day at a time); zero when the rep is in.
func (c *Config) backAt(repID string, now time.Time) time.Time {
	var until time.Time
	for moved := true; moved; {
		moved = false
		at := now
		if !until.IsZero() {
			at = until
		}
		for _, a := range c.Absences[repID] {
			if from, end := a.GetFrom().AsTime(), a.GetUntil().AsTime(); !at.Before(from) && at.Before(end) && end.After(until) {
				until, moved = end, true
			}
		}
	}
	return until
}

// availability says whether a rep can take a lead now (CHOSEN), or why
// not, and when that may change (zero: unknown). Being off shift at
// openAt counts against the rep (zero: hours count for nothing).
func (c *Config) availability(repID string, loads Loads, now, openAt time.Time) (eventv1.CandidateOutcome, string, time.Time) {
	rep, ok := c.Reps[repID]
	switch {
	case !ok:
		return eventv1.CandidateOutcome_CANDIDATE_OUTCOME_UNKNOWN_REP, "not in the routing data", time.Time{}
	case !rep.GetActive():
		return eventv1.CandidateOutcome_CANDIDATE_OUTCOME_INACTIVE, "", time.Time{}
	}
	if until := c.backAt(repID, now); !until.IsZero() {
		return eventv1.CandidateOutcome_CANDIDATE_OUTCOME_OUT_OF_OFFICE, "back " + until.UTC().Format(time.RFC3339), until
	}
	if cal := c.RepCalendar(repID); !openAt.IsZero() && !cal.Open(openAt) {
		opens := cal.NextOpen(openAt)
		return eventv1.CandidateOutcome_CANDIDATE_OUTCOME_OUTSIDE_WORKING_HOURS, "opens " + opens.In(cal.Location()).Format(time.RFC3339), opens
	}
	n := 0
	if loads != nil {
		n = loads(repID)
	}
	if n >= int(rep.GetCapacity()) {
		return eventv1.CandidateOutcome_CANDIDATE_OUTCOME_AT_CAPACITY, fmt.Sprintf("%d of %d open leads", n, rep.GetCapacity()), time.Time{}
	}
	return eventv1.CandidateOutcome_CANDIDATE_OUTCOME_CHOSEN, "", time.Time{}
}

// Available reports whether a rep could be given a lead now by hand:
// known, active and in the office (working hours and capacity are the
// caller's to weigh). why says why not.
func (c *Config) Available(repID string, now time.Time) (ok bool, why string) {
	out, detail, _ := c.availability(repID, nil, now, time.Time{})
	switch out {
	case eventv1.CandidateOutcome_CANDIDATE_OUTCOME_CHOSEN, eventv1.CandidateOutcome_CANDIDATE_OUTCOME_AT_CAPACITY:
		return true, ""
	}
	why = strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(out.String(), "CANDIDATE_OUTCOME_"), "_", " "))
	if detail != "" {
		why += " (" + detail + ")"
	}
	return false, why
}

// AbsentDuring returns the start of the rep's earliest recorded absence
// that takes working time (the rep's team hours) from [from, to), no
// earlier than from; ok false for none. An absence on days off takes
// nothing. A rep made inactive is away from from on, whatever the hours.
func (c *Config) AbsentDuring(repID string, from, to time.Time) (start time.Time, ok bool) {
	if c.Inactive(repID) && from.Before(to) {
		return from, true
	}
	cal := c.RepCalendar(repID)
	for _, a := range c.Absences[repID] {
		s, end := a.GetFrom().AsTime(), a.GetUntil().AsTime()
		if s.Before(from) {
			s = from
		}
		if to.Before(end) {
			end = to
		}
		if !cal.NextOpen(s).Before(end) {
			continue
		}
		if !ok || s.Before(start) {
			start, ok = s, true
		}
	}
	return start, ok
}

// Inactive reports whether repID is a known rep made inactive.
func (c *Config) Inactive(repID string) bool {
	r, ok := c.Reps[repID]
	return ok && !r.GetActive()
}

// matchRule returns the first rule the profile matches, recording each
// rule tried in rec.
func (c *Config) matchRule(p *eventv1.Profile, rec *eventv1.RoutingDecision) *eventv1.RoutingRule {
	for _, r := range c.Rules.GetRules() {
		why := c.mismatch(r.GetWhen(), p)
		rec.Rules = append(rec.Rules, &eventv1.RuleEvaluation{RuleId: r.GetRuleId(), Matched: why == "", Reason: why})
		if why == "" {
			return r
		}
	}
	return nil
}

// mismatch says why p does not meet w, "" when it does.
func (c *Config) mismatch(w *eventv1.RuleCriteria, p *eventv1.Profile) string {
	country := strings.ToUpper(strings.TrimSpace(p.GetCountry()))
	if in := w.GetCountryIn(); len(in) > 0 && !slices.Contains(in, country) {
		return fmt.Sprintf("country %q not in %v", country, in)
	}
	if in := w.GetRegionIn(); len(in) > 0 {
		found := false
		for _, reg := range c.Rules.GetRegions() {
			if slices.Contains(in, reg.GetRegionId()) && slices.Contains(reg.GetCountries(), country) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Sprintf("country %q in none of regions %v", country, in)
		}
	}
	// 0 is an unknown size, not a tiny company: a rule that bounds the
	// size does not match it (an SMB rule would take any enterprise whose
	// form left the size out).
	lo, hi, n := w.GetMinEmployees(), w.GetMaxEmployees(), p.GetEmployees()
	switch {
	case (lo > 0 || hi > 0) && n <= 0:
		return "company size unknown, the rule bounds it"
	case lo > 0 && n < lo:
		return fmt.Sprintf("%d employees, below %d", n, lo)
	case hi > 0 && n > hi:
		return fmt.Sprintf("%d employees, above %d", n, hi)
	}
	if in := w.GetIndustryIn(); len(in) > 0 && !slices.ContainsFunc(in, func(s string) bool {
		return strings.EqualFold(strings.TrimSpace(s), strings.TrimSpace(p.GetIndustry()))
	}) {
		return fmt.Sprintf("industry %q not in %v", p.GetIndustry(), in)
	}
	return ""
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}
