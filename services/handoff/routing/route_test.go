package routing_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

var now = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC) // a Wednesday

// build applies changes in order, failing on any the data refuses.
func build(t *testing.T, changes ...*eventv1.RoutingChanged) *routing.Config {
	t.Helper()
	c := routing.New()
	for i, ch := range changes {
		if v := c.Validate("change", ch); len(v) > 0 {
			t.Fatalf("change %d: %v", i, v)
		}
		ch.Version = uint32(i + 1)
		c.Apply(uint64(i+1), ch)
	}
	return c
}

func team(id string, h *eventv1.WorkingHours) *eventv1.RoutingChanged {
	return &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Team{Team: &eventv1.SalesTeam{TeamId: id, Hours: h}}}
}

func rep(id, team string, capacity int32) *eventv1.RoutingChanged {
	return &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Rep{Rep: &eventv1.Rep{RepId: id, TeamId: team, Capacity: capacity, Active: true}}}
}

func pool(id string, members ...*eventv1.PoolMember) *eventv1.RoutingChanged {
	return &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Pool{Pool: &eventv1.Pool{PoolId: id, Members: members}}}
}

func member(rep string, w uint32) *eventv1.PoolMember {
	return &eventv1.PoolMember{RepId: rep, Weight: w}
}

func rules(rs ...*eventv1.RoutingRule) *eventv1.RoutingChanged {
	return &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Rules{Rules: &eventv1.RoutingRules{
		Regions:       []*eventv1.Region{{RegionId: "dach", Countries: []string{"DE", "AT", "CH"}}},
		Rules:         rs,
		FallbackQueue: "sales-fallback",
	}}}
}

func account(id, name, owner string, domains ...string) *eventv1.RoutingChanged {
	return &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Account{Account: &eventv1.Account{AccountId: id, Name: name, OwnerRepId: owner, Domains: domains}}}
}

func world(t *testing.T) *routing.Config {
	return build(t,
		team("emea", nil), team("us", nil),
		rep("ann", "emea", 10), rep("bob", "emea", 10), rep("cat", "emea", 10), rep("dan", "us", 10),
		pool("dach", member("ann", 2), member("bob", 1), member("cat", 1)),
		pool("us", member("dan", 1)),
		account("acme", "ACME GmbH & Co. KG", "dan", "acme.example"),
		rules(
			&eventv1.RoutingRule{RuleId: "dach-enterprise", Segment: "enterprise", PoolId: "dach",
				When: &eventv1.RuleCriteria{RegionIn: []string{"dach"}, MinEmployees: 1000}},
			&eventv1.RoutingRule{RuleId: "dach-smb", Segment: "smb", PoolId: "dach", When: &eventv1.RuleCriteria{RegionIn: []string{"dach"}}},
			&eventv1.RoutingRule{RuleId: "us", Segment: "mid-market", PoolId: "us", When: &eventv1.RuleCriteria{CountryIn: []string{"US"}, IndustryIn: []string{"Software"}}},
		),
	)
}

func TestTerritoryRules(t *testing.T) {
	c := world(t)
	for _, tc := range []struct {
		p            *eventv1.Profile
		rule, seg, q string
	}{
		{&eventv1.Profile{Country: "DE", Employees: 5000}, "dach-enterprise", "enterprise", ""},
		{&eventv1.Profile{Country: "at", Employees: 50}, "dach-smb", "smb", ""},
		{&eventv1.Profile{Country: "US", Industry: "software"}, "us", "mid-market", ""},
		{&eventv1.Profile{Country: "US", Industry: "retail"}, "", "default", "sales-fallback"},
		{&eventv1.Profile{Country: "BR"}, "", "default", "sales-fallback"},
	} {
		d := c.Route(routing.Lead{Profile: tc.p}, nil, nil, now)
		if d.Record.GetRuleId() != tc.rule || d.Segment != tc.seg || d.Queue != tc.q {
			t.Errorf("%v: rule %q segment %q queue %q, want %q %q %q (%s)", tc.p, d.Record.GetRuleId(), d.Segment, d.Queue, tc.rule, tc.seg, tc.q, d.Record.GetSummary())
		}
		if d.Queue == "" && d.RepID == "" {
			t.Errorf("%v: neither a rep nor a queue", tc.p)
		}
		if d.Record.GetRoutingVersion() != c.Version {
			t.Errorf("decision at version %d, data at %d", d.Record.GetRoutingVersion(), c.Version)
		}
	}
	d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "BR"}}, nil, nil, now)
	if n := len(d.Record.GetRules()); n != 3 || d.Record.GetRules()[0].GetReason() == "" {
		t.Errorf("a lead no rule matched records %d rules tried: %v", n, d.Record.GetRules())
	}
}

// A lead whose form left the company size out (0) matches no rule that
// bounds the size, a maximum as much as a minimum: it is not a small
// company, just an unknown one.
func TestUnknownCompanySize(t *testing.T) {
	c := world(t)
	c.Apply(100, rules(
		&eventv1.RoutingRule{RuleId: "dach-smb", Segment: "smb", PoolId: "dach", When: &eventv1.RuleCriteria{RegionIn: []string{"dach"}, MaxEmployees: 200}},
		&eventv1.RoutingRule{RuleId: "dach-enterprise", Segment: "enterprise", PoolId: "dach", When: &eventv1.RuleCriteria{RegionIn: []string{"dach"}, MinEmployees: 1000}},
		&eventv1.RoutingRule{RuleId: "dach", Segment: "unsized", PoolId: "dach", When: &eventv1.RuleCriteria{RegionIn: []string{"dach"}}},
	))
	for _, tc := range []struct {
		employees int32
		rule      string
	}{{50, "dach-smb"}, {200, "dach-smb"}, {5000, "dach-enterprise"}, {500, "dach"}, {0, "dach"}} {
		d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE", Employees: tc.employees}}, nil, nil, now)
		if d.Record.GetRuleId() != tc.rule {
			t.Errorf("%d employees: rule %q, want %q (%v)", tc.employees, d.Record.GetRuleId(), tc.rule, d.Record.GetRules())
		}
	}
	d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE"}}, nil, nil, now)
	if r := d.Record.GetRules()[0]; r.GetMatched() || !strings.Contains(r.GetReason(), "size unknown") {
		t.Errorf("the SMB rule tried on an unknown size: %v", r)
	}
}

