package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/handoff/adapters"
	"github.com/leadflow/leadflow/services/handoff/app"
	"github.com/leadflow/leadflow/services/handoff/ports"
)

// TestMain doubles as a handoff process: with HANDOFF_CHILD_NATS set, the
// test binary runs the service against that server, on
// HANDOFF_CHILD_ADDR, until it is signalled or killed; with
// HANDOFF_CHILD_STALL naming a crash point (app.CrashPoint), it stops
// for good there, printing "stalled <lead>".
func TestMain(m *testing.M) {
	if u := os.Getenv("HANDOFF_CHILD_NATS"); u != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		cfg := testConfig(u)
		cfg.Addr = os.Getenv("HANDOFF_CHILD_ADDR")
		if stallAt := app.CrashPoint(os.Getenv("HANDOFF_CHILD_STALL")); stallAt != "" {
			cfg.crashPoints = func(p app.CrashPoint, lead string) {
				if p == stallAt {
					fmt.Printf("stalled %s\n", lead)
					select {} // until killed
				}
			}
		}
		if err := run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// An assigned lead nobody accepts: SLAWarned before the deadline,
// SLABreached at it, and the breach escalates by policy: to the next rep
// of the pool (never one who held the lead), then, the pool exhausted, to
// the team manager's queue, where no rep may act on it; a breach there is
// recorded and goes nowhere. Each event happens once. The manager hands
// the lead on to a rep, who accepts it.
func TestSLAEscalation(t *testing.T) { testSLAEscalation(t, newWorld) }

func testSLAEscalation(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	slaPolicy(t, s.client, 3*time.Second, 4*time.Second, 2*time.Second, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP)
	id := w.mql(t, dach(50))
	w.waitFor(t, id, "SLABreached", 4)
	time.Sleep(3 * time.Second) // a duplicate or a further escalation would show now
	evs := w.events(t, id)

	var owners []string
	for _, ev := range evs {
		switch p := ev.GetPayload().(type) {
		case *eventv1.Event_LeadAssigned:
			owners = append(owners, p.LeadAssigned.GetOwner().GetId())
		case *eventv1.Event_LeadReassigned:
			owners = append(owners, p.LeadReassigned.GetTo().GetId())
			if p.LeadReassigned.GetCause() != eventv1.ReassignCause_REASSIGN_CAUSE_ESCALATION {
				t.Errorf("reassignment not by escalation: %v", p.LeadReassigned)
			}
		}
	}
	if fmt.Sprint(owners) != "[ann bob cat manager:emea]" {
		t.Fatalf("owners %v, want ann, then the pool's next reps, then manager mia's queue", owners)
	}
	warned, breached := ofType(evs, "SLAWarned"), ofType(evs, "SLABreached")
	if len(warned) != 4 || len(breached) != 4 {
		t.Fatalf("%d warnings and %d breaches for 4 owners", len(warned), len(breached))
	}
	wantEsc := []eventv1.SLAEscalation{eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP,
		eventv1.SLAEscalation_SLA_ESCALATION_MANAGER, eventv1.SLAEscalation_SLA_ESCALATION_NONE}
	byID := map[string]*eventv1.Event{}
	for _, ev := range evs {
		byID[ev.GetEventId()] = ev
	}
	for i, b := range breached {
		sb := b.GetSlaBreached()
		if sb.GetSla() != eventv1.SLAKind_SLA_KIND_ACCEPT || sb.GetEscalation() != wantEsc[i] || sb.GetOwner().GetId() != owners[i] {
			t.Errorf("breach %d: %v", i, sb)
		}
		if w := warned[i].GetSlaWarned(); w.GetOwner().GetId() != owners[i] || w.GetStepEventId() != sb.GetStepEventId() || !w.GetDueAt().AsTime().Equal(sb.GetDueAt().AsTime()) {
			t.Errorf("warning %d: %v, breach %v", i, w, sb)
		}
		if b.GetRecordedAt().AsTime().Before(sb.GetDueAt().AsTime()) {
			t.Errorf("breach %d recorded %v before its deadline %v", i, b.GetRecordedAt().AsTime(), sb.GetDueAt().AsTime())
		}
	}
	for _, ev := range ofType(evs, "LeadReassigned") {
		if cause := byID[ev.GetCausationId()]; cause.GetEventType() != "SLABreached" {
			t.Errorf("reassignment caused by %v", cause.GetEventType())
		}
	}
	queue := lifecycle.Owner{Kind: lifecycle.OwnerQueue, ID: "manager:emea"}
	if st := w.state(t, id); st.Status != lifecycle.StatusAssigned || st.Owner != queue || st.Deadline.IsZero() {
		t.Fatalf("after the escalations: %+v", st)
	}
	if r := last(ofType(evs, "LeadReassigned")).GetLeadReassigned(); r.GetTo().GetKind() != eventv1.OwnerKind_OWNER_KIND_QUEUE ||
		r.GetDecision().GetFallbackQueue() != "manager:emea" || r.GetAcceptBy() == nil {
		t.Errorf("escalation to the manager's queue: %v", r)
	}

	// In the manager's queue no rep may take the lead, not even the
	// manager: the manager hands it on.
	ctx := ctxT(t)
	for _, rep := range []string{"cat", "mia"} {
		_, err := s.client.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: rep, RequestId: "acc-" + rep})
		wantCode(t, err, codes.FailedPrecondition, "")
		if !strings.Contains(err.Error(), "queue manager:emea") {
			t.Errorf("refusal does not name the queue: %v", err)
		}
	}
	if _, err := s.client.ReassignLead(ctx, &handoffv1.ReassignLeadRequest{LeadId: id, ToRepId: "bob", RequestId: "hand-on",
		Reason: "bob has room now", ReassignedBy: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "mia", Team: eventv1.Team_TEAM_SALES}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: "bob", RequestId: "acc-bob"}); err != nil {
		t.Fatal(err)
	}
	if st := w.state(t, id); st.Status != lifecycle.StatusAccepted || st.Owner.ID != "bob" {
		t.Errorf("handed on and accepted: %+v", st)
	}
}

