package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/adapters"
	"github.com/leadflow/leadflow/services/handoff/app"
)

// absence sets a rep's out-of-office periods: from, until pairs.
func absence(t *testing.T, c handoffv1.HandoffServiceClient, rep string, times ...time.Time) {
	t.Helper()
	var abs []*eventv1.Absence
	for i := 0; i+1 < len(times); i += 2 {
		abs = append(abs, &eventv1.Absence{From: timestamppb.New(times[i]), Until: timestamppb.New(times[i+1])})
	}
	if _, err := c.SetOutOfOffice(ctxT(t), &handoffv1.SetOutOfOfficeRequest{OutOfOffice: &eventv1.OutOfOffice{RepId: rep, Absences: abs}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
}

// withAcceptSLA starts handoff on routingSetup (capacity 10) with accept
// as the time to accept, an hour to contact, and escalation.
func withAcceptSLA(t *testing.T, accept time.Duration, escalation eventv1.SLAEscalation) (*world, *service) {
	t.Helper()
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	slaPolicy(t, s.client, accept, time.Hour, 10*time.Minute, escalation)
	return w, s
}

// outOfOffice returns the lead's LeadReassigned events caused by an
// absence, failing on any breach or warning: none was due.
func outOfOffice(t *testing.T, evs []*eventv1.Event) []*eventv1.LeadReassigned {
	t.Helper()
	if n := len(ofType(evs, "SLABreached")) + len(ofType(evs, "SLAWarned")); n != 0 {
		t.Errorf("%d SLA warnings and breaches, want none", n)
	}
	var out []*eventv1.LeadReassigned
	for _, ev := range ofType(evs, "LeadReassigned") {
		r := ev.GetLeadReassigned()
		if r.GetCause() != eventv1.ReassignCause_REASSIGN_CAUSE_OUT_OF_OFFICE {
			t.Errorf("reassigned by %v, want out of office", r.GetCause())
		}
		out = append(out, r)
	}
	return out
}

// waitingAndKept routes two leads to one rep, who accepts the second
// (kept) and leaves the first waiting.
func waitingAndKept(t *testing.T, w *world, s *service) (waiting, kept, owner string) {
	t.Helper()
	waiting = w.mql(t, dach(50))
	owner = ownerOf(w.waitFor(t, waiting, "LeadAssigned", 1)[0])
	for i := 0; kept == ""; i++ {
		if i == 10 {
			t.Fatalf("ten leads, none routed to %s", owner)
		}
		id := w.mql(t, dach(50))
		if ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0]) == owner {
			kept = id
		}
	}
	if _, err := s.client.AcceptLead(ctxT(t), &handoffv1.AcceptLeadRequest{LeadId: kept, RepId: owner, RequestId: "accept-kept"}); err != nil {
		t.Fatal(err)
	}
	w.settle(t)
	return waiting, kept, owner
}

// A rep who goes out of office (recorded now, starting now) hands on the
// leads they have not accepted, at once, to the pool's next rep, who gets
// a fresh acceptance deadline; a lead they accepted stays theirs. The
// brief says why the lead changed hands.
func TestAbsenceHandsOnUnacceptedLeads(t *testing.T) {
	w, s := withAcceptSLA(t, time.Hour, eventv1.SLAEscalation_SLA_ESCALATION_MANAGER)
	ctx := ctxT(t)

	waiting, kept, owner := waitingAndKept(t, w, s)

	away := time.Now()
	absence(t, s.client, owner, away.Add(-time.Minute), away.Add(24*time.Hour))
	w.waitFor(t, waiting, "LeadReassigned", 1)
	time.Sleep(2 * time.Second) // a second hand-over would show now
	evs := w.events(t, waiting)
	moved := outOfOffice(t, evs)
	if len(moved) != 1 {
		t.Fatalf("%d reassignments, want 1", len(moved))
	}
	r := moved[0]
	if r.GetFrom().GetId() != owner || r.GetTo().GetKind() != eventv1.OwnerKind_OWNER_KIND_REP || r.GetTo().GetId() == owner ||
		r.GetDecision().GetPoolId() != "dach" {
		t.Fatalf("handed from %v to %v (pool %q), want the next rep of pool dach", r.GetFrom(), r.GetTo(), r.GetDecision().GetPoolId())
	}
	if due := r.GetAcceptBy().AsTime(); due.Before(away.Add(59 * time.Minute)) {
		t.Errorf("new acceptance deadline %v, want an hour from the hand-over", due)
	}
	if st := w.state(t, waiting); st.Status != lifecycle.StatusAssigned || st.Owner.ID != r.GetTo().GetId() {
		t.Errorf("after the hand-over: %+v", st)
	}
	if st := w.state(t, kept); st.Status != lifecycle.StatusAccepted || st.Owner.ID != owner {
		t.Errorf("the accepted lead: %+v, want it still %s's", st, owner)
	}

	brief, err := s.client.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: waiting})
	if err != nil {
		t.Fatal(err)
	}
	var hows []string
	for _, o := range brief.GetBrief().GetOwners() {
		hows = append(hows, o.GetHow()+"/"+o.GetEnded())
	}
	if len(hows) != 2 || hows[0] != "routed/out of office" || hows[1] != "out of office/" {
		t.Errorf("brief's owners %v, want routed, then handed on out of office", hows)
	}
}