// Absences one after another (a sync that sends a day at a time) are one
// absence: the rep is back at the end of the last, not of the first.
func TestBackAfterAbsencesThatRunOn(t *testing.T) {
	c := world(t)
	day := 24 * time.Hour
	c.Apply(100, &eventv1.RoutingChanged{Version: 100, Change: &eventv1.RoutingChanged_OutOfOffice{OutOfOffice: &eventv1.OutOfOffice{RepId: "bob",
		Absences: []*eventv1.Absence{
			{From: timestamppb.New(now.Add(day)), Until: timestamppb.New(now.Add(14 * day))},
			{From: timestamppb.New(now.Add(-time.Hour)), Until: timestamppb.New(now.Add(day))},
			{From: timestamppb.New(now.Add(20 * day)), Until: timestamppb.New(now.Add(21 * day))},
		}}}})
	d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "CH"}}, nil, routing.LoadMap(map[string]int{"ann": 10, "cat": 10}), now)
	want := "back " + now.Add(14*day).UTC().Format(time.RFC3339)
	for _, cd := range d.Record.GetCandidates() {
		if cd.GetRepId() == "bob" && (cd.GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_OUT_OF_OFFICE || cd.GetDetail() != want) {
			t.Errorf("bob: %v %q, want out of office, %q", cd.GetOutcome(), cd.GetDetail(), want)
		}
	}
}

// Weighted round robin: over many turns each rep gets leads in
// proportion to its weight, taking turns rather than runs.
func TestPoolFairness(t *testing.T) {
	c := world(t)
	st := map[string]routing.PoolState{}
	got := map[string]int{}
	var order []string
	for i := range 400 {
		d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE"}}, st, nil, now)
		if d.Turn == nil {
			t.Fatalf("turn %d: no pool turn: %s", i, d.Record.GetSummary())
		}
		got[d.RepID]++
		order = append(order, d.RepID)
		st["dach"] = routing.PoolStateOf(uint64(i+1), d.Turn.Event("l", "c", 1))
	}
	if got["ann"] != 200 || got["bob"] != 100 || got["cat"] != 100 {
		t.Errorf("shares %v, want 200/100/100 for weights 2/1/1", got)
	}
	for i := 2; i < len(order); i++ {
		if order[i] == order[i-1] && order[i] == order[i-2] {
			t.Fatalf("%s got three in a row at %d: %v", order[i], i, order[:i+1])
		}
	}
}

// A rep at capacity, out of office or outside working hours is skipped
// and the decision says why; a rep returning does not get a burst of the
// turns it missed.
func TestPoolSkipsAndRejoins(t *testing.T) {
	c := world(t)
	c.Apply(100, &eventv1.RoutingChanged{Version: 100, Change: &eventv1.RoutingChanged_OutOfOffice{OutOfOffice: &eventv1.OutOfOffice{RepId: "bob",
		Absences: []*eventv1.Absence{{From: timestamppb.New(now.Add(-time.Hour)), Until: timestamppb.New(now.Add(time.Hour))}}}}})
	st := map[string]routing.PoolState{}
	loads := routing.LoadMap(map[string]int{"ann": 10})
	got := map[string]int{}
	for i := range 30 {
		d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "CH"}}, st, loads, now)
		got[d.RepID]++
		st["dach"] = routing.PoolStateOf(uint64(i+1), d.Turn.Event("l", "c", 1))
		if i == 0 {
			want := map[string]eventv1.CandidateOutcome{
				"ann": eventv1.CandidateOutcome_CANDIDATE_OUTCOME_AT_CAPACITY,
				"bob": eventv1.CandidateOutcome_CANDIDATE_OUTCOME_OUT_OF_OFFICE,
				"cat": eventv1.CandidateOutcome_CANDIDATE_OUTCOME_CHOSEN,
			}
			if len(d.Record.GetCandidates()) != len(want) {
				t.Fatalf("candidates %v, want %d", d.Record.GetCandidates(), len(want))
			}
			for _, cd := range d.Record.GetCandidates() {
				if cd.GetOutcome() != want[cd.GetRepId()] || cd.GetDetail() == "" || cd.GetSource() != "pool:dach" {
					t.Errorf("candidate %v, want %v with a detail", cd, want[cd.GetRepId()])
				}
			}
		}
	}
	if got["cat"] != 30 {
		t.Fatalf("with ann full and bob away, cat got %d of 30", got["cat"])
	}
	// Everyone back: ann and bob rejoin at the pool's clock, so the next
	// turns follow the weights from here on instead of paying them back.
	got = map[string]int{}
	for i := range 40 {
		d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "CH"}}, st, nil, now.Add(2*time.Hour))
		got[d.RepID]++
		st["dach"] = routing.PoolStateOf(uint64(100+i), d.Turn.Event("l", "c", 1))
	}
	for r, want := range map[string]int{"ann": 20, "bob": 10, "cat": 10} {
		if d := got[r] - want; d < -1 || d > 1 {
			t.Errorf("after the return: %v, want 20/10/10 give or take the turn in progress", got)
		}
	}

	// Nobody can take it: the fallback queue, retrying when bob is back.
	d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE"}}, st, routing.LoadMap(map[string]int{"ann": 10, "cat": 10}), now)
	if d.RepID != "" || d.Queue != "sales-fallback" || !d.RetryAt.Equal(now.Add(time.Hour)) || d.OffShift {
		t.Errorf("nobody free: rep %q queue %q retry %v off shift %v", d.RepID, d.Queue, d.RetryAt, d.OffShift)
	}
}

