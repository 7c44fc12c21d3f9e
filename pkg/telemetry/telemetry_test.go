package telemetry_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/telemetry"
)

// exportedSpan is the part of a stdouttrace JSON line the tests read.
type exportedSpan struct {
	Name        string
	SpanKind    int
	SpanContext struct {
		TraceID string
		SpanID  string
	}
	Parent struct {
		TraceID string
		SpanID  string
	}
	Resource []struct {
		Key   string
		Value struct {
			Value any
		}
	}
}

func (s exportedSpan) resource(key string) any {
	for _, kv := range s.Resource {
		if kv.Key == key {
			return kv.Value.Value
		}
	}
	return nil
}

// setup calls telemetry.Setup and, at cleanup, shuts it down (if the test
// has not) and puts the previous slog default back. The otel globals are left
// to the next Setup: the tests run sequentially and each installs its own.
func setup(t *testing.T, cfg telemetry.Config) (*slog.Logger, func() error) {
	t.Helper()
	prev := slog.Default()
	logger, shutdown, err := telemetry.Setup(cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	done := false
	stop := func() error {
		if done {
			return nil
		}
		done = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return shutdown(ctx)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		slog.SetDefault(prev)
	})
	return logger, stop
}

func parseSpans(t *testing.T, b []byte) []exportedSpan {
	t.Helper()
	var spans []exportedSpan
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var s exportedSpan
		if err := json.Unmarshal(line, &s); err != nil {
			t.Fatalf("span line %q: %v", line, err)
		}
		spans = append(spans, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return spans
}

func TestSetupRequiresService(t *testing.T) {
	if _, _, err := telemetry.Setup(telemetry.Config{}); err == nil {
		t.Fatal("Setup with no Service: want an error")
	}
}

func TestSpanExportedOnShutdown(t *testing.T) {
	var spans bytes.Buffer
	_, stop := setup(t, telemetry.Config{Service: "svc-export", Writer: &bytes.Buffer{}, SpanWriter: &spans})

	_, span := telemetry.Tracer("test").Start(context.Background(), "export-me")
	span.End()
	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	got := parseSpans(t, spans.Bytes())
	for _, s := range got {
		if s.Name != "export-me" {
			continue
		}
		if svc := s.resource("service.name"); svc != "svc-export" {
			t.Fatalf("service.name = %v, want svc-export", svc)
		}
		if s.SpanContext.TraceID != span.SpanContext().TraceID().String() {
			t.Fatalf("trace id = %s, want %s", s.SpanContext.TraceID, span.SpanContext().TraceID())
		}
		return
	}
	t.Fatalf("span export-me not among %d exported spans:\n%s", len(got), spans.String())
}

func TestInjectExtract(t *testing.T) {
	setup(t, telemetry.Config{Service: "svc-propagate", Writer: &bytes.Buffer{}})
	tracer := telemetry.Tracer("test")

	ctx, parent := tracer.Start(context.Background(), "write-event")
	defer parent.End()

	tc := telemetry.Inject(ctx)
	if tc == nil {
		t.Fatal("Inject on a ctx with a span = nil")
	}
	psc := parent.SpanContext()
	parts := strings.Split(tc.GetTraceparent(), "-")
	if len(parts) != 4 || parts[1] != psc.TraceID().String() || parts[2] != psc.SpanID().String() {
		t.Fatalf("traceparent %q does not name trace %s span %s", tc.GetTraceparent(), psc.TraceID(), psc.SpanID())
	}

	cctx := telemetry.Extract(context.Background(), tc)
	if rsc := trace.SpanContextFromContext(cctx); !rsc.IsRemote() || !rsc.Equal(psc.WithRemote(true)) {
		t.Fatalf("extracted span context %+v, want remote %+v", rsc, psc)
	}
	_, child := tracer.Start(cctx, "handle-event")
	defer child.End()
	csc := child.SpanContext()
	if csc.TraceID() != psc.TraceID() {
		t.Fatalf("child trace id %s, want %s", csc.TraceID(), psc.TraceID())
	}
	if csc.SpanID() == psc.SpanID() {
		t.Fatal("child reuses the parent's span id")
	}
	ro, ok := child.(interface{ Parent() trace.SpanContext })
	if !ok {
		t.Fatalf("child span %T has no Parent method", child)
	}
	if got := ro.Parent(); got.SpanID() != psc.SpanID() || got.TraceID() != psc.TraceID() {
		t.Fatalf("child parent = %s/%s, want %s/%s", got.TraceID(), got.SpanID(), psc.TraceID(), psc.SpanID())
	}
}

// A caller's tracestate is not stored: it is free text (an email address
// fits in it) that the stream would keep past an erasure.
func TestInjectKeepsNoTracestate(t *testing.T) {
	setup(t, telemetry.Config{Service: "svc-tracestate", Writer: &bytes.Buffer{}})
	remote := &eventv1.TraceContext{Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", Tracestate: "acme=ann@example.com"}
	ctx, span := telemetry.Tracer("test").Start(telemetry.Extract(context.Background(), remote), "capture")
	defer span.End()
	if ts := span.SpanContext().TraceState().String(); ts == "" {
		t.Fatalf("the span did not inherit the caller's tracestate: the test shows nothing")
	}
	if tc := telemetry.Inject(ctx); tc.GetTraceparent() == "" || tc.GetTracestate() != "" {
		t.Fatalf("injected %v, want a traceparent and no tracestate", tc)
	}
}

func TestInjectWithoutSpan(t *testing.T) {
	if tc := telemetry.Inject(context.Background()); tc != nil {
		t.Fatalf("Inject(context.Background()) = %v, want nil", tc)
	}
}

func TestExtractLeavesContextOnNilOrInvalid(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "v")
	for name, tc := range map[string]*eventv1.TraceContext{
		"nil":       nil,
		"empty":     {},
		"malformed": {Traceparent: "not-a-traceparent"},
		"zero ids":  {Traceparent: "00-00000000000000000000000000000000-0000000000000000-01"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := telemetry.Extract(ctx, tc); got != ctx {
				t.Fatalf("Extract(%v) changed ctx", tc)
			}
		})
	}
}

