package lifecycle_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// The tests spell out the lifecycle again, by hand, instead of reading
// Transitions: a row added to or dropped from the table must fail them.

var (
	t0  = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	now = t0.Add(5 * time.Hour)

	ann  = lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}
	bob  = lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "bob"}
	drip = lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "drip"}

	allStatuses = []lifecycle.Status{
		lifecycle.StatusNone, lifecycle.StatusNew, lifecycle.StatusMQL, lifecycle.StatusAssigned,
		lifecycle.StatusAccepted, lifecycle.StatusOpportunity, lifecycle.StatusWon, lifecycle.StatusLost,
		lifecycle.StatusRecycled, lifecycle.StatusNurturing, lifecycle.StatusDisqualified, lifecycle.StatusMerged,
		lifecycle.StatusErased,
	}
	// live statuses: captured and not terminal.
	live = []lifecycle.Status{
		lifecycle.StatusNew, lifecycle.StatusMQL, lifecycle.StatusAssigned, lifecycle.StatusAccepted,
		lifecycle.StatusOpportunity, lifecycle.StatusLost, lifecycle.StatusRecycled, lifecycle.StatusNurturing,
	}
	// facts may be recorded everywhere but before capture, after a merge and after erasure.
	facts = append(slices.Clone(live), lifecycle.StatusWon, lifecycle.StatusDisqualified)

	allCommands = []lifecycle.CommandName{
		lifecycle.Capture, lifecycle.Resubmit, lifecycle.RecordActivity, lifecycle.ChangeConsent, lifecycle.Score,
		lifecycle.Qualify, lifecycle.Disqualify, lifecycle.Queue, lifecycle.Assign, lifecycle.Accept, lifecycle.Reject,
		lifecycle.LogContact, lifecycle.WarnSLA, lifecycle.BreachSLA, lifecycle.Reassign, lifecycle.Convert,
		lifecycle.Win, lifecycle.Lose, lifecycle.Recycle, lifecycle.Enroll, lifecycle.Reengage,
		lifecycle.ExitNurture, lifecycle.Merge, lifecycle.Unmerge, lifecycle.Erase,
	}
	allKinds = []lifecycle.Kind{
		lifecycle.KindCaptured, lifecycle.KindResubmitted, lifecycle.KindMerged, lifecycle.KindActivityRecorded,
		lifecycle.KindConsentChanged, lifecycle.KindScored, lifecycle.KindQualified, lifecycle.KindDisqualified,
		lifecycle.KindQueued, lifecycle.KindAssigned, lifecycle.KindAccepted, lifecycle.KindRejected, lifecycle.KindContactAttempted,
		lifecycle.KindSLAWarned, lifecycle.KindSLABreached, lifecycle.KindReassigned,
		lifecycle.KindOpportunityCreated, lifecycle.KindDealWon, lifecycle.KindDealLost, lifecycle.KindRecycled,
		lifecycle.KindNurtureEnrolled, lifecycle.KindReengaged, lifecycle.KindNurtureExited, lifecycle.KindUnmerged,
		lifecycle.KindErased,
	}

	fallback = lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: "fallback-emea"}
	// the state a merged lead had before its merge, as an unmerge restores it.
	premerge = lifecycle.State{Status: lifecycle.StatusAccepted, Owner: bob, Deadline: t0.Add(-time.Hour)}
)

// start returns a plausible state in status s, owned by ann where a rep owns
// it, with a deadline that no command computes.
func start(s lifecycle.Status) lifecycle.State {
	if s == lifecycle.StatusNone {
		return lifecycle.State{}
	}
	st := lifecycle.State{Status: s, Attempts: 2, Score: 40, Deadline: t0.Add(30 * time.Minute)}
	switch s {
	case lifecycle.StatusNew:
		st.Owner = lifecycle.QueueQualification
	case lifecycle.StatusMQL:
		st.Owner = lifecycle.QueueRouting
	case lifecycle.StatusAssigned, lifecycle.StatusAccepted, lifecycle.StatusOpportunity:
		st.Owner = ann
	case lifecycle.StatusLost, lifecycle.StatusRecycled:
		st.Owner = lifecycle.QueueNurture
	case lifecycle.StatusNurturing:
		st.Owner = drip
	default: // terminal
		st.Deadline = time.Time{}
	}
	return st
}

// valid returns a well-formed command named n.
func valid(n lifecycle.CommandName) lifecycle.Command {
	c := lifecycle.Command{Name: n}
	switch n {
	case lifecycle.Disqualify, lifecycle.Reject, lifecycle.Lose, lifecycle.Recycle, lifecycle.ExitNurture:
		c.Reason = "no budget"
	case lifecycle.Merge:
		c.Reason = "lead-7"
	case lifecycle.Unmerge:
		c.Reason = "two people"
		c.Status, c.Owner, c.Due = premerge.Status, premerge.Owner, premerge.Deadline
	case lifecycle.Queue:
		c.Owner = fallback
	case lifecycle.Assign:
		c.Owner = ann
	case lifecycle.Reassign:
		c.Owner = bob
	case lifecycle.Enroll:
		c.Owner = drip
	case lifecycle.Score:
		c.Score = 55
	}
	return c
}

