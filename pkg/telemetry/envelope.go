package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

const (
	traceparentKey = "traceparent"
	tracestateKey  = "tracestate"
)

// Inject returns the trace context of ctx's current span, for the trace field
// of an event envelope. It returns nil when ctx has no valid span context, so
// an event written outside any trace carries no field at all. The
// traceparent only: a tracestate is the caller's vendors' free text, which
// the stream would keep in the clear past any erasure.
func Inject(ctx context.Context) *eventv1.TraceContext {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	carrier := propagation.MapCarrier{}
	envelopeFormat.Inject(ctx, carrier)
	if carrier[traceparentKey] == "" {
		return nil
	}
	return &eventv1.TraceContext{Traceparent: carrier[traceparentKey]}
}

// Extract returns ctx carrying the remote span context stored in tc, so spans
// started from it are children of the span that wrote the event. It returns
// ctx unchanged when tc is nil or its traceparent is not valid: a malformed
// field must not stop an event from being handled.
func Extract(ctx context.Context, tc *eventv1.TraceContext) context.Context {
	if tc.GetTraceparent() == "" {
		return ctx
	}
	carrier := propagation.MapCarrier{traceparentKey: tc.GetTraceparent()}
	if ts := tc.GetTracestate(); ts != "" {
		carrier[tracestateKey] = ts
	}
	// TraceContext.Extract returns ctx itself when the traceparent does not
	// parse or names the zero trace or span id.
	return envelopeFormat.Extract(ctx, carrier)
}