// A timer whose step is over does nothing; a timer fired twice acts once;
// accepted, then every attempt the SLA asks for made without reaching the
// lead, the lead goes back to nurture.
func TestTimersNoOpAndAttemptsExhausted(t *testing.T) {
	w := newWorld(t)
	w.keepFired = true // countFired
	s := w.start(t)
	routingSetup(t, s.client, 10)
	slaPolicy(t, s.client, 2*time.Second, 2*time.Second, time.Second, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP)
	ctx := ctxT(t)
	id := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	acc, err := s.client.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := s.client.LogContactAttempt(ctx, &handoffv1.LogContactAttemptRequest{LeadId: id, RepId: owner, RequestId: fmt.Sprint("c", i),
			Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER}); err != nil {
			t.Fatal(err)
		}
	}
	// The accept warning and deadline, and the first contact's deadline at
	// least: only once they were handled does their silence mean anything.
	eventually(t, 15*time.Second, func() bool { return countFired(t, w, id) >= 3 }, "fewer than 3 timers fired")
	settleTimers(t, w)
	if evs := w.events(t, id); len(ofType(evs, "SLABreached"))+len(ofType(evs, "SLAWarned")) != 0 {
		t.Fatalf("timers of steps already done acted: %v", ofType(evs, "SLABreached"))
	}

	// The attempts window is a working day; fire a deadline of now
	// instead, twice, as the server does when the schedule comes due.
	accepted := ofType(w.events(t, id), "LeadAccepted")[0]
	tm := &eventv1.SLATimer{TimerId: app.TimerID(accepted.GetEventId(), eventv1.SLAKind_SLA_KIND_FOLLOW_UP, eventv1.TimerPhase_TIMER_PHASE_DUE),
		LeadId: id, Sla: eventv1.SLAKind_SLA_KIND_FOLLOW_UP, Phase: eventv1.TimerPhase_TIMER_PHASE_DUE, StepEventId: accepted.GetEventId(),
		DueAt: timestamppb.Now(), FireAt: timestamppb.Now()}
	fire(t, w, tm)
	fire(t, w, tm)
	rec := w.waitFor(t, id, "LeadRecycled", 1)[0]
	time.Sleep(time.Second)
	evs := w.events(t, id)
	if n := len(ofType(evs, "LeadRecycled")); n != 1 {
		t.Fatalf("a timer fired twice recycled %d times", n)
	}
	if r := rec.GetLeadRecycled(); r.GetCause() != eventv1.RecycleCause_RECYCLE_CAUSE_ATTEMPTS_EXHAUSTED || rec.GetCausationId() != tm.GetTimerId() {
		t.Errorf("recycled: %v caused by %s", r, rec.GetCausationId())
	}
	// It says what every LeadRecycled says: the segment, score and
	// journey it left.
	assigned := ofType(evs, "LeadAssigned")[0]
	if r, before := rec.GetLeadRecycled(), lifecycle.FromProto(accepted.GetLifecycle()); r.GetSegment() == "" || r.GetSegment() != assigned.GetLeadAssigned().GetSegment() ||
		r.GetScore() != 80 || r.GetScore() != int32(before.Score) || r.GetCycle() != uint32(before.Cycle) || r.GetCycle() != 1 {
		t.Errorf("recycled %v; want segment %q, score 80, cycle 1", r, assigned.GetLeadAssigned().GetSegment())
	}
	if st := w.state(t, id); st.Status != lifecycle.StatusRecycled || st.Owner != lifecycle.QueueNurture || st.Deadline.IsZero() {
		t.Errorf("after exhaustion: %+v", st)
	}
	if acc.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_ACCEPTED {
		t.Errorf("accept: %v", acc)
	}
}

// A deadline timer the server fires before its deadline by the service's
// clock (the server's clock runs ahead) acts only once the deadline has
// come: the breach is never stamped before it.
func TestDeadlineFiredEarlyWaitsForIt(t *testing.T) {
	w, _, id, assigned := assignedUnderAnHour(t)
	due := time.Now().Add(3 * time.Second)
	fire(t, w, acceptDue(assigned, due))
	b := w.waitFor(t, id, "SLABreached", 1)[0]
	if at := b.GetRecordedAt().AsTime(); at.Before(due) {
		t.Errorf("breach recorded %v, before its deadline %v", at, due)
	}
	w.waitFor(t, id, "LeadReassigned", 1)
}

// A warning the server fires before its time by the service's clock
// waits for it too: it was written as early as the clocks differ.
func TestWarningFiredEarlyWaitsForIt(t *testing.T) {
	w, _, id, assigned := assignedUnderAnHour(t)
	warnAt := time.Now().Add(3 * time.Second)
	tm := acceptDue(assigned, time.Now().Add(time.Hour))
	tm.Phase, tm.FireAt = eventv1.TimerPhase_TIMER_PHASE_WARN, timestamppb.New(warnAt)
	tm.TimerId = app.TimerID(assigned.GetEventId(), eventv1.SLAKind_SLA_KIND_ACCEPT, eventv1.TimerPhase_TIMER_PHASE_WARN)
	fire(t, w, tm)
	warned := w.waitFor(t, id, "SLAWarned", 1)[0]
	if at := warned.GetRecordedAt().AsTime(); at.Before(warnAt) {
		t.Errorf("warning recorded %v, before its time %v", at, warnAt)
	}
}

