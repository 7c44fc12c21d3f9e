package telemetry_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"strings"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/telemetry"
)

// A process sets up telemetry first, passes ServerOption to its gRPC server,
// and shuts telemetry down last so the final spans are flushed.
func ExampleSetup() {
	var logs, spans bytes.Buffer
	logger, shutdown, err := telemetry.Setup(telemetry.Config{Service: "handoff", JSON: true, Writer: &logs, SpanWriter: &spans})
	if err != nil {
		log.Fatal(err)
	}
	_, span := telemetry.Tracer("handoff").Start(context.Background(), "route")
	span.End()
	logger.Info("serving")
	if err := shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.Contains(logs.String(), `"service":"handoff"`), strings.Contains(spans.String(), `"Name":"route"`))
	// Output: true true
}

// The writer of an event stores the trace context in the envelope; the
// consumer continues that trace.
func ExampleInject() {
	ctx, span := telemetry.Tracer("lead").Start(context.Background(), "CaptureLead")
	defer span.End()
	ev := &eventv1.Event{Trace: telemetry.Inject(ctx)}

	// In the consumer:
	_, handle := telemetry.Tracer("nurture").Start(telemetry.Extract(context.Background(), ev.GetTrace()), "LeadCaptured")
	defer handle.End()
	fmt.Println(handle.SpanContext().TraceID() == span.SpanContext().TraceID())
	// Output: true
}