func TestOutsideWorkingHours(t *testing.T) {
	// Only 13:00-14:00 on weekdays: closed at 10:00.
	h := &eventv1.WorkingHours{TimeZone: "UTC"}
	for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_FRIDAY; d++ {
		h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: "13:00", End: "14:00"})
	}
	c := world(t)
	c.Apply(200, team("emea", h))
	d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE"}}, nil, nil, now)
	if d.RepID != "" || !d.RetryAt.Equal(now.Add(3*time.Hour)) || !d.OffShift {
		t.Fatalf("off shift: rep %q retry %v (off shift %v), want none until 13:00", d.RepID, d.RetryAt, d.OffShift)
	}
	// The dach pool's ann, bob and cat, every one off shift.
	if n := len(d.Record.GetCandidates()); n != 3 {
		t.Fatalf("%d candidates, want 3: %v", n, d.Record.GetCandidates())
	}
	for _, cd := range d.Record.GetCandidates() {
		if cd.GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_OUTSIDE_WORKING_HOURS {
			t.Errorf("candidate %v", cd)
		}
	}
	if d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE"}}, nil, nil, now.Add(3*time.Hour)); d.RepID != "ann" {
		t.Errorf("at 13:00: %q", d.RepID)
	}
}

// A team's holiday keeps its reps off shift the whole date: the lead
// waits for the first opening after it.
func TestHolidayIsOffShift(t *testing.T) {
	h := &eventv1.WorkingHours{TimeZone: "UTC", Holidays: []string{now.Format(time.DateOnly)}}
	for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_SUNDAY; d++ {
		h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: "00:00", End: "24:00"})
	}
	c := world(t)
	c.Apply(200, team("emea", h))
	next := now.Truncate(24 * time.Hour).Add(24 * time.Hour)
	d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE"}}, nil, nil, now)
	if d.RepID != "" || !d.OffShift || !d.RetryAt.Equal(next) {
		t.Fatalf("on the holiday: rep %q retry %v (off shift %v), want none until %v", d.RepID, d.RetryAt, d.OffShift, next)
	}
	if d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE"}}, nil, nil, next); d.RepID == "" {
		t.Errorf("the day after: queued (%s)", d.Record.GetSummary())
	}
}

// An account's owner who is full outside their hours could not take the
// lead at work either: with the pool off shift too, the lead waits off
// shift (the route clock stops), since the last of them closed.
func TestFullOwnerOffDutyIsOffShift(t *testing.T) {
	h := everyDay("09:00", "17:00")
	c := world(t)
	c.Apply(200, team("emea", h))
	c.Apply(201, team("us", h))
	evening := now.Truncate(24 * time.Hour).Add(20 * time.Hour)
	lead := routing.Lead{Profile: &eventv1.Profile{Country: "DE", EmailDomain: "acme.example"}}
	d := c.Route(lead, nil, routing.LoadMap(map[string]int{"dan": 10}), evening)
	if d.RepID != "" || !d.OffShift || !d.OffSince.Equal(evening.Add(-3*time.Hour)) {
		t.Fatalf("dan full, the pool closed: rep %q off shift %v since %v, want off since 17:00", d.RepID, d.OffShift, d.OffSince)
	}
	// The wait ends at the first opening, dan's an hour before the pool's.
	c.Apply(202, team("us", &eventv1.WorkingHours{TimeZone: "UTC", Days: []*eventv1.WorkingDay{{Day: eventv1.Weekday(evening.Add(12 * time.Hour).Weekday()), Start: "08:00", End: "16:00"}}}))
	if d := c.Route(lead, nil, routing.LoadMap(map[string]int{"dan": 10}), evening); !d.OffShift || !d.RetryAt.Equal(evening.Add(12*time.Hour)) {
		t.Errorf("dan opening at 08:00: off shift %v, retry %v, want %v", d.OffShift, d.RetryAt, evening.Add(12*time.Hour))
	}
	// At work, dan full is a rep who could take it: the clock runs.
	if d := c.Route(lead, nil, routing.LoadMap(map[string]int{"dan": 10, "ann": 10, "bob": 10, "cat": 10}), evening.Add(-8*time.Hour)); d.RepID != "" || d.OffShift {
		t.Errorf("everyone full at work: rep %q off shift %v", d.RepID, d.OffShift)
	}
}

// A rep away could not take the lead on shift either: with the rest of
// the pool off shift, the lead waits off shift (the route clock stops),
// and with no rule matched, behind an account owner full and off duty,
// too.
func TestARepAwayKeepsThePoolOffShift(t *testing.T) {
	h := everyDay("09:00", "17:00")
	c := world(t)
	c.Apply(200, team("emea", h))
	c.Apply(201, team("us", h))
	evening := now.Truncate(24 * time.Hour).Add(20 * time.Hour)
	c.Apply(202, &eventv1.RoutingChanged{Version: 202, Change: &eventv1.RoutingChanged_OutOfOffice{OutOfOffice: &eventv1.OutOfOffice{RepId: "bob",
		Absences: []*eventv1.Absence{{From: timestamppb.New(evening.Add(-48 * time.Hour)), Until: timestamppb.New(evening.Add(7 * 24 * time.Hour))}}}}})
	d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE"}}, nil, nil, evening)
	if d.RepID != "" || !d.OffShift || !d.OffSince.Equal(evening.Add(-3*time.Hour)) || !d.RetryAt.Equal(evening.Add(13*time.Hour)) {
		t.Fatalf("bob away, ann and cat off shift: rep %q off shift %v since %v, retry %v; want off since 17:00 until 09:00", d.RepID, d.OffShift, d.OffSince, d.RetryAt)
	}
	// Everyone away at night: off shift too, retried at the first opening,
	// not when the first absence ends.
	for i, r := range []string{"ann", "cat"} {
		c.Apply(uint64(203+i), &eventv1.RoutingChanged{Version: uint32(203 + i), Change: &eventv1.RoutingChanged_OutOfOffice{OutOfOffice: &eventv1.OutOfOffice{RepId: r,
			Absences: []*eventv1.Absence{{From: timestamppb.New(evening.Add(-48 * time.Hour)), Until: timestamppb.New(evening.Add(7 * 24 * time.Hour))}}}}})
	}
	d = c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE"}}, nil, nil, evening)
	if !d.OffShift || !d.OffSince.Equal(evening.Add(-3*time.Hour)) || !d.RetryAt.Equal(evening.Add(13*time.Hour)) {
		t.Errorf("everyone away at night: off shift %v since %v, retry %v; want off since 17:00 until 09:00", d.OffShift, d.OffSince, d.RetryAt)
	}
	// The same in working hours: working time, the clock runs.
	if d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE"}}, nil, nil, evening.Add(-8*time.Hour)); d.OffShift {
		t.Errorf("everyone away at noon: off shift")
	}
	// No rule for Japan, acme's owner dan full and off duty: off shift.
	lead := routing.Lead{Profile: &eventv1.Profile{Country: "JP", EmailDomain: "acme.example"}}
	if d := c.Route(lead, nil, routing.LoadMap(map[string]int{"dan": 10}), evening); d.RepID != "" || !d.OffShift {
		t.Errorf("no rule, the owner full off duty: rep %q off shift %v", d.RepID, d.OffShift)
	}
}

