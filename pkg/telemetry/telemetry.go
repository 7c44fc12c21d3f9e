// Package telemetry sets up logging and tracing the same way in every Leadflow
// process, and carries trace context through gRPC calls and event envelopes so
// a consumer continues the trace of the request that wrote the event.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// Config says how a process logs and traces.
type Config struct {
	// Service is the process's name: the service attribute of every log
	// record and the service.name resource attribute of every span. Required.
	Service string
	// Level is the minimum level logged; the zero value is slog.LevelInfo.
	Level slog.Level
	// JSON selects JSON log lines (production) instead of text (development).
	JSON bool
	// Writer receives the log lines; nil means os.Stderr.
	Writer io.Writer
	// SpanWriter, when set, receives finished spans as JSON lines
	// (stdouttrace). When nil, spans are still recorded and sampled, so trace
	// context propagates, but they are not exported. There are no network
	// exporters: no machine Leadflow runs on has a collector.
	SpanWriter io.Writer
	// SampleRatio is the share of new traces recorded; a span with a
	// parent (a gRPC call, an event's trace context) follows its parent's
	// decision, so a trace is recorded whole or not at all. Outside (0, 1)
	// every trace is recorded, as tests and development want.
	SampleRatio float64
}

// Setup installs the slog default logger (every record carries
// service=<Config.Service>, and trace_id/span_id when its context has a
// span), a global sdk TracerProvider that samples root spans at
// Config.SampleRatio and follows the parent's decision otherwise, and the
// W3C TraceContext propagator.
//
// The returned shutdown flushes pending spans to SpanWriter and stops the
// provider; call it once, before the process exits. It does not restore the
// previous globals.
//
// Setup returns an error when Config.Service is empty or when the span
// exporter or resource cannot be built; it then installs nothing.
func Setup(cfg Config) (logger *slog.Logger, shutdown func(context.Context) error, err error) {
	if cfg.Service == "" {
		return nil, nil, errors.New("telemetry: Config.Service is required")
	}

	// Later detectors win: OTEL_RESOURCE_ATTRIBUTES may add attributes, but
	// never rename the service.
	res, err := resource.New(context.Background(),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(cfg.Service)),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry resource: %w", err)
	}

	root := sdktrace.AlwaysSample()
	if cfg.SampleRatio > 0 && cfg.SampleRatio < 1 {
		root = sdktrace.TraceIDRatioBased(cfg.SampleRatio)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(root)),
	}
	if cfg.SpanWriter != nil {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(cfg.SpanWriter))
		if err != nil {
			return nil, nil, fmt.Errorf("telemetry span exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)

	w := cfg.Writer
	if w == nil {
		w = os.Stderr
	}
	hopts := &slog.HandlerOptions{Level: cfg.Level}
	var h slog.Handler
	if cfg.JSON {
		h = slog.NewJSONHandler(w, hopts)
	} else {
		h = slog.NewTextHandler(w, hopts)
	}
	logger = slog.New(traceHandler{h}).With("service", cfg.Service)

	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	slog.SetDefault(logger)

	stopProfile, err := cpuProfile(cfg.Service, os.Getenv("LEADFLOW_CPU_PROFILE"))
	if err != nil {
		return nil, nil, err
	}
	return logger, func(ctx context.Context) error {
		stopProfile()
		return tp.Shutdown(ctx)
	}, nil
}

// cpuProfile records the process's CPU profile into dir (when set) as
// <service>-<pid>.pprof until the returned stop is called, so a process
// started by make run or make bench can be profiled without a rebuild.
func cpuProfile(service, dir string) (stop func(), err error) {
	if dir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("telemetry: cpu profile: %w", err)
	}
	return CPUProfile(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", service, os.Getpid())))
}

// CPUProfile records this process's CPU profile into the file at path
// until stop is called. A process has one CPU profiler: a second start
// fails until the first stops.
func CPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("telemetry: cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("telemetry: cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// ServerOption instruments a grpc.Server: every RPC gets a server span that
// continues the caller's trace. It reads the global TracerProvider and
// propagator when called, so call it after Setup.
func ServerOption() grpc.ServerOption {
	return grpc.StatsHandler(otelgrpc.NewServerHandler())
}

// DialOption instruments a client connection: every RPC gets a client span
// whose context is sent in the request metadata. Like ServerOption, call it
// after Setup.
func DialOption() grpc.DialOption {
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler())
}

// envelopeFormat is the format of eventv1.TraceContext, whose fields are the
// W3C headers. It is used directly rather than through
// otel.GetTextMapPropagator so that an event written before Setup, or by a
// process with another global propagator, still carries a traceparent.
var envelopeFormat propagation.TraceContext

// Tracer returns the tracer "leadflow/<name>" of the global TracerProvider.
func Tracer(name string) trace.Tracer {
	return otel.Tracer("leadflow/" + name)
}
