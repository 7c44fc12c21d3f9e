package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/nurture/adapters"
	"github.com/leadflow/leadflow/services/nurture/app"
)

const stream = "LEADFLOW"

// world is an embedded JetStream with the event stream, and a store on it
// that writes lead events the way intake, qualification and handoff do.
type world struct {
	nats  *testenv.NATS
	store *eventstore.Store
	// occurred, if set, is when the events the test writes occurred (a
	// late sync); else when they are written.
	occurred time.Time
}

func newWorld(t testing.TB) *world {
	t.Helper()
	return worldOn(t, testenv.StartNATS(t))
}

// newWorldWithUsers is newWorld on a server with a user per role: the
// service runs as nurture's, the test's own writes as the admin. It fails
// the test if the server logged a permissions violation.
func newWorldWithUsers(t testing.TB) *world {
	t.Helper()
	n := testenv.StartNATSWithUsers(t)
	n.NoViolations(t)
	return worldOn(t, n)
}

func worldOn(t testing.TB, n *testenv.NATS) *world {
	t.Helper()
	if _, err := eventstore.EnsureStream(context.Background(), n.JS, eventstore.StreamConfig{Name: stream}); err != nil {
		t.Fatal(err)
	}
	return &world{nats: n, store: eventstore.New(n.JS, stream)}
}

// service is one run of the real service (run, as main calls it).
type service struct {
	client nurturev1.NurtureServiceClient
	stop   func()
}

func (w *world) config() Config {
	cfg := Config{Addr: "127.0.0.1:0", NATSURL: w.nats.Server.URL(), Stream: stream, Replicas: 1, Workers: 16,
		AckWait: 2 * time.Second, Grace: time.Second}
	if w.nats.Passwords != nil { // newWorldWithUsers: run as nurture's NATS user
		cfg.NATSUser, cfg.NATSPassword = natsauth.Nurture, w.nats.Passwords[natsauth.Nurture]
		cfg.TLS = w.nats.TLS.Files() // and over TLS, as in production
	}
	return cfg
}

func testLog() *slog.Logger {
	out := io.Discard
	if testing.Verbose() && os.Getenv("NURTURE_TEST_LOG") != "" {
		out = os.Stderr
	}
	return slog.New(slog.NewTextHandler(out, nil))
}

// start runs the service on a free port against w's JetStream and dials
// it. stop (also called when the test ends) shuts it down and fails the
// test if run returned an error.
func (w *world) start(t testing.TB, edit ...func(*Config)) *service {
	t.Helper()
	cfg := w.config()
	for _, e := range edit {
		e(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, testLog(), func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("service did not start")
	}
	return dial(t, addr.String(), w.nats.TLS.Dial(), func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v", err)
		}
	})
}

func dial(t testing.TB, addr string, creds grpc.DialOption, shutdown func()) *service {
	t.Helper()
	conn, err := grpc.NewClient(addr, creds)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	s := &service{client: nurturev1.NewNurtureServiceClient(conn)}
	s.stop = func() {
		once.Do(func() {
			conn.Close()
			shutdown()
		})
	}
	t.Cleanup(s.stop)
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var (
	intakeActor  = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "intake"}
	handoffActor = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "handoff"}
	marketer     = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "mia", Team: eventv1.Team_TEAM_MARKETING}
)

// appendLead decides cmd on the lead's state with policy p and appends
// payload as its event, reloading on a lost race (the service writes to
// the same lead).
func (w *world) appendLead(ctx context.Context, p lifecycle.Policy, leadID string, cmd lifecycle.Command, payload proto.Message, actor *eventv1.Actor) (*eventv1.Event, error) {
	subj := eventstore.LeadSubject(leadID)
	for range 100 {
		recs, err := w.store.Load(ctx, subj)
		if err != nil {
			return nil, err
		}
		var state lifecycle.State
		var version uint64
		if len(recs) > 0 {
			last := recs[len(recs)-1]
			state, version = lifecycle.FromProto(last.Event.GetLifecycle()), last.Seq
		}
		meta := envelope.Meta{Actor: actor, CorrelationID: uuid.NewString(), OccurredAt: w.occurred}
		if _, ok := payload.(*eventv1.LeadScored); ok {
			// As qualification does: caused by the fact it scores.
			for _, r := range slices.Backward(recs) {
				if lifecycle.Kind(r.Event.GetEventType()).Fact() {
					meta.CausationID = r.Event.GetEventId()
					break
				}
			}
		}
		ev, _, err := lifecycle.NewEvent(leadID, state, cmd, p, payload, meta, time.Now())
		if err != nil {
			return nil, err
		}
		_, err = w.store.Append(ctx, subj, version, ev)
		if errors.Is(err, eventstore.ErrConflict) {
			continue
		}
		return ev, err
	}
	return nil, fmt.Errorf("lead %s: kept losing races", leadID)
}