func TestAccountOwner(t *testing.T) {
	c := world(t)
	for _, tc := range []struct {
		p   *eventv1.Profile
		how string
	}{
		{&eventv1.Profile{Country: "DE", EmailDomain: "ACME.example"}, "domain acme.example"},
		{&eventv1.Profile{Country: "DE", EmailDomain: "sales.emea.acme.example"}, "domain sales.emea.acme.example"},
		{&eventv1.Profile{Country: "DE", EmailDomain: "gmail.com", Company: "Acme, Inc."}, "company name"},
		{&eventv1.Profile{Country: "DE", Company: "  acme ltd"}, "company name"},
	} {
		d := c.Route(routing.Lead{Profile: tc.p}, nil, nil, now)
		if d.RepID != "dan" || d.Record.GetRuleId() != "account" || d.Record.GetAccountId() != "acme" || d.Record.GetAccountMatch() != tc.how {
			t.Errorf("%v: %s (match %q)", tc.p, d.Record.GetSummary(), d.Record.GetAccountMatch())
		}
		if d.Segment != "enterprise" && d.Segment != "smb" {
			t.Errorf("%v: an account lead keeps its territory's segment, got %q", tc.p, d.Segment)
		}
	}
	// The owner at capacity: the territory's pool takes it, and the
	// decision says the owner was considered.
	d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE", EmailDomain: "acme.example"}}, nil, routing.LoadMap(map[string]int{"dan": 10}), now)
	if d.RepID != "ann" || d.Record.GetAccountId() != "acme" || d.Record.GetCandidates()[0].GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_AT_CAPACITY {
		t.Errorf("owner full: %s %v", d.RepID, d.Record.GetCandidates())
	}
	if d := c.Route(routing.Lead{Profile: &eventv1.Profile{Country: "DE", EmailDomain: "notacme.example", Company: "Acme Widgets"}}, nil, nil, now); d.Record.GetAccountId() != "" {
		t.Errorf("false match: %v", d.Record)
	}
}

// The sealed company name is read only when it could decide the account.
func TestNeedsCompany(t *testing.T) {
	c := world(t)
	for _, tc := range []struct {
		p    *eventv1.Profile
		want bool
	}{
		{&eventv1.Profile{Country: "DE", EmailDomain: "acme.example"}, false},       // the domain decides
		{&eventv1.Profile{Country: "DE", EmailDomain: "sales.acme.example"}, false}, // so does its parent
		{&eventv1.Profile{Country: "DE", EmailDomain: "other.example"}, true},
		{&eventv1.Profile{Country: "DE"}, true},
	} {
		if got := c.NeedsCompany(tc.p); got != tc.want {
			t.Errorf("%v: NeedsCompany %v, want %v", tc.p, got, tc.want)
		}
	}
	// No accounts: no name could match.
	if build(t, team("emea", nil), rep("dan", "emea", 10)).NeedsCompany(&eventv1.Profile{Country: "DE"}) {
		t.Error("NeedsCompany with no accounts")
	}
}

