package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/projector/adapters"
	"github.com/leadflow/leadflow/services/projector/app"
	"github.com/leadflow/leadflow/services/projector/ports"
)

// replayed replays the whole stream into a fresh database (a rebuild of a
// read model that never saw an event) and serves the reports from it.
type replayed struct {
	client projectorv1.ProjectorServiceClient
	proj   *project.Projector
	pool   *pgxpool.Pool
}

func (w *world) replay(t *testing.T, dsn string) *replayed {
	t.Helper()
	ctx := ctxT(t)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	proj, err := project.New(ctx, project.Config{Name: adapters.Name, Pool: pool, JS: w.nats.JS, Stream: stream,
		Subjects: adapters.Subjects, Rules: adapters.Rules, Logger: log}, adapters.ReadModel{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proj.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	st := adapters.NewStream(w.nats.JS, stream)
	whatIfs, err := adapters.NewWhatIfs(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	a := app.New(adapters.NewQueries(proj), proj, st, st, whatIfs, app.WithLogger(log))
	t.Cleanup(a.Close)
	srv := grpcserver.New(log, nil)
	projectorv1.RegisterProjectorServiceServer(srv.Server, ports.NewGRPC(a, log))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(sctx, lis, time.Second) })
	t.Cleanup(func() { stop(); wg.Wait() })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &replayed{client: projectorv1.NewProjectorServiceClient(conn), proj: proj, pool: pool}
}

// reports asks every report the API has, in several shapes, and returns
// the answers by name.
func reports(t *testing.T, c projectorv1.ProjectorServiceClient, leads []string) map[string]proto.Message {
	t.Helper()
	ctx := ctxT(t)
	out := map[string]proto.Message{}
	add := func(name string, m proto.Message, err error) {
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = m
	}
	for _, p := range []*projectorv1.Period{nil, marchPeriod()} {
		sfx := fmt.Sprintf(" period=%v", p != nil)
		for g := range 4 {
			r, err := c.GetFunnel(ctx, &projectorv1.GetFunnelRequest{Period: p, GroupBy: projectorv1.FunnelGroup(g + 1)})
			add(fmt.Sprintf("funnel %d%s", g, sfx), r, err)
		}
		for m := range 3 {
			r, err := c.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Period: p, Attribution: projectorv1.AttributionModel(m + 1), Currency: "EUR"})
			add(fmt.Sprintf("campaigns %d%s", m, sfx), r, err)
		}
		sla, err := c.GetSLACompliance(ctx, &projectorv1.GetSLAComplianceRequest{Period: p})
		add("sla"+sfx, sla, err)
		perf, err := c.GetPerformance(ctx, &projectorv1.GetPerformanceRequest{Period: p, Currency: "EUR"})
		add("performance"+sfx, perf, err)
		acc, err := c.GetAccounts(ctx, &projectorv1.GetAccountsRequest{Period: p, Currency: "EUR"})
		add("accounts"+sfx, acc, err)
	}
	all, err := c.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{PageSize: 500})
	add("search", all, err)
	queues, err := c.GetQueues(ctx, &projectorv1.GetQueuesRequest{})
	add("queues", queues, err)
	for _, id := range leads {
		d, err := c.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: id})
		add("lead "+id, d, err)
	}
	return out
}

func sameReports(t *testing.T, live, other map[string]proto.Message, what string) {
	t.Helper()
	if len(live) != len(other) {
		t.Fatalf("%s: %d reports, live has %d", what, len(other), len(live))
	}
	drift := 0
	for name, m := range live {
		if !proto.Equal(m, other[name]) {
			drift++
			t.Errorf("%s: %s differs:\nlive:     %v\nreplayed: %v", what, name, m, other[name])
		}
	}
	if drift != 0 {
		t.Fatalf("%s: drift in %d of %d reports", what, drift, len(live))
	}
}

