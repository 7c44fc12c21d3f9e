package project_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// A read model fed by a consumer group: the Projector commits what every
// worker hands it in one transaction with the leads' checkpoints, and a
// rebuild replays the stream into a fresh schema and swaps it in.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "project-example-")
	defer os.RemoveAll(dir)
	srv, err := natsserver.Start(natsserver.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	nc, js, err := eventstore.Dial(srv.URL(), "example")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	if _, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{}); err != nil {
		log.Fatal(err)
	}
	dsn, drop := exampleDatabase()
	defer drop()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	// Three events of one lead.
	store := eventstore.New(js, "")
	lead := uuid.NewString()
	var version uint64
	for range 3 {
		ev, _ := envelope.NewEvent(lead, &eventv1.ActivityRecorded{ActivityId: uuid.NewString()}, envelope.Meta{}, time.Now())
		if version, err = store.Append(ctx, eventstore.LeadSubject(lead), version, ev); err != nil {
			log.Fatal(err)
		}
	}

	// New creates the schema tally_1 and applies the migrations.
	p, err := project.New(ctx, project.Config{Name: "tally", Pool: pool, JS: js, Subjects: []string{eventstore.LeadSubjects},
		Logger: slog.New(slog.DiscardHandler)}, tally{})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	batchCtx, stopBatches := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Run(batchCtx) })
	wg.Go(func() {
		_ = consume.Run(runCtx, js, consume.Config{Stream: eventstore.DefaultStream, Group: "tally", Partitions: eventstore.Partitions,
			Filter: eventstore.PartitionSubjects, Key: eventstore.LeadID, Logger: slog.New(slog.DiscardHandler)}, p.Handle)
	})
	events := func() (n int) {
		_ = p.Read(ctx, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT coalesce(sum(events), 0) FROM tally`).Scan(&n)
		})
		return n
	}
	for events() < 3 {
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("live:", events())

	pr, err := p.Rebuild(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	st, _ := p.Status(ctx)
	fmt.Printf("rebuilt %s from %s: %d events, serving %s\n", pr.Schema, pr.Replaces, events(), st.Active)
	stop()
	stopBatches()
	wg.Wait()
	// Output:
	// live: 3
	// rebuilt tally_2 from tally_1: 3 events, serving tally_2
}

// exampleDatabase creates a database on the test server and returns its
// URL and a function that drops it.
func exampleDatabase() (string, func()) {
	base := os.Getenv(testenv.PostgresEnv)
	if base == "" {
		base = testenv.DefaultPostgres
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		log.Fatal(err)
	}
	name := "leadflow_example_" + uuid.NewString()[:8]
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		log.Fatal(err)
	}
	cfg := admin.Config().Copy()
	cfg.Database = name
	dsn := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	return dsn, func() {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Close(ctx)
	}
}