func TestNormalizeCompany(t *testing.T) {
	for in, want := range map[string]string{
		"ACME GmbH & Co. KG":  "acme",
		"Acme, Inc.":          "acme",
		"Société Générale SA": "societe generale",
		"O'Reilly Media LLC":  "oreilly media",
		"Ltd":                 "ltd",
		"Kernel Co":           "kernel",
		"  Big   Corp. Ltd. ": "big",
		"S.A.":                "sa",
		// Names sales ops expects to be one company.
		"The Boeing Company":    "boeing",
		"Mu\u0308ller GmbH":     "muller", // decomposed, as pasted on a Mac
		"Müller GmbH":           "muller",
		"Procter & Gamble Co.":  "procter gamble",
		"Procter and Gamble":    "procter gamble",
		"Maersk A/S":            "maersk",
		"ＡＣＭＥ Inc":              "acme", // full-width
		"The":                   "the",
		"And Co":                "and",
		"The The":               "the",
		"Johnson & Johnson Ltd": "johnson johnson",
		"Merck KGaA":            "merck",
		"Henkel AG & Co. KGaA":  "henkel",
		"Nokia Oyj":             "nokia",
		"Acme Pvt. Ltd.":        "acme",
		"Acme Private Limited":  "acme",
		"Acme Ltda.":            "acme",
		"Acme S.à r.l.":         "acme",
		// The marks of other scripts are their vowels, not accents.
		"पुरी":         "पुरी",
		"टाटा लिमिटेड": "टाटा लिमिटेड",
		"ข้าว":         "ข้าว",
	} {
		if got := routing.NormalizeCompany(in); got != want {
			t.Errorf("NormalizeCompany(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEscalate(t *testing.T) {
	c := world(t)
	c.Apply(300, team("emea", nil))
	c.Apply(301, &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Team{Team: &eventv1.SalesTeam{TeamId: "emea", ManagerRepId: "cat"}}})
	l := routing.Lead{Profile: &eventv1.Profile{Country: "DE"}, Exclude: []string{"ann"}}
	d := c.Escalate(l, "bob", "dach", eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP, nil, nil, now)
	if d.RepID != "cat" || d.Queue != "" || d.Turn == nil {
		t.Errorf("next rep after ann and bob: %q queue %q", d.RepID, d.Queue)
	}
	d = c.Escalate(l, "bob", "dach", eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP, nil, routing.LoadMap(map[string]int{"cat": 10}), now)
	if d.RepID != "" || d.Queue != "manager:emea" || d.Record.GetFallbackQueue() != d.Queue {
		t.Errorf("pool exhausted: escalation goes to manager cat's queue whatever her load: %q %q %v", d.RepID, d.Queue, d.Record)
	}
	d = c.Escalate(l, "ann", "dach", eventv1.SLAEscalation_SLA_ESCALATION_MANAGER, nil, nil, now)
	if d.Queue != "manager:emea" || d.Turn != nil || d.RepID != "" {
		t.Errorf("manager policy: %q %v", d.Queue, d.Record)
	}
	if d := c.Escalate(l, "cat", "", eventv1.SLAEscalation_SLA_ESCALATION_MANAGER, nil, nil, now); d.RepID != "" || d.Queue != "" {
		t.Errorf("the manager's own lead escalated to %q %q", d.RepID, d.Queue)
	}

	// A deadline at closing time: nobody of the pool is at work, so the
	// next rep off shift takes it (not the manager's queue), and starts
	// when the team opens.
	closed := &eventv1.WorkingHours{TimeZone: "UTC"}
	for day := eventv1.Weekday_WEEKDAY_MONDAY; day <= eventv1.Weekday_WEEKDAY_FRIDAY; day++ {
		closed.Days = append(closed.Days, &eventv1.WorkingDay{Day: day, Start: "09:00", End: "10:00"})
	}
	c.Apply(302, &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Team{Team: &eventv1.SalesTeam{TeamId: "emea", ManagerRepId: "cat", Hours: closed}}})
	d = c.Escalate(l, "bob", "dach", eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP, nil, nil, now)
	if d.RepID != "cat" || d.Queue != "" {
		t.Errorf("at closing time: %q queue %q, want the next rep cat (%v)", d.RepID, d.Queue, d.Record)
	}
	// The record says so: nobody passed over was available.
	d = c.Escalate(routing.Lead{Profile: l.Profile}, "mia", "dach", eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP, nil, nil, now)
	for _, cd := range d.Record.GetCandidates() {
		switch {
		case cd.GetOutcome() == eventv1.CandidateOutcome_CANDIDATE_OUTCOME_NOT_NEXT:
			t.Errorf("at closing time, %s passed over as available: %v", cd.GetRepId(), cd)
		case cd.GetOutcome() == eventv1.CandidateOutcome_CANDIDATE_OUTCOME_CHOSEN && !strings.Contains(cd.GetDetail(), "off shift"):
			t.Errorf("at closing time, %s chosen without saying it is off shift: %v", cd.GetRepId(), cd)
		}
	}
	if !strings.Contains(d.Record.GetSummary(), "off shift now") {
		t.Errorf("summary %q", d.Record.GetSummary())
	}
}

// A breach at closing time in a pool whose reps keep different hours
// goes to the rep at work first, not to the next in turn: a part-timer
// working Mondays only is behind in turn all week (routing skips them off
// shift), and would hold a lead breached on Tuesday evening until Monday
// while another opens Wednesday morning.
func TestAnOffShiftEscalationGoesToTheRepAtWorkFirst(t *testing.T) {
	week := func(days ...eventv1.Weekday) *eventv1.WorkingHours {
		h := &eventv1.WorkingHours{TimeZone: "Europe/Berlin"}
		for _, d := range days {
			h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: "09:00", End: "17:00"})
		}
		return h
	}
	c := build(t, team("full", week(eventv1.Weekday_WEEKDAY_MONDAY, eventv1.Weekday_WEEKDAY_TUESDAY, eventv1.Weekday_WEEKDAY_WEDNESDAY,
		eventv1.Weekday_WEEKDAY_THURSDAY, eventv1.Weekday_WEEKDAY_FRIDAY)), team("part", week(eventv1.Weekday_WEEKDAY_MONDAY)),
		rep("ann", "full", 10), rep("bob", "full", 10), rep("pia", "part", 10),
		pool("mixed", member("ann", 1), member("bob", 1), member("pia", 1)))
	// Tuesday 2026-03-03: four leads by turn to ann and bob; pia is off.
	st := routing.PoolStateOf(0, nil)
	for i := range 4 {
		d := c.Escalate(routing.Lead{Profile: &eventv1.Profile{}}, "nobody", "mixed", eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP,
			map[string]routing.PoolState{"mixed": st}, nil, time.Date(2026, 3, 3, 9, i, 0, 0, time.UTC))
		if d.RepID == "pia" || d.Turn == nil {
			t.Fatalf("Tuesday's lead %d went to %q", i, d.RepID)
		}
		st = routing.PoolState{Clock: d.Turn.Clock, Pass: d.Turn.Passes}
	}
	// Ann's lead breaches at 17:00 Berlin: nobody is at work, and pia is
	// next in turn.
	closing := time.Date(2026, 3, 3, 16, 0, 0, 0, time.UTC)
	d := c.Escalate(routing.Lead{Profile: &eventv1.Profile{}}, "ann", "mixed", eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP,
		map[string]routing.PoolState{"mixed": st}, nil, closing)
	if d.RepID != "bob" || d.Turn == nil {
		t.Fatalf("escalated at closing to %q (opens %v), want bob (opens %v): %s", d.RepID,
			c.RepCalendar(d.RepID).NextOpen(closing), c.RepCalendar("bob").NextOpen(closing), d.Record.GetSummary())
	}
	for _, cd := range d.Record.GetCandidates() {
		if cd.GetRepId() == "bob" && !strings.Contains(cd.GetDetail(), "off shift") {
			t.Errorf("bob chosen without saying he is off shift: %v", cd)
		}
	}
}

