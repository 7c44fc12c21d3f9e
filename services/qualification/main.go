// Command qualification is Leadflow's scoring service: the shared scoring
// model, versioned and signed off by marketing and sales; scoring every
// lead from the lead stream; explaining a score.
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
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/telemetry"
)

// Config is qualification's settings.
type Config struct {
	Addr string
	// HTTPAddr is the HTTP/JSON API's listen address; empty serves none.
	HTTPAddr string
	// AuthKeys are the public keys of trusted token signers; empty: auth off.
	AuthKeys string
	NATSURL  string
	// NATSUser and NATSPassword are this service's NATS user (pkg/natsauth);
	// an empty user connects without credentials.
	NATSUser, NATSPassword string
	// TLS names the APIs' certificate and the NATS server's CA.
	TLS      config.TLS
	Stream   string
	Replicas int
	// Workers is how many leads are scored at once, by the live consumer
	// and by a re-score each.
	Workers int
	// AckWait is how long the server waits for an acknowledgement before
	// it delivers a message again; it matters only when a delivery or its
	// acknowledgement is lost (a crash, a server restart).
	AckWait time.Duration
	Grace   time.Duration
	// EngageWithin is how long a NEW lead scored below the threshold
	// waits for engagement before nurture takes it (zero: the lifecycle's
	// default).
	EngageWithin time.Duration
	LogJSON      bool
	// TraceSample is the share of new traces recorded.
	TraceSample float64

	// httpReady, if set, is told the HTTP/JSON API's address, nil when
	// it is off (tests).
	httpReady func(net.Addr)
}

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "qualification:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	var cfg Config
	f := config.New("qualification")
	f.Listen(&cfg.Addr, "addr", "LEADFLOW_QUALIFICATION_ADDR", "127.0.0.1:7102", "gRPC listen address")
	f.String(&cfg.HTTPAddr, "http-addr", "LEADFLOW_QUALIFICATION_HTTP_ADDR", "127.0.0.1:7202", "HTTP/JSON API listen address (empty: no HTTP API)")
	f.String(&cfg.AuthKeys, "auth-keys", "LEADFLOW_AUTH_KEYS", "", "comma-separated Ed25519 public keys (64 hex chars each) whose tokens are trusted; empty turns auth off")
	f.String(&cfg.NATSURL, "nats", "LEADFLOW_NATS_URL", "", "NATS URL (required)")
	f.String(&cfg.NATSUser, "nats-user", "LEADFLOW_NATS_USER", "", "NATS user (empty: no credentials)")
	f.Secret(&cfg.NATSPassword, "nats-password", "LEADFLOW_NATS_PASSWORD", "NATS password of -nats-user")
	f.TLS(&cfg.TLS)
	f.String(&cfg.Stream, "stream", "LEADFLOW_STREAM", "LEADFLOW", "event stream name")
	f.Int(&cfg.Replicas, "replicas", "LEADFLOW_REPLICAS", 1, "stream replicas (3 in a cluster)")
	f.Int(&cfg.Workers, "workers", "LEADFLOW_QUALIFICATION_WORKERS", 64, "leads scored at once (a score waits on round trips, not the CPU)")
	f.Duration(&cfg.AckWait, "ack-wait", "LEADFLOW_ACK_WAIT", 2*time.Second, "redelivery delay of an unacknowledged event (under 5.5s: the 6s partition hand-over less a pull)")
	f.Duration(&cfg.Grace, "grace", "LEADFLOW_GRACE", 10*time.Second, "how long running calls and handlers may finish on shutdown")
	f.Duration(&cfg.EngageWithin, "engage-within", "LEADFLOW_ENGAGE_WITHIN", lifecycle.DefaultPolicy().EngageWithin,
		"how long a new lead scored below the threshold waits for engagement before nurture takes it")
	f.Bool(&cfg.LogJSON, "log-json", "LEADFLOW_LOG_JSON", false, "JSON logs")
	f.Float64(&cfg.TraceSample, "trace-sample", "LEADFLOW_TRACE_SAMPLE", 0.05, "share of new traces recorded (1: all)")
	if err := f.Parse(os.Args[1:]); err != nil {
		return err
	}
	if cfg.EngageWithin < 0 {
		return fmt.Errorf("-engage-within must not be negative, not %s", cfg.EngageWithin)
	}
	log, shutdown, err := telemetry.Setup(telemetry.Config{Service: "qualification", JSON: cfg.LogJSON, SampleRatio: cfg.TraceSample})
	if err != nil {
		return err
	}
	defer func() { _ = shutdown(context.Background()) }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, cfg, log, nil)
}