// A rep made inactive (they left) hands on at once the leads they have
// not accepted, as an absence does, and keeps those they accepted; made
// active again, they hand on nothing more.
func TestAnInactiveRepHandsOnUnacceptedLeads(t *testing.T) {
	w, s := withAcceptSLA(t, time.Hour, eventv1.SLAEscalation_SLA_ESCALATION_MANAGER)
	ctx := ctxT(t)
	waiting, kept, owner := waitingAndKept(t, w, s)
	put := func(active bool) {
		t.Helper()
		if _, err := s.client.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: owner, TeamId: "emea", Capacity: 10, Active: active}, ChangedBy: ops}); err != nil {
			t.Fatal(err)
		}
	}
	put(false)
	w.waitFor(t, waiting, "LeadReassigned", 1)
	r := last(ofType(w.events(t, waiting), "LeadReassigned")).GetLeadReassigned()
	if r.GetCause() != eventv1.ReassignCause_REASSIGN_CAUSE_REP_INACTIVE || r.GetFrom().GetId() != owner ||
		r.GetTo().GetKind() != eventv1.OwnerKind_OWNER_KIND_REP || r.GetTo().GetId() == owner || !strings.Contains(r.GetReason(), "inactive") {
		t.Fatalf("handed on %v from %v to %v (%q), want to the pool's next rep as the rep is inactive", r.GetCause(), r.GetFrom(), r.GetTo(), r.GetReason())
	}
	if st := w.state(t, kept); st.Status != lifecycle.StatusAccepted || st.Owner.ID != owner {
		t.Errorf("the accepted lead: %+v, want it still %s's", st, owner)
	}
	// Active again: nothing more moves.
	put(true)
	w.settle(t)
	if n := len(ofType(w.events(t, waiting), "LeadReassigned")); n != 1 {
		t.Errorf("%d reassignments, want 1", n)
	}
}

// An absence recorded ahead, starting before a lead's acceptance
// deadline, hands the lead on when it starts, not before, and not at all
// once withdrawn: whether the lead came before or after the absence was
// recorded. With the whole pool away, to the manager's queue.
func TestAbsenceStartingBeforeTheDeadline(t *testing.T) {
	w, s := withAcceptSLA(t, time.Hour, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP)

	pool := []string{"ann", "bob", "cat"}
	start := time.Now().Add(8 * time.Second)
	for _, rep := range pool {
		absence(t, s.client, rep, start, start.Add(24*time.Hour))
	}
	first := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, first, "LeadAssigned", 1)[0])
	var early, other string
	for i := 0; other == "" || other == owner; i++ {
		if i == 5 {
			t.Fatalf("five leads routed to %s alone", owner)
		}
		early = w.mql(t, dach(50))
		other = ownerOf(w.waitFor(t, early, "LeadAssigned", 1)[0])
	}
	absence(t, s.client, owner) // withdrawn before it starts
	if !time.Now().Before(start) {
		t.Fatal("the machine is too slow for this test: the absence started before it was withdrawn")
	}
	reassigned := w.waitFor(t, early, "LeadReassigned", 1)[0]
	if at := reassigned.GetRecordedAt().AsTime(); at.Before(start) {
		t.Errorf("handed on at %v, before the absence started at %v", at, start)
	}
	if r := reassigned.GetLeadReassigned(); r.GetFrom().GetId() != other || r.GetTo().GetId() != owner {
		t.Errorf("handed on from %v to %v, want from %s to %s, the one rep of the pool in", r.GetFrom(), r.GetTo(), other, owner)
	}
	time.Sleep(time.Until(start) + 3*time.Second)
	settleTimers(t, w)
	if evs := w.events(t, first); len(ofType(evs, "LeadReassigned")) != 0 {
		t.Fatalf("handed on from %s, whose absence was withdrawn: %v", owner, last(evs))
	}

	// The rest of the pool is away now; the owner will be soon.
	second := w.mql(t, dach(50))
	if got := ownerOf(w.waitFor(t, second, "LeadAssigned", 1)[0]); got != owner {
		t.Fatalf("routed to %s, want %s, the one rep of the pool in", got, owner)
	}
	start = time.Now().Add(3 * time.Second)
	absence(t, s.client, owner, start, start.Add(24*time.Hour))
	for _, id := range []string{first, second} {
		reassigned = w.waitFor(t, id, "LeadReassigned", 1)[0]
		if at := reassigned.GetRecordedAt().AsTime(); at.Before(start) {
			t.Errorf("handed on at %v, before the absence started at %v", at, start)
		}
	}
	time.Sleep(2 * time.Second) // a second hand-over would show now
	for _, id := range []string{first, second} {
		moved := outOfOffice(t, w.events(t, id))
		if len(moved) != 1 || moved[0].GetTo().GetKind() != eventv1.OwnerKind_OWNER_KIND_QUEUE || moved[0].GetTo().GetId() != "manager:emea" {
			t.Fatalf("handed on %v, want once, to manager mia's queue (the pool is away)", moved)
		}
	}
}