type allowed struct {
	cmd          lifecycle.Command
	from         []lifecycle.Status
	kind         lifecycle.Kind
	to           lifecycle.Status // StatusNone: same as from
	owner        lifecycle.Owner
	keepOwner    bool
	within       time.Duration // deadline is now+within; 0: kept or cleared
	deadline     time.Time     // set: the deadline after, given by the command
	keepDeadline bool
	attempts     int // -1: kept
}

func allowedCases() []allowed {
	keep := func(c lifecycle.CommandName, from []lifecycle.Status, k lifecycle.Kind) allowed {
		return allowed{cmd: valid(c), from: from, kind: k, keepOwner: true, keepDeadline: true, attempts: -1}
	}
	in := func(ss ...lifecycle.Status) []lifecycle.Status { return ss }
	notNow := valid(lifecycle.Disqualify)
	notNow.NotNow = true
	convertBy := valid(lifecycle.Convert)
	convertBy.Due = now.Add(30 * 24 * time.Hour)
	enrollBy := valid(lifecycle.Enroll)
	enrollBy.Due = now.Add(3 * 24 * time.Hour)
	queueBy := valid(lifecycle.Queue)
	queueBy.Due = now.Add(66 * time.Hour)
	const day = 24 * time.Hour
	return []allowed{
		{cmd: valid(lifecycle.Capture), from: in(lifecycle.StatusNone), kind: lifecycle.KindCaptured,
			to: lifecycle.StatusNew, owner: lifecycle.QueueQualification, within: time.Hour, attempts: 0},
		keep(lifecycle.Resubmit, facts, lifecycle.KindResubmitted),
		keep(lifecycle.RecordActivity, facts, lifecycle.KindActivityRecorded),
		keep(lifecycle.ChangeConsent, facts, lifecycle.KindConsentChanged),
		// Scored, a new lead waits for engagement: its scoring is done.
		{cmd: valid(lifecycle.Score), from: in(lifecycle.StatusNew), kind: lifecycle.KindScored, keepOwner: true, within: 30 * day, attempts: -1},
		keep(lifecycle.Score, slices.DeleteFunc(slices.Clone(live), func(s lifecycle.Status) bool { return s == lifecycle.StatusNew }),
			lifecycle.KindScored),
		{cmd: valid(lifecycle.Qualify), from: in(lifecycle.StatusNew, lifecycle.StatusNurturing), kind: lifecycle.KindQualified,
			to: lifecycle.StatusMQL, owner: lifecycle.QueueRouting, within: 4 * time.Hour, attempts: -1},
		{cmd: valid(lifecycle.Disqualify), from: in(lifecycle.StatusNew, lifecycle.StatusMQL, lifecycle.StatusNurturing),
			kind: lifecycle.KindDisqualified, to: lifecycle.StatusDisqualified, attempts: -1},
		{cmd: notNow, from: in(lifecycle.StatusNew, lifecycle.StatusMQL, lifecycle.StatusNurturing), kind: lifecycle.KindDisqualified,
			to: lifecycle.StatusRecycled, owner: lifecycle.QueueNurture, within: 72 * time.Hour, attempts: -1},
		{cmd: valid(lifecycle.Queue), from: in(lifecycle.StatusMQL), kind: lifecycle.KindQueued,
			owner: fallback, keepDeadline: true, attempts: -1},
		// Queued while no rep is on shift: the route deadline moves on.
		{cmd: queueBy, from: in(lifecycle.StatusMQL), kind: lifecycle.KindQueued,
			owner: fallback, within: 66 * time.Hour, attempts: -1},
		{cmd: valid(lifecycle.Assign), from: in(lifecycle.StatusMQL), kind: lifecycle.KindAssigned,
			to: lifecycle.StatusAssigned, owner: ann, within: day, attempts: -1},
		{cmd: valid(lifecycle.Accept), from: in(lifecycle.StatusAssigned), kind: lifecycle.KindAccepted,
			to: lifecycle.StatusAccepted, keepOwner: true, within: 48 * time.Hour, attempts: 0},
		{cmd: valid(lifecycle.Reject), from: in(lifecycle.StatusAssigned, lifecycle.StatusAccepted), kind: lifecycle.KindRejected,
			to: lifecycle.StatusRecycled, owner: lifecycle.QueueNurture, within: 72 * time.Hour, attempts: -1},
		{cmd: valid(lifecycle.LogContact), from: in(lifecycle.StatusAccepted), kind: lifecycle.KindContactAttempted,
			to: lifecycle.StatusAccepted, keepOwner: true, within: 48 * time.Hour, attempts: 3},
		keep(lifecycle.WarnSLA, live, lifecycle.KindSLAWarned),
		keep(lifecycle.BreachSLA, live, lifecycle.KindSLABreached),
		{cmd: valid(lifecycle.Reassign), from: in(lifecycle.StatusAssigned, lifecycle.StatusAccepted), kind: lifecycle.KindReassigned,
			to: lifecycle.StatusAssigned, owner: bob, within: day, attempts: -1},
		// An open deal changes hands as it is: status and close date stay.
		{cmd: valid(lifecycle.Reassign), from: in(lifecycle.StatusOpportunity), kind: lifecycle.KindReassigned,
			owner: bob, keepDeadline: true, attempts: -1},
		{cmd: valid(lifecycle.Convert), from: in(lifecycle.StatusAccepted), kind: lifecycle.KindOpportunityCreated,
			to: lifecycle.StatusOpportunity, keepOwner: true, within: 90 * day, attempts: -1},
		{cmd: convertBy, from: in(lifecycle.StatusAccepted), kind: lifecycle.KindOpportunityCreated,
			to: lifecycle.StatusOpportunity, keepOwner: true, within: 30 * day, attempts: -1},
		{cmd: valid(lifecycle.Win), from: in(lifecycle.StatusOpportunity), kind: lifecycle.KindDealWon,
			to: lifecycle.StatusWon, attempts: -1},
		{cmd: valid(lifecycle.Lose), from: in(lifecycle.StatusOpportunity), kind: lifecycle.KindDealLost,
			to: lifecycle.StatusLost, owner: lifecycle.QueueNurture, within: 72 * time.Hour, attempts: -1},
		{cmd: valid(lifecycle.Recycle), from: in(lifecycle.StatusNew, lifecycle.StatusLost, lifecycle.StatusAccepted, lifecycle.StatusRecycled), kind: lifecycle.KindRecycled,
			to: lifecycle.StatusRecycled, owner: lifecycle.QueueNurture, within: 72 * time.Hour, attempts: -1},
		{cmd: valid(lifecycle.Enroll), from: in(lifecycle.StatusRecycled), kind: lifecycle.KindNurtureEnrolled,
			to: lifecycle.StatusNurturing, owner: drip, within: 14 * day, attempts: -1},
		{cmd: enrollBy, from: in(lifecycle.StatusRecycled), kind: lifecycle.KindNurtureEnrolled,
			to: lifecycle.StatusNurturing, owner: drip, within: 3 * day, attempts: -1},
		{cmd: valid(lifecycle.Reengage), from: in(lifecycle.StatusNurturing), kind: lifecycle.KindReengaged,
			to: lifecycle.StatusNurturing, keepOwner: true, within: time.Hour, attempts: -1},
		{cmd: valid(lifecycle.ExitNurture), from: in(lifecycle.StatusNurturing), kind: lifecycle.KindNurtureExited,
			to: lifecycle.StatusRecycled, owner: lifecycle.QueueNurture, within: 72 * time.Hour, attempts: -1},
		{cmd: valid(lifecycle.Merge), from: live, kind: lifecycle.KindMerged,
			to: lifecycle.StatusMerged, attempts: -1},
		// The deadline before the merge had passed: it comes back as it was.
		{cmd: valid(lifecycle.Unmerge), from: in(lifecycle.StatusMerged), kind: lifecycle.KindUnmerged,
			to: premerge.Status, owner: premerge.Owner, deadline: premerge.Deadline, attempts: -1},
		{cmd: valid(lifecycle.Erase), from: allBut(lifecycle.StatusNone, lifecycle.StatusErased), kind: lifecycle.KindErased,
			to: lifecycle.StatusErased, attempts: -1},
	}
}

