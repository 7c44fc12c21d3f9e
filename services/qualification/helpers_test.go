package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/qualification/ports"
)

const stream = "LEADFLOW"

// world is an embedded JetStream with the event stream, and a store on it
// that writes lead events the way intake does.
type world struct {
	nats  *testenv.NATS
	store *eventstore.Store
}

func newWorld(t testing.TB) *world {
	t.Helper()
	return worldOn(t, testenv.StartNATS(t))
}

// newWorldWithUsers is newWorld on a server with a user per role: the
// service runs as qualification's, the test's own writes as the admin. It
// fails the test if the server logged a permissions violation.
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
	client qualificationv1.QualificationServiceClient
	stop   func()
}

// start runs the service on a free port against w's JetStream and dials
// it. stop (also called when the test ends) shuts it down and fails the
// test if run returned an error.
func (w *world) start(t testing.TB, edit ...func(*Config)) *service {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", NATSURL: w.nats.Server.URL(), Stream: stream, Replicas: 1, Workers: 16,
		AckWait: 2 * time.Second, Grace: time.Second}
	if w.nats.Passwords != nil { // newWorldWithUsers: run as qualification's NATS user
		cfg.NATSUser, cfg.NATSPassword = natsauth.Qualification, w.nats.Passwords[natsauth.Qualification]
		cfg.TLS = w.nats.TLS.Files() // and over TLS, as in production
	}
	for _, e := range edit {
		e(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	out := io.Discard
	if testing.Verbose() && os.Getenv("QUALIFICATION_TEST_LOG") != "" {
		out = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(out, nil))
	go func() { done <- run(ctx, cfg, log, func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("service did not start")
	}
	conn, err := grpc.NewClient(addr.String(), w.nats.TLS.Dial())
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	s := &service{client: qualificationv1.NewQualificationServiceClient(conn)}
	s.stop = func() {
		once.Do(func() {
			conn.Close()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run returned %v", err)
			}
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

var intakeActor = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "intake"}

// appendLead decides cmd on the lead's state and appends payload as its
// event, reloading on a lost race (the service writes to the same lead).
func (w *world) appendLead(ctx context.Context, leadID string, cmd lifecycle.Command, payload proto.Message, occurred time.Time) (*eventv1.Event, error) {
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
		ev, _, err := lifecycle.NewEvent(leadID, state, cmd, lifecycle.DefaultPolicy(), payload,
			envelope.Meta{Actor: intakeActor, CorrelationID: uuid.NewString(), OccurredAt: occurred}, time.Now())
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

// write is appendLead for the test goroutine, failing the test on error.
func (w *world) write(t testing.TB, leadID string, cmd lifecycle.Command, payload proto.Message) *eventv1.Event {
	t.Helper()
	ev, err := w.appendLead(ctxT(t), leadID, cmd, payload, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func (w *world) capture(t testing.TB, leadID string, p *eventv1.Profile, consents ...*eventv1.Consent) *eventv1.Event {
	t.Helper()
	return w.write(t, leadID, lifecycle.Command{Name: lifecycle.Capture},
		&eventv1.LeadCaptured{SealedContact: []byte("sealed"), Profile: p, Attribution: &eventv1.Attribution{Source: "web-form"}, Consents: consents})
}

func (w *world) activity(t testing.TB, leadID string, typ eventv1.ActivityType) *eventv1.Event {
	t.Helper()
	return w.write(t, leadID, lifecycle.Command{Name: lifecycle.RecordActivity},
		&eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: typ})
}

func (w *world) consent(t testing.TB, leadID string, ch eventv1.ConsentChannel, s eventv1.ConsentStatus) *eventv1.Event {
	t.Helper()
	return w.write(t, leadID, lifecycle.Command{Name: lifecycle.ChangeConsent},
		&eventv1.ConsentChanged{Consent: &eventv1.Consent{Channel: ch, Status: s}, Source: "preference-center"})
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

// settle waits until the live consumer has handled every lead event in
// the stream: nothing pending, nothing unacknowledged. Only then can a
// test say that something did not happen.
func (w *world) settle(t testing.TB) {
	t.Helper()
	eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for p := range eventstore.Partitions {
			c, err := w.nats.JS.Consumer(ctx, stream, consume.Durable(ports.Group, p, eventstore.Partitions))
			if err != nil {
				return false
			}
			if ci := c.CachedInfo(); ci.NumPending != 0 || ci.NumAckPending != 0 {
				return false
			}
		}
		return true
	}, "the live consumer did not settle")
}

var eventually = testenv.Eventually

var (
	marketing = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "mia", Team: eventv1.Team_TEAM_MARKETING}
	sales     = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "sam", Team: eventv1.Team_TEAM_SALES}
)

// activate proposes m and has both teams approve it; it returns the version.
func activate(t testing.TB, c qualificationv1.QualificationServiceClient, m scoring.Model) uint32 {
	t.Helper()
	ctx := ctxT(t)
	p, err := c.ProposeModel(ctx, &qualificationv1.ProposeModelRequest{Model: scoring.ToProto(m), ProposedBy: marketing})
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []*eventv1.Actor{marketing, sales} {
		if _, err := c.ApproveModel(ctx, &qualificationv1.ApproveModelRequest{Version: p.GetVersion(), Approver: who}); err != nil {
			t.Fatal(err)
		}
	}
	return p.GetVersion()
}

// rescored waits until re-scoring under version n has completed.
func rescored(t testing.TB, c qualificationv1.QualificationServiceClient, n uint32) *qualificationv1.GetRescoreProgressResponse {
	t.Helper()
	return rescoredWithin(t, c, n, time.Minute)
}

func rescoredWithin(t testing.TB, c qualificationv1.QualificationServiceClient, n uint32, d time.Duration) *qualificationv1.GetRescoreProgressResponse {
	t.Helper()
	var (
		p   *qualificationv1.GetRescoreProgressResponse
		err error
	)
	eventually(t, d, func() bool {
		p, err = c.GetRescoreProgress(ctxT(t), &qualificationv1.GetRescoreProgressRequest{Version: n})
		return err == nil && p.GetState() == qualificationv1.RescoreState_RESCORE_STATE_COMPLETED
	}, "re-score of version %d did not complete: %v %v", n, func() any { return p }, func() any { return err })
	return p
}

func vpProfile(domain string) *eventv1.Profile {
	return &eventv1.Profile{Company: "Analytical Engines", Title: "VP Engineering", Seniority: eventv1.Seniority_SENIORITY_VP,
		Employees: 200, Country: "GB", EmailDomain: domain}
}

// consumerExists reports whether the stream has a consumer of that name.
func consumerExists(t testing.TB, js jetstream.JetStream, name string) bool {
	t.Helper()
	_, err := js.Consumer(ctxT(t), stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// seed writes n leads as intake would, lead i with profile(i) and one
// activity per entry of acts(i), in atomic batches of up to
// eventstore.MaxBatch writes. It returns the lead ids.
func (w *world) seed(t testing.TB, n int, profile func(i int) *eventv1.Profile, acts func(i int) []eventv1.ActivityType) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	var batch []eventstore.Write
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if _, err := w.store.Commit(ctx, batch...); err != nil {
			t.Fatalf("seed: %v", err)
		}
		batch = batch[:0]
	}
	now := time.Now()
	for i := range n {
		ids[i] = uuid.NewString()
		subj := eventstore.LeadSubject(ids[i])
		var state lifecycle.State
		writes := []eventstore.Write{}
		add := func(cmd lifecycle.Command, payload proto.Message) {
			decided, err := lifecycle.Decide(state, cmd, lifecycle.DefaultPolicy(), now)
			if err != nil {
				t.Fatal(err)
			}
			state = lifecycle.Fold(state, decided...)
			ev, err := envelope.NewEvent(ids[i], payload, envelope.Meta{Actor: intakeActor, CorrelationID: ids[i]}, now)
			if err != nil {
				t.Fatal(err)
			}
			ev.Lifecycle = lifecycle.ToProto(state)
			// The lead's first write checks it is new; the rest of the
			// lead's writes in the same batch ride on that check.
			writes = append(writes, eventstore.Write{Subject: subj, Unchecked: len(writes) > 0, Event: ev})
		}
		add(lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{SealedContact: []byte("sealed"), Profile: profile(i),
			Attribution: &eventv1.Attribution{Source: "import"}})
		for _, a := range acts(i) {
			add(lifecycle.Command{Name: lifecycle.RecordActivity}, &eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: a})
		}
		if len(batch)+len(writes) > eventstore.MaxBatch {
			flush()
		}
		batch = append(batch, writes...)
	}
	flush()
	return ids
}

// variedProfile gives lead i one of a few profiles, every tenth of them at
// a competitor.
func variedProfile(i int) *eventv1.Profile {
	sen := []eventv1.Seniority{eventv1.Seniority_SENIORITY_VP, eventv1.Seniority_SENIORITY_DIRECTOR,
		eventv1.Seniority_SENIORITY_MANAGER, eventv1.Seniority_SENIORITY_INDIVIDUAL, eventv1.Seniority_SENIORITY_EXECUTIVE}
	p := &eventv1.Profile{Company: fmt.Sprintf("Company %d", i), Title: []string{"VP Sales", "Director of Growth", "Engineer"}[i%3],
		Seniority: sen[i%len(sen)], Employees: int32([]int{20, 200, 2000, 20000}[i%4]), Country: []string{"GB", "US", "BR"}[i%3],
		Industry: []string{"software", "retail"}[i%2], EmailDomain: fmt.Sprintf("company%d.example", i)}
	if i%10 == 9 {
		p.EmailDomain = "rival.example"
	}
	return p
}

// variedActivities gives lead i between none and four activities.
func variedActivities(i int) []eventv1.ActivityType {
	all := []eventv1.ActivityType{eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED, eventv1.ActivityType_ACTIVITY_TYPE_PRICING_PAGE_VISIT,
		eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK, eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST}
	return all[:i%5]
}

func (w *world) streamMsgs(t testing.TB) uint64 {
	t.Helper()
	st, err := w.nats.JS.Stream(ctxT(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.Msgs
}

// activateFirst activates m on a stream without leads and waits for its
// re-score: finished later, it could score the leads a test writes next
// first, covering their live scores (a race the tests would lose now and
// then).
func activateFirst(t testing.TB, c qualificationv1.QualificationServiceClient, m scoring.Model) uint32 {
	t.Helper()
	n := activate(t, c, m)
	rescored(t, c, n)
	return n
}
