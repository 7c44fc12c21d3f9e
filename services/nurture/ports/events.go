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
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/telemetry"
	"github.com/leadflow/leadflow/services/nurture/app"
)

// Events handles consumed lead events and fired review timers.
type Events struct {
	app *app.App
	log *slog.Logger
}

// NewEvents returns the event handlers of a.
func NewEvents(a *app.App, log *slog.Logger) *Events { return &Events{app: a, log: log} }

var tracer = telemetry.Tracer("nurture")

// wakes are the lead event types that may leave nurture a step to take.
// Everything else is acknowledged unread: the type is in a header.
var wakes = map[string]bool{
	string(lifecycle.KindRejected):         true,
	string(lifecycle.KindDealLost):         true,
	string(lifecycle.KindDisqualified):     true,
	string(lifecycle.KindSLABreached):      true,
	string(lifecycle.KindRecycled):         true,
	string(lifecycle.KindNurtureEnrolled):  true,
	string(lifecycle.KindNurtureExited):    true,
	string(lifecycle.KindReengaged):        true,
	string(lifecycle.KindActivityRecorded): true,
	string(lifecycle.KindResubmitted):      true,
	string(lifecycle.KindScored):           true,
	string(lifecycle.KindUnmerged):         true,
}

// Lead is the lead consumer's handler. A NurtureEnrolled schedules its
// review, a LeadReengaged the end of the wait for its score, and a NEW
// lead's score with no verdict (or an unmerge back to NEW) its engagement
// deadline (app.ScheduleTimer); any event that leaves
// the lead LOST, RECYCLED or NURTURING, or an SLABreached that recycles
// it, makes nurture write what it owes the lead now (app.Reconcile). A
// recycle naming a program that does not exist is dead-lettered at once
// and parks the lead until it is defined and the lead re-driven.
func (e *Events) Lead(ctx context.Context, m consume.Msg) error {
	if !wakes[m.Header.Get(eventstore.HeaderType)] {
		return nil
	}
	ev, err := eventstore.DecodeLeadEvent(m.Subject, m.Header.Get(eventstore.HeaderType), m.Data)
	if err != nil {
		return consume.Permanent(fmt.Errorf("%s seq %d: %w", m.Subject, m.Seq, err))
	}
	if err := e.app.ScheduleTimer(ctx, ev); err != nil {
		return err
	}
	switch st := lifecycle.Status(ev.GetLifecycle().GetStatus()); {
	case st == lifecycle.StatusLost, st == lifecycle.StatusRecycled, st == lifecycle.StatusNurturing:
	case ev.GetSlaBreached().GetEscalation() == eventv1.SLAEscalation_SLA_ESCALATION_RECYCLE:
	default:
		return nil
	}
	// Continue the trace of the request that wrote the event.
	ctx, span := tracer.Start(telemetry.Extract(ctx, ev.GetTrace()), "nurture "+ev.GetEventType(), trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	_, err = e.app.ReconcileSeen(ctx, m.Key, m.Seq, envelope.Meta{CorrelationID: ev.GetCorrelationId(), Trace: telemetry.Inject(ctx)})
	return poison(err)
}

// Timer is the timer consumer's handler: a program's review is due.
func (e *Events) Timer(ctx context.Context, m consume.Msg) error {
	t, err := app.DecodeTimer(m.Data)
	if err != nil {
		return consume.Permanent(fmt.Errorf("%s seq %d: %w", m.Subject, m.Seq, err))
	}
	ctx, span := tracer.Start(ctx, "nurture review", trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	return poison(e.app.ReviewDue(ctx, t, envelope.Meta{CorrelationID: t.GetTimerId(), Trace: telemetry.Inject(ctx)}))
}

// poison marks an error retrying cannot fix as permanent.
func poison(err error) error {
	var p *app.PoisonError
	if errors.As(err, &p) {
		return consume.Permanent(err)
	}
	return err
}
