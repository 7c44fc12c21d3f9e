package main

// The projector section: the lead read model (pkg/project with the
// projector's own fold) on a stream of -projector-leads leads, beside
// the two floors a projection sits between, measured on the same data in
// the same run: reading the stream (an unfiltered ordered consumer that
// decodes every event, as the rebuild reads it) and writing PostgreSQL
// (pgx CopyFrom). It runs on an embedded server of its own and a
// database it creates and drops.

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/pkg/telemetry"
	"github.com/leadflow/leadflow/services/projector/adapters"
	"github.com/leadflow/leadflow/services/projector/app"
	"github.com/leadflow/leadflow/services/projector/ports"
)

var (
	projectorOn       = flag.Bool("projector", true, "measure the projector: live and rebuild throughput, report latency on the stored leads")
	projectorOnly     = flag.Bool("projector-only", false, "run only the projector section")
	projectorLeads    = flag.Int("projector-leads", 1_000_000, "leads stored for the projector section (about 2.5 events each)")
	projectorLive     = flag.Duration("projector-live", 20*time.Second, "live projection window, draining the stored backlog")
	projectorWorkers  = flag.Int("projector-workers", 2048, "live: consumer workers, the most messages one transaction holds (the projector's -workers)")
	projectorProfile  = flag.String("projector-profile", "", "write CPU profiles of the live window and the rebuild to this directory")
	projectorFlushers = flag.Int("projector-flushers", 3, "live: transactions committed at once (the projector's -flushers)")
	projectorRebuild  = flag.Bool("projector-rebuild", true, "measure the rebuild and the reports (false: floors and live only, to iterate)")
	projectorConns    = flag.Int("projector-conns", 0, "rebuild: tables loaded at once (pkg/project Config.RebuildConns; 0: its default)")
	projectorReports  = flag.Int("projector-reports", 5, "campaign report calls timed per attribution model")
	projectorKeep     = flag.String("projector-keep", "", "keep the section's JetStream data in this directory and reuse the leads stored there (to iterate)")
	projectorPG       = flag.String("projector-postgres", envOr("LEADFLOW_POSTGRES_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
		"PostgreSQL to create the bench database on")
)

// runID names this run's consumer groups: a kept stream holds those of
// earlier runs.
var runID = strconv.FormatInt(time.Now().UnixNano(), 36)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// projectorFigures is what the section measured.
type projectorFigures struct {
	leads, events int
	generate      time.Duration
	orderedRead   float64 // events/s
	copyRows      int
	copyConns     int
	copyFrom      float64 // rows/s
	live          float64 // events/s
	liveEvents    uint64
	liveBatches   uint64
	liveGaps      uint64
	noop          float64 // events/s: the same groups, a handler that does nothing
	rebuild       float64 // events/s
	rebuildTook   time.Duration
	rebuildEvents uint64
	reportSlowest map[string]time.Duration
	reportN       int
	detailP99     time.Duration
	detailP50     time.Duration
	detailN       int
	rows          map[string]int64
	heapPeak      uint64 // live heap objects seen during the rebuild, the fold included
}

func measureProjector(ctx context.Context, dir string, leads int, syncAlways bool, out io.Writer) (*projectorFigures, error) {
	f := &projectorFigures{leads: leads, reportSlowest: map[string]time.Duration{}}
	jsDir := filepath.Join(dir, "projector-js")
	if *projectorKeep != "" {
		jsDir = *projectorKeep
	}
	ns, err := natsserver.Start(natsserver.Config{Dir: jsDir, Name: "projector-bench", SyncAlways: syncAlways})
	if err != nil {
		return nil, err
	}
	defer ns.Shutdown()
	nc, js, err := eventstore.Dial(ns.URL(), "bench-projector")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	stream, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{})
	if err != nil {
		return nil, err
	}
	dsn, drop, err := benchDatabase(ctx, *projectorPG)
	if err != nil {
		return nil, err
	}
	defer drop()

	logf := func(format string, a ...any) { fmt.Fprintf(out, "  ... "+format+"\n", a...) }
	start := time.Now()
	var g generated
	if n := stream.CachedInfo().State.Msgs; n > 0 {
		g.events = int(n)
		logf("reusing the %d events stored in %s", n, jsDir)
	} else {
		g, err = generateLeads(ctx, js, leads, func(done int) {
			if done%200_000 == 0 {
				logf("%d leads written (%.0fs)", done, time.Since(start).Seconds())
			}
		})
		if err != nil {
			return nil, fmt.Errorf("generate: %w", err)
		}
	}
	f.generate, f.events = time.Since(start), g.events
	logf("%d leads, %d events written in %.1fs", leads, g.events, f.generate.Seconds())

	if f.orderedRead, err = orderedRead(ctx, js, g.events); err != nil {
		return nil, fmt.Errorf("ordered read: %w", err)
	}
	f.copyRows, f.copyConns = min(g.events, 1_000_000), cmp.Or(*projectorConns, 4) // pkg/project's RebuildConns default
	if f.copyFrom, err = copyFloor(ctx, dsn, f.copyRows, f.copyConns); err != nil {
		return nil, fmt.Errorf("copy floor: %w", err)
	}
	logf("floors: ordered read %.0f events/s, CopyFrom %.0f rows/s over %d connections", f.orderedRead, f.copyFrom, f.copyConns)

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	quiet := slog.New(slog.DiscardHandler)

	// Live: the service's two consumer groups feeding one projector, as
	// run.go wires them, over the stored backlog for a fixed window.
	if f.noop, err = measureNoop(ctx, js, quiet); err != nil {
		return nil, fmt.Errorf("no-op group: %w", err)
	}
	if err := profiled("live", func() error {
		var s project.Stats
		s, f.live, err = measureLive(ctx, js, pool, quiet)
		f.liveEvents, f.liveBatches, f.liveGaps = s.Applied, s.Batches, s.Gaps
		return err
	}); err != nil {
		return nil, fmt.Errorf("live: %w", err)
	}
	logf("live %.0f events/s over %s (%d events, %d batches, %d gaps); no-op group %.0f events/s", f.live, *projectorLive,
		f.liveEvents, f.liveBatches, f.liveGaps, f.noop)

	if !*projectorRebuild {
		return f, nil
	}
	// Rebuild: a fresh read model replays the whole stream into its next
	// schema while its first one serves.
	proj, err := project.New(ctx, project.Config{Name: adapters.Name, Pool: pool, JS: js, Stream: eventstore.DefaultStream,
		Subjects: adapters.Subjects, Rules: adapters.Rules, RebuildConns: *projectorConns, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}, adapters.ReadModel{}) // its phases, on stderr
	if err != nil {
		return nil, err
	}
	var pr project.Progress
	if err := profiled("rebuild", func() error {
		start := time.Now()
		last := start
		heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		pr, err = proj.Rebuild(ctx, func(p project.Progress) {
			metrics.Read(heap)
			f.heapPeak = max(f.heapPeak, heap[0].Value.Uint64())
			if time.Since(last) > 10*time.Second {
				last = time.Now()
				logf("rebuild: %d events read, at %d of %d (%.0fs)", p.Events, p.Position, p.End, time.Since(start).Seconds())
			}
		})
		f.rebuildTook = time.Since(start)
		return err
	}); err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	f.rebuildEvents = pr.Events
	f.rebuild = float64(pr.Events) / f.rebuildTook.Seconds()
	logf("rebuild %d events in %.1fs", pr.Events, f.rebuildTook.Seconds())
	if f.rows, err = tableRows(ctx, pool); err != nil {
		return nil, err
	}

	// Reports on the rebuilt model, through the use cases the API calls.
	st := adapters.NewStream(js, eventstore.DefaultStream)
	whatIfs, err := adapters.NewWhatIfs(ctx, pool)
	if err != nil {
		return nil, err
	}
	a := app.New(adapters.NewQueries(proj), proj, st, st, whatIfs, app.WithLogger(quiet))
	defer a.Close()
	f.reportN = *projectorReports
	for _, m := range []projectorv1.AttributionModel{projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH, projectorv1.AttributionModel_ATTRIBUTION_MODEL_LINEAR} {
		lat, err := sampled(f.reportN, func(int) error {
			r, err := a.Campaigns(ctx, app.CampaignQuery{Attribution: m, Currency: "EUR"})
			if err == nil && len(r.GetCampaigns()) != genCampaigns {
				err = fmt.Errorf("campaign report: %d campaigns", len(r.GetCampaigns()))
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		f.reportSlowest[m.String()] = lat.p99
	}
	f.detailN = min(2000, leads) // a lead detail call each, on leads in random order
	ids, err := sampleLeads(ctx, pool, f.detailN)
	if err != nil {
		return nil, err
	}
	lat, err := sampled(f.detailN, func(i int) error {
		_, err := a.GetLead(ctx, ids[i])
		return err
	})
	if err != nil {
		return nil, err
	}
	f.detailP50, f.detailP99 = lat.p50, lat.p99
	return f, nil
}

// profiled runs f, writing its CPU profile to -projector-profile/name.pprof
// when that flag is set.
func profiled(name string, f func() error) error {
	if *projectorProfile == "" {
		return f()
	}
	if err := os.MkdirAll(*projectorProfile, 0o755); err != nil {
		return err
	}
	stop, err := telemetry.CPUProfile(filepath.Join(*projectorProfile, name+".pprof"))
	if err != nil {
		return err
	}
	defer stop()
	return f()
}

// measureLive drains the backlog with the projector's consumer groups for
// -projector-live and returns what it applied.
func measureLive(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, log *slog.Logger) (project.Stats, float64, error) {
	proj, err := project.New(ctx, project.Config{Name: "live", Pool: pool, JS: js, Stream: eventstore.DefaultStream,
		Subjects: adapters.Subjects, MaxBatch: *projectorWorkers, Flushers: *projectorFlushers, Logger: log}, adapters.ReadModel{})
	if err != nil {
		return project.Stats{}, 0, err
	}
	pctx, pcancel := context.WithCancel(ctx)
	cctx, ccancel := context.WithCancel(ctx)
	var wg, cwg sync.WaitGroup
	errs := make([]error, 3)
	wg.Go(func() { errs[0] = proj.Run(pctx) })
	gc := ports.GroupConfig{Stream: eventstore.DefaultStream, Workers: *projectorWorkers, AckWait: 5 * time.Second, ShutdownGrace: 5 * time.Second, Logger: log}
	// Its own durable names, so that nothing of a later run's groups is
	// shared with this one.
	lead, ref := ports.LeadGroupConfig(gc), ports.ReferenceGroupConfig(gc)
	lead.Group, ref.Group = "bench-live-"+runID, "bench-live-ref-"+runID
	start := time.Now()
	cwg.Go(func() { errs[1] = consume.Run(cctx, js, lead, proj.Handle) })
	cwg.Go(func() { errs[2] = consume.Run(cctx, js, ref, proj.Handle) })
	time.Sleep(*projectorLive)
	s := proj.Stats()
	took := time.Since(start)
	ccancel()
	cwg.Wait()
	pcancel()
	wg.Wait()
	for _, e := range errs {
		if e != nil && !errors.Is(e, context.Canceled) {
			return s, 0, e
		}
	}
	return s, float64(s.Applied) / took.Seconds(), nil
}

// measureNoop is the floor of the live path: the projector's lead group
// over the same backlog for the same window, its handler doing nothing.
func measureNoop(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (float64, error) {
	cctx, cancel := context.WithCancel(ctx)
	var n atomic.Int64
	var wg sync.WaitGroup
	var err error
	cfg := ports.LeadGroupConfig(ports.GroupConfig{Stream: eventstore.DefaultStream, Workers: *projectorWorkers, AckWait: 5 * time.Second,
		ShutdownGrace: 5 * time.Second, Logger: log})
	cfg.Group = "bench-noop-" + runID
	start := time.Now()
	wg.Go(func() {
		err = consume.Run(cctx, js, cfg, func(context.Context, consume.Msg) error { n.Add(1); return nil })
	})
	time.Sleep(*projectorLive)
	got, took := n.Load(), time.Since(start)
	cancel()
	wg.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return 0, err
	}
	return float64(got) / took.Seconds(), nil
}

// orderedRead is the read floor: an unfiltered ordered consumer over the
// whole stream, decoding every event, as the rebuild reads.
func orderedRead(ctx context.Context, js jetstream.JetStream, events int) (float64, error) {
	start := time.Now()
	cons, err := js.OrderedConsumer(ctx, eventstore.DefaultStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(20_000))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	for n := 0; n < events; n++ {
		m, err := it.Next(jetstream.NextMaxWait(5 * time.Second))
		if errors.Is(err, nats.ErrTimeout) {
			return 0, fmt.Errorf("read %d of %d", n, events)
		}
		if err != nil {
			return 0, err
		}
		if _, err := eventstore.DecodeEvent(m.Data()); err != nil {
			return 0, err
		}
	}
	return float64(events) / time.Since(start).Seconds(), nil
}

// copyFloor is the write floor: pgx CopyFrom of rows shaped like a lead
// row (a few columns and a small JSON fold) into a scratch table, over as
// many connections at once as a rebuild loads with.
func copyFloor(ctx context.Context, dsn string, rows, conns int) (float64, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return 0, err
	}
	pcfg.MaxConns = int32(conns) // the default, max(4, cores), would cap larger -projector-conns
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE copy_floor (lead_id text, version bigint, status int, source text, campaign text,
		captured_at timestamptz, state jsonb)`); err != nil {
		return 0, err
	}
	state := []byte(`{"id":"x","version":1,"status":5,"source":"web-form","first_campaign":"c1","stages":[{"seq":1,"status":1}]}`)
	ids := make([]string, rows)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	now := time.Now()
	var copied atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, conns)
	for c := range conns {
		lo, hi := rows*c/conns, rows*(c+1)/conns
		wg.Go(func() {
			n, err := pool.CopyFrom(ctx, pgx.Identifier{"copy_floor"}, []string{"lead_id", "version", "status", "source", "campaign", "captured_at", "state"},
				pgx.CopyFromSlice(hi-lo, func(i int) ([]any, error) {
					return []any{ids[lo+i], int64(lo + i), int32(5), "web-form", "c1", now, state}, nil
				}))
			copied.Add(n)
			errs[c] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil || int(copied.Load()) != rows {
		return 0, fmt.Errorf("copied %d of %d: %v", copied.Load(), rows, err)
	}
	rate := float64(rows) / time.Since(start).Seconds()
	_, err = pool.Exec(ctx, `DROP TABLE copy_floor`)
	return rate, err
}

func sampled(n int, f func(i int) error) (result, error) {
	lat := make([]time.Duration, n)
	start := time.Now()
	for i := range lat {
		t := time.Now()
		if err := f(i); err != nil {
			return result{}, err
		}
		lat[i] = time.Since(t)
	}
	return newResult(lat, time.Since(start), 0), nil
}

// sampleLeads returns n lead ids of the read model, in random order.
func sampleLeads(ctx context.Context, pool *pgxpool.Pool, n int) ([]string, error) {
	var schema string
	if err := pool.QueryRow(ctx, `SELECT active FROM project.projections WHERE name = $1`, adapters.Name).Scan(&schema); err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT lead_id FROM `+pgx.Identifier{schema, "leads"}.Sanitize()+` ORDER BY random() LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err == nil && len(ids) < n {
		err = fmt.Errorf("%d leads in the read model", len(ids))
	}
	return ids, err
}

// tableRows counts the rows of the active schema's tables.
func tableRows(ctx context.Context, pool *pgxpool.Pool) (map[string]int64, error) {
	var schema string
	if err := pool.QueryRow(ctx, `SELECT active FROM project.projections WHERE name = $1`, adapters.Name).Scan(&schema); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, t := range []string{"leads", "lead_folds", "checkpoints", "lead_touches", "stage_visits", "journeys", "handoffs", "opportunities"} {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, t}.Sanitize()).Scan(&n); err != nil {
			return nil, err
		}
		out[t] = n
	}
	return out, nil
}

// benchDatabase creates a database for the section and returns its URL
// and a function that drops it.
func benchDatabase(ctx context.Context, admin string) (string, func(), error) {
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		return "", nil, err
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "leadflow_bench_" + hex.EncodeToString(b[:])
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", nil, fmt.Errorf("postgres at %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, err
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: drop database:", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
			fmt.Fprintln(os.Stderr, "bench: drop database:", err)
		}
	}
	u, err := url.Parse(admin)
	if err != nil {
		drop()
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// copyPerEvent is the CopyFrom floor in events/s: its rows/s over the rows
// the read model holds an event (counted after the rebuild; 1 without it),
// so that it is compared with projection rates in their own unit.
func (f *projectorFigures) copyPerEvent() (eventsPerSec, rowsPerEvent float64) {
	var rows int64
	for _, n := range f.rows {
		rows += n
	}
	rowsPerEvent = 1
	if rows > 0 && f.events > 0 {
		rowsPerEvent = float64(rows) / float64(f.events)
	}
	return f.copyFrom / rowsPerEvent, rowsPerEvent
}

func (f *projectorFigures) print(w io.Writer) {
	copyEvents, rowsPerEvent := f.copyPerEvent()
	floor := min(f.orderedRead, copyEvents)
	fmt.Fprintf(w, "Projector: %d leads, %d events (generated in %.1fs), embedded server of its own, PostgreSQL database of its own:\n",
		f.leads, f.events, f.generate.Seconds())
	per := fmt.Sprintf("at the read model's %.2f rows an event", rowsPerEvent)
	if len(f.rows) == 0 {
		per = "taking one row an event (rows not counted without the rebuild)"
	}
	fmt.Fprintf(w, "  floors        ordered read (unfiltered, decoded) %9.0f events/s   pgx CopyFrom (%d lead-shaped rows, %d connections) %9.0f rows/s = %.0f events/s %s\n",
		f.orderedRead, f.copyRows, f.copyConns, f.copyFrom, copyEvents, per)
	fmt.Fprintf(w, "  %-13s %9s   %-18s %-18s %s\n", "", "events/s", "of ordered read", "of CopyFrom", "of min(floors)")
	fmt.Fprintf(w, "  %-13s %9.0f   %-18s %-18s %s   (%d events in %s, %d transactions, %d at once, %d workers)\n", "live", f.live,
		ratio(f.live, f.orderedRead), ratio(f.live, copyEvents), ratio(f.live, floor), f.liveEvents, *projectorLive, f.liveBatches, *projectorFlushers, *projectorWorkers)
	fmt.Fprintf(w, "  %-13s %9.0f   live is %s of it: the projector's lead group, same workers and window, a handler that does nothing\n",
		"no-op group", f.noop, ratio(f.live, f.noop))
	fmt.Fprintf(w, "  %-13s %9.0f   %-18s %-18s %s   (%d events in %.1fs, swap included; heap up to %d MiB)\n", "rebuild", f.rebuild,
		ratio(f.rebuild, f.orderedRead), ratio(f.rebuild, copyEvents), ratio(f.rebuild, floor), f.rebuildEvents, f.rebuildTook.Seconds(), f.heapPeak>>20)
	keys := make([]string, 0, len(f.rows))
	for k := range f.rows {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprintf(w, "  rows written:")
	for _, k := range keys {
		fmt.Fprintf(w, " %s %d", k, f.rows[k])
	}
	fmt.Fprintf(w, "\n  with %d leads stored:\n", f.leads)
	for _, m := range []string{"ATTRIBUTION_MODEL_FIRST_TOUCH", "ATTRIBUTION_MODEL_LINEAR"} {
		fmt.Fprintf(w, "    campaign report, %-30s %s, the slowest of %d calls\n", m, ms(f.reportSlowest[m]), f.reportN)
	}
	fmt.Fprintf(w, "    lead detail                                     p99 %s, p50 %s (of %d)\n\n", ms(f.detailP99), ms(f.detailP50), f.detailN)
}