// A warning fired early by a replica whose clock is steadily behind the
// server's waits once, and warns when it fires again: judged against
// its own time, not the later one it waited for, which the same clock
// would find early again, round after round until the deadline.
func TestWarningOnAClockSteadilyBehindWarnsAfterOneWait(t *testing.T) {
	w, s, id, assigned := assignedUnderAnHour(t)
	s.stop() // only the replicas below handle the timer
	warnAt := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	tm := acceptDue(assigned, warnAt.Add(30*time.Minute))
	tm.Phase, tm.FireAt = eventv1.TimerPhase_TIMER_PHASE_WARN, timestamppb.New(warnAt)
	tm.TimerId = app.TimerID(assigned.GetEventId(), eventv1.SLAKind_SLA_KIND_ACCEPT, eventv1.TimerPhase_TIMER_PHASE_WARN)
	const skew = 2 * time.Second
	// The server fires at warnAt; this replica reads warnAt - skew.
	first := w.app(t, adapters.NewLeads(w.store), app.WithClock(func() time.Time { return warnAt.Add(-skew) }))
	if err := first.FireTimer(ctxT(t), tm, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	again := scheduled(t, w, id, tm.GetTimerId())
	if want := warnAt.Add(skew); !firesAt(again).Equal(want) {
		t.Fatalf("put back for %v, want %v (as far past its time as it came early)", firesAt(again), want)
	}
	// The server fires it then; the same clock reads warnAt.
	second := w.app(t, adapters.NewLeads(w.store), app.WithClock(func() time.Time { return warnAt }))
	if err := second.FireTimer(ctxT(t), again, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if n := len(ofType(w.events(t, id), "SLAWarned")); n != 1 {
		t.Fatalf("%d warnings after the second firing, want 1 (put back for %v)", n, firesAt(scheduled(t, w, id, tm.GetTimerId())))
	}
}

// Never contacted, a lead whose attempts window would have closed before
// its first contact is due waits for that: both end together, and only
// the first-contact SLA breaches.
func TestAttemptsWindowWaitsForFirstContact(t *testing.T) {
	w := newWorld(t)
	w.keepFired = true // countFired
	s := w.start(t)
	routingSetup(t, s.client, 10)
	// One working day of attempts (24 hours around the clock), 48 hours
	// for the first contact.
	slaPolicy(t, s.client, time.Hour, 48*time.Hour, 10*time.Minute, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP)
	id := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	if _, err := s.client.AcceptLead(ctxT(t), &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "a"}); err != nil {
		t.Fatal(err)
	}
	accepted := ofType(w.events(t, id), "LeadAccepted")[0]
	la := accepted.GetLeadAccepted()
	if !la.GetAttemptsDueAt().AsTime().Equal(la.GetContactBy().AsTime()) || !la.GetAttemptsWarnAt().AsTime().Equal(la.GetContactWarnAt().AsTime()) {
		t.Errorf("attempts due %v (warned %v), first contact due %v (warned %v): want the same", la.GetAttemptsDueAt().AsTime(),
			la.GetAttemptsWarnAt().AsTime(), la.GetContactBy().AsTime(), la.GetContactWarnAt().AsTime())
	}
	// The attempts window of a lead accepted before, which ended first.
	step := func(kind eventv1.SLAKind) *eventv1.SLATimer {
		return &eventv1.SLATimer{TimerId: app.TimerID(accepted.GetEventId(), kind, eventv1.TimerPhase_TIMER_PHASE_DUE), LeadId: id, Sla: kind,
			Phase: eventv1.TimerPhase_TIMER_PHASE_DUE, StepEventId: accepted.GetEventId(), DueAt: timestamppb.Now(), FireAt: timestamppb.Now()}
	}
	// The window's own schedule, as accepting made it.
	fu := step(eventv1.SLAKind_SLA_KIND_FOLLOW_UP)
	timers, err := w.nats.JS.Stream(ctxT(t), "HANDOFF_TIMERS")
	if err != nil {
		t.Fatal(err)
	}
	at := fmt.Sprintf("handoff.timer.at.%d.%s.%s", eventstore.Partition(id), id, fu.GetTimerId())
	// The lead consumer schedules it after reading LeadAccepted, not the
	// accept call itself.
	var first *jetstream.RawStreamMsg
	eventually(t, 15*time.Second, func() bool {
		first, err = timers.GetLastMsgForSubject(ctxT(t), at)
		return err == nil
	}, "no schedule for the attempts window")
	fire(t, w, fu)
	eventually(t, 15*time.Second, func() bool { return countFired(t, w, id) >= 1 }, "the timer did not fire")
	settleTimers(t, w)
	if b := ofType(w.events(t, id), "SLABreached"); len(b) != 0 {
		t.Fatalf("the attempts window breached a lead whose first contact is not due: %v", b[0].GetSlaBreached())
	}
	// It is judged again when first contact is due: attempts made before
	// then (no FIRST_CONTACT breach follows them) must not leave the lead
	// with no timer.
	sched, err := timers.GetLastMsgForSubject(ctxT(t), at)
	if err != nil || sched.Sequence <= first.Sequence {
		t.Fatalf("the attempts window was not scheduled again (%v)", err)
	}
	var again eventv1.SLATimer
	if err := proto.Unmarshal(sched.Data, &again); err != nil || !again.GetDueAt().AsTime().Equal(la.GetContactBy().AsTime()) {
		t.Fatalf("scheduled again due %v (%v), want at first contact's %v", again.GetDueAt().AsTime(), err, la.GetContactBy().AsTime())
	}
	fire(t, w, step(eventv1.SLAKind_SLA_KIND_FIRST_CONTACT))
	if b := w.waitFor(t, id, "SLABreached", 1)[0].GetSlaBreached(); b.GetSla() != eventv1.SLAKind_SLA_KIND_FIRST_CONTACT {
		t.Errorf("breach: %v", b)
	}
}

// Timers survive a kill -9 of the service: a lead is assigned, the service
// dies before its timers fire, the timers fire into the stream while it
// is dead, and the next process acts on each exactly once.
func TestTimersAcrossServiceKill(t *testing.T) {
	w := newWorld(t)
	addr := freeAddr(t)
	p1 := startChild(t, w, addr)
	c := dial(t, addr, w.nats.TLS.Dial())
	waitServing(t, c)
	routingSetup(t, c, 10)
	slaPolicy(t, c, 6*time.Second, 8*time.Second, 3*time.Second, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP)
	id := w.mql(t, dach(50))
	w.waitFor(t, id, "LeadAssigned", 1)
	eventually(t, 10*time.Second, func() bool { return countScheduled(t, w, id) == 2 }, "the accept timers were not scheduled")
	p1.Kill(t)
	eventually(t, 15*time.Second, func() bool { return countFired(t, w, id) >= 2 }, "the timers did not fire while the service was dead")
	if n := len(w.events(t, id)); n != 4 {
		t.Fatalf("something acted on the lead while no service ran: %d events", n)
	}

	startChild(t, w, addr)
	w.waitFor(t, id, "LeadReassigned", 1)
	time.Sleep(2 * time.Second)
	evs := w.events(t, id)
	// The warning came due while no service ran: past the deadline it
	// would warn of nothing, so only the breach is written.
	if len(ofType(evs, "SLAWarned")) != 0 || len(ofType(evs, "SLABreached")) != 1 || len(ofType(evs, "LeadReassigned")) != 1 {
		t.Fatalf("after the restart: %d warnings, %d breaches, %d reassignments", len(ofType(evs, "SLAWarned")), len(ofType(evs, "SLABreached")), len(ofType(evs, "LeadReassigned")))
	}
}

// Timers survive a NATS outage: the server is down when they come due,
// and fires them once it is back; each acts once.
func TestTimersAcrossNATSRestart(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	slaPolicy(t, s.client, 4*time.Second, 6*time.Second, 2*time.Second, eventv1.SLAEscalation_SLA_ESCALATION_MANAGER)
	id := w.mql(t, dach(50))
	w.waitFor(t, id, "LeadAssigned", 1)
	eventually(t, 10*time.Second, func() bool { return countScheduled(t, w, id) == 2 }, "the accept timers were not scheduled")

	u, err := url.Parse(w.nats.Server.URL())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	w.nats.Server.Shutdown()
	time.Sleep(5 * time.Second) // both timers come due while the server is down
	srv, err := natsserver.Start(natsserver.Config{Dir: w.nats.Dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	w.nats.Server = srv
	eventually(t, 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := w.nats.JS.AccountInfo(ctx)
		return err == nil
	}, "jetstream not back")

	w.waitFor(t, id, "LeadReassigned", 1)
	time.Sleep(2 * time.Second)
	evs := w.events(t, id)
	// The rep's step only: the manager's queue has timers of its own,
	// whose warning may come within the wait.
	var warned, breached int
	for _, ev := range evs {
		if ev.GetSlaWarned().GetOwner().GetKind() == eventv1.OwnerKind_OWNER_KIND_REP {
			warned++
		}
		if ev.GetSlaBreached().GetOwner().GetKind() == eventv1.OwnerKind_OWNER_KIND_REP {
			breached++
		}
	}
	reassigned := ofType(evs, "LeadReassigned")
	if warned != 0 || breached != 1 || len(reassigned) != 1 { // the warning fired past its deadline
		t.Fatalf("after the outage: %d warnings, %d breaches, %d reassignments", warned, breached, len(reassigned))
	}
	if to := reassigned[0].GetLeadReassigned().GetTo(); to.GetId() != "manager:emea" || to.GetKind() != eventv1.OwnerKind_OWNER_KIND_QUEUE {
		t.Errorf("MANAGER escalation went to %v", to)
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startChild runs the service as a process of its own (this test binary,
// see TestMain), killed when the test ends.
func startChild(t testing.TB, w *world, addr string) *testenv.Child {
	t.Helper()
	return testenv.StartChild(t, "HANDOFF_CHILD_NATS="+w.nats.Server.URL(), "HANDOFF_CHILD_ADDR="+addr)
}

func waitServing(t testing.TB, c handoffv1.HandoffServiceClient) {
	t.Helper()
	eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.GetRouting(ctx, &handoffv1.GetRoutingRequest{})
		return err == nil
	}, "the child service did not start")
}

// countScheduled is how many schedules wait for a lead; countFired how
// many fired copies its timers left (on a world that keeps them).
func countScheduled(t testing.TB, w *world, leadID string) int {
	return countSubjects(t, w, "handoff.timer.at.*."+leadID+".*")
}

func countFired(t testing.TB, w *world, leadID string) int {
	return countSubjects(t, w, "handoff.timer.fired.*."+leadID)
}

// settleTimers waits until the timer consumers handled every fired timer.
func settleTimers(t testing.TB, w *world) {
	t.Helper()
	eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for p := range eventstore.Partitions {
			c, err := w.nats.JS.Consumer(ctx, "HANDOFF_TIMERS", consume.Durable(ports.TimerGroup, p, eventstore.Partitions))
			if err != nil {
				return false
			}
			if ci := c.CachedInfo(); ci.NumPending != 0 || ci.NumAckPending != 0 {
				return false
			}
		}
		return true
	}, "the timer consumer did not settle")
}

func countSubjects(t testing.TB, w *world, filter string) int {
	t.Helper()
	ctx := ctxT(t)
	st, err := w.nats.JS.Stream(ctx, "HANDOFF_TIMERS")
	if err != nil {
		return -1
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return -1
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// assignedUnderAnHour routes a DACH lead under an SLA policy of an hour
// to accept, breaches escalating to the pool's next rep.
func assignedUnderAnHour(t *testing.T) (w *world, s *service, id string, assigned *eventv1.Event) {
	t.Helper()
	w = newWorld(t)
	s = w.start(t)
	routingSetup(t, s.client, 10)
	slaPolicy(t, s.client, time.Hour, 2*time.Hour, 10*time.Minute, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP)
	id = w.mql(t, dach(50))
	return w, s, id, w.waitFor(t, id, "LeadAssigned", 1)[0]
}

// acceptDue is the ACCEPT deadline timer of assigned's step, due at due
// and firing now.
func acceptDue(assigned *eventv1.Event, due time.Time) *eventv1.SLATimer {
	return &eventv1.SLATimer{TimerId: app.TimerID(assigned.GetEventId(), eventv1.SLAKind_SLA_KIND_ACCEPT, eventv1.TimerPhase_TIMER_PHASE_DUE),
		LeadId: assigned.GetLeadId(), Sla: eventv1.SLAKind_SLA_KIND_ACCEPT, Phase: eventv1.TimerPhase_TIMER_PHASE_DUE, StepEventId: assigned.GetEventId(),
		DueAt: timestamppb.New(due), FireAt: timestamppb.Now()}
}

// fire stores a timer's fired copy, as the server does when its schedule
// comes due.
func fire(t testing.TB, w *world, tm *eventv1.SLATimer) {
	t.Helper()
	data, err := proto.Marshal(tm)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(fmt.Sprintf("handoff.timer.fired.%d.%s", eventstore.Partition(tm.GetLeadId()), tm.GetLeadId()))
	m.Data = data
	if _, err := w.nats.JS.PublishMsg(ctxT(t), m); err != nil {
		t.Fatal(err)
	}
}

// usTeamOffHours runs handoff with team "us" off shift until opens (an
// hour or more away) and the smb SLA policy: accept within 30 minutes,
// first contact within an hour, no attempts SLA, manager escalation.
func usTeamOffHours(t *testing.T) (w *world, s *service, ctx context.Context, opens time.Time) {
	t.Helper()
	w = newWorld(t)
	s = w.start(t)
	routingSetup(t, s.client, 10)
	ctx = ctxT(t)
	hours, opens := offHours(time.Now().UTC())
	if _, err := s.client.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: "us", Hours: hours}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.SetSLAPolicy(ctx, &handoffv1.SetSLAPolicyRequest{Policy: &eventv1.SLAPolicy{Segment: "smb",
		AcceptWithin: durationpb.New(30 * time.Minute), FirstContactWithin: durationpb.New(time.Hour), WarnBefore: durationpb.New(10 * time.Minute),
		Escalation: eventv1.SLAEscalation_SLA_ESCALATION_MANAGER}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	return w, s, ctx, opens
}

// SLA deadlines run in the owner's working hours: a lead given outside
// them (to its account's owner, who keeps account leads off hours) is due
// its acceptance SLA after the owner's next opening, not from now; a pool
// rep off shift is skipped.
func TestSLAInWorkingHours(t *testing.T) {
	w, _, _, opens := usTeamOffHours(t)
	id := w.mql(t, &eventv1.Profile{Country: "DE", Employees: 50, EmailDomain: "acme.example"})
	a := w.waitFor(t, id, "LeadAssigned", 1)[0].GetLeadAssigned()
	if a.GetOwner().GetId() != "dan" || !a.GetAcceptBy().AsTime().Equal(opens.Add(30*time.Minute)) || !a.GetWarnAt().AsTime().Equal(opens.Add(20*time.Minute)) {
		t.Errorf("off hours: owner %s, accept by %v, warn at %v; want dan, %v and %v", a.GetOwner().GetId(), a.GetAcceptBy().AsTime(), a.GetWarnAt().AsTime(),
			opens.Add(30*time.Minute), opens.Add(20*time.Minute))
	}
	// A pool rep off shift is skipped (dan is the us pool's only rep), and
	// routing tries again by the time the shift starts.
	q := w.mql(t, &eventv1.Profile{Country: "US", Industry: "software", EmailDomain: "startup.example"})
	lq := w.waitFor(t, q, "LeadQueued", 1)[0].GetLeadQueued()
	if c := lq.GetDecision().GetCandidates(); len(c) != 1 || c[0].GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_OUTSIDE_WORKING_HOURS ||
		lq.GetRetryAt().AsTime().After(opens) {
		t.Errorf("off shift: %v", lq)
	}
}

// offHours is an hour a day that starts at least an hour from now, in UTC,
// and when it next opens.
func offHours(now time.Time) (*eventv1.WorkingHours, time.Time) {
	start := now.Hour() + 2
	if start+1 > 24 {
		start = 1 // tomorrow 01:00, and now is 22:00 or later
	}
	hours := &eventv1.WorkingHours{TimeZone: "UTC"}
	for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_SUNDAY; d++ {
		hours.Days = append(hours.Days, &eventv1.WorkingDay{Day: d, Start: fmt.Sprintf("%02d:00", start), End: fmt.Sprintf("%02d:00", start+1)})
	}
	opens := time.Date(now.Year(), now.Month(), now.Day(), start, 0, 0, 0, time.UTC)
	if !opens.After(now) {
		opens = opens.AddDate(0, 0, 1)
	}
	return hours, opens
}

// The route clock waits while no rep of the lead's pool is on shift: a
// lead queued for that has its route deadline moved on by the wait,
// stamped on its state, and routing's retries do not breach it before.
func TestRouteClockWaitsForTheShift(t *testing.T) {
	w := newWorld(t)
	w.keepFired = true // countFired
	s := w.start(t)
	routingSetup(t, s.client, 10)
	hours, opens := offHours(time.Now().UTC())
	if _, err := s.client.PutTeam(ctxT(t), &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: "emea", Name: "EMEA", ManagerRepId: "mia", Hours: hours},
		ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: dach(50)}, intakeActor)
	// A minute, not seconds: routing must meet the lead before its
	// deadline for the wait to move it, on a loaded machine too.
	w.qualifyWithin(t, id, time.Minute)
	qe := w.waitFor(t, id, "LeadQueued", 1)[0]
	deadline := qe.GetLeadQueued().GetDeadline().AsTime()
	// What was left of the minute, from the opening on (an hour or more
	// away: without the wait the deadline would be long before it).
	if !deadline.After(opens) || deadline.After(opens.Add(time.Minute)) {
		t.Errorf("queued off shift: route deadline %v, want within a minute after the opening %v", deadline, opens)
	}
	if st := lifecycle.FromProto(qe.GetLifecycle()); !st.Deadline.Equal(deadline) {
		t.Errorf("the state is due %v, the queue's deadline %v", st.Deadline, deadline)
	}
	atQueued := countFired(t, w, id)
	eventually(t, 15*time.Second, func() bool { return countFired(t, w, id) >= atQueued+3 }, "routing did not retry")
	settleTimers(t, w)
	if b := ofType(w.events(t, id), "SLABreached"); len(b) != 0 {
		t.Errorf("route SLA breached off shift: %v", b[0].GetSlaBreached())
	}
	if st := w.state(t, id); !st.Deadline.Equal(deadline) {
		t.Errorf("after the retries, due %v, want %v", st.Deadline, deadline)
	}
}

// Once the rep reached the lead, or with no attempts SLA, the next touch
// is due within the first-contact interval of the rep's working hours,
// not around the clock.
func TestNextContactDueInWorkingHours(t *testing.T) {
	w, s, ctx, opens := usTeamOffHours(t) // no attempts SLA
	// acme's owner dan keeps the lead off hours.
	id := w.mql(t, &eventv1.Profile{Country: "DE", Employees: 50, EmailDomain: "acme.example"})
	if owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0]); owner != "dan" {
		t.Fatalf("assigned to %s", owner)
	}
	if _, err := s.client.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: "dan", RequestId: "a"}); err != nil {
		t.Fatal(err)
	}
	for i, o := range []eventv1.ContactOutcome{eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER, eventv1.ContactOutcome_CONTACT_OUTCOME_CONNECTED} {
		r, err := s.client.LogContactAttempt(ctx, &handoffv1.LogContactAttemptRequest{LeadId: id, RepId: "dan", RequestId: fmt.Sprint("c", i),
			Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: o})
		if err != nil {
			t.Fatal(err)
		}
		if due := r.GetLead().GetDeadline().AsTime(); !due.Equal(opens.Add(time.Hour)) {
			t.Errorf("after %s: due %v, want the end of dan's next working hour %v", o, due, opens.Add(time.Hour))
		}
	}
}

