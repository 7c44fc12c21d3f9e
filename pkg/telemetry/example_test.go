package telemetry_test

import (
	"context"
	"log"
	"os"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/telemetry"
)

// A process sets up telemetry first, passes ServerOption to its gRPC server,
// and shuts telemetry down last so the final spans are flushed.
func ExampleSetup() {
	logger, shutdown, err := telemetry.Setup(telemetry.Config{Service: "handoff", JSON: true, SpanWriter: os.Stdout})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := shutdown(context.Background()); err != nil {
			logger.Error("telemetry shutdown", "err", err)
		}
	}()
	logger.Info("serving")
}

// The writer of an event stores the trace context in the envelope; the
// consumer continues that trace.
func ExampleInject() {
	ctx, span := telemetry.Tracer("lead").Start(context.Background(), "CaptureLead")
	defer span.End()
	ev := &eventv1.Event{Trace: telemetry.Inject(ctx)}

	// In the consumer:
	cctx, handle := telemetry.Tracer("nurture").Start(telemetry.Extract(context.Background(), ev.GetTrace()), "LeadCaptured")
	defer handle.End()
	_ = cctx
}