// absentTimer is the ABSENT timer of the lead's current acceptance step,
// its LeadAssigned or LeadReassigned, firing at at.
func absentTimer(t *testing.T, w *world, leadID string, at time.Time) *eventv1.SLATimer {
	t.Helper()
	step := lastOf(t, w, leadID, func(ev *eventv1.Event) bool { return ev.GetLeadAssigned() != nil || ev.GetLeadReassigned() != nil })
	const kind, phase = eventv1.SLAKind_SLA_KIND_ACCEPT, eventv1.TimerPhase_TIMER_PHASE_ABSENT
	return &eventv1.SLATimer{TimerId: app.TimerID(step.Event.GetEventId(), kind, phase), LeadId: leadID, Sla: kind, Phase: phase,
		StepEventId: step.Event.GetEventId(), StepSequence: step.Seq, DueAt: step.Event.GetLifecycle().GetDeadline(), FireAt: timestamppb.New(at)}
}

// A replica whose copy of the routing data predates an absence recorded
// through another replica still hands the lead on when the absence's
// timer reaches it: the timer reads the routing data afresh.
func TestAbsenceTimerReadsTheRoutingDataAfresh(t *testing.T) {
	w, s := withAcceptSLA(t, time.Hour, eventv1.SLAEscalation_SLA_ESCALATION_MANAGER)
	id := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	w.settle(t)

	start := time.Now().Add(5 * time.Second)
	// The other replica: its clock past the start, its routing data read
	// at that time, so it counts as fresh from then on.
	other := w.app(t, adapters.NewLeads(w.store), app.WithClock(func() time.Time { return start.Add(time.Second) }))
	if _, err := other.Routing(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	absence(t, s.client, owner, start, start.Add(24*time.Hour))
	s.stop() // before its own timer fires
	if n := len(ofType(w.events(t, id), "LeadReassigned")); n != 0 || !time.Now().Before(start) {
		t.Fatalf("the machine is too slow for this test: %d hand-ons before the other replica's timer", n)
	}

	if err := other.FireTimer(ctxT(t), absentTimer(t, w, id, start), false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	moved := outOfOffice(t, w.events(t, id))
	if len(moved) != 1 || moved[0].GetFrom().GetId() != owner || moved[0].GetTo().GetId() == owner {
		t.Fatalf("handed on %v, want once, from %s", moved, owner)
	}
}

// An ABSENT timer handled before the absence starts by its replica's
// clock (behind the server's) waits again, as far past the start as the
// clock was early, instead of firing again at once.
func TestAbsenceTimerFiredEarlyWaits(t *testing.T) {
	w, s := withAcceptSLA(t, 2*time.Hour, eventv1.SLAEscalation_SLA_ESCALATION_MANAGER)
	id := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	start := time.Now().Add(time.Hour)
	absence(t, s.client, owner, start, start.Add(24*time.Hour))
	w.settle(t)
	s.stop()

	behind := w.app(t, adapters.NewLeads(w.store), app.WithClock(func() time.Time { return start.Add(-2 * time.Second) }))
	tm := absentTimer(t, w, id, start)
	if err := behind.FireTimer(ctxT(t), tm, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	again := scheduled(t, w, id, tm.GetTimerId())
	if want := start.Add(2 * time.Second); !firesAt(again).Equal(want) || !again.GetFireAt().AsTime().Equal(start) {
		t.Errorf("scheduled again for %v (for %v), want %v (2 s past the start, for the start)", firesAt(again), again.GetFireAt().AsTime(), want)
	}
	// Set for a start an hour earlier and fired then: the absence was
	// moved later, not a clock behind. Again at its start.
	early := w.app(t, adapters.NewLeads(w.store), app.WithClock(func() time.Time { return start.Add(-time.Hour) }))
	moved := absentTimer(t, w, id, start.Add(-time.Hour))
	if err := early.FireTimer(ctxT(t), moved, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	again = scheduled(t, w, id, tm.GetTimerId())
	if !firesAt(again).Equal(start) {
		t.Errorf("an absence moved an hour later: scheduled again for %v, want the start %v", firesAt(again), start)
	}
	// Set for the start and fired an hour before it by this clock: a
	// clock an hour behind the server's. At the start it would fire at
	// once again, round after round for the hour: as far past it instead.
	if err := early.FireTimer(ctxT(t), tm, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	again = scheduled(t, w, id, tm.GetTimerId())
	if want := start.Add(time.Hour); !firesAt(again).Equal(want) {
		t.Errorf("fired an hour early by a clock behind: scheduled again for %v, want %v", firesAt(again), want)
	}
	if n := len(ofType(w.events(t, id), "LeadReassigned")); n != 0 {
		t.Errorf("handed on %d times before the absence started", n)
	}
}

// An absence that starts while the lead is merged into another finds
// nothing to hand on; the unmerge gives the lead back to its rep, who is
// away, and hands it on then.
func TestUnmergedLeadIsHandedOnFromAnAbsentRep(t *testing.T) {
	w, s := withAcceptSLA(t, time.Hour, eventv1.SLAEscalation_SLA_ESCALATION_MANAGER)
	id := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	before := w.state(t, id)
	survivor := uuid.NewString()
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: dach(10)}, intakeActor)
	w.merge(t, survivor, id)
	w.settle(t)

	absence(t, s.client, owner, time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour))
	time.Sleep(time.Second)
	settleTimers(t, w)
	if n := len(ofType(w.events(t, id), "LeadReassigned")); n != 0 {
		t.Fatalf("a merged lead was handed on %d times", n)
	}
	w.write(t, id, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: before.Status, Owner: before.Owner, Due: before.Deadline},
		&eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: id, Reason: "two people"}, intakeActor)
	w.waitFor(t, id, "LeadReassigned", 1)
	if moved := outOfOffice(t, w.events(t, id)); len(moved) != 1 || moved[0].GetFrom().GetId() != owner {
		t.Fatalf("handed on %v, want once, from %s", moved, owner)
	}
}

