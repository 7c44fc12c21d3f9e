package project_test

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/pkg/testenv"
)

//go:embed testdata/migrations
var migrations embed.FS

// tally is the test projection: per subject, how many events it was
// given and at which sequences, so any double count, skip or reordering
// shows.
type tally struct{}

func (tally) Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "testdata/migrations")
	if err != nil {
		panic(err)
	}
	return sub
}

func (tally) Apply(ctx context.Context, tx pgx.Tx, events []project.Event) error {
	for _, e := range events {
		_, err := tx.Exec(ctx, `INSERT INTO tally (subject, events, last_seq, seqs) VALUES ($1, 1, $2, ARRAY[$2::bigint])
			ON CONFLICT (subject) DO UPDATE SET events = tally.events + 1, last_seq = excluded.last_seq,
			seqs = tally.seqs || excluded.seqs`, e.Subject, int64(e.Seq))
		if err != nil {
			return err
		}
	}
	return nil
}

// foldingTally is tally with a fold: a rebuild into a fresh schema holds
// the replay in memory and copies it in.
type foldingTally struct{ tally }

func (foldingTally) NewFold() project.Fold { return &tallyFold{seqs: map[string][]int64{}} }

type tallyFold struct {
	order []string
	seqs  map[string][]int64
}

func (f *tallyFold) Add(events []project.Event) error {
	for _, e := range events {
		if _, ok := f.seqs[e.Subject]; !ok {
			f.order = append(f.order, e.Subject)
		}
		f.seqs[e.Subject] = append(f.seqs[e.Subject], int64(e.Seq))
	}
	return nil
}

func (f *tallyFold) Loads() []project.Load {
	rows := make([][]any, 0, len(f.order))
	for _, s := range f.order {
		q := f.seqs[s]
		rows = append(rows, []any{s, int32(len(q)), q[len(q)-1], q})
	}
	return []project.Load{{Table: "tally", Columns: []string{"subject", "events", "last_seq", "seqs"}, Rows: pgx.CopyFromRows(rows)}}
}

var quiet = slog.New(slog.DiscardHandler)

// env is an embedded JetStream with the lead stream and a fresh database.
type env struct {
	nats  *testenv.NATS
	store *eventstore.Store
	dsn   string
	pool  *pgxpool.Pool
}

func newEnv(t testing.TB) *env {
	t.Helper()
	n := testenv.StartNATS(t)
	if _, err := eventstore.EnsureStream(context.Background(), n.JS, eventstore.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	e := &env{nats: n, store: eventstore.New(n.JS, ""), dsn: testenv.Postgres(t)}
	e.pool = e.connect(t)
	return e
}

func (e *env) connect(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func config(pool *pgxpool.Pool, js jetstream.JetStream) project.Config {
	return project.Config{Name: "tally", Pool: pool, JS: js, Stream: eventstore.DefaultStream,
		Subjects: []string{eventstore.LeadSubjects, eventstore.CampaignSubjects}, Logger: quiet}
}

func newProjector(t testing.TB, pool *pgxpool.Pool, js jetstream.JetStream, edits ...func(*project.Config)) *project.Projector {
	t.Helper()
	cfg := config(pool, js)
	for _, edit := range edits {
		edit(&cfg)
	}
	p, err := project.New(ctxT(t), cfg, tally{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// groups runs p fed by the two consumer groups a read model uses: lead
// partitions, and one partition for campaigns. It stops when the test
// ends, or when the returned stop is called.
func groups(t testing.TB, js jetstream.JetStream, p *project.Projector) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pctx, pcancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { errs <- p.Run(pctx) })
	var cwg sync.WaitGroup
	cwg.Go(func() { errs <- consume.Run(ctx, js, leadGroup(), p.Handle) })
	cwg.Go(func() { errs <- consume.Run(ctx, js, campaignGroup(), p.Handle) })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			cwg.Wait()
			pcancel()
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("run: %v", err)
				}
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func leadGroup() consume.Config {
	return consume.Config{Stream: eventstore.DefaultStream, Group: "tally", Partitions: eventstore.Partitions,
		Filter: eventstore.PartitionSubjects, Key: eventstore.LeadID, Workers: 32, Logger: quiet,
		// Short, so a killed member's partitions move on quickly.
		AckWait: time.Second, PinnedTTL: 3 * time.Second}
}

func campaignGroup() consume.Config {
	return consume.Config{Stream: eventstore.DefaultStream, Group: "tally-ref",
		Filter: func(int) []string { return []string{eventstore.CampaignSubjects} }, Logger: quiet,
		AckWait: time.Second, PinnedTTL: 3 * time.Second}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// appendActivity appends one event to a lead and returns its sequence.
func (e *env) appendActivity(t testing.TB, lead string) uint64 {
	t.Helper()
	ctx := ctxT(t)
	subj := eventstore.LeadSubject(lead)
	v, err := e.store.Version(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := e.store.Append(ctx, subj, v, activity(t, lead))
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// activity is a web visit of lead, not yet stored.
func activity(t testing.TB, lead string) *eventv1.Event {
	t.Helper()
	ev, err := envelope.NewEvent(lead, &eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT},
		envelope.Meta{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func (e *env) appendCampaign(t testing.TB, id string) uint64 {
	t.Helper()
	ctx := ctxT(t)
	subj := eventstore.CampaignSubject(id)
	v, err := e.store.Version(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := envelope.NewEvent("", &eventv1.CampaignCostRecorded{CampaignId: id, CostId: uuid.NewString(),
		Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 100}}, envelope.Meta{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	seq, err := e.store.Append(ctx, subj, v, ev)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// workload appends events to leads and campaigns, interleaved, and
// returns the sequences written per subject.
func (e *env) workload(t testing.TB, leads, perLead, campaigns int) map[string][]uint64 {
	t.Helper()
	want := map[string][]uint64{}
	ids := make([]string, leads)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	for range perLead {
		for _, id := range ids {
			want[eventstore.LeadSubject(id)] = append(want[eventstore.LeadSubject(id)], e.appendActivity(t, id))
		}
	}
	for i := range campaigns {
		id := fmt.Sprintf("c%d", i)
		for range 2 {
			want[eventstore.CampaignSubject(id)] = append(want[eventstore.CampaignSubject(id)], e.appendCampaign(t, id))
		}
	}
	return want
}

// tallied reads the tally of the active schema.
func tallied(t testing.TB, p *project.Projector) map[string][]uint64 {
	t.Helper()
	got := map[string][]uint64{}
	err := p.Read(ctxT(t), func(tx pgx.Tx) error {
		rows, err := tx.Query(context.Background(), `SELECT subject, events, seqs FROM tally`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var subject string
			var n int
			var seqs []int64
			if err := rows.Scan(&subject, &n, &seqs); err != nil {
				return err
			}
			if n != len(seqs) {
				return fmt.Errorf("%s: %d events, %d sequences", subject, n, len(seqs))
			}
			for _, s := range seqs {
				got[subject] = append(got[subject], uint64(s))
			}
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitTally polls until the tally is want, and fails the test with the
// difference when it is not within the deadline.
func waitTally(t testing.TB, p *project.Projector, want map[string][]uint64) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		got := tallied(t, p)
		diff := tallyDiff(got, want)
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tally: %s", diff)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tallyDiff(got, want map[string][]uint64) string {
	for s, w := range want {
		if !slices.Equal(got[s], w) {
			return fmt.Sprintf("%s: got %v, want %v", s, got[s], w)
		}
	}
	for s, g := range got {
		if _, ok := want[s]; !ok {
			return fmt.Sprintf("%s: got %v, want nothing", s, g)
		}
	}
	return ""
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
