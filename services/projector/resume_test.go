package main

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// A rebuild cut off after its swap (the process died before the catch-up)
// is finished when the service starts, without an operator: the schema
// serving may lack what live batches wrote to the old one just before the
// swap, and nothing else would bring it.
func TestRebuildCutOffAfterItsSwapIsFinishedAtStart(t *testing.T) {
	w := newWorld(t)
	w.fixture(t)
	s := w.start(t)
	w.projected(t, w.dsn)
	ctx := ctxT(t)
	if _, err := s.client.StartRebuild(ctx, &projectorv1.StartRebuildRequest{}); err != nil {
		t.Fatal(err)
	}
	status := func(c projectorv1.ProjectorServiceClient) *projectorv1.GetProjectionStatusResponse {
		return projectionStatus(ctx, t, c)
	}
	testenv.Eventually(t, 45*time.Second, func() bool { return status(s.client).GetRebuild().GetDone() }, "the rebuild did not finish")
	s.stop()

	// What a process killed between the swap and the end of its catch-up
	// leaves: the new schema active, the rebuild neither finished nor
	// running.
	conn, err := pgx.Connect(ctx, w.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `UPDATE project.projections SET building = active, build_finished_at = NULL WHERE name = 'leads'`); err != nil {
		t.Fatal(err)
	}
	s = w.start(t)
	if r := status(s.client).GetRebuild(); !r.GetSwapped() {
		t.Fatalf("the rebuild as left: %v", r)
	}
	testenv.Eventually(t, 45*time.Second, func() bool { return status(s.client).GetRebuild().GetDone() },
		"the rebuild cut off after its swap is not finished after a start")
	if st := status(s.client); st.GetActiveSchema() != "leads_2" {
		t.Fatalf("after the resumed rebuild: %v", st)
	}
	s.stop()

	// Cut off in a fleet that goes on running (an error in its catch-up, a
	// rolling update whose new replicas started while it ran): a running
	// replica finishes it too.
	s = w.launch(t, Config{Addr: "127.0.0.1:0", NATSURL: w.nats.Server.URL(), Stream: stream, Replicas: 1, Postgres: w.dsn,
		Workers: 64, AckWait: 2 * time.Second, Grace: time.Second, resumeEvery: 200 * time.Millisecond})
	time.Sleep(time.Second) // past the look it takes as it starts
	if _, err := conn.Exec(ctx, `UPDATE project.projections SET building = active, build_finished_at = NULL WHERE name = 'leads'`); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return status(s.client).GetRebuild().GetDone() },
		"the rebuild cut off after its swap is not finished by a running replica")
}

// A read model built by older rules of the fold (its rows and stored
// folds keep their view until every lead is folded again) is rebuilt
// when a projector with newer rules starts, once, while it serves.
func TestAReadModelBuiltByOlderRulesIsRebuiltAtStart(t *testing.T) {
	w := newWorld(t)
	w.fixture(t)
	s := w.start(t)
	w.projected(t, w.dsn)
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, w.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	count := func(q string) int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	leads := count(`SELECT count(*) FROM leads_1.leads`)
	if leads == 0 {
		t.Fatal("nothing projected")
	}
	s.stop()
	// What older rules left: rows this version's would write otherwise,
	// in a schema built before versions were kept.
	if _, err := conn.Exec(ctx, `UPDATE leads_1.leads SET score = score + 1000; DELETE FROM leads_1.rules`); err != nil {
		t.Fatal(err)
	}
	status := func(c projectorv1.ProjectorServiceClient) *projectorv1.GetProjectionStatusResponse {
		return projectionStatus(ctx, t, c)
	}
	s = w.start(t)
	testenv.Eventually(t, 45*time.Second, func() bool {
		st := status(s.client)
		return st.GetActiveSchema() == "leads_2" && st.GetRebuild().GetDone()
	}, "the read model built by older rules was not rebuilt")
	if n := count(`SELECT count(*) FROM leads_2.leads WHERE score >= 1000`); n != 0 || count(`SELECT count(*) FROM leads_2.leads`) != leads {
		t.Fatalf("after the rebuild: %d leads of %d keep the older rules' rows", n, leads)
	}
	s.stop()
	// Built by these rules: the next start rebuilds nothing.
	s = w.start(t)
	time.Sleep(2 * time.Second) // past the look it takes as it starts
	if st := status(s.client); st.GetActiveSchema() != "leads_2" || !st.GetRebuild().GetDone() {
		t.Fatalf("a start with the same rules: %v", st)
	}
}

func projectionStatus(ctx context.Context, t *testing.T, c projectorv1.ProjectorServiceClient) *projectorv1.GetProjectionStatusResponse {
	t.Helper()
	st, err := c.GetProjectionStatus(ctx, &projectorv1.GetProjectionStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}
