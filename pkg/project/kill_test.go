package project_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// TestMain doubles as a projector process for the kill tests: with
// PROJECT_CHILD_NATS set, the test binary projects the stream and, when
// the batch holding PROJECT_CHILD_SEQ reaches PROJECT_CHILD_STAGE, says
// so on stdout and waits there to be killed.
func TestMain(m *testing.M) {
	if url := os.Getenv("PROJECT_CHILD_NATS"); url != "" {
		os.Exit(child(url, os.Getenv("PROJECT_CHILD_PG"), os.Getenv("PROJECT_CHILD_STAGE"), os.Getenv("PROJECT_CHILD_SEQ")))
	}
	os.Exit(m.Run())
}

func child(url, dsn, stageArg, seqArg string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 1 }
	stage, err := strconv.Atoi(stageArg)
	if err != nil {
		return fail(err)
	}
	seq, err := strconv.ParseUint(seqArg, 10, 64)
	if err != nil {
		return fail(err)
	}
	nc, js, err := eventstore.Dial(url, "child")
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fail(err)
	}
	p, err := project.New(ctx, config(pool, js), tally{})
	if err != nil {
		return fail(err)
	}
	project.SetHook(p, func(s int, events []project.Event) {
		if s == stage && slices.ContainsFunc(events, func(e project.Event) bool { return e.Seq == seq }) {
			fmt.Println("AT", s)
			select {} // until killed
		}
	})
	go func() { _ = p.Run(ctx) }()
	go func() { _ = consume.Run(ctx, js, campaignGroup(), p.Handle) }()
	if err := consume.Run(ctx, js, leadGroup(), p.Handle); err != nil {
		return fail(err)
	}
	return 0
}

// A projector process is killed -9 inside a batch's transaction: after
// the rows are written but before the checkpoint, after the checkpoint but
// before the commit, and after the commit but before the ack. Another
// projector takes over. Every event ends up applied exactly once: the
// first two roll back as a whole (rows and checkpoint are one
// transaction), the third is redelivered and found at its checkpoint.
func TestKillInsideABatch(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stage     int
		committed bool
	}{
		{"between rows and checkpoint", project.StageRows, false},
		{"between checkpoint and commit", project.StageCheckpoint, false},
		{"between commit and ack", project.StageCommitted, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			want := e.workload(t, 30, 3, 2)
			// A lead's second event: the kill falls in the middle of its life.
			var victim string
			for s := range want {
				if eventstore.LeadID(s) != "" {
					victim = s
					break
				}
			}
			seq := want[victim][1]

			child := testenv.StartChild(t, "PROJECT_CHILD_NATS="+e.nats.Server.URL(), "PROJECT_CHILD_PG="+e.dsn,
				"PROJECT_CHILD_STAGE="+strconv.Itoa(tc.stage), "PROJECT_CHILD_SEQ="+strconv.FormatUint(seq, 10))
			if line := child.Next(t, "", 45*time.Second); line != "AT "+strconv.Itoa(tc.stage) {
				t.Fatalf("child said %q", line)
			}
			child.Kill(t) // SIGKILL: no deferred code, no rollback by the client

			p := newProjector(t, e.connect(t), e.nats.JS)
			partial := tallied(t, p)
			if got := slices.Contains(partial[victim], seq); got != tc.committed {
				t.Fatalf("after the kill, %s holds seq %d: %v, want %v (%v)", victim, seq, got, tc.committed, partial[victim])
			}
			groups(t, e.nats.JS, p)
			waitTally(t, p, want)
			if tc.committed && p.Stats().Redelivered == 0 {
				t.Errorf("no redelivery seen: %+v", p.Stats())
			}
		})
	}
}