// write is appendLead with the default policy for the test goroutine,
// failing the test on error.
func (w *world) write(t testing.TB, leadID string, cmd lifecycle.Command, payload proto.Message) *eventv1.Event {
	t.Helper()
	return w.writeWith(t, lifecycle.DefaultPolicy(), leadID, cmd, payload)
}

func (w *world) writeWith(t testing.TB, p lifecycle.Policy, leadID string, cmd lifecycle.Command, payload proto.Message) *eventv1.Event {
	t.Helper()
	actor := handoffActor
	switch payload.(type) {
	case *eventv1.LeadCaptured, *eventv1.ActivityRecorded, *eventv1.LeadResubmitted, *eventv1.LeadErased:
		actor = intakeActor
	}
	ev, err := w.appendLead(ctxT(t), p, leadID, cmd, payload, actor)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func (w *world) capture(t testing.TB, leadID string) *eventv1.Event {
	t.Helper()
	return w.write(t, leadID, lifecycle.Command{Name: lifecycle.Capture},
		&eventv1.LeadCaptured{Profile: &eventv1.Profile{Country: "GB", Employees: 200, EmailDomain: "example.com"},
			Attribution: &eventv1.Attribution{Source: "web-form"}})
}

// scored records a score as qualification would, with no verdict, on a
// policy whose engagement window is engage: a NEW lead is due for
// engagement that long after.
func (w *world) scored(t testing.TB, leadID string, total int, engage time.Duration) *eventv1.Event {
	t.Helper()
	p := lifecycle.DefaultPolicy()
	p.EngageWithin = engage
	return w.writeWith(t, p, leadID, lifecycle.Command{Name: lifecycle.Score, Score: total},
		&eventv1.LeadScored{ModelId: "scoring", ModelVersion: 1, Total: int32(total), Threshold: 50, Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_NONE})
}

// accepted takes a new lead to ACCEPTED by rep ann in segment, with score
// as its last score, as qualification and handoff would.
func (w *world) accepted(t testing.TB, leadID, segment string, score int) {
	t.Helper()
	w.capture(t, leadID)
	w.write(t, leadID, lifecycle.Command{Name: lifecycle.Score, Score: score},
		&eventv1.LeadScored{ModelId: "scoring", ModelVersion: 1, Total: int32(score), Threshold: 50, Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY})
	w.write(t, leadID, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: int32(score), Threshold: 50})
	ann := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}
	w.write(t, leadID, lifecycle.Command{Name: lifecycle.Assign, Owner: ann},
		&eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Segment: segment})
	w.write(t, leadID, lifecycle.Command{Name: lifecycle.Accept}, &eventv1.LeadAccepted{RepId: "ann", Segment: segment})
}

func (w *world) reject(t testing.TB, leadID string, reason eventv1.RejectReason, segment string) *eventv1.Event {
	t.Helper()
	return w.write(t, leadID, lifecycle.Command{Name: lifecycle.Reject, Reason: reason.String()},
		&eventv1.LeadRejected{RepId: "ann", Reason: reason, Note: "call back next quarter", Segment: segment})
}

func (w *world) lose(t testing.TB, leadID, segment string) *eventv1.Event {
	t.Helper()
	w.write(t, leadID, lifecycle.Command{Name: lifecycle.Convert}, &eventv1.OpportunityCreated{OpportunityId: "opp-" + leadID, Segment: segment})
	return w.write(t, leadID, lifecycle.Command{Name: lifecycle.Lose, Reason: "went with a competitor"},
		&eventv1.DealLost{OpportunityId: "opp-" + leadID, Reason: "went with a competitor", RepId: "ann", Segment: segment})
}

func (w *world) activity(t testing.TB, leadID string, typ eventv1.ActivityType) *eventv1.Event {
	t.Helper()
	return w.write(t, leadID, lifecycle.Command{Name: lifecycle.RecordActivity},
		&eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: typ})
}

func (w *world) events(t testing.TB, leadID string) []*eventv1.Event {
	t.Helper()
	recs, err := w.store.Load(ctxT(t), eventstore.LeadSubject(leadID))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*eventv1.Event, len(recs))
	for i, r := range recs {
		out[i] = r.Event
	}
	return out
}

func ofType(evs []*eventv1.Event, typ string) []*eventv1.Event {
	var out []*eventv1.Event
	for _, ev := range evs {
		if ev.GetEventType() == typ {
			out = append(out, ev)
		}
	}
	return out
}

