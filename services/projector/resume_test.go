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
		t.Helper()
		st, err := c.GetProjectionStatus(ctx, &projectorv1.GetProjectionStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return st
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