func allBut(except ...lifecycle.Status) []lifecycle.Status {
	return slices.DeleteFunc(slices.Clone(allStatuses), func(s lifecycle.Status) bool { return slices.Contains(except, s) })
}

func TestDecideAllowed(t *testing.T) {
	p := lifecycle.DefaultPolicy()
	for _, tc := range allowedCases() {
		for _, from := range tc.from {
			name := fmt.Sprintf("%s/%s", tc.cmd.Name, from)
			if tc.cmd.NotNow {
				name += "/not_now"
			}
			if !tc.cmd.Due.IsZero() {
				name += "/due"
			}
			t.Run(name, func(t *testing.T) {
				s := start(from)
				events, err := lifecycle.Decide(s, tc.cmd, p, now)
				if err != nil {
					t.Fatalf("Decide: %v", err)
				}
				if len(events) != 1 {
					t.Fatalf("got %d events, want 1: %+v", len(events), events)
				}
				e := events[0]
				if e.Kind != tc.kind || !e.At.Equal(now) || e.Reason != tc.cmd.Reason || e.NotNow != tc.cmd.NotNow {
					t.Errorf("event = %+v, want kind %s at %v, reason %q, not now %v", e, tc.kind, now, tc.cmd.Reason, tc.cmd.NotNow)
				}

				want := s
				if tc.to != lifecycle.StatusNone {
					want.Status = tc.to
				}
				if !tc.keepOwner {
					want.Owner = tc.owner
				}
				switch {
				case !tc.deadline.IsZero():
					want.Deadline = tc.deadline
				case tc.within != 0:
					want.Deadline = now.Add(tc.within)
				case !tc.keepDeadline:
					want.Deadline = time.Time{}
				}
				if tc.attempts >= 0 {
					want.Attempts = tc.attempts
				}
				if tc.cmd.Name == lifecycle.Score {
					want.Score = tc.cmd.Score
				}
				got := lifecycle.Evolve(s, e)
				if !sameState(got, want) {
					t.Errorf("after Evolve\n got %+v\nwant %+v", got, want)
				}
				if err := lifecycle.Check(got); err != nil {
					t.Errorf("Check: %v", err)
				}
			})
		}
	}
}

