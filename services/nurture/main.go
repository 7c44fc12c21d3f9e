// Command nurture is Leadflow's nurture service: it takes back every lead
// sales gives up on (rejected, lost, attempts exhausted, disqualified "not
// now"), records the recycle and enrols the lead in a nurture program
// chosen by rules, re-engages nurtured leads that show interest, ends
// programs that run out with a next review, and checks the no-lost-lead
// invariant over the whole stream.
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
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/telemetry"
)

// Config is nurture's settings.
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
	TLS         config.TLS
	Stream      string
	TimerStream string
	Replicas    int
	// Workers is how many leads are handled at once per consumer group.
	Workers int
	// AckWait is how long the server waits for an acknowledgement before
	// it delivers a message again.
	AckWait time.Duration
	// TimerTTL is how long a fired review timer is kept unhandled.
	TimerTTL    time.Duration
	Grace       time.Duration
	LogJSON     bool
	TraceSample float64

	// afterAppend, if set, is called after each lead event nurture
	// appends (tests stop the process there).
	afterAppend func(*eventv1.Event)
	// shortestProgram, if set, replaces program.MinDuration (tests run
	// programs for seconds).
	shortestProgram time.Duration

	// httpReady, if set, is told the HTTP/JSON API's address, nil when
	// it is off (tests).
	httpReady func(net.Addr)
}

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "nurture:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	var cfg Config
	f := config.New("nurture")
	f.Listen(&cfg.Addr, "addr", "LEADFLOW_NURTURE_ADDR", "127.0.0.1:7104", "gRPC listen address")
	f.String(&cfg.HTTPAddr, "http-addr", "LEADFLOW_NURTURE_HTTP_ADDR", "127.0.0.1:7204", "HTTP/JSON API listen address (empty: no HTTP API)")
	f.String(&cfg.AuthKeys, "auth-keys", "LEADFLOW_AUTH_KEYS", "", "comma-separated Ed25519 public keys (64 hex chars each) whose tokens are trusted; empty turns auth off")
	f.String(&cfg.NATSURL, "nats", "LEADFLOW_NATS_URL", "", "NATS URL (required)")
	f.String(&cfg.NATSUser, "nats-user", "LEADFLOW_NATS_USER", "", "NATS user (empty: no credentials)")
	f.Secret(&cfg.NATSPassword, "nats-password", "LEADFLOW_NATS_PASSWORD", "NATS password of -nats-user")
	f.TLS(&cfg.TLS)
	f.String(&cfg.Stream, "stream", "LEADFLOW_STREAM", "LEADFLOW", "event stream name")
	f.String(&cfg.TimerStream, "timer-stream", "LEADFLOW_NURTURE_TIMER_STREAM", "NURTURE_TIMERS", "review timer stream name")
	f.Int(&cfg.Replicas, "replicas", "LEADFLOW_REPLICAS", 1, "stream replicas (3 in a cluster)")
	f.Int(&cfg.Workers, "workers", "LEADFLOW_NURTURE_WORKERS", 16, "leads handled at once")
	f.Duration(&cfg.AckWait, "ack-wait", "LEADFLOW_ACK_WAIT", 2*time.Second, "redelivery delay of an unacknowledged event (under 5.5s: the 6s partition hand-over less a pull)")
	f.Duration(&cfg.TimerTTL, "timer-ttl", "LEADFLOW_NURTURE_TIMER_TTL", 30*24*time.Hour, "how long a fired review timer is kept unhandled (a handled one is deleted)")
	f.Duration(&cfg.Grace, "grace", "LEADFLOW_GRACE", 10*time.Second, "how long running calls and handlers may finish on shutdown")
	f.Bool(&cfg.LogJSON, "log-json", "LEADFLOW_LOG_JSON", false, "JSON logs")
	f.Float64(&cfg.TraceSample, "trace-sample", "LEADFLOW_TRACE_SAMPLE", 0.05, "share of new traces recorded (1: all)")
	if err := f.Parse(os.Args[1:]); err != nil {
		return err
	}
	log, shutdown, err := telemetry.Setup(telemetry.Config{Service: "nurture", JSON: cfg.LogJSON, SampleRatio: cfg.TraceSample})
	if err != nil {
		return err
	}
	defer func() { _ = shutdown(context.Background()) }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, cfg, log, nil)
}