// An absence in the team's closed hours takes nothing from the rep and
// hands on nothing; once the team's hours change to cover it, the lead is
// handed on at its start (here at once: it has started).
func TestTeamHoursThatMeetAnAbsenceHandItOn(t *testing.T) {
	w, s := withAcceptSLA(t, time.Hour, eventv1.SLAEscalation_SLA_ESCALATION_MANAGER)
	ctx := ctxT(t)
	now := time.Now()
	zone := fmt.Sprintf("Etc/GMT%+d", -(12 - now.UTC().Hour()))
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	local := now.In(loc)
	// Every day; closed from now for two hours, else open from from.
	hours := func(from time.Time) *eventv1.WorkingHours {
		h := &eventv1.WorkingHours{TimeZone: zone}
		for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_SUNDAY; d++ {
			h.Days = append(h.Days, &eventv1.WorkingDay{Day: d, Start: from.Format("15:04"), End: local.Add(4 * time.Hour).Format("15:04")})
		}
		return h
	}
	team := func(h *eventv1.WorkingHours) {
		t.Helper()
		if _, err := s.client.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: "us", Name: "US", Hours: h}, ChangedBy: ops}); err != nil {
			t.Fatal(err)
		}
	}
	team(hours(local.Add(2 * time.Hour)))
	// acme's owner, dan of team us, takes its leads at any hour.
	p := dach(50)
	p.EmailDomain = "acme.example"
	id := w.mql(t, p)
	if owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0]); owner != "dan" {
		t.Fatalf("routed to %s, want acme's owner dan", owner)
	}
	absence(t, s.client, "dan", now, now.Add(90*time.Minute))
	time.Sleep(time.Second)
	settleTimers(t, w)
	if n := len(ofType(w.events(t, id), "LeadReassigned")); n != 0 {
		t.Fatalf("handed on %d times for an absence in closed hours", n)
	}

	team(hours(local.Add(-time.Hour)))
	w.waitFor(t, id, "LeadReassigned", 1)
	if moved := outOfOffice(t, w.events(t, id)); len(moved) != 1 || moved[0].GetFrom().GetId() != "dan" || moved[0].GetDecision().GetPoolId() != "dach" {
		t.Fatalf("handed on %v, want once, from dan to the next rep of pool dach, the territory's", moved)
	}
}

