package ports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/telemetry"
	"github.com/leadflow/leadflow/services/qualification/app"
)

// Group is the live consumer's group: its durables are Group_p<n>, one
// per lead partition, shared by every replica.
const Group = "qualification"

// Events handles consumed lead events: the live scoring consumer, and the
// re-score that follows an activation.
type Events struct {
	app *app.App
	log *slog.Logger
}

// NewEvents returns the event handlers of a.
func NewEvents(a *app.App, log *slog.Logger) *Events { return &Events{app: a, log: log} }

var tracer = telemetry.Tracer("qualification")

// Score is the live consumer's handler: it scores the lead of every
// trigger event, and folds other services' events into a cached lead so
// its next score needs no read. Qualification's own events are skipped
// unread (the type is in a header): their writer folded them in already.
func (e *Events) Score(ctx context.Context, m consume.Msg) error {
	typ := m.Header.Get(eventstore.HeaderType)
	if app.IsOwn(typ) {
		return nil
	}
	if !app.IsTrigger(typ) {
		ev, err := eventstore.DecodeLeadEvent(m.Subject, typ, m.Data)
		if err != nil {
			return consume.Permanent(fmt.Errorf("%s seq %d: %w", m.Subject, m.Seq, err))
		}
		return e.app.ScoreLeadEvent(ctx, m.Key, m.Seq, ev, envelope.Meta{})
	}
	leadID := m.Key
	ev, err := eventstore.DecodeLeadEvent(m.Subject, typ, m.Data)
	if err != nil {
		return consume.Permanent(fmt.Errorf("%s seq %d: %w", m.Subject, m.Seq, err))
	}
	// Continue the trace of the request that wrote the event.
	ctx, span := tracer.Start(telemetry.Extract(ctx, ev.GetTrace()), "score "+ev.GetEventType(), trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	meta := envelope.Meta{CorrelationID: ev.GetCorrelationId(), Trace: telemetry.Inject(ctx)}
	return e.app.ScoreLeadEvent(ctx, leadID, m.Seq, ev, meta)
}

// RescoreConfig says how re-scores read the stream.
type RescoreConfig struct {
	Stream  string
	Workers int
	AckWait time.Duration
	// Poll is how often the runner looks for a pending re-score and
	// checks the progress of a running one.
	Poll   time.Duration
	Logger *slog.Logger
}

// Rescores runs re-scores until ctx is done. It looks every Poll, and at
// once after this process activates a version, for an active version not
// yet re-scored (just activated, or interrupted by a crash). It then reads
// every lead event through the version's durable scan with
// pkg/consume, re-scores each open lead and records completion. Every
// replica may run it: they share the scan.
func (e *Events) Rescores(ctx context.Context, js jetstream.JetStream, cfg RescoreConfig) error {
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	// A crash between recording a re-score's end and deleting its scan
	// leaves the scan behind; delete such leftovers once.
	if err := e.app.CloseFinishedRescores(ctx); err != nil && ctx.Err() == nil {
		e.log.Warn("re-score: delete finished scans", "err", err)
	}
	t := time.NewTicker(cfg.Poll)
	defer t.Stop()
	for {
		job, ok, err := e.app.PendingRescore(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			e.log.Warn("re-score: look for pending work", "err", err)
		case ok:
			if err := e.rescore(ctx, js, cfg, job); err != nil && ctx.Err() == nil {
				e.log.Warn("re-score", "version", job.Version, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-e.app.Activated():
		}
	}
}

// scanned handles one message of job's scan. One after the scan's end is
// none of its business, not even when it does not decode: dead-lettered
// in the scan, it would hold the re-score back for good.
func (e *Events) scanned(job app.Rescore) consume.Handler {
	return func(ctx context.Context, m consume.Msg) error {
		if job.Past(m.Seq) {
			return nil
		}
		ev, err := eventstore.DecodeLeadEvent(m.Subject, m.Header.Get(eventstore.HeaderType), m.Data)
		if err != nil {
			return consume.Permanent(fmt.Errorf("%s seq %d: %w", m.Subject, m.Seq, err))
		}
		before := ev.GetVersionBefore()
		if m.Delivered == 0 {
			// Re-driven, or released from behind a dead letter: the lead's
			// first event may be the one skipped, so this is its turn.
			before = 0
		}
		return e.app.RescoreLead(ctx, job, m.Key, m.Seq, before)
	}
}

// rescore runs one re-score until it is over or ctx is done.
func (e *Events) rescore(ctx context.Context, js jetstream.JetStream, cfg RescoreConfig, job app.Rescore) error {
	job, err := e.app.StartRescore(ctx, job)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() {
		// One durable, not one per partition: a re-score is rare, and its
		// progress is read from one consumer.
		runErr = consume.Run(runCtx, js, consume.Config{
			Stream:        cfg.Stream,
			Group:         job.Scan,
			Filter:        func(int) []string { return []string{eventstore.LeadSubjects} },
			Key:           eventstore.LeadID,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			Workers:       cfg.Workers,
			AckWait:       cfg.AckWait,
			Logger:        cfg.Logger,
		}, e.scanned(job))
		stop() // Run returned on its own (an error): stop watching
	})
	// halt stops the scan's reader and waits for it: the scan may be
	// deleted only then, since pkg/consume recreates a consumer deleted
	// under it.
	halt := func() error { stop(); wg.Wait(); return runErr }
	defer func() { _ = halt() }()

	t := time.NewTicker(min(cfg.Poll, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-runCtx.Done():
			return errors.Join(halt(), ctx.Err())
		case <-t.C:
		}
		over, err := e.app.FinishRescore(ctx, job)
		if err != nil {
			e.log.Warn("re-score: check progress", "version", job.Version, "err", err)
		}
		if over {
			if err := halt(); err != nil {
				return err
			}
			if err := e.app.CloseRescore(ctx, job); err != nil {
				return err
			}
			// And what earlier versions left: a long-lived replica may not
			// start again soon.
			return e.app.CloseFinishedRescores(ctx)
		}
	}
}