func TestDecideRefused(t *testing.T) {
	ok := map[lifecycle.CommandName][]lifecycle.Status{}
	for _, tc := range allowedCases() {
		ok[tc.cmd.Name] = append(ok[tc.cmd.Name], tc.from...)
	}
	p := lifecycle.DefaultPolicy()
	n := 0
	for _, c := range allCommands {
		for _, from := range allStatuses {
			if slices.Contains(ok[c], from) {
				continue
			}
			n++
			t.Run(fmt.Sprintf("%s/%s", c, from), func(t *testing.T) {
				s := start(from)
				events, err := lifecycle.Decide(s, valid(c), p, now)
				assertRefused(t, events, err, c, from)
				if got := lifecycle.Fold(s, events...); !sameState(got, s) {
					t.Errorf("state changed to %+v", got)
				}
			})
		}
	}
	// 25 commands × 13 statuses, less the allowed pairs above.
	if want := 25*13 - 99; n != want {
		t.Errorf("refused %d pairs, want %d: the allowed cases changed", n, want)
	}
}

func TestDecideRefusedReassignToSameRep(t *testing.T) {
	for _, from := range []lifecycle.Status{lifecycle.StatusAssigned, lifecycle.StatusAccepted, lifecycle.StatusOpportunity} {
		c := valid(lifecycle.Reassign)
		c.Owner = ann // start's owner
		events, err := lifecycle.Decide(start(from), c, lifecycle.DefaultPolicy(), now)
		assertRefused(t, events, err, lifecycle.Reassign, from)
	}
}

func assertRefused(t *testing.T, events []lifecycle.Event, err error, c lifecycle.CommandName, from lifecycle.Status) {
	t.Helper()
	if events != nil {
		t.Errorf("got events %+v with error %v", events, err)
	}
	var re *lifecycle.RefusedError
	if !errors.Is(err, lifecycle.ErrRefused) || !errors.As(err, &re) {
		t.Fatalf("err = %v, want a *RefusedError", err)
	}
	if re.Command != c || re.Status != from || re.Reason == "" {
		t.Errorf("err = %#v, want command %s, status %s and a reason", re, c, from)
	}
}

func TestRefusedMessages(t *testing.T) {
	for _, tc := range []struct {
		cmd  lifecycle.Command
		from lifecycle.Status
		want string
	}{
		{valid(lifecycle.Accept), lifecycle.StatusNew, "Accept refused in NEW: lead is not assigned"},
		{valid(lifecycle.Win), lifecycle.StatusAccepted, "Win refused in ACCEPTED: lead is not an opportunity"},
		{valid(lifecycle.Disqualify), lifecycle.StatusLost, "Disqualify refused in LOST: lead is not new, an MQL or nurturing"},
		{valid(lifecycle.Qualify), lifecycle.StatusWon, "Qualify refused in WON: lead is won, a terminal state"},
		{valid(lifecycle.Resubmit), lifecycle.StatusMerged, "Resubmit refused in MERGED: lead is merged into another: act on the survivor, or unmerge it first"},
		{valid(lifecycle.Erase), lifecycle.StatusErased, "Erase refused in ERASED: lead is erased, a terminal state"},
		{valid(lifecycle.Score), lifecycle.StatusNone, "Score refused in NONE: no lead has been captured"},
		{valid(lifecycle.Capture), lifecycle.StatusMQL, "Capture refused in MQL: lead already exists"},
		{lifecycle.Command{Name: lifecycle.Reassign, Owner: ann}, lifecycle.StatusAccepted,
			"Reassign refused in ACCEPTED: lead is already owned by rep ann"},
	} {
		_, err := lifecycle.Decide(start(tc.from), tc.cmd, lifecycle.DefaultPolicy(), now)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s in %s: err = %v, want %q", tc.cmd.Name, tc.from, err, tc.want)
		}
	}
}