// cancelAfterAppend is the store whose routing appends end the caller's
// request right after they are stored, as a client that gives up does.
type cancelAfterAppend struct {
	app.Store
	cancel context.CancelFunc
}

func (s cancelAfterAppend) Routing() app.Subject { return routingCancel{s.Store.Routing(), s.cancel} }

type routingCancel struct {
	app.Subject
	cancel context.CancelFunc
}

func (r routingCancel) Append(ctx context.Context, expected uint64, ev *eventv1.Event) (uint64, error) {
	seq, err := r.Subject.Append(ctx, expected, ev)
	r.cancel()
	return seq, err
}

// An absence stored for a rep holding unaccepted leads schedules their
// hand-ons even when its caller gives up the moment it is stored: the
// stored change's work is not the request's to cancel.
func TestAnAbsenceStoredSchedulesItsHandOnsWhateverTheCaller(t *testing.T) {
	w, s := withAcceptSLA(t, time.Hour, eventv1.SLAEscalation_SLA_ESCALATION_MANAGER)
	id := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	w.settle(t)
	s.stop()
	ctx, cancel := context.WithCancel(ctxT(t))
	a := w.appOn(t, adapters.NewLeads(w.store), cancelAfterAppend{adapters.NewStore(w.store, w.nats.JS), cancel})
	start := time.Now().Add(10 * time.Minute)
	_, _ = a.ChangeRouting(ctx, app.ChangeRouting{Field: "out_of_office", By: ops, Change: &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_OutOfOffice{
		OutOfOffice: &eventv1.OutOfOffice{RepId: owner, Absences: []*eventv1.Absence{{From: timestamppb.New(start), Until: timestamppb.New(start.Add(24 * time.Hour))}}}}}}, envelope.Meta{})
	if ctx.Err() == nil {
		t.Fatal("the change was not stored")
	}
	timers, err := w.nats.JS.Stream(ctxT(t), "HANDOFF_TIMERS")
	if err != nil {
		t.Fatal(err)
	}
	tm := absentTimer(t, w, id, start)
	if _, err := timers.GetLastMsgForSubject(ctxT(t), fmt.Sprintf("handoff.timer.at.%d.%s.%s", eventstore.Partition(id), id, tm.GetTimerId())); err != nil {
		t.Fatalf("no hand-on scheduled for %s's lead: %v", owner, err)
	}
}

// An absence stored by a process killed (SIGKILL) before it scheduled
// its hand-ons: the routing group has the next process do them.
func TestAnAbsenceStoredByAKilledProcessIsHandedOn(t *testing.T) {
	w, s := withAcceptSLA(t, time.Hour, eventv1.SLAEscalation_SLA_ESCALATION_MANAGER)
	id := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	w.settle(t)
	s.stop()
	addr := freeAddr(t)
	child := startStalling(t, w, addr, app.AfterRoutingStored)
	c := dial(t, addr, w.nats.TLS.Dial())
	waitServing(t, c)
	go func() {
		away := []*eventv1.Absence{{From: timestamppb.New(time.Now().Add(-time.Minute)), Until: timestamppb.New(time.Now().Add(24 * time.Hour))}}
		_, _ = c.SetOutOfOffice(context.Background(), &handoffv1.SetOutOfOfficeRequest{OutOfOffice: &eventv1.OutOfOffice{RepId: owner, Absences: away}, ChangedBy: ops})
	}()
	child.Next(t, "stalled", 30*time.Second)
	child.Kill(t)
	w.start(t)
	moved := w.waitFor(t, id, "LeadReassigned", 1)[0].GetLeadReassigned()
	if moved.GetFrom().GetId() != owner || moved.GetTo().GetId() == owner {
		t.Fatalf("handed from %v to %v, want away from %s", moved.GetFrom(), moved.GetTo(), owner)
	}
}