// An escalation to the next rep gives that rep the acceptance step in
// their own team's hours (it counted the breaching rep's): ann's team
// closes within half an hour and opens again in about a day, bob's never
// closes.
func TestEscalationCountsTheNewRepsHours(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	ctx := ctxT(t)
	now := time.Now().UTC()
	mins := now.Hour()*60 + now.Minute()
	clock := func(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }
	hours := &eventv1.WorkingHours{TimeZone: "UTC"}
	for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_SUNDAY; d++ {
		hours.Days = append(hours.Days, &eventv1.WorkingDay{Day: d, Start: clock(max(0, mins-60)), End: clock(min(24*60, mins+30))})
	}
	for _, call := range []func() error{
		func() error {
			_, err := s.client.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: "emea", Name: "EMEA", ManagerRepId: "mia", Hours: hours}, ChangedBy: ops})
			return err
		},
		func() error {
			_, err := s.client.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "bob", TeamId: "us", Capacity: 10, Active: true}, ChangedBy: ops})
			return err
		},
		func() error {
			_, err := s.client.PutPool(ctx, &handoffv1.PutPoolRequest{Pool: &eventv1.Pool{PoolId: "dach", Members: []*eventv1.PoolMember{
				{RepId: "ann", Weight: 1}, {RepId: "bob", Weight: 1}}}, ChangedBy: ops})
			return err
		},
	} {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	slaPolicy(t, s.client, 3*time.Hour, 5*time.Hour, 10*time.Minute, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP)
	id := w.mql(t, dach(50))
	assigned := w.waitFor(t, id, "LeadAssigned", 1)[0]
	// Its deadline, brought forward to now.
	fire(t, w, acceptDue(assigned, time.Now()))
	re := w.waitFor(t, id, "LeadReassigned", 1)[0]
	r := re.GetLeadReassigned()
	took := r.GetAcceptBy().AsTime().Sub(re.GetOccurredAt().AsTime())
	switch to := r.GetTo().GetId(); to {
	case "bob": // never off: three hours from now
		if took < 3*time.Hour-time.Minute || took > 3*time.Hour+time.Minute {
			t.Errorf("bob, who never closes, must accept within %v, want 3h", took)
		}
	case "ann": // closes within half an hour, opens again about a day on
		if took < 12*time.Hour {
			t.Errorf("ann, whose team closes soon, must accept within %v, want her next day's hours", took)
		}
	default:
		t.Fatalf("escalated to %q", to)
	}
}