func last(evs []*eventv1.Event) *eventv1.Event { return evs[len(evs)-1] }

func stateOf(ev *eventv1.Event) lifecycle.State { return lifecycle.FromProto(ev.GetLifecycle()) }

// nurtured waits until the lead is NURTURING and returns its events.
func (w *world) nurtured(t testing.TB, leadID string) []*eventv1.Event {
	t.Helper()
	var evs []*eventv1.Event
	eventually(t, 20*time.Second, func() bool {
		evs = w.events(t, leadID)
		return stateOf(last(evs)).Status == lifecycle.StatusNurturing
	}, "lead %s is not nurtured: %v", leadID, func() any { return types(evs) })
	return evs
}

func types(evs []*eventv1.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.GetEventType()
	}
	return out
}

// settle waits until the group has handled every message of its
// durables: nothing pending, nothing unacknowledged. Only then can a test
// say that something did not happen.
func (w *world) settle(t testing.TB, group string) {
	t.Helper()
	eventually(t, 5*time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for p := range eventstore.Partitions {
			c, err := w.nats.JS.Consumer(ctx, stream, consume.Durable(group, p, eventstore.Partitions))
			if err != nil {
				return false
			}
			if ci := c.CachedInfo(); ci.NumPending != 0 || ci.NumAckPending != 0 {
				return false
			}
		}
		return true
	}, "group %s did not settle", group)
}

var eventually = testenv.Eventually

// waitingTimers counts the timers scheduled for a lead and not fired yet.
func (w *world) waitingTimers(t testing.TB, leadID string) uint64 {
	t.Helper()
	st, err := w.nats.JS.Stream(ctxT(t), adapters.DefaultTimerStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctxT(t), jetstream.WithSubjectFilter("nurture.timer.at.*."+leadID+".*"))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// put defines p through the API.
func put(t testing.TB, c nurturev1.NurtureServiceClient, p *eventv1.NurtureProgram) *nurturev1.PutProgramResponse {
	t.Helper()
	r, err := c.PutProgram(ctxT(t), &nurturev1.PutProgramRequest{Program: p, ChangedBy: marketer})
	if err != nil {
		t.Fatalf("put %s: %v", p.GetProgramId(), err)
	}
	return r
}

func days(n int) *durationpb.Duration { return durationpb.New(time.Duration(n) * 24 * time.Hour) }

var (
	rejected     = eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED
	lostCause    = eventv1.RecycleCause_RECYCLE_CAUSE_LOST
	notQualified = eventv1.RecycleCause_RECYCLE_CAUSE_NOT_QUALIFIED
	demo         = eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST
	webinar      = eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED
)

// Group names, from the app.
const (
	group      = app.Group
	timerGroup = app.TimerGroup
)

// scoredBy appends a LeadScored with no verdict caused by cause, as
// qualification writes one late (cause an earlier fact) or a re-score
// (cause a model's activation).
func (w *world) scoredBy(t testing.TB, leadID, cause string) *eventv1.Event {
	t.Helper()
	return w.scoreBy(t, leadID, cause, &eventv1.LeadScored{ModelId: "scoring", ModelVersion: 1, Total: 20, Threshold: 50, Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_NONE})
}

// scoreBy records sc, caused by the event cause, keeping the deadline.
func (w *world) scoreBy(t testing.TB, leadID, cause string, sc *eventv1.LeadScored) *eventv1.Event {
	t.Helper()
	ctx := ctxT(t)
	subj := eventstore.LeadSubject(leadID)
	recs, err := w.store.Load(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	ev, _, err := lifecycle.NewEvent(leadID, lifecycle.FromProto(last.Event.GetLifecycle()), lifecycle.Command{Name: lifecycle.Score, Score: int(sc.GetTotal()), Rescore: true},
		lifecycle.DefaultPolicy(), sc,
		envelope.Meta{Actor: handoffActor, CorrelationID: uuid.NewString(), CausationID: cause}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.Append(ctx, subj, last.Seq, ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// putWebinars defines the program "webinars": smb leads sales rejected,
// for 45 days, re-engaged by a webinar.
func putWebinars(t testing.TB, c nurturev1.NurtureServiceClient) {
	t.Helper()
	put(t, c, &eventv1.NurtureProgram{ProgramId: "webinars", Name: "Webinar series", Duration: days(45),
		EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "smb", Causes: []eventv1.RecycleCause{rejected}, Segments: []string{"smb"}}},
		ExitRules:  &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{webinar}}})
}