// A routing retry handled before its time by its replica's clock (behind
// the server's), that finds nobody until that time, asks for the next
// try as far past it as the clock was early, instead of at that time,
// which the server would fire at once, round after round; that try finds
// the rep back.
func TestRouteRetryFiredEarlyWaits(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	back := time.Now().Add(time.Hour).Truncate(time.Second)
	away := []*eventv1.Absence{{From: timestamppb.New(time.Now().Add(-time.Hour)), Until: timestamppb.New(back)}}
	for _, r := range []string{"ann", "bob", "cat"} {
		if _, err := s.client.SetOutOfOffice(ctxT(t), &handoffv1.SetOutOfOfficeRequest{OutOfOffice: &eventv1.OutOfOffice{RepId: r, Absences: away}, ChangedBy: ops}); err != nil {
			t.Fatal(err)
		}
	}
	id := w.mql(t, dach(50))
	w.waitFor(t, id, "LeadQueued", 1)
	w.settle(t)
	s.stop()

	step := lastOf(t, w, id, func(ev *eventv1.Event) bool { return ev.GetLeadQueued() != nil })
	// The retry the queue asked for when the reps are back.
	due := app.TimerID(step.Event.GetEventId(), eventv1.SLAKind_SLA_KIND_ROUTE, eventv1.TimerPhase_TIMER_PHASE_DUE)
	tm := &eventv1.SLATimer{TimerId: due + "-1", LeadId: id, Sla: eventv1.SLAKind_SLA_KIND_ROUTE, Phase: eventv1.TimerPhase_TIMER_PHASE_DUE, Attempt: 1,
		StepEventId: step.Event.GetEventId(), StepSequence: step.Seq, DueAt: step.Event.GetLifecycle().GetDeadline(), FireAt: timestamppb.New(back)}
	behind := func(by time.Time) *app.App {
		return w.app(t, adapters.NewLeads(w.store), app.WithClock(func() time.Time { return by }))
	}
	if err := behind(back.Add(-2*time.Second)).FireTimer(ctxT(t), tm, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	next := scheduled(t, w, id, due+"-2")
	if want := back.Add(2 * time.Second); !next.GetFireAt().AsTime().Equal(want) {
		t.Fatalf("next try at %v, want %v (2 s past its time)", next.GetFireAt().AsTime(), want)
	}
	// The server fires it at its time; this clock, 2 s behind, shows
	// the reps back.
	if err := behind(back).FireTimer(ctxT(t), next, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if n := len(ofType(w.events(t, id), "LeadAssigned")); n != 1 {
		t.Fatalf("%d assignments after the second try, want 1", n)
	}
}

// scheduled is the timer of leadID scheduled last under timerID.
func scheduled(t *testing.T, w *world, leadID, timerID string) *eventv1.SLATimer {
	t.Helper()
	st, err := w.nats.JS.Stream(ctxT(t), "HANDOFF_TIMERS")
	if err != nil {
		t.Fatal(err)
	}
	last, err := st.GetLastMsgForSubject(ctxT(t), fmt.Sprintf("handoff.timer.at.%d.%s.%s", eventstore.Partition(leadID), leadID, timerID))
	if err != nil {
		t.Fatalf("timer %s is not scheduled: %v", timerID, err)
	}
	tm, err := app.DecodeTimer(last.Data)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// firesAt is when the server fires a scheduled timer.
func firesAt(tm *eventv1.SLATimer) time.Time {
	if s := tm.GetScheduledAt(); s != nil && s.AsTime().After(tm.GetFireAt().AsTime()) {
		return s.AsTime()
	}
	return tm.GetFireAt().AsTime()
}

// lastOf is the lead's last event that is is true of.
func lastOf(t *testing.T, w *world, leadID string, is func(*eventv1.Event) bool) eventstore.Record {
	t.Helper()
	recs, err := w.store.Load(ctxT(t), eventstore.LeadSubject(leadID))
	if err != nil {
		t.Fatal(err)
	}
	var last eventstore.Record
	for _, r := range recs {
		if is(r.Event) {
			last = r
		}
	}
	return last
}