// A rule named as a decision marker, stored before such names were
// refused, does not block the next edit of the rule set.
func TestAStoredMarkerRuleIdStaysEditable(t *testing.T) {
	c := world(t)
	marked := &eventv1.RoutingRules{FallbackQueue: "q", Rules: []*eventv1.RoutingRule{{RuleId: "manual", Segment: "s", PoolId: "us"}}}
	c.Apply(300, &eventv1.RoutingChanged{Version: 300, Change: &eventv1.RoutingChanged_Rules{Rules: marked}})
	edited := &eventv1.RoutingRules{FallbackQueue: "q", Rules: []*eventv1.RoutingRule{{RuleId: "manual", Segment: "t", PoolId: "us"}}}
	if v := c.Validate("rules", &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Rules{Rules: edited}}); len(v) != 0 {
		t.Fatalf("editing a stored rule set: %v", v)
	}
}

func TestValidate(t *testing.T) {
	c := world(t)
	for _, tc := range []struct {
		ch    *eventv1.RoutingChanged
		field string
	}{
		{rep("eve", "nowhere", 5), "change.team_id"},
		{rep("eve", "emea", 0), "change.capacity"},
		{rep("bad id", "emea", 5), "change.rep_id"},
		{pool("p", member("zed", 1)), "change.members[0].rep_id"},
		{pool("p", member("ann", 0)), "change.members[0].weight"},
		{pool("p"), "change.members"},
		{account("other", "Other", "ann", "acme.example"), "change.domains[0]"},
		{account("other", "Acme Ltd.", "ann", "other.example"), "change.name"},
		{account("other", "Other", "ann", "gmail.com"), "change.domains[0]"},
		{account("other", "Other", "nobody", "other.example"), "change.owner_rep_id"},
		{rules(&eventv1.RoutingRule{RuleId: "r", Segment: "s", PoolId: "nope"}), "change.rules[0].pool_id"},
		{rules(&eventv1.RoutingRule{RuleId: "manual", Segment: "s", PoolId: "us"}), "change.rules[0].rule_id"},
		{rules(&eventv1.RoutingRule{RuleId: "account", Segment: "s", PoolId: "us"}), "change.rules[0].rule_id"},
		{rules(&eventv1.RoutingRule{RuleId: "r", Segment: "s", PoolId: "us", When: &eventv1.RuleCriteria{RegionIn: []string{"apac"}}}), "change.rules[0].when.region_in[0]"},
		{rules(&eventv1.RoutingRule{RuleId: "r", Segment: "s", PoolId: "us", When: &eventv1.RuleCriteria{CountryIn: []string{"de"}}}), "change.rules[0].when.country_in[0]"},
		{rules(&eventv1.RoutingRule{RuleId: "r", Segment: "s", PoolId: "us", When: &eventv1.RuleCriteria{CountryIn: []string{"UK"}}}), "change.rules[0].when.country_in[0]"},
		{rules(&eventv1.RoutingRule{RuleId: "r", Segment: "s", PoolId: "us", When: &eventv1.RuleCriteria{MinEmployees: 10, MaxEmployees: 5}}), "change.rules[0].when.max_employees"},
		{fallback("routing"), "change.fallback_queue"},
		{fallback("nurture"), "change.fallback_queue"},
		{fallback("qualification"), "change.fallback_queue"},
		{&eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_SlaPolicy{SlaPolicy: &eventv1.SLAPolicy{Segment: "smb"}}}, "change.accept_within"},
		// A segment no rule gives: its policy would never apply.
		{&eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_SlaPolicy{SlaPolicy: &eventv1.SLAPolicy{Segment: "smbb",
			AcceptWithin: durationpb.New(time.Hour), FirstContactWithin: durationpb.New(time.Hour), Escalation: eventv1.SLAEscalation_SLA_ESCALATION_MANAGER}}}, "change.segment"},
	} {
		v := c.Validate("change", tc.ch)
		if len(v) == 0 || v[0].Field != tc.field {
			t.Errorf("%v: violations %v, want %s first", tc.ch, v, tc.field)
		}
	}
	// A new team's manager cannot be a rep yet (a rep needs a team): the
	// refusal says the way round.
	boss := &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Team{Team: &eventv1.SalesTeam{TeamId: "apac", ManagerRepId: "hana"}}}
	if v := c.Validate("change", boss); len(v) == 0 || v[0].Field != "change.manager_rep_id" || !strings.Contains(v[0].Description, "then the rep") {
		t.Errorf("a team naming an unknown manager: %v, want change.manager_rep_id saying to put the rep first", v)
	}
	// Rules that no longer give a segment: its policy would apply to no
	// new lead (a target of it stays settable: CheckSegment's past).
	renamed := c.Clone()
	renamed.Apply(100, rules(&eventv1.RoutingRule{RuleId: "r", Segment: "smb-dach", PoolId: "dach"}))
	policy := &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_SlaPolicy{SlaPolicy: &eventv1.SLAPolicy{Segment: "smb",
		AcceptWithin: durationpb.New(time.Hour), FirstContactWithin: durationpb.New(time.Hour), Escalation: eventv1.SLAEscalation_SLA_ESCALATION_MANAGER}}}
	if v := renamed.Validate("change", policy); len(v) == 0 || v[0].Field != "change.segment" {
		t.Errorf("a policy of a segment the rules gave before only: %v, want change.segment", v)
	}
	if v := renamed.CheckSegment("target.segment", "smb", true); len(v) != 0 {
		t.Errorf("a target of a segment the rules gave before: %v", v)
	}
}

