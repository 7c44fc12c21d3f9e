package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/handoff/ports"
)

const stream = "LEADFLOW"

// world is an embedded JetStream with the event stream, and a store on it
// that writes lead events the way intake and qualification do.
type world struct {
	nats  *testenv.NATS
	store *eventstore.Store
	// vault is intake's key vault: handoff opens what it sealed, and seals
	// the reps' notes with the same keys.
	vault *vault.Vault
	// policy, if set, replaces the lifecycle's default for the next write.
	policy *lifecycle.Policy
	// keepFired keeps handled timers' fired copies, which countFired
	// counts (the service deletes them).
	keepFired bool
}

func newWorld(t testing.TB) *world {
	t.Helper()
	return worldOn(t, testenv.StartNATS(t))
}

// newWorldWithUsers is newWorld on a server with a user per role: the
// service runs as handoff's, the test's own writes as the admin. It fails
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
	mk, _ := hex.DecodeString(testMasterKey)
	bk, _ := hex.DecodeString(testBlindKey)
	v, err := vault.New(context.Background(), n.JS, vault.Config{MasterKey: mk, BlindKey: bk}) // as intake makes it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return &world{nats: n, store: eventstore.New(n.JS, stream), vault: v}
}

// The keys of the world's vault, which the service gets too.
var testMasterKey, testBlindKey = strings.Repeat("5a", 32), strings.Repeat("a5", 32)

func testConfig(url string) Config {
	return Config{Addr: "127.0.0.1:0", NATSURL: url, Stream: stream, TimerStream: "HANDOFF_TIMERS", LoadsBucket: "HANDOFF_LOAD",
		Replicas: 1, Workers: 16, AckWait: 2 * time.Second, RouteRetry: time.Second, Grace: time.Second,
		MasterKey: testMasterKey}
}

// sealed is personal data of the lead sealed as intake seals it: with a
// key of its own, from a block.
func (w *world) sealed(t testing.TB, leadID string, p *eventv1.Personal) []byte {
	t.Helper()
	k, err := w.vault.Take(ctxT(t), leadID)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// service is one run of the real service (run, as main calls it).
type service struct {
	addr   string
	client handoffv1.HandoffServiceClient
	stop   func()
}

// start runs the service on a free port against w's JetStream and dials
// it. stop (also called when the test ends) shuts it down and fails the
// test if run returned an error.
func (w *world) start(t testing.TB) *service {
	t.Helper()
	return w.startWith(t, nil)
}

// startWith is start with the settings changed by edit.
func (w *world) startWith(t testing.TB, edit func(*Config)) *service {
	t.Helper()
	cfg := testConfig(w.nats.Server.URL())
	if w.nats.Passwords != nil { // newWorldWithUsers: run as handoff's NATS user
		cfg.NATSUser, cfg.NATSPassword = natsauth.Handoff, w.nats.Passwords[natsauth.Handoff]
		cfg.TLS = w.nats.TLS.Files() // and over TLS, as in production
	}
	cfg.keepFired = w.keepFired
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	out := io.Discard
	if testing.Verbose() && os.Getenv("HANDOFF_TEST_LOG") != "" {
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
	s := &service{addr: addr.String(), client: dial(t, addr.String(), w.nats.TLS.Dial())}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run returned %v", err)
			}
		})
	}
	t.Cleanup(s.stop)
	return s
}

func dial(t testing.TB, addr string, opts ...grpc.DialOption) handoffv1.HandoffServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return handoffv1.NewHandoffServiceClient(conn)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var (
	intakeActor  = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "intake"}
	qualifyActor = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "qualification"}
	ops          = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "olga", Team: eventv1.Team_TEAM_OPERATIONS}
)

// appendLead decides cmd on the lead's state and appends payload as its
// event, reloading on a lost race (the service writes to the same lead).
func (w *world) appendLead(ctx context.Context, leadID string, cmd lifecycle.Command, payload proto.Message, actor *eventv1.Actor) (*eventv1.Event, error) {
	return w.appendLeadMeta(ctx, leadID, cmd, payload, envelope.Meta{Actor: actor, CorrelationID: uuid.NewString()})
}

