package ports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/telemetry"
	"github.com/leadflow/leadflow/services/handoff/app"
)

// Groups of the two consumers, each shared by every replica: the lead
// events (durables Group_p<n>, one per lead partition) and the fired
// timers (TimerGroup_p<n>, partitioned the same way, so one lead's timers
// are handled in order and a backlog after an outage spreads over the
// replicas like the leads do).
const (
	Group      = "handoff"
	TimerGroup = "handoff-timers"
	// RoutingGroup reads the routing changes (one durable): what a
	// change asks of the leads is done even if the process that stored
	// it stopped first.
	RoutingGroup = "handoff-routing"
)

// Events handles consumed lead events and fired timers.
type Events struct {
	app *app.App
	log *slog.Logger
}

// NewEvents returns the event handlers of a.
func NewEvents(a *app.App, log *slog.Logger) *Events { return &Events{app: a, log: log} }

var tracer = telemetry.Tracer("handoff")

// Lead is the lead consumer's handler: it routes every LeadQualified,
// schedules the timers of every step that starts (LeadAssigned,
// LeadReassigned, LeadAccepted, LeadQueued, a ContactAttempted that made
// the next touch due), and frees a rep's capacity
// when a lead leaves the rep; an unmerge takes the lead up again where
// its merge left it. Everything else is acknowledged unread (the
// type is in a header).
func (e *Events) Lead(ctx context.Context, m consume.Msg) error {
	if redelivered(m) {
		// Someone may have handled it since this replica's fold of the
		// lead was built: routing on that fold would take a pool turn
		// before the version check told it the lead was routed.
		e.app.Forget(m.Key)
	}
	typ := m.Header.Get(eventstore.HeaderType)
	acts := true
	switch lifecycle.Kind(typ) {
	case lifecycle.KindQualified, lifecycle.KindAssigned, lifecycle.KindReassigned, lifecycle.KindAccepted,
		lifecycle.KindRejected, lifecycle.KindOpportunityCreated, lifecycle.KindRecycled, lifecycle.KindMerged, lifecycle.KindUnmerged,
		lifecycle.KindErased, lifecycle.KindContactAttempted:
	default:
		acts = typ == "LeadQueued"
	}
	if !acts && typ != string(lifecycle.KindCaptured) && !e.app.Cached(m.Key) {
		return nil
	}
	ev, err := eventstore.DecodeLeadEvent(m.Subject, m.Header.Get(eventstore.HeaderType), m.Data)
	if err != nil {
		return consume.Permanent(fmt.Errorf("%s seq %d: %w", m.Subject, m.Seq, err))
	}
	if typ != string(lifecycle.KindQualified) {
		// Keep the lead's fold whole, so routing it reads nothing.
		e.app.Observe(m.Key, m.Seq, ev)
	}
	if !acts {
		return nil
	}
	ctx, span := tracer.Start(telemetry.Extract(ctx, ev.GetTrace()), "handoff "+typ, trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	switch lifecycle.Kind(typ) {
	case lifecycle.KindQualified:
		meta := envelope.Meta{CorrelationID: ev.GetCorrelationId(), Trace: telemetry.Inject(ctx)}
		return e.app.RouteQualified(ctx, m.Key, m.Seq, ev, redelivered(m), meta)
	case lifecycle.KindReassigned:
		if err := e.app.StepStarted(ctx, m.Seq, ev); err != nil {
			return err
		}
		return e.app.Released(ctx, m.Key, ev)
	case lifecycle.KindAssigned, lifecycle.KindAccepted, lifecycle.KindContactAttempted:
		return e.app.StepStarted(ctx, m.Seq, ev)
	case lifecycle.KindUnmerged:
		meta := envelope.Meta{CorrelationID: ev.GetCorrelationId(), Trace: telemetry.Inject(ctx)}
		return e.app.Unmerged(ctx, m.Key, m.Seq, ev, redelivered(m), meta)
	}
	if typ == "LeadQueued" {
		return e.app.StepStarted(ctx, m.Seq, ev)
	}
	return e.app.Released(ctx, m.Key, ev)
}

// Timer is the timer consumer's handler.
func (e *Events) Timer(ctx context.Context, m consume.Msg) error {
	t, err := app.DecodeTimer(m.Data)
	if err != nil {
		return consume.Permanent(fmt.Errorf("%s seq %d: %w", m.Subject, m.Seq, err))
	}
	ctx, span := tracer.Start(ctx, "timer "+t.GetSla().String(), trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	return e.app.FireTimer(ctx, t, redelivered(m), envelope.Meta{CorrelationID: t.GetTimerId(), Trace: telemetry.Inject(ctx)})
}

// Routing is the routing group's handler. A failure the consumer hands
// back or retries without counting (a shutdown, the server away) is
// returned; any other is logged, not retried to a dead letter: the
// group's changes share one key, and a dead letter would park every
// later one.
func (e *Events) Routing(ctx context.Context, m consume.Msg) error {
	ev, err := eventstore.DecodeEvent(m.Data)
	if err != nil {
		return consume.Permanent(fmt.Errorf("%s seq %d: %w", m.Subject, m.Seq, err))
	}
	err = e.app.RoutingStored(ctx, ev)
	if err == nil || ctx.Err() != nil || consume.IsAway(err) || eventstore.Unavailable(err) || eventstore.Unanswered(err) ||
		errors.Is(err, eventstore.ErrBehind) {
		return err
	}
	e.log.ErrorContext(ctx, "routing change's hand-ons not all scheduled", "seq", m.Seq, "err", err)
	return nil
}

// redelivered: m may have been handled before (a re-drive counts 0).
func redelivered(m consume.Msg) bool { return m.Delivered != 1 }
