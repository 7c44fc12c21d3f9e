// Command intake is Leadflow's capture service: leads (one and bulk),
// identity dedupe, activity, campaigns and their cost, consent.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/telemetry"
	"github.com/leadflow/leadflow/services/intake/app"
)

// Config is intake's settings.
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
	TLS       config.TLS
	Stream    string
	Replicas  int
	MasterKey string
	// ReadMasterKeys are master keys that only unwrap (a rotation).
	ReadMasterKeys string
	BlindKey       string
	Grace          time.Duration
	LogJSON        bool
	// TraceSample is the share of new traces recorded.
	TraceSample float64

	// httpReady, if set, is told the HTTP/JSON API's address, nil when
	// it is off (tests).
	httpReady func(net.Addr)
	// finishAfter replaces app.FinishAfter; crashPoints is
	// told of each crash point a command passes (tests).
	finishAfter time.Duration
	// rewrapEvery replaces rewrapEvery; importLinger ports.ImportLinger
	// (tests).
	rewrapEvery  time.Duration
	importLinger time.Duration
	crashPoints  func(p app.CrashPoint, leadID string)
	// leads wraps the lead store (tests: a fault in one write).
	leads func(app.Leads) app.Leads
}

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "intake:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	if os.Getenv("GOGC") == "" {
		// A capture allocates a few KB and keeps little: with the default
		// 100 the collector's marking was a fifth of intake's CPU (profile,
		// docs/operations.md). GOMEMLIMIT, set in the manifests, still
		// bounds the heap.
		debug.SetGCPercent(400)
	}
	var cfg Config
	f := config.New("intake")
	f.Listen(&cfg.Addr, "addr", "LEADFLOW_INTAKE_ADDR", "127.0.0.1:7101", "gRPC listen address")
	f.String(&cfg.HTTPAddr, "http-addr", "LEADFLOW_INTAKE_HTTP_ADDR", "127.0.0.1:7201", "HTTP/JSON API listen address (empty: no HTTP API)")
	f.String(&cfg.AuthKeys, "auth-keys", "LEADFLOW_AUTH_KEYS", "", "comma-separated Ed25519 public keys (64 hex chars each) whose tokens are trusted; empty turns auth off")
	f.String(&cfg.NATSURL, "nats", "LEADFLOW_NATS_URL", "", "NATS URL (required)")
	f.String(&cfg.NATSUser, "nats-user", "LEADFLOW_NATS_USER", "", "NATS user (empty: no credentials)")
	f.Secret(&cfg.NATSPassword, "nats-password", "LEADFLOW_NATS_PASSWORD", "NATS password of -nats-user")
	f.TLS(&cfg.TLS)
	f.String(&cfg.Stream, "stream", "LEADFLOW_STREAM", "LEADFLOW", "event stream name")
	f.Int(&cfg.Replicas, "replicas", "LEADFLOW_REPLICAS", 1, "stream replicas (3 in a cluster)")
	f.Secret(&cfg.MasterKey, "master-key", "LEADFLOW_MASTER_KEY", "64 hex chars: wraps per-lead data keys (required)")
	f.Secret(&cfg.ReadMasterKeys, "read-master-keys", "LEADFLOW_READ_MASTER_KEYS", "comma-separated master keys (64 hex chars each) that unwrap stored data keys but never wrap: a rotation; intake rewraps every key under -master-key in the background")
	f.Secret(&cfg.BlindKey, "blind-key", "LEADFLOW_BLIND_KEY", "64 hex chars: keys identity hashes (required)")
	f.Duration(&cfg.Grace, "grace", "LEADFLOW_GRACE", 10*time.Second, "how long running calls may finish on shutdown")
	f.Bool(&cfg.LogJSON, "log-json", "LEADFLOW_LOG_JSON", false, "JSON logs")
	f.Float64(&cfg.TraceSample, "trace-sample", "LEADFLOW_TRACE_SAMPLE", 0.05, "share of new traces recorded (1: all)")
	if err := f.Parse(os.Args[1:]); err != nil {
		return err
	}
	log, shutdown, err := telemetry.Setup(telemetry.Config{Service: "intake", JSON: cfg.LogJSON, SampleRatio: cfg.TraceSample})
	if err != nil {
		return err
	}
	defer func() { _ = shutdown(context.Background()) }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, cfg, log, nil)
}