func TestDecideInvalid(t *testing.T) {
	type edit = func(*lifecycle.Command)
	noReason := func(c *lifecycle.Command) { c.Reason = "" }
	owner := func(o lifecycle.Owner) edit { return func(c *lifecycle.Command) { c.Owner = o } }
	due := func(d time.Time) edit { return func(c *lifecycle.Command) { c.Due = d } }
	for _, tc := range []struct {
		name  string
		from  lifecycle.Status
		cmd   lifecycle.CommandName
		edit  edit
		field string
	}{
		{"unknown command", lifecycle.StatusNew, "Frobnicate", nil, "name"},
		{"empty command", lifecycle.StatusNew, "", nil, "name"},
		{"disqualify without reason", lifecycle.StatusNew, lifecycle.Disqualify, noReason, "reason"},
		{"disqualify with blank reason", lifecycle.StatusNew, lifecycle.Disqualify, func(c *lifecycle.Command) { c.Reason = " \t" }, "reason"},
		// Fields come first: a malformed command is invalid even where it would be refused.
		{"disqualify without reason when won", lifecycle.StatusWon, lifecycle.Disqualify, noReason, "reason"},
		{"reject without reason", lifecycle.StatusAssigned, lifecycle.Reject, noReason, "reason"},
		{"lose without reason", lifecycle.StatusOpportunity, lifecycle.Lose, noReason, "reason"},
		{"recycle without reason", lifecycle.StatusLost, lifecycle.Recycle, noReason, "reason"},
		{"exit nurture without reason", lifecycle.StatusNurturing, lifecycle.ExitNurture, noReason, "reason"},
		{"merge without survivor", lifecycle.StatusNew, lifecycle.Merge, noReason, "reason"},
		{"assign without owner", lifecycle.StatusMQL, lifecycle.Assign, owner(lifecycle.Owner{}), "owner"},
		{"assign to a queue", lifecycle.StatusMQL, lifecycle.Assign, owner(lifecycle.QueueRouting), "owner"},
		{"assign to a program", lifecycle.StatusMQL, lifecycle.Assign, owner(drip), "owner"},
		{"assign to an owner without kind", lifecycle.StatusMQL, lifecycle.Assign, owner(lifecycle.Owner{ID: "ann"}), "owner"},
		{"assign to a rep without id", lifecycle.StatusMQL, lifecycle.Assign, owner(lifecycle.Owner{Kind: lifecycle.OwnerRep}), "owner"},
		{"reassign without owner", lifecycle.StatusAssigned, lifecycle.Reassign, owner(lifecycle.Owner{}), "owner"},
		{"reassign to a program", lifecycle.StatusAssigned, lifecycle.Reassign, owner(drip), "owner"},
		{"enroll without program", lifecycle.StatusRecycled, lifecycle.Enroll, owner(lifecycle.Owner{}), "owner"},
		{"enroll with a rep", lifecycle.StatusRecycled, lifecycle.Enroll, owner(ann), "owner"},
		{"accept with an owner", lifecycle.StatusAssigned, lifecycle.Accept, owner(bob), "owner"},
		{"convert due in the past", lifecycle.StatusAccepted, lifecycle.Convert, due(now.Add(-time.Hour)), "due"},
		{"convert due now", lifecycle.StatusAccepted, lifecycle.Convert, due(now), "due"},
		{"enroll due in the past", lifecycle.StatusRecycled, lifecycle.Enroll, due(now.Add(-time.Second)), "due"},
		{"queue due now", lifecycle.StatusMQL, lifecycle.Queue, due(now), "due"},
		{"accept with a due", lifecycle.StatusAssigned, lifecycle.Accept, due(now.Add(time.Hour)), "due"},
		{"reject not now", lifecycle.StatusAssigned, lifecycle.Reject, func(c *lifecycle.Command) { c.NotNow = true }, "not_now"},
		{"qualify with a score", lifecycle.StatusNew, lifecycle.Qualify, func(c *lifecycle.Command) { c.Score = 80 }, "score"},
		{"qualify as a re-score", lifecycle.StatusNew, lifecycle.Qualify, func(c *lifecycle.Command) { c.Rescore = true }, "rescore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid(tc.cmd)
			if tc.edit != nil {
				tc.edit(&c)
			}
			events, err := lifecycle.Decide(start(tc.from), c, lifecycle.DefaultPolicy(), now)
			if events != nil {
				t.Errorf("got events %+v with error %v", events, err)
			}
			var ie *lifecycle.InvalidCommandError
			if !errors.Is(err, lifecycle.ErrInvalidCommand) || !errors.As(err, &ie) {
				t.Fatalf("err = %v, want an *InvalidCommandError", err)
			}
			if ie.Field != tc.field || ie.Command != tc.cmd || ie.Reason == "" {
				t.Errorf("err = %#v, want field %q", ie, tc.field)
			}
			if errors.Is(err, lifecycle.ErrRefused) {
				t.Errorf("err %v is also ErrRefused", err)
			}
		})
	}
}