// After a contact attempt that reached the lead, the next touch is due
// within the first-contact interval with timers behind it: SLAWarned
// before, SLABreached at it, escalated by the policy. An attempt logged
// in time ends the earlier attempt's step, and a conversion the last
// one's: their timers do nothing.
func TestNextTouchWarnsAndBreaches(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	slaPolicy(t, s.client, time.Hour, 6*time.Second, 3*time.Second, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP)
	ctx := ctxT(t)
	accepted := func(id string) string {
		owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
		if _, err := s.client.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "a"}); err != nil {
			t.Fatal(err)
		}
		return owner
	}
	contact := func(id, owner, req string, o eventv1.ContactOutcome) {
		if _, err := s.client.LogContactAttempt(ctx, &handoffv1.LogContactAttemptRequest{LeadId: id, RepId: owner, RequestId: req,
			Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: o}); err != nil {
			t.Fatal(err)
		}
	}
	id, closed, met := w.mql(t, dach(50)), w.mql(t, dach(50)), w.mql(t, dach(50))
	owner, closer, booker := accepted(id), accepted(closed), accepted(met)
	// A booked meeting is the next step: due, but not taken from its rep,
	// nor after a call to confirm it that found nobody.
	contact(met, booker, "c0", eventv1.ContactOutcome_CONTACT_OUTCOME_MEETING_BOOKED)
	contact(met, booker, "c1", eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER)
	contact(id, owner, "c0", eventv1.ContactOutcome_CONTACT_OUTCOME_CONNECTED)
	contact(id, owner, "c1", eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER)
	contact(closed, closer, "c0", eventv1.ContactOutcome_CONTACT_OUTCOME_CONNECTED)
	if _, err := s.client.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: closed, RepId: closer, RequestId: "o", Amount: eur(100), Stage: "discovery"}); err != nil {
		t.Fatal(err)
	}
	step := ofType(w.events(t, id), "ContactAttempted")[1]
	due := step.GetLifecycle().GetDeadline().AsTime()

	b := w.waitFor(t, id, "SLABreached", 1)[0]
	time.Sleep(2 * time.Second) // a duplicate would show now
	settleTimers(t, w)
	evs := w.events(t, id)
	warned, breached := ofType(evs, "SLAWarned"), ofType(evs, "SLABreached")
	if len(warned) != 1 || len(breached) != 1 {
		t.Fatalf("%d warnings and %d breaches, want one each, of the last attempt's step", len(warned), len(breached))
	}
	for _, sl := range []interface {
		GetSla() eventv1.SLAKind
		GetStepEventId() string
		GetOwner() *eventv1.Owner
		GetDueAt() *timestamppb.Timestamp
	}{warned[0].GetSlaWarned(), b.GetSlaBreached()} {
		if sl.GetSla() != eventv1.SLAKind_SLA_KIND_FOLLOW_UP || sl.GetStepEventId() != step.GetEventId() || sl.GetOwner().GetId() != owner ||
			!sl.GetDueAt().AsTime().Equal(due) {
			t.Errorf("%v, want FOLLOW_UP of step %s, owner %s, due %v", sl, step.GetEventId(), owner, due)
		}
	}
	if b.GetRecordedAt().AsTime().Before(due) || b.GetSlaBreached().GetEscalation() != eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP {
		t.Errorf("breach recorded %v (due %v): %v", b.GetRecordedAt().AsTime(), due, b.GetSlaBreached())
	}
	re := ofType(evs, "LeadReassigned")
	if len(re) != 1 || re[0].GetCausationId() != b.GetEventId() || re[0].GetLeadReassigned().GetTo().GetId() == owner {
		t.Fatalf("escalation: %v", re)
	}
	if st := w.state(t, id); st.Status != lifecycle.StatusAssigned || st.Owner.ID == owner {
		t.Errorf("after the breach: %+v", st)
	}
	if evs := w.events(t, closed); len(ofType(evs, "SLAWarned"))+len(ofType(evs, "SLABreached")) != 0 {
		t.Errorf("timers of a converted lead acted: %v", last(evs).GetEventType())
	}
	mevs := w.events(t, met)
	if st := w.state(t, met); len(ofType(mevs, "SLAWarned"))+len(ofType(mevs, "SLABreached"))+len(ofType(mevs, "LeadReassigned")) != 0 ||
		st.Owner.ID != booker || st.Deadline.IsZero() || time.Now().Before(st.Deadline) {
		t.Errorf("after a booked meeting, past its deadline %v: %v, owner %s, want no warning, breach or hand-on from %s",
			st.Deadline, last(mevs).GetEventType(), st.Owner.ID, booker)
	}
}

