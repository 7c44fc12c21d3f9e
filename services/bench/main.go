// Command bench is `make bench`: Leadflow's throughput and latency beside
// the raw JetStream figures measured on the same server in the same run,
// as ratios. Nothing here asserts a number; it measures and prints.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/pkg/telemetry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	dur := flag.Duration("d", 5*time.Second, "duration of each timed run")
	bulkRows := flag.Int("bulk", 50_000, "rows in the bulk import run")
	syncAlways := flag.Bool("sync-always", false, "fsync every write (JetStream sync_interval: always)")
	profileTo := flag.String("cpuprofile", "", "write the bench process's CPU profile (its embedded servers and load included) to this file")
	flag.Parse()
	ctx := context.Background()
	if *natsServe != "" { // the chaos run's server process: chaos.go
		return serveNATS(*natsServe)
	}
	if *chaosFor > 0 { // faults, not figures: chaos.go
		return runChaos(ctx, os.Stdout)
	}
	if *profileTo != "" {
		if *projectorProfile != "" {
			return errors.New("-cpuprofile and -projector-profile each take the process's one CPU profile: give one")
		}
		stop, err := telemetry.CPUProfile(*profileTo)
		if err != nil {
			return err
		}
		defer stop()
	}

	dir, err := os.MkdirTemp("", "leadflow-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ns, err := natsserver.Start(natsserver.Config{Dir: filepath.Join(dir, "js"), SyncAlways: *syncAlways})
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	fmt.Printf("Leadflow bench: nats-server embedded (sync_always=%v), %s per run, GOMAXPROCS=%d\n\n", *syncAlways, *dur, gomaxprocs())
	if *handoffOnly { // handoff pipeline, a server of its own: handoff.go
		return runHandoff(ctx, os.Stdout, *syncAlways)
	}
	if *projectorOnly { // projector section: projector.go
		pf, err := measureProjector(ctx, dir, *projectorLeads, *syncAlways, os.Stdout)
		if err != nil {
			return fmt.Errorf("projector: %w", err)
		}
		pf.print(os.Stdout)
		return nil
	}
	if (*layoutOn && !*floorOnly) || *layoutOnly { // subject-layout benchmark: layout.go
		lr, err := measureLayout(ctx, ns.URL(), *layoutLeads)
		if err != nil {
			return fmt.Errorf("layout: %w", err)
		}
		if lr.print(os.Stdout); *layoutOnly {
			return nil
		}
	}

	payload, err := captureEventSize()
	if err != nil {
		return err
	}
	// The floor's stream takes lead.>, so it runs before the services
	// create theirs.
	var floor *floorFigures
	if *floorOn || *floorOnly {
		ff, err := measureFloor(ctx, ns.URL(), payload)
		if err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		if floor = &ff; *floorOnly {
			floor.print(os.Stdout, 0)
			return nil
		}
	}
	raw, err := measureRaw(ctx, ns.URL(), payload, *dur)
	if err != nil {
		return fmt.Errorf("raw: %w", err)
	}

	natsURLForCount = ns.URL()
	procs := map[string]*proc{}
	for _, name := range []string{"intake", "qualification"} {
		bin, err := buildService(dir, name)
		if err != nil {
			return err
		}
		p, err := startService(ctx, bin, ns.URL())
		if err != nil {
			return err
		}
		defer p.stop()
		procs[name] = p
	}
	// Qualification gets its model now, then sits paused while intake is
	// measured, so the capture figures are intake's alone; its backlog
	// is measured after.
	q, err := newQualification(ctx, ns.URL(), procs["qualification"].addr)
	if err != nil {
		return fmt.Errorf("qualification: %w", err)
	}
	defer q.close()
	if err := q.activate(ctx, 70); err != nil {
		return fmt.Errorf("activate model: %w", err)
	}
	if err := q.pause(ctx); err != nil {
		return fmt.Errorf("pause qualification: %w", err)
	}
	lf, err := measureIntake(ctx, procs["intake"].addr, *dur, *bulkRows)
	if err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	if lf.captureFloor, err = measureCaptureFloor(ctx, ns.URL(), *dur, payload); err != nil {
		return err
	}
	qf, err := q.measure(ctx)
	if err != nil {
		return fmt.Errorf("qualification: %w", err)
	}
	report(os.Stdout, payload, raw, lf)
	reportQualification(os.Stdout, raw, floor, qf)
	// Done with them: idle, they still pull and heartbeat on the cores the
	// later sections measure on.
	for _, p := range procs {
		p.stop()
	}
	if *handoffOn {
		if err := runHandoff(ctx, os.Stdout, *syncAlways); err != nil {
			return err
		}
	}
	if *projectorOn {
		pf, err := measureProjector(ctx, dir, *projectorLeads, *syncAlways, os.Stdout)
		if err != nil {
			return fmt.Errorf("projector: %w", err)
		}
		pf.print(os.Stdout)
	}
	return nil
}

// captureEventSize is the stored size of a typical LeadCaptured event, so
// the raw publishes carry the same bytes as the real ones.
func captureEventSize() (int, error) {
	ev, err := envelope.NewEvent("01a20790-2e2a-70de-9e2c-1c4bab630b7c", sampleCaptured(), envelope.Meta{CorrelationID: "0f7e2a9c-3f1e-4c7a-9a55-3c2d9e1b7a10"}, time.Now())
	if err != nil {
		return 0, err
	}
	return protoSize(ev), nil
}