func TestInvalidCommandMessage(t *testing.T) {
	c := lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.QueueRouting}
	_, err := lifecycle.Decide(start(lifecycle.StatusMQL), c, lifecycle.DefaultPolicy(), now)
	if want := "Assign: owner must be a rep, not a queue"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestEvolveUnknownKind(t *testing.T) {
	s := start(lifecycle.StatusAccepted)
	if got := lifecycle.Evolve(s, lifecycle.Event{Kind: "LeadTeleported", At: now, Owner: bob, Deadline: now}); !sameState(got, s) {
		t.Errorf("unknown kind changed %+v to %+v", s, got)
	}
}

func TestEvolveTerminalClearsOwnerAndDeadline(t *testing.T) {
	// Even an event that carries an owner cannot leave one on a finished lead.
	e := lifecycle.Event{Kind: lifecycle.KindDealWon, At: now, Owner: bob, Deadline: now}
	got := lifecycle.Evolve(start(lifecycle.StatusOpportunity), e)
	if got.Status != lifecycle.StatusWon || !got.Owner.IsZero() || !got.Deadline.IsZero() {
		t.Errorf("got %+v, want WON with no owner or deadline", got)
	}
}

func TestFold(t *testing.T) {
	got := lifecycle.Fold(lifecycle.State{},
		lifecycle.Event{Kind: lifecycle.KindCaptured, At: t0, Owner: lifecycle.QueueQualification, Deadline: t0.Add(time.Hour)},
		lifecycle.Event{Kind: lifecycle.KindScored, At: t0, Score: 70},
		lifecycle.Event{Kind: lifecycle.KindQualified, At: t0, Owner: lifecycle.QueueRouting, Deadline: t0.Add(4 * time.Hour)},
		lifecycle.Event{Kind: lifecycle.KindAssigned, At: t0, Owner: ann, Deadline: t0.Add(24 * time.Hour)},
		lifecycle.Event{Kind: lifecycle.KindAccepted, At: t0, Deadline: t0.Add(48 * time.Hour)},
		lifecycle.Event{Kind: lifecycle.KindContactAttempted, At: t0, Deadline: t0.Add(50 * time.Hour)},
		lifecycle.Event{Kind: lifecycle.KindContactAttempted, At: t0, Deadline: t0.Add(52 * time.Hour)},
	)
	want := lifecycle.State{Status: lifecycle.StatusAccepted, Owner: ann, Deadline: t0.Add(52 * time.Hour), Attempts: 2, Score: 70}
	if !sameState(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if s := lifecycle.Fold(want); !sameState(s, want) {
		t.Errorf("Fold with no events changed the state to %+v", s)
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		s       lifecycle.State
		wantErr bool
	}{
		{"none", lifecycle.State{}, false},
		{"new", start(lifecycle.StatusNew), false},
		{"won", start(lifecycle.StatusWon), false},
		{"erased", lifecycle.State{Status: lifecycle.StatusErased}, false},
		{"accepted without owner", lifecycle.State{Status: lifecycle.StatusAccepted, Deadline: now}, true},
		{"nurturing without deadline", lifecycle.State{Status: lifecycle.StatusNurturing, Owner: drip}, true},
		{"new with nothing", lifecycle.State{Status: lifecycle.StatusNew}, true},
		{"undeclared status", lifecycle.State{Status: lifecycle.StatusErased + 1, Owner: ann, Deadline: now}, true},
	} {
		if err := lifecycle.Check(tc.s); (err != nil) != tc.wantErr {
			t.Errorf("%s: Check = %v, want error %v", tc.name, err, tc.wantErr)
		}
	}
}

func TestStatus(t *testing.T) {
	names := []string{"NONE", "NEW", "MQL", "ASSIGNED", "ACCEPTED", "OPPORTUNITY", "WON",
		"LOST", "RECYCLED", "NURTURING", "DISQUALIFIED", "MERGED", "ERASED"}
	for i, s := range allStatuses {
		if s.String() != names[i] {
			t.Errorf("Status(%d).String() = %q, want %q", s, s.String(), names[i])
		}
		got, err := lifecycle.ParseStatus(names[i])
		if err != nil || got != s {
			t.Errorf("ParseStatus(%q) = %v, %v; want %v", names[i], got, err, s)
		}
		terminal := !slices.Contains(live, s) && s != lifecycle.StatusNone
		if s.Terminal() != terminal {
			t.Errorf("%s.Terminal() = %v, want %v", s, s.Terminal(), terminal)
		}
	}
	for _, bad := range []string{"", "new", "Won", "BOGUS"} {
		if _, err := lifecycle.ParseStatus(bad); err == nil {
			t.Errorf("ParseStatus(%q) succeeded", bad)
		}
	}
	if got := (lifecycle.StatusErased + 1).String(); got != "Status(13)" {
		t.Errorf("undeclared status prints %q", got)
	}
}

func TestOwner(t *testing.T) {
	for _, tc := range []struct {
		o    lifecycle.Owner
		want string
	}{
		{lifecycle.Owner{}, ""}, {lifecycle.QueueRouting, "queue routing"}, {ann, "rep ann"}, {drip, "program drip"},
	} {
		if got := tc.o.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.o, got, tc.want)
		}
		if tc.o.IsZero() != (tc.want == "") {
			t.Errorf("%#v.IsZero() = %v", tc.o, tc.o.IsZero())
		}
	}
	queues := []lifecycle.Owner{lifecycle.QueueQualification, lifecycle.QueueRouting, lifecycle.QueueNurture}
	for i, id := range []string{"qualification", "routing", "nurture"} {
		if want := (lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: id}); queues[i] != want {
			t.Errorf("queue %d = %v, want %v", i, queues[i], want)
		}
	}
}