// The route clock waits off shift at every routing try, not only the
// first: a lead queued for capacity while its pool works, whose pool then
// goes off shift, has its route deadline moved on by the wait (once,
// however many retries come meanwhile), and does not breach overnight.
func TestRouteClockWaitsAtEveryTry(t *testing.T) {
	w := newWorld(t)
	w.keepFired = true // countFired
	s := w.start(t)
	routingSetup(t, s.client, 1)
	us := func() *eventv1.Profile {
		return &eventv1.Profile{Country: "US", Industry: "software", EmailDomain: uuid.NewString()[:8] + ".example"}
	}
	if owner := ownerOf(w.waitFor(t, w.mql(t, us()), "LeadAssigned", 1)[0]); owner != "dan" {
		t.Fatalf("assigned to %s", owner)
	}
	id := uuid.NewString()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: us()}, intakeActor)
	w.qualifyWithin(t, id, time.Minute)
	first := w.waitFor(t, id, "LeadQueued", 1)[0].GetLeadQueued()
	if c := first.GetDecision().GetCandidates(); len(c) != 1 || c[0].GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_AT_CAPACITY {
		t.Fatalf("queued: %v", first.GetDecision())
	}
	hours, opens := offHours(time.Now().UTC())
	if _, err := s.client.PutTeam(ctxT(t), &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: "us", Name: "US", Hours: hours}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	var deadline time.Time
	eventually(t, 20*time.Second, func() bool {
		deadline = w.state(t, id).Deadline
		return deadline.After(opens)
	}, "route deadline %v not moved past the opening %v", func() any { return deadline }, opens)
	if deadline.After(opens.Add(time.Minute)) {
		t.Errorf("route deadline %v, want within a minute after the opening %v", deadline, opens)
	}
	atMoved := countFired(t, w, id)
	eventually(t, 15*time.Second, func() bool { return countFired(t, w, id) >= atMoved+3 }, "routing did not retry")
	settleTimers(t, w)
	evs := w.events(t, id)
	if b := ofType(evs, "SLABreached"); len(b) != 0 {
		t.Errorf("route SLA breached off shift: %v", b[0].GetSlaBreached())
	}
	if st := w.state(t, id); !st.Deadline.Equal(deadline) || len(ofType(evs, "LeadQueued")) != 2 {
		t.Errorf("after the retries: due %v, want %v; %d LeadQueued, want 2", st.Deadline, deadline, len(ofType(evs, "LeadQueued")))
	}
}

