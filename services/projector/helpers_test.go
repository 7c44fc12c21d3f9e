package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/testenv"
)

const stream = "LEADFLOW"

// world is an embedded JetStream with the event stream, a store that
// writes events the way the services do, and a fresh database.
type world struct {
	nats  *testenv.NATS
	store *eventstore.Store
	dsn   string
	// t0 is the fixture's clock: events happen at t0 plus some hours.
	t0 time.Time

	mu   sync.Mutex
	last map[string]uint64 // subject → the sequence of its last event written
}

func newWorld(t testing.TB) *world {
	t.Helper()
	return worldOn(t, testenv.StartNATS(t))
}

// newWorldWithUsers is newWorld on a server with a user per role: the
// service runs as the projector's, the test's own writes as the admin. It
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
	return &world{nats: n, store: eventstore.New(n.JS, stream), dsn: testenv.Postgres(t),
		t0: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), last: map[string]uint64{}}
}

// service is one run of the real service (run, as main calls it).
type service struct {
	client projectorv1.ProjectorServiceClient
	stop   func()
}

func (w *world) start(t testing.TB) *service { return w.startOn(t, w.dsn) }

// startOn runs the service on a free port against w's JetStream and the
// database dsn, and dials it. stop (also called when the test ends) shuts
// it down and fails the test if run returned an error.
func (w *world) startOn(t testing.TB, dsn string) *service {
	t.Helper()
	return w.launch(t, Config{Addr: "127.0.0.1:0", NATSURL: w.nats.Server.URL(), Stream: stream, Replicas: 1, Postgres: dsn,
		Workers: 64, AckWait: 2 * time.Second, Grace: time.Second})
}

// launch runs the service with cfg (its gRPC address a free port) and
// dials it.
func (w *world) launch(t testing.TB, cfg Config) *service {
	t.Helper()
	if w.nats.Passwords != nil { // newWorldWithUsers: run as the projector's NATS user
		cfg.NATSUser, cfg.NATSPassword = natsauth.Projector, w.nats.Passwords[natsauth.Projector]
		cfg.TLS = w.nats.TLS.Files() // and over TLS, as in production
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	out := io.Discard
	if testing.Verbose() && os.Getenv("PROJECTOR_TEST_LOG") != "" {
		out = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(out, nil))
	go func() { done <- run(ctx, cfg, log, func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("service did not start")
	}
	conn, err := grpc.NewClient(addr.String(), w.nats.TLS.Dial())
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	s := &service{client: projectorv1.NewProjectorServiceClient(conn)}
	s.stop = func() {
		once.Do(func() {
			conn.Close()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run returned %v", err)
				}
			case <-time.After(30 * time.Second):
				// A dashboard's live stream must not hold the shutdown.
				t.Error("run did not return within 30s")
			}
		})
	}
	t.Cleanup(s.stop)
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// at is the fixture time h hours after t0.
func (w *world) at(h float64) time.Time { return w.t0.Add(time.Duration(h * float64(time.Hour))) }

var actor = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "fixture"}

// lead decides cmd on the lead's state with the shared state machine and
// appends payload as its event, happening (and recorded) at hour h.
func (w *world) lead(t testing.TB, id string, h float64, cmd lifecycle.Command, payload proto.Message) *eventv1.Event {
	t.Helper()
	return w.leadAt(t, id, w.at(h), cmd, payload)
}

func (w *world) leadAt(t testing.TB, id string, at time.Time, cmd lifecycle.Command, payload proto.Message) *eventv1.Event {
	t.Helper()
	ctx := ctxT(t)
	subj := eventstore.LeadSubject(id)
	recs, err := w.store.Load(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	var state lifecycle.State
	var version uint64
	if len(recs) > 0 {
		last := recs[len(recs)-1]
		state, version = lifecycle.FromProto(last.Event.GetLifecycle()), last.Seq
	}
	ev, _, err := lifecycle.NewEvent(id, state, cmd, lifecycle.DefaultPolicy(), payload,
		envelope.Meta{Actor: actor, CorrelationID: id, OccurredAt: at}, at)
	if err != nil {
		t.Fatalf("lead %s: %s: %v", id, cmd.Name, err)
	}
	seq, err := w.store.Append(ctx, subj, version, ev)
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.last[subj] = seq
	w.mu.Unlock()
	return ev
}

// other appends a campaign or model event at hour h.
func (w *world) other(t testing.TB, subj string, h float64, payload proto.Message) {
	t.Helper()
	ctx := ctxT(t)
	v, err := w.store.Version(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := envelope.NewEvent("", payload, envelope.Meta{Actor: actor, OccurredAt: w.at(h)}, w.at(h))
	if err != nil {
		t.Fatal(err)
	}
	seq, err := w.store.Append(ctx, subj, v, ev)
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.last[subj] = seq
	w.mu.Unlock()
}

// projected waits until the active read model of the database dsn holds
// every event w wrote.
func (w *world) projected(t testing.TB, dsn string) {
	t.Helper()
	w.projectedWithin(t, dsn, 45*time.Second)
}

func (w *world) projectedWithin(t testing.TB, dsn string, d time.Duration) {
	t.Helper()
	w.mu.Lock()
	want := make(map[string]uint64, len(w.last))
	for s, seq := range w.last {
		if s != eventstore.ModelSubject("scoring") {
			want[s] = seq
		}
	}
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(d)
	var missing string
	for {
		missing, err = checkpoints(ctx, conn, want)
		if err == nil && missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not projected: %s %v", missing, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkpoints(ctx context.Context, conn *pgx.Conn, want map[string]uint64) (string, error) {
	var schema string
	if err := conn.QueryRow(ctx, `SELECT active FROM project.projections WHERE name = 'leads'`).Scan(&schema); err != nil {
		return "no projection yet", err
	}
	rows, err := conn.Query(ctx, `SELECT subject, seq FROM `+pgx.Identifier{schema, "checkpoints"}.Sanitize())
	if err != nil {
		return "", err
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct {
		s   string
		seq int64
	}, error) {
		var v struct {
			s   string
			seq int64
		}
		err := r.Scan(&v.s, &v.seq)
		return v, err
	})
	if err != nil {
		return "", err
	}
	have := map[string]uint64{}
	for _, g := range got {
		have[g.s] = uint64(g.seq)
	}
	for s, seq := range want {
		if have[s] < seq {
			return fmt.Sprintf("%s at %d of %d", s, have[s], seq), nil
		}
	}
	return "", nil
}