func TestDefaultPolicy(t *testing.T) {
	want := lifecycle.Policy{
		ScoreWithin: time.Hour, EngageWithin: 30 * 24 * time.Hour, RouteWithin: 4 * time.Hour, AcceptWithin: 24 * time.Hour,
		ContactWithin: 48 * time.Hour, CloseWithin: 90 * 24 * time.Hour, RecycleWithin: 72 * time.Hour,
		NurtureTouchWithin: 14 * 24 * time.Hour,
	}
	if got := lifecycle.DefaultPolicy(); got != want {
		t.Errorf("DefaultPolicy() = %+v, want %+v", got, want)
	}
}

// TestTransitionsTable checks the table's shape: one row per command and per
// kind, and only declared statuses.
func TestTransitionsTable(t *testing.T) {
	var cmds []lifecycle.CommandName
	var kinds []lifecycle.Kind
	for _, tr := range lifecycle.Transitions {
		cmds = append(cmds, tr.Command)
		kinds = append(kinds, tr.Kind)
		for _, s := range append(slices.Clone(tr.From), tr.To) {
			if !slices.Contains(allStatuses, s) {
				t.Errorf("%s: undeclared status %v", tr.Kind, s)
			}
		}
	}
	slices.Sort(cmds)
	slices.Sort(kinds)
	wantCmds, wantKinds := slices.Sorted(slices.Values(allCommands)), slices.Sorted(slices.Values(allKinds))
	if !slices.Equal(cmds, wantCmds) {
		t.Errorf("commands in table = %v, want %v", cmds, wantCmds)
	}
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("kinds in table = %v, want %v", kinds, wantKinds)
	}
}

func sameState(a, b lifecycle.State) bool {
	return a.Status == b.Status && a.Owner == b.Owner && a.Deadline.Equal(b.Deadline) &&
		a.Attempts == b.Attempts && a.Score == b.Score
}

// A lead's journey cycle starts at 1 on capture and grows each time it
// qualifies again out of nurture, and only then.
func TestJourneyCycle(t *testing.T) {
	p := lifecycle.DefaultPolicy()
	now := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)
	s := lifecycle.State{}
	step := func(c lifecycle.Command) {
		t.Helper()
		evs, err := lifecycle.Decide(s, c, p, now)
		if err != nil {
			t.Fatalf("%s in %s: %v", c.Name, s.Status, err)
		}
		s = lifecycle.Fold(s, evs...)
	}
	rep := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}
	program := lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "webinars"}
	step(lifecycle.Command{Name: lifecycle.Capture})
	if s.Cycle != 1 {
		t.Fatalf("after capture: cycle %d", s.Cycle)
	}
	for want := 1; want <= 3; want++ {
		step(lifecycle.Command{Name: lifecycle.Qualify})
		if s.Cycle != want {
			t.Fatalf("qualified: cycle %d, want %d", s.Cycle, want)
		}
		step(lifecycle.Command{Name: lifecycle.Assign, Owner: rep})
		step(lifecycle.Command{Name: lifecycle.Reject, Reason: "not ready"})
		step(lifecycle.Command{Name: lifecycle.Recycle, Reason: "rejected: not ready"})
		step(lifecycle.Command{Name: lifecycle.Enroll, Owner: program})
		step(lifecycle.Command{Name: lifecycle.Reengage})
		if s.Cycle != want {
			t.Fatalf("nurtured: cycle %d, want %d", s.Cycle, want)
		}
	}
	if got := lifecycle.FromProto(lifecycle.ToProto(s)).Cycle; got != s.Cycle {
		t.Fatalf("cycle through the envelope: %d, want %d", got, s.Cycle)
	}
}