// appendLeadMeta is appendLead with the envelope's meta given (a cause).
func (w *world) appendLeadMeta(ctx context.Context, leadID string, cmd lifecycle.Command, payload proto.Message, meta envelope.Meta) (*eventv1.Event, error) {
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
		p := lifecycle.DefaultPolicy()
		if w.policy != nil {
			p = *w.policy
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

func (w *world) write(t testing.TB, leadID string, cmd lifecycle.Command, payload proto.Message, actor *eventv1.Actor) *eventv1.Event {
	t.Helper()
	ev, err := w.appendLead(ctxT(t), leadID, cmd, payload, actor)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// mql writes a lead as intake and qualification would: captured with the
// profile, scored, qualified. It returns the lead id.
func (w *world) mql(t testing.TB, p *eventv1.Profile) string {
	t.Helper()
	id := uuid.NewString()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{
		SealedPersonal: w.sealed(t, id, &eventv1.Personal{Contact: &eventv1.Contact{Email: "lead@" + p.GetEmailDomain()}}), Profile: p,
		Attribution: &eventv1.Attribution{Source: "web-form"}}, intakeActor)
	w.qualify(t, id)
	return id
}

func (w *world) qualify(t testing.TB, id string) {
	t.Helper()
	w.qualifyWithin(t, id, lifecycle.DefaultPolicy().RouteWithin)
}

// qualifyWithin qualifies a lead whose route deadline is d away.
func (w *world) qualifyWithin(t testing.TB, id string, d time.Duration) {
	t.Helper()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Score, Score: 80}, &eventv1.LeadScored{ModelId: "scoring", ModelVersion: 1, Total: 80, Threshold: 70,
		Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY, Reasons: []*eventv1.ScoreReason{{RuleId: "decision-maker", Points: 50}}}, qualifyActor)
	p := lifecycle.DefaultPolicy()
	p.RouteWithin = d
	w.policy = &p
	defer func() { w.policy = nil }()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 70}, qualifyActor)
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

func eventsOf(recs []eventstore.Record) []*eventv1.Event {
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

// waitFor waits until the lead has n events of type typ and returns them.
func (w *world) waitFor(t testing.TB, leadID, typ string, n int) []*eventv1.Event {
	t.Helper()
	var got []*eventv1.Event
	eventually(t, 30*time.Second, func() bool {
		got = ofType(w.events(t, leadID), typ)
		return len(got) >= n
	}, "lead %s: %d %s, want %d", leadID, func() any { return len(got) }, typ, n)
	return got
}

// state is the lead's lifecycle now.
func (w *world) state(t testing.TB, leadID string) lifecycle.State {
	t.Helper()
	return lifecycle.FromProto(last(w.events(t, leadID)).GetLifecycle())
}

// settle waits until the lead consumer has handled every lead event:
// nothing pending, nothing unacknowledged.
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
	}, "the lead consumer did not settle")
}

var eventually = testenv.Eventually

// wantCode fails unless err is a gRPC status with code c; for
// INVALID_ARGUMENT, field names the first violation.
func wantCode(t testing.TB, err error, c codes.Code, field string) {
	t.Helper()
	if status.Code(err) != c {
		t.Fatalf("err = %v, want %s", err, c)
	}
	if field != "" {
		v := grpcserver.Violations(err)
		if len(v) == 0 || v[0].Field != field {
			t.Fatalf("violations %v, want field %s (%v)", v, field, err)
		}
	}
}