// tables returns a digest of every table of the active read-model schema,
// so two databases can be compared row for row.
func tables(t *testing.T, dsn string) map[string]string {
	t.Helper()
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var schema string
	if err := conn.QueryRow(ctx, `SELECT active FROM project.projections WHERE name = $1`, adapters.Name).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name <> 'goose_db_version'`, schema)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range names {
		var digest string
		var count int64
		q := fmt.Sprintf(`SELECT count(*), coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM %s x`, pgx.Identifier{schema, n}.Sanitize())
		if err := conn.QueryRow(ctx, q).Scan(&count, &digest); err != nil {
			t.Fatal(err)
		}
		out[n] = fmt.Sprintf("%d rows %s", count, digest)
	}
	return out
}

func sameTables(t *testing.T, live, other map[string]string) {
	t.Helper()
	if len(live) < 10 {
		t.Fatalf("only %d tables: %v", len(live), live)
	}
	for n, d := range live {
		if other[n] != d {
			t.Errorf("table %s: live %s, replayed %s", n, d, other[n])
		}
	}
}

var fixtureLeads = []string{"l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9"}

// One set of numbers: the whole stream replayed into a fresh database
// gives every report figure and every row the live projection has, and
// so does a rebuild of the live service, swapped in while events keep
// coming.
func TestOneSetOfNumbers(t *testing.T) { testOneSetOfNumbers(t, newWorld) }

func testOneSetOfNumbers(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	s := w.start(t)
	w.fixture(t)
	// Services stamp times to the nanosecond; PostgreSQL keeps
	// microseconds, and a rebuild and the live projection must drop the
	// rest alike.
	w.leadAt(t, "ns", w.at(5).Add(999_999_600*time.Nanosecond), lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{
		SealedContact: []byte("s"), Profile: &eventv1.Profile{EmailDomain: "x.example"}, Attribution: &eventv1.Attribution{Source: "web-form", CampaignId: "search"}})
	w.projected(t, w.dsn)

	live := reports(t, s.client, fixtureLeads)
	fresh := w.replay(t, testenv.Postgres(t))
	sameReports(t, live, reports(t, fresh.client, fixtureLeads), "fresh database")
	sameTables(t, tables(t, w.dsn), tablesOf(t, fresh))

	// Rebuild the live service while leads keep arriving and moving on.
	ctx := ctxT(t)
	var wg sync.WaitGroup
	more := make(chan struct{})
	var extra []string
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-more:
				return
			default:
			}
			id := fmt.Sprintf("x%d", i)
			extra = append(extra, id)
			w.lead(t, id, float64(i), lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{SealedContact: []byte("s"),
				Profile: &eventv1.Profile{EmailDomain: "x.example"}, Attribution: &eventv1.Attribution{Source: "web-form", CampaignId: "search"}})
			w.lead(t, id, float64(i)+1, lifecycle.Command{Name: lifecycle.Qualify}, &eventv1.LeadQualified{Score: 90, Threshold: 70})
			time.Sleep(5 * time.Millisecond)
		}
	})
	r, err := s.client.StartRebuild(ctx, &projectorv1.StartRebuildRequest{})
	if err != nil || r.GetSchema() != "leads_2" {
		t.Fatalf("start rebuild: %v %v", r, err)
	}
	if _, err := s.client.StartRebuild(ctx, &projectorv1.StartRebuildRequest{}); err == nil {
		t.Error("a second rebuild started while one runs")
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		st, err := s.client.GetProjectionStatus(ctx, &projectorv1.GetProjectionStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if st.GetRebuild().GetDone() {
			if st.GetActiveSchema() != "leads_2" || st.GetRebuild().GetReplaces() != "leads_1" || st.GetRebuild().GetEvents() == 0 {
				t.Fatalf("after the rebuild: %v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rebuild not done: %v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(more)
	wg.Wait()
	w.projected(t, w.dsn)

	all := append(append([]string{}, fixtureLeads...), extra...)
	live = reports(t, s.client, all)
	again := w.replay(t, testenv.Postgres(t))
	sameReports(t, live, reports(t, again.client, all), "fresh database after the live rebuild")
	sameTables(t, tables(t, w.dsn), tablesOf(t, again))
	st, err := s.client.GetProjectionStatus(ctx, &projectorv1.GetProjectionStatusRequest{})
	if err != nil || len(st.GetUnknownEvents()) != 0 {
		t.Errorf("status: %v %v", st, err)
	}
	t.Logf("%d extra leads written during the rebuild", len(extra))
}

func tablesOf(t *testing.T, r *replayed) map[string]string {
	t.Helper()
	return tables(t, r.pool.Config().ConnString())
}