// An escalation hands an accepted lead to a manager's queue: sales still
// holds it, as ASSIGNED, and the queue is due to hand it on.
func TestReassignToAQueue(t *testing.T) {
	mgrQueue := lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: "manager:emea"}
	p := lifecycle.DefaultPolicy()
	events, err := lifecycle.Decide(start(lifecycle.StatusAccepted), lifecycle.Command{Name: lifecycle.Reassign, Owner: mgrQueue}, p, now)
	if err != nil {
		t.Fatal(err)
	}
	after := lifecycle.Evolve(start(lifecycle.StatusAccepted), events[0])
	if after.Status != lifecycle.StatusAssigned || after.Owner != mgrQueue || !after.Deadline.Equal(now.Add(p.AcceptWithin)) {
		t.Errorf("after a reassignment to a queue: %+v", after)
	}
	// And from the queue to a rep.
	events, err = lifecycle.Decide(after, lifecycle.Command{Name: lifecycle.Reassign, Owner: bob}, p, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := lifecycle.Evolve(after, events[0]); got.Owner != bob || got.Status != lifecycle.StatusAssigned {
		t.Errorf("from the queue to bob: %+v", got)
	}
	// In the queue nobody accepts or rejects it: a manager hands it on.
	for _, c := range []lifecycle.Command{{Name: lifecycle.Accept}, {Name: lifecycle.Reject, Reason: "not a fit"}} {
		_, err := lifecycle.Decide(after, c, p, now)
		var refused *lifecycle.RefusedError
		if !errors.As(err, &refused) || refused.Status != lifecycle.StatusAssigned || !strings.Contains(err.Error(), "manager:emea") {
			t.Errorf("%s of a lead in the manager's queue: %v, want refused naming ASSIGNED and the queue", c.Name, err)
		}
	}
}

func TestNextStep(t *testing.T) {
	queue := lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: "manager:emea"}
	for _, c := range []struct {
		s    lifecycle.State
		last lifecycle.Kind
		want string
	}{
		{lifecycle.State{Status: lifecycle.StatusAssigned, Owner: ann}, lifecycle.KindAssigned, "acceptance by the assigned rep"},
		{lifecycle.State{Status: lifecycle.StatusAssigned, Owner: ann}, lifecycle.KindSLABreached, "escalation of the SLA breach: reassignment to another rep"},
		// In a manager's queue, breached there or not, the manager hands it on.
		{lifecycle.State{Status: lifecycle.StatusAssigned, Owner: queue}, lifecycle.KindSLABreached, "hand-on from the manager's queue to a rep"},
		{lifecycle.State{Status: lifecycle.StatusAssigned, Owner: queue}, lifecycle.KindReassigned, "hand-on from the manager's queue to a rep"},
		{lifecycle.State{Status: lifecycle.StatusRecycled, Owner: lifecycle.QueueNurture}, lifecycle.KindRejected, "recycle to nurture, then enrolment in a program"},
		{lifecycle.State{Status: lifecycle.StatusRecycled, Owner: lifecycle.QueueNurture}, lifecycle.KindRecycled, "enrolment in a nurture program"},
		{lifecycle.State{Status: lifecycle.StatusNew, Owner: lifecycle.QueueQualification}, lifecycle.KindCaptured, "scoring and qualification"},
		{lifecycle.State{Status: lifecycle.StatusNew, Owner: lifecycle.QueueQualification}, lifecycle.KindScored, "engagement that scores over the threshold; at the deadline, recycle to nurture"},
	} {
		if got := lifecycle.NextStep(c.s, c.last); got != c.want {
			t.Errorf("NextStep(%v, %s) = %q, want %q", c.s.Status, c.last, got, c.want)
		}
	}
}

// A score moves a new lead's deadline to EngageWithin on; a re-score
// under a new model version, which brings no new fact, keeps it.
func TestRescoreKeepsANewLeadsDeadline(t *testing.T) {
	st := start(lifecycle.StatusNew)
	st.Deadline = now.Add(5 * 24 * time.Hour)
	for _, rescore := range []bool{false, true} {
		evs, err := lifecycle.Decide(st, lifecycle.Command{Name: lifecycle.Score, Score: 40, Rescore: rescore}, lifecycle.DefaultPolicy(), now)
		if err != nil {
			t.Fatal(err)
		}
		got := lifecycle.Evolve(st, evs[0])
		want := now.Add(lifecycle.DefaultPolicy().EngageWithin)
		if rescore {
			want = st.Deadline
		}
		if !got.Deadline.Equal(want) || got.Score != 40 {
			t.Errorf("rescore %v: deadline %v score %d, want %v and 40", rescore, got.Deadline, got.Score, want)
		}
	}
}