// A contact attempt made once the attempts window's time has passed is
// due by the next touch, a step with FOLLOW_UP timers of its own, though
// the window never breached: it once got the deadline and no timer, and
// the lead sat ACCEPTED with no SLA. dan, alone in pool us with no
// manager, lets first contact (the window's end too) pass: that breach
// escalates to nobody; his attempt comes two days on.
func TestAttemptAfterTheWindowHasTimers(t *testing.T) {
	w, id, accepted := acceptedByDan(t)
	ctx := ctxT(t)
	if la := accepted.GetLeadAccepted(); !la.GetAttemptsDueAt().AsTime().Equal(la.GetContactBy().AsTime()) {
		t.Fatalf("attempts due %v, want with first contact %v", la.GetAttemptsDueAt().AsTime(), la.GetContactBy().AsTime())
	}
	// First contact's deadline, brought forward to now.
	fire(t, w, &eventv1.SLATimer{TimerId: app.TimerID(accepted.GetEventId(), eventv1.SLAKind_SLA_KIND_FIRST_CONTACT, eventv1.TimerPhase_TIMER_PHASE_DUE),
		LeadId: id, Sla: eventv1.SLAKind_SLA_KIND_FIRST_CONTACT, Phase: eventv1.TimerPhase_TIMER_PHASE_DUE, StepEventId: accepted.GetEventId(),
		DueAt: timestamppb.Now(), FireAt: timestamppb.Now()})
	if b := w.waitFor(t, id, "SLABreached", 1)[0].GetSlaBreached(); b.GetSla() != eventv1.SLAKind_SLA_KIND_FIRST_CONTACT ||
		b.GetEscalation() != eventv1.SLAEscalation_SLA_ESCALATION_NONE {
		t.Fatalf("breach: %v, want FIRST_CONTACT escalated to nobody", b)
	}

	later := w.app(t, adapters.NewLeads(w.store), app.WithClock(func() time.Time { return time.Now().Add(49 * time.Hour) }))
	if _, err := later.LogContactAttempt(ctx, app.LogContact{LeadID: id, RepID: "dan", RequestID: "c0",
		Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER}, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	attempt := ofType(w.events(t, id), "ContactAttempted")[0]
	due := attempt.GetLifecycle().GetDeadline().AsTime()
	if !due.After(attempt.GetRecordedAt().AsTime()) {
		t.Fatalf("the attempt is due %v, want after it", due)
	}
	timers, err := w.nats.JS.Stream(ctx, "HANDOFF_TIMERS")
	if err != nil {
		t.Fatal(err)
	}
	id0 := app.TimerID(attempt.GetEventId(), eventv1.SLAKind_SLA_KIND_FOLLOW_UP, eventv1.TimerPhase_TIMER_PHASE_DUE)
	var sched *jetstream.RawStreamMsg
	eventually(t, 15*time.Second, func() bool {
		sched, err = timers.GetLastMsgForSubject(ctxT(t), fmt.Sprintf("handoff.timer.at.%d.%s.%s", eventstore.Partition(id), id, id0))
		return err == nil
	}, "no FOLLOW_UP timer for the attempt (%v)", func() any { return err })
	var tm eventv1.SLATimer
	if err := proto.Unmarshal(sched.Data, &tm); err != nil || !tm.GetDueAt().AsTime().Equal(due) {
		t.Fatalf("the attempt's timer is due %v (%v), want %v", tm.GetDueAt().AsTime(), err, due)
	}
	// Its deadline, brought forward to now, breaches.
	tm.DueAt, tm.FireAt = timestamppb.Now(), timestamppb.Now()
	fire(t, w, &tm)
	if b := w.waitFor(t, id, "SLABreached", 2)[1].GetSlaBreached(); b.GetSla() != eventv1.SLAKind_SLA_KIND_FOLLOW_UP || b.GetStepEventId() != attempt.GetEventId() {
		t.Errorf("breach: %v, want FOLLOW_UP of the attempt %s", b, attempt.GetEventId())
	}
}

// The attempts window judges the lead at its end even when an attempt
// logged after that end, before the window's timer was handled (a busy
// or restarted service), started a step of its own: every attempt made
// and nobody reached recycles the lead.
func TestWindowJudgedAfterALateAttempt(t *testing.T) {
	w, id, accepted := acceptedByDan(t)
	ctx := ctxT(t)
	windowDue := accepted.GetLeadAccepted().GetAttemptsDueAt()
	attempt := func(a *app.App, n string) {
		t.Helper()
		if _, err := a.LogContactAttempt(ctx, app.LogContact{LeadID: id, RepID: "dan", RequestID: n,
			Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER}, envelope.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	now := w.app(t, adapters.NewLeads(w.store))
	attempt(now, "c1")
	attempt(now, "c2")
	// A third, an hour past the window's end: a step of its own.
	attempt(w.app(t, adapters.NewLeads(w.store), app.WithClock(func() time.Time { return windowDue.AsTime().Add(time.Hour) })), "c3")
	// Only now is the window's timer handled.
	fire(t, w, &eventv1.SLATimer{TimerId: app.TimerID(accepted.GetEventId(), eventv1.SLAKind_SLA_KIND_FOLLOW_UP, eventv1.TimerPhase_TIMER_PHASE_DUE),
		LeadId: id, Sla: eventv1.SLAKind_SLA_KIND_FOLLOW_UP, Phase: eventv1.TimerPhase_TIMER_PHASE_DUE, StepEventId: accepted.GetEventId(),
		DueAt: timestamppb.Now(), FireAt: timestamppb.Now()})
	rec := w.waitFor(t, id, "LeadRecycled", 1)[0].GetLeadRecycled()
	if rec.GetCause() != eventv1.RecycleCause_RECYCLE_CAUSE_ATTEMPTS_EXHAUSTED {
		t.Fatalf("recycled %v, want ATTEMPTS_EXHAUSTED", rec)
	}
}

// acceptedByDan routes a US software lead to dan (alone in his pool, his
// team without a manager), under a policy of 48 hours to first contact
// and an attempts window of a day (which ends with it), and has him
// accept it; it returns the lead and its LeadAccepted.
func acceptedByDan(t *testing.T) (w *world, id string, accepted *eventv1.Event) {
	t.Helper()
	w = newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	slaPolicy(t, s.client, time.Hour, 48*time.Hour, 10*time.Minute, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP)
	id = w.mql(t, &eventv1.Profile{Country: "US", Industry: "software", EmailDomain: uuid.NewString()[:8] + ".example"})
	if owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0]); owner != "dan" {
		t.Fatalf("assigned to %s, want dan", owner)
	}
	if _, err := s.client.AcceptLead(ctxT(t), &handoffv1.AcceptLeadRequest{LeadId: id, RepId: "dan", RequestId: "a"}); err != nil {
		t.Fatal(err)
	}
	return w, id, ofType(w.events(t, id), "LeadAccepted")[0]
}

// shiftEndingSoon runs handoff on routingSetup (capacity 1) with emea's
// reps on shift in a zone where it is about midday, from two hours ago
// until closes, two or three minutes from now, every day (Etc zones keep
// no daylight saving time). away reps are out of office until an hour
// after closes; the others each take a lead, so the pool is full. The
// service is then stopped: the test's apps, each at its own time, route
// what comes next.
func shiftEndingSoon(t *testing.T, away ...string) (w *world, opens, closes time.Time) {
	t.Helper()
	w = newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 1)
	ctx := ctxT(t)
	now := time.Now()
	offset := 12 - now.UTC().Hour()
	zone := fmt.Sprintf("Etc/GMT%+d", -offset)
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	local := now.In(loc)
	opens = local.Add(-2 * time.Hour).Truncate(time.Minute)
	closes = local.Truncate(time.Minute).Add(3 * time.Minute)
	hours := &eventv1.WorkingHours{TimeZone: zone}
	for d := eventv1.Weekday_WEEKDAY_MONDAY; d <= eventv1.Weekday_WEEKDAY_SUNDAY; d++ {
		hours.Days = append(hours.Days, &eventv1.WorkingDay{Day: d, Start: opens.Format("15:04"), End: closes.Format("15:04")})
	}
	if _, err := s.client.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: "emea", Name: "EMEA", ManagerRepId: "mia", Hours: hours},
		ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	for _, rep := range away {
		if _, err := s.client.SetOutOfOffice(ctx, &handoffv1.SetOutOfOfficeRequest{OutOfOffice: &eventv1.OutOfOffice{RepId: rep, Absences: []*eventv1.Absence{
			{From: timestamppb.New(now.Add(-time.Hour)), Until: timestamppb.New(closes.Add(time.Hour))}}}, ChangedBy: ops}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 - len(away) {
		w.waitFor(t, w.mql(t, dach(50)), "LeadAssigned", 1)
	}
	s.stop()
	return w, opens, closes
}

// queueUntil qualifies a new lead whose route deadline is at deadline and
// routes it now: it returns the lead and its LeadQueued.
func queueUntil(t *testing.T, w *world, deadline time.Time) (string, eventstore.Record) {
	t.Helper()
	id := uuid.NewString()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: dach(50)}, intakeActor)
	w.qualifyWithin(t, id, time.Until(deadline))
	qualified := w.lastEvent(t, id)
	if err := w.app(t, adapters.NewLeads(w.store)).RouteQualified(ctxT(t), id, qualified.Seq, qualified.Event, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	queued := w.lastEvent(t, id)
	if queued.Event.GetLeadQueued() == nil {
		t.Fatalf("first try: %s, want queued", queued.Event.GetEventType())
	}
	return id, queued
}