// Domains that people of every company use: no account may claim them,
// and one recorded before they were refused matches nobody.
func TestAccountDomainsEveryCompanyUses(t *testing.T) {
	c := world(t)
	for _, d := range []string{"yahoo.co.uk", "hotmail.co.uk", "gmx.com", "msn.com", "ymail.com", "qq.com", "mail.ru", "hotmail.de",
		"t-online.de", "co.uk", "com.au", "github.io", "WWW.Hotmail.co.uk."} {
		if v := c.Validate("change", account("x", "X", "ann", d)); len(v) == 0 || v[0].Field != "change.domains[0]" {
			t.Errorf("an account may claim %q: %v", d, v)
		}
	}
	if v := c.Validate("change", account("x", "X", "ann", "bigbank.co.uk", "sub.github.io")); len(v) != 0 {
		t.Errorf("a company's own domain under a public suffix: %v", v)
	}
	old := routing.New() // as recorded before these were refused
	for i, ch := range []*eventv1.RoutingChanged{team("emea", nil), rep("ann", "emea", 10), account("joe", "Joe Plumbing", "ann", "co.uk", "hotmail.co.uk")} {
		ch.Version = uint32(i + 1)
		old.Apply(uint64(i+1), ch)
	}
	for _, d := range []string{"bigbank.co.uk", "hotmail.co.uk", "co.uk"} {
		if a, how := old.MatchAccount(&eventv1.Profile{EmailDomain: d}); a != nil {
			t.Errorf("a lead at %s matched account %s (%s)", d, a.GetAccountId(), how)
		}
	}
}

// An internationalized domain is one domain however it is written:
// Unicode as a lead types it, or punycode as DNS has it.
func TestInternationalizedDomain(t *testing.T) {
	if got := routing.NormalizeDomain("WWW.Müller.DE."); got != "xn--mller-kva.de" {
		t.Errorf("NormalizeDomain = %q, want xn--mller-kva.de", got)
	}
	for _, acct := range []string{"xn--mller-kva.de", "müller.de"} {
		c := build(t, team("emea", nil), rep("ann", "emea", 10), account("mueller", "Mueller", "ann", acct))
		for _, lead := range []string{"müller.de", "xn--mller-kva.de", "vertrieb.müller.de", "MÜLLER.de"} {
			if a, _ := c.MatchAccount(&eventv1.Profile{EmailDomain: lead}); a.GetAccountId() != "mueller" {
				t.Errorf("account domain %q: a lead at %q does not match", acct, lead)
			}
		}
		other := "xn--mller-kva.de"
		if acct == other {
			other = "müller.de"
		}
		if v := c.Validate("change", account("m2", "M2", "ann", other)); len(v) == 0 || v[0].Field != "change.domains[0]" {
			t.Errorf("%q claimed again as %q: %v", acct, other, v)
		}
	}
	// An IDN top-level domain (.рф) is a domain too.
	if v := build(t, team("emea", nil), rep("ann", "emea", 10)).Validate("change", account("ru", "RU", "ann", "пример.рф")); len(v) != 0 {
		t.Errorf("пример.рф: %v", v)
	}
}

// Two accounts recorded with names that fold alike only under a later
// normalization: the first keeps the name for matching, either may be
// edited with its own name (a new owner), and editing one does not take
// the name from the other.
func TestAccountsWhoseNamesFoldAlikeLater(t *testing.T) {
	c := routing.New() // as recorded when "Müller GmbH" and "Muller AG" were distinct
	for i, ch := range []*eventv1.RoutingChanged{team("emea", nil), rep("ann", "emea", 10), rep("bob", "emea", 10),
		account("a1", "Müller GmbH", "ann"), account("a2", "Muller AG", "bob")} {
		ch.Version = uint32(i + 1)
		c.Apply(uint64(i+1), ch)
	}
	match := func() string {
		a, _ := c.MatchAccount(&eventv1.Profile{Company: "Müller GmbH"})
		return a.GetAccountId()
	}
	if got := match(); got != "a1" {
		t.Fatalf("a lead of Müller GmbH matched %q, want a1, the first to hold the name", got)
	}
	for _, ch := range []*eventv1.RoutingChanged{account("a1", "Müller GmbH", "bob"), account("a2", "Muller AG", "ann")} {
		if v := c.Validate("change", ch); len(v) != 0 {
			t.Fatalf("editing %s with its own name: %v", ch.GetAccount().GetAccountId(), v)
		}
	}
	if v := c.Validate("change", account("a3", "MÜLLER", "ann")); len(v) == 0 || v[0].Field != "change.name" {
		t.Fatalf("a new account taking the name: %v", v)
	}
	ch := account("a2", "Muller AG", "ann")
	ch.Version = 6
	c.Apply(6, ch)
	if got := match(); got != "a1" {
		t.Fatalf("after a2 was edited, a lead of Müller GmbH matched %q, want a1", got)
	}
}