func TestGRPCRoundTripSharesTrace(t *testing.T) {
	var spans bytes.Buffer
	_, stop := setup(t, telemetry.Config{Service: "svc-grpc", Writer: &bytes.Buffer{}, SpanWriter: &spans})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(telemetry.ServerOption())
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer srv.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		telemetry.DialOption(),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("status %v", resp.GetStatus())
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	// GracefulStop waits for the handler, so the server span has ended
	// before shutdown flushes.
	srv.GracefulStop()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	const method = "grpc.health.v1.Health/Check"
	var client, server *exportedSpan
	for _, s := range parseSpans(t, spans.Bytes()) {
		if s.Name != method {
			continue
		}
		switch trace.SpanKind(s.SpanKind) {
		case trace.SpanKindClient:
			client = &s
		case trace.SpanKindServer:
			server = &s
		}
	}
	if client == nil || server == nil {
		t.Fatalf("want a client and a server span named %s; exported:\n%s", method, spans.String())
	}
	if client.SpanContext.TraceID != server.SpanContext.TraceID {
		t.Fatalf("client trace %s, server trace %s", client.SpanContext.TraceID, server.SpanContext.TraceID)
	}
	if server.Parent.SpanID != client.SpanContext.SpanID {
		t.Fatalf("server parent %s, want client span %s", server.Parent.SpanID, client.SpanContext.SpanID)
	}
}

func TestJSONLogger(t *testing.T) {
	var logs bytes.Buffer
	logger, _ := setup(t, telemetry.Config{Service: "svc-log", JSON: true, Writer: &logs})

	ctx, span := telemetry.Tracer("test").Start(context.Background(), "logged")
	defer span.End()
	logger.InfoContext(ctx, "hello", "lead", "L1")
	slog.Debug("below the default level")

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want 1 log line, got %d:\n%s", len(lines), logs.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("log line %q is not JSON: %v", lines[0], err)
	}
	for k, want := range map[string]string{
		"msg":      "hello",
		"service":  "svc-log",
		"lead":     "L1",
		"trace_id": span.SpanContext().TraceID().String(),
		"span_id":  span.SpanContext().SpanID().String(),
	} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %q (line %s)", k, rec[k], want, lines[0])
		}
	}
	if slog.Default() != logger {
		t.Error("Setup did not install its logger as the slog default")
	}
}

func TestTextLoggerLevel(t *testing.T) {
	var logs bytes.Buffer
	setup(t, telemetry.Config{Service: "svc-text", Level: slog.LevelDebug, Writer: &logs})

	slog.Debug("dbg")
	out := logs.String()
	if !strings.Contains(out, "msg=dbg") || !strings.Contains(out, "service=svc-text") {
		t.Fatalf("text log %q lacks msg=dbg or service=svc-text", out)
	}
	if strings.HasPrefix(strings.TrimSpace(out), "{") {
		t.Fatalf("JSON false gave JSON: %q", out)
	}
}

// Roots are sampled at SampleRatio; a span whose parent was recorded (an
// event written by a traced request) is recorded too, so a trace is whole.
func TestSampleRatioSamplesRootsAndFollowsParents(t *testing.T) {
	_, stop := setup(t, telemetry.Config{Service: "svc-sample", Writer: &bytes.Buffer{}, SampleRatio: 0.25})
	defer stop()
	tr := telemetry.Tracer("test")
	sampled := 0
	const roots = 4000
	for range roots {
		_, span := tr.Start(context.Background(), "root")
		if span.SpanContext().IsSampled() {
			sampled++
		}
		span.End()
	}
	if sampled < roots/8 || sampled > roots*3/8 {
		t.Fatalf("%d of %d roots sampled at 0.25", sampled, roots)
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1},
		TraceFlags: trace.FlagsSampled, Remote: true})
	for range 100 {
		_, child := tr.Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "child")
		if !child.SpanContext().IsSampled() {
			t.Fatal("a child of a recorded parent was not recorded")
		}
		child.End()
	}
}

// LEADFLOW_CPU_PROFILE makes Setup record a CPU profile that shutdown
// writes out, named after the service and the process.
func TestCPUProfileFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LEADFLOW_CPU_PROFILE", dir)
	_, shutdown, err := telemetry.Setup(telemetry.Config{Service: "profiled", Writer: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("profiled-%d.pprof", os.Getpid()))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A pprof profile is gzipped protobuf.
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("%s is not a gzipped profile (%d bytes)", path, len(b))
	}
}