// routeRetry fires the attempt-th ROUTE retry of the queued step at at.
func routeRetry(t *testing.T, w *world, at time.Time, step eventstore.Record, attempt int) {
	t.Helper()
	a := w.app(t, adapters.NewLeads(w.store), app.WithClock(func() time.Time { return at }))
	q := step.Event.GetLeadQueued()
	tm := &eventv1.SLATimer{TimerId: app.TimerID(step.Event.GetEventId(), eventv1.SLAKind_SLA_KIND_ROUTE, eventv1.TimerPhase_TIMER_PHASE_DUE) + fmt.Sprint("-", attempt),
		LeadId: step.Event.GetLeadId(), Sla: eventv1.SLAKind_SLA_KIND_ROUTE, Phase: eventv1.TimerPhase_TIMER_PHASE_DUE, StepEventId: step.Event.GetEventId(),
		StepSequence: step.Seq, DueAt: q.GetDeadline(), FireAt: q.GetRetryAt(), Attempt: uint32(attempt)}
	if err := a.FireTimer(ctxT(t), tm, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
}

// A lead queued while every rep of its pool is busy, whose route deadline
// falls just after their shift ends, has not breached when a retry finds
// them gone home: route time stopped at the shift's end, not at the
// retry, so the deadline moves on to the next opening with what was left
// of it at that end, and later retries before that opening keep it.
func TestRouteClockStopsAtTheShiftsEnd(t *testing.T) {
	w, opens, closes := shiftEndingSoon(t)
	id, queued := queueUntil(t, w, closes.Add(20*time.Second))
	deadline := queued.Event.GetLeadQueued().GetDeadline().AsTime()
	// Past the deadline by the wall clock, 20 s into the evening.
	routeRetry(t, w, deadline.Add(20*time.Second), queued, 1)
	if b := ofType(w.events(t, id), "SLABreached"); len(b) != 0 {
		t.Fatalf("breached at a deadline that fell after the shift: %v", b[0].GetSlaBreached())
	}
	next := opens.Add(24 * time.Hour)
	moved := w.lastEvent(t, id)
	q := moved.Event.GetLeadQueued()
	if want := next.Add(deadline.Sub(closes)); q == nil || !q.GetDeadline().AsTime().Equal(want) || !q.GetWaitedUntil().AsTime().Equal(next) {
		t.Fatalf("after the shift: %s %v, want queued again due %v (20 s after the opening), waited until %v", moved.Event.GetEventType(), q, want, next)
	}
	// At night, read afresh: the wait is counted already.
	routeRetry(t, w, next.Add(-time.Hour), moved, 1)
	if last := w.lastEvent(t, id); last.Seq != moved.Seq || !w.state(t, id).Deadline.Equal(q.GetDeadline().AsTime()) {
		t.Errorf("a retry at night wrote %s, due %v; want nothing, due %v", last.Event.GetEventType(), w.state(t, id).Deadline, q.GetDeadline().AsTime())
	}
}

// A route deadline that breached stays breached: a retry that later finds
// the pool off shift does not move it on into the next day.
func TestBreachedRouteDeadlineStaysBreached(t *testing.T) {
	w, _, closes := shiftEndingSoon(t)
	id, queued := queueUntil(t, w, closes.Add(-time.Minute))
	deadline := queued.Event.GetLeadQueued().GetDeadline().AsTime()
	routeRetry(t, w, deadline.Add(5*time.Second), queued, 1)
	breached := w.lastEvent(t, id)
	if b := breached.Event.GetSlaBreached(); b.GetSla() != eventv1.SLAKind_SLA_KIND_ROUTE {
		t.Fatalf("at the deadline, on shift with everyone busy: %s, want the ROUTE breach", breached.Event.GetEventType())
	}
	routeRetry(t, w, closes.Add(90*time.Minute), queued, 2)
	if last := w.lastEvent(t, id); last.Seq != breached.Seq || !w.state(t, id).Deadline.Equal(deadline) {
		t.Errorf("a retry off shift after the breach wrote %s, due %v; want nothing, due %v", last.Event.GetEventType(), w.state(t, id).Deadline, deadline)
	}
}

// A breach whose escalation loses its race to the rep accepting gives the
// reservation it made for the next rep back: that rep never got the lead.
func TestABreachThatLostItsRaceGivesItsReservationBack(t *testing.T) {
	w, s, id, assigned := assignedUnderAnHour(t)
	owner := ownerOf(assigned)
	w.settle(t)
	s.stop()
	ctx := ctxT(t)
	accepted := false
	leads := &racingLeads{Leads: adapters.NewLeads(w.store), race: func() {
		_, err := w.app(t, adapters.NewLeads(w.store)).AcceptLead(ctx, app.AcceptLead{LeadID: id, RepID: owner, RequestID: "accept"}, envelope.Meta{})
		accepted = err == nil
	}}
	if err := w.app(t, leads).FireTimer(ctx, acceptDue(assigned, time.Now()), false, envelope.Meta{}); err != nil || !accepted {
		t.Fatalf("fire: %v, accepted first: %v", err, accepted)
	}
	if evs := w.events(t, id); len(ofType(evs, "SLABreached")) != 0 || last(evs).GetEventType() != "LeadAccepted" {
		t.Fatalf("the breach was written after the accept: %s", last(evs).GetEventType())
	}
	wantReserved(t, w, id, owner)
}

// A routing retry of a queued lead that loses its race to a manager
// assigning the lead by hand gives back the reservation it made for the
// pool's rep: that rep never got the lead.
func TestARouteRetryThatLostItsRaceGivesItsReservationBack(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 100)
	ctx := ctxT(t)
	now := time.Now()
	for _, rep := range []string{"ann", "bob", "cat"} {
		if _, err := s.client.SetOutOfOffice(ctx, &handoffv1.SetOutOfOfficeRequest{OutOfOffice: &eventv1.OutOfOffice{RepId: rep, Absences: []*eventv1.Absence{
			{From: timestamppb.New(now.Add(-time.Hour)), Until: timestamppb.New(now.Add(time.Hour))}}}, ChangedBy: ops}); err != nil {
			t.Fatal(err)
		}
	}
	s.stop()
	id, queued := queueUntil(t, w, now.Add(time.Hour))
	// ann is back: the retry can route to her.
	if _, err := w.app(t, adapters.NewLeads(w.store)).ChangeRouting(ctx, app.ChangeRouting{Field: "out_of_office",
		Change: &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_OutOfOffice{OutOfOffice: &eventv1.OutOfOffice{RepId: "ann"}}}, By: ops},
		envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	leads := &racingLeads{Leads: adapters.NewLeads(w.store), race: func() {
		if _, err := w.app(t, adapters.NewLeads(w.store)).AssignLead(ctx, app.AssignLead{LeadID: id, RepID: "mia", RequestID: "by-hand", By: ops},
			envelope.Meta{}); err != nil {
			t.Error(err)
		}
	}}
	q := queued.Event.GetLeadQueued()
	tm := &eventv1.SLATimer{TimerId: app.TimerID(queued.Event.GetEventId(), eventv1.SLAKind_SLA_KIND_ROUTE, eventv1.TimerPhase_TIMER_PHASE_DUE) + "-1",
		LeadId: id, Sla: eventv1.SLAKind_SLA_KIND_ROUTE, Phase: eventv1.TimerPhase_TIMER_PHASE_DUE, StepEventId: queued.Event.GetEventId(),
		StepSequence: queued.Seq, DueAt: q.GetDeadline(), FireAt: timestamppb.Now(), Attempt: 1} // tried now: ann is back
	if err := w.app(t, leads).FireTimer(ctx, tm, false, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if got := ofType(w.events(t, id), "LeadAssigned"); len(got) != 1 || ownerOf(got[0]) != "mia" {
		t.Fatalf("LeadAssigned %v, want only the hand assignment to mia", got)
	}
	wantReserved(t, w, id, "mia")
}

// Timers that acted leave nothing behind in the timer stream: a fired
// copy is deleted once handled, or a lead queued for a month would keep
// one per routing retry for the copies' TTL.
func TestHandledTimersLeaveNoFiredCopy(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	slaPolicy(t, s.client, 3*time.Second, time.Hour, 2*time.Second, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP)
	id := w.mql(t, dach(50))
	assigned := w.waitFor(t, id, "LeadAssigned", 1)[0]
	w.waitFor(t, id, "SLAWarned", 1)
	if _, err := s.client.AcceptLead(ctxT(t), &handoffv1.AcceptLeadRequest{LeadId: id, RepId: ownerOf(assigned), RequestId: "a"}); err != nil {
		t.Fatal(err)
	}
	// The accept deadline fires too, a no-op now.
	due := fmt.Sprintf("handoff.timer.at.%d.%s.%s", eventstore.Partition(id), id, acceptDue(assigned, time.Now()).GetTimerId())
	eventually(t, 15*time.Second, func() bool { return countSubjects(t, w, due) == 0 }, "the accept deadline did not fire")
	settleTimers(t, w)
	eventually(t, 10*time.Second, func() bool { return countFired(t, w, id) == 0 }, "fired copies left after the timers were handled")
	if b := ofType(w.events(t, id), "SLABreached"); len(b) != 0 {
		t.Fatalf("an accepted lead breached: %v", b[0])
	}
}