// AbsentDuring finds the earliest absence overlapping a window, clipped
// to its start; one that ends as the window starts, or starts as it ends,
// does not overlap.
func TestAbsentDuring(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2026, 12, 7, h, 0, 0, 0, time.UTC) }
	c := routing.New()
	c.Absences["ann"] = []*eventv1.Absence{
		{From: timestamppb.New(at(14)), Until: timestamppb.New(at(16))},
		{From: timestamppb.New(at(6)), Until: timestamppb.New(at(9))},
	}
	for _, tc := range []struct {
		from, to int
		want     int // -1: none
	}{
		{10, 12, -1}, {9, 14, -1}, {8, 12, 8}, {5, 20, 6}, {10, 15, 14}, {15, 20, 15}, {16, 20, -1},
	} {
		got, ok := c.AbsentDuring("ann", at(tc.from), at(tc.to))
		if want := tc.want >= 0; ok != want || (ok && !got.Equal(at(tc.want))) {
			t.Errorf("[%d, %d): %v %v, want %d", tc.from, tc.to, got, ok, tc.want)
		}
	}
	if _, ok := c.AbsentDuring("bob", at(0), at(23)); ok {
		t.Error("bob has no absence")
	}

	// In team hours (09:00 to 17:00 on Mondays alone), an absence outside
	// them takes nothing.
	c.Absences["ann"] = []*eventv1.Absence{
		{From: timestamppb.New(at(6)), Until: timestamppb.New(at(10))},
		{From: timestamppb.New(at(18)), Until: timestamppb.New(at(23))},
	}
	hours := &eventv1.WorkingHours{TimeZone: "UTC", Days: []*eventv1.WorkingDay{{Day: eventv1.Weekday_WEEKDAY_MONDAY, Start: "09:00", End: "17:00"}}}
	for i, ch := range []*eventv1.RoutingChanged{
		{Change: &eventv1.RoutingChanged_Team{Team: &eventv1.SalesTeam{TeamId: "emea", Hours: hours}}},
		{Change: &eventv1.RoutingChanged_Rep{Rep: &eventv1.Rep{RepId: "ann", TeamId: "emea", Capacity: 1, Active: true}}},
	} {
		c.Apply(uint64(i+1), ch)
	}
	for _, tc := range []struct {
		from, to int
		want     int
	}{
		{5, 20, 6}, {5, 8, -1}, {9, 12, 9}, {12, 23, -1}, {10, 11, -1},
	} {
		got, ok := c.AbsentDuring("ann", at(tc.from), at(tc.to))
		if want := tc.want >= 0; ok != want || (ok && !got.Equal(at(tc.want))) {
			t.Errorf("in hours, [%d, %d): %v %v, want %d", tc.from, tc.to, got, ok, tc.want)
		}
	}
}

// everyDay is working hours from start to end, every day, in UTC.
func everyDay(start, end string) *eventv1.WorkingHours {
	h := &eventv1.WorkingHours{TimeZone: "UTC"}
	for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_SUNDAY; d++ {
		h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: start, End: end})
	}
	return h
}

// fallback is rules with no rule and fallback queue q.
func fallback(q string) *eventv1.RoutingChanged {
	ch := rules()
	ch.GetRules().FallbackQueue = q
	return ch
}

// A rep who rejected the lead before is passed over while another rep of
// the pool can take it, and gets it when nobody else can: never the
// queue for it.
func TestARepWhoRejectedTheLeadIsPassedOver(t *testing.T) {
	c := world(t)
	lead := routing.Lead{Profile: &eventv1.Profile{Country: "DE"}, Avoid: []string{"ann"}}
	// ann, weight 2, is due first.
	if d := c.Route(routing.Lead{Profile: lead.Profile}, nil, nil, now); d.RepID != "ann" {
		t.Fatalf("without a rejection %s was due first, want ann", d.RepID)
	}
	d := c.Route(lead, nil, nil, now)
	if d.RepID == "ann" || d.RepID == "" {
		t.Fatalf("routed to %q (%s), want another rep than ann, who rejected it", d.RepID, d.Record.GetSummary())
	}
	for _, cd := range d.Record.GetCandidates() {
		if cd.GetRepId() == "ann" && (cd.GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_PRIOR_OWNER || !strings.Contains(cd.GetDetail(), "rejected")) {
			t.Errorf("ann recorded as %v %q, want passed over for the rejection", cd.GetOutcome(), cd.GetDetail())
		}
	}
	// bob and cat full: ann, rather than the queue.
	full := routing.LoadMap(map[string]int{"bob": 10, "cat": 10})
	d = c.Route(lead, nil, full, now)
	if d.RepID != "ann" || d.Queue != "" {
		t.Fatalf("with everyone else full: %q %q (%s), want ann", d.RepID, d.Queue, d.Record.GetSummary())
	}
	// An account's owner keeps its leads, even one they rejected.
	acme := routing.Lead{Profile: &eventv1.Profile{Country: "DE", EmailDomain: "acme.example"}, Avoid: []string{"dan"}}
	if d := c.Route(acme, nil, nil, now); d.RepID != "dan" || d.Record.GetRuleId() != routing.RuleAccount {
		t.Fatalf("an account's lead its owner rejected: %q by %q, want dan by the account", d.RepID, d.Record.GetRuleId())
	}
}

// A name's limit counts characters, as its error says.
func TestNamesAreLimitedInCharacters(t *testing.T) {
	c := routing.New()
	for n, ok := range map[int]bool{200: true, 201: false} {
		ch := &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Team{Team: &eventv1.SalesTeam{TeamId: "tokyo", Name: strings.Repeat("営", n)}}}
		if v := c.Validate("change", ch); (len(v) == 0) != ok {
			t.Errorf("a team name of %d characters: %v, want accepted %v", n, v, ok)
		}
	}
}

// Two company names in Devanagari that differ by a vowel sign are two
// companies, not one.
func TestIndicCompaniesAreNotFoldedTogether(t *testing.T) {
	for _, pair := range [][2]string{{"पुरी", "परी"}, {"टाटा", "टीटी"}, {"ข้าว", "ขาว"}, {"Май", "Маи"}, {"رئيس", "رييس"}, {"Київ", "Киів"}} {
		if a, b := routing.NormalizeCompany(pair[0]), routing.NormalizeCompany(pair[1]); a == b {
			t.Errorf("%s and %s both normalize to %q", pair[0], pair[1], a)
		}
	}
	// The marks people leave out stay one company: Arabic shadda and
	// vowel marks, Hebrew points, Russian ё for е.
	for _, pair := range [][2]string{{"شركة محمّد", "شركة محمد"}, {"أحمد", "احمد"}, {"إيمان", "ايمان"}, {"שָׁלוֹם", "שלום"}, {"Ёлка", "Елка"}} {
		if a, b := routing.NormalizeCompany(pair[0]), routing.NormalizeCompany(pair[1]); a != b {
			t.Errorf("%s is %q and %s is %q: want one company", pair[0], a, pair[1], b)
		}
	}
}
