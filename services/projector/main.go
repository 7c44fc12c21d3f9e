// Command projector is Leadflow's query service: it builds the read models
// in PostgreSQL from every event (pkg/project) and answers lead search,
// the funnel, the closed-loop campaign report, SLA compliance, sales
// performance and accounts over gRPC; it rebuilds the read model from the
// stream and replays proposed scoring models (what-if); and it serves the
// web dashboard over HTTP.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/telemetry"
)

// Config is the projector's settings.
type Config struct {
	Addr string
	// HTTPAddr is the HTTP/JSON API's listen address; empty serves none.
	HTTPAddr string
	// AuthKeys are the public keys of trusted token signers; empty: auth off.
	AuthKeys string
	// HTTP is the dashboard's listen address; empty serves none.
	HTTP    string
	NATSURL string
	// NATSUser and NATSPassword are this service's NATS user (pkg/natsauth);
	// an empty user connects without credentials.
	NATSUser, NATSPassword string
	// TLS names the APIs' certificate and the NATS server's CA.
	TLS      config.TLS
	Stream   string
	Replicas int
	// Postgres is the read models' database (a connection URL).
	Postgres string
	// Workers is how many leads are projected at once: the most events
	// one transaction holds. Flushers is how many of those transactions
	// commit at once.
	Workers  int
	Flushers int
	AckWait  time.Duration
	Grace    time.Duration
	LogJSON  bool
	// TraceSample is the share of new traces recorded.
	TraceSample float64

	// dashboardReady, if set, is told the dashboard's address, and
	// httpReady the HTTP/JSON API's, nil when it is off (tests).
	dashboardReady func(net.Addr)
	httpReady      func(net.Addr)
	// resumeEvery replaces app.ResumeEvery (tests).
	resumeEvery time.Duration
}

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "projector:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	var cfg Config
	f := config.New("projector")
	f.Listen(&cfg.Addr, "addr", "LEADFLOW_PROJECTOR_ADDR", "127.0.0.1:7105", "gRPC listen address")
	f.String(&cfg.HTTPAddr, "http-addr", "LEADFLOW_PROJECTOR_HTTP_ADDR", "127.0.0.1:7205", "HTTP/JSON API listen address (empty: no HTTP API)")
	f.String(&cfg.AuthKeys, "auth-keys", "LEADFLOW_AUTH_KEYS", "", "comma-separated Ed25519 public keys (64 hex chars each) whose tokens are trusted; empty turns auth off")
	f.String(&cfg.HTTP, "http", "LEADFLOW_PROJECTOR_HTTP", "127.0.0.1:7180", "dashboard listen address (empty: no dashboard)")
	f.String(&cfg.NATSURL, "nats", "LEADFLOW_NATS_URL", "", "NATS URL (required)")
	f.String(&cfg.NATSUser, "nats-user", "LEADFLOW_NATS_USER", "", "NATS user (empty: no credentials)")
	f.Secret(&cfg.NATSPassword, "nats-password", "LEADFLOW_NATS_PASSWORD", "NATS password of -nats-user")
	f.TLS(&cfg.TLS)
	f.String(&cfg.Stream, "stream", "LEADFLOW_STREAM", "LEADFLOW", "event stream name")
	f.Int(&cfg.Replicas, "replicas", "LEADFLOW_REPLICAS", 1, "stream replicas (3 in a cluster)")
	f.String(&cfg.Postgres, "postgres", "LEADFLOW_POSTGRES_URL", "", "PostgreSQL URL of the read models (required)")
	f.Int(&cfg.Workers, "workers", "LEADFLOW_PROJECTOR_WORKERS", 2048, "leads projected at once (the most events one transaction holds)")
	f.Int(&cfg.Flushers, "flushers", "LEADFLOW_PROJECTOR_FLUSHERS", 3, "transactions of projected events committed at once")
	f.Duration(&cfg.AckWait, "ack-wait", "LEADFLOW_ACK_WAIT", 2*time.Second, "redelivery delay of an unacknowledged event (under 5.5s: the 6s partition hand-over less a pull)")
	f.Duration(&cfg.Grace, "grace", "LEADFLOW_GRACE", 10*time.Second, "how long running calls and batches may finish on shutdown")
	f.Bool(&cfg.LogJSON, "log-json", "LEADFLOW_LOG_JSON", false, "JSON logs")
	f.Float64(&cfg.TraceSample, "trace-sample", "LEADFLOW_TRACE_SAMPLE", 0.05, "share of new traces recorded (1: all)")
	if err := f.Parse(os.Args[1:]); err != nil {
		return err
	}
	log, shutdown, err := telemetry.Setup(telemetry.Config{Service: "projector", JSON: cfg.LogJSON, SampleRatio: cfg.TraceSample})
	if err != nil {
		return err
	}
	defer func() { _ = shutdown(context.Background()) }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, cfg, log, nil)
}