// routingSetup is a small sales org, always at work: team emea (manager
// mia) with ann, bob and cat in pool dach (weights 2, 1, 1); team us with
// dan alone in pool us; account acme owned by dan; rules for DACH
// enterprise and SMB and US software; fallback queue sales-fallback.
func routingSetup(t testing.TB, c handoffv1.HandoffServiceClient, capacity int32) {
	t.Helper()
	ctx := ctxT(t)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: "emea", Name: "EMEA"}, ChangedBy: ops}))
	must(c.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: "us", Name: "US"}, ChangedBy: ops}))
	for _, r := range []struct {
		id, team string
	}{{"ann", "emea"}, {"bob", "emea"}, {"cat", "emea"}, {"mia", "emea"}, {"dan", "us"}} {
		must(c.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: r.id, TeamId: r.team, Capacity: capacity, Active: true}, ChangedBy: ops}))
	}
	must(c.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: "emea", Name: "EMEA", ManagerRepId: "mia"}, ChangedBy: ops}))
	must(c.PutPool(ctx, &handoffv1.PutPoolRequest{Pool: &eventv1.Pool{PoolId: "dach", Members: []*eventv1.PoolMember{
		{RepId: "ann", Weight: 2}, {RepId: "bob", Weight: 1}, {RepId: "cat", Weight: 1}}}, ChangedBy: ops}))
	must(c.PutPool(ctx, &handoffv1.PutPoolRequest{Pool: &eventv1.Pool{PoolId: "us", Members: []*eventv1.PoolMember{{RepId: "dan", Weight: 1}}}, ChangedBy: ops}))
	must(c.PutAccount(ctx, &handoffv1.PutAccountRequest{Account: &eventv1.Account{AccountId: "acme", Name: "ACME GmbH", Domains: []string{"acme.example"}, OwnerRepId: "dan"}, ChangedBy: ops}))
	must(c.SetRoutingRules(ctx, &handoffv1.SetRoutingRulesRequest{Rules: &eventv1.RoutingRules{
		Regions: []*eventv1.Region{{RegionId: "dach", Countries: []string{"DE", "AT", "CH"}}},
		Rules: []*eventv1.RoutingRule{
			{RuleId: "dach-enterprise", Segment: "enterprise", PoolId: "dach", When: &eventv1.RuleCriteria{RegionIn: []string{"dach"}, MinEmployees: 1000}},
			{RuleId: "dach-smb", Segment: "smb", PoolId: "dach", When: &eventv1.RuleCriteria{RegionIn: []string{"dach"}}},
			{RuleId: "us-software", Segment: "mid-market", PoolId: "us", When: &eventv1.RuleCriteria{CountryIn: []string{"US"}, IndustryIn: []string{"software"}}},
		},
		FallbackQueue: "sales-fallback",
	}, ChangedBy: ops}))
}

// slaPolicy sets the default SLA policy, in seconds.
func slaPolicy(t testing.TB, c handoffv1.HandoffServiceClient, accept, contact, warn time.Duration, escalation eventv1.SLAEscalation) {
	t.Helper()
	_, err := c.SetSLAPolicy(ctxT(t), &handoffv1.SetSLAPolicyRequest{Policy: &eventv1.SLAPolicy{
		AcceptWithin: durationpb.New(accept), FirstContactWithin: durationpb.New(contact), WarnBefore: durationpb.New(warn),
		MinAttempts: 2, AttemptDays: 1, Escalation: escalation}, ChangedBy: ops})
	if err != nil {
		t.Fatal(err)
	}
}

func dach(employees int32) *eventv1.Profile {
	return &eventv1.Profile{Company: "Beispiel AG", Country: "DE", Employees: employees, Industry: "software", EmailDomain: uuid.NewString()[:8] + ".example"}
}

func ownerOf(ev *eventv1.Event) string { return ev.GetLifecycle().GetOwner().GetId() }

// assignedLead starts handoff on routingSetup (capacity 10) and routes a
// DACH enterprise lead: it returns the lead and its rep.
func assignedLead(t testing.TB) (w *world, s *service, id, owner string) {
	t.Helper()
	w = newWorld(t)
	s = w.start(t)
	routingSetup(t, s.client, 10)
	id = w.mql(t, dach(5000))
	return w, s, id, ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
}
