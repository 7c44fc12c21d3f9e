// Command handoff is Leadflow's sales handoff service: routing qualified
// leads by versioned rules, pools and account ownership; the CRM's
// commands on a lead; the sales SLAs on durable timers, with escalation;
// and the handoff brief.
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
	"github.com/leadflow/leadflow/services/handoff/app"
)

// Config is handoff's settings.
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
	LoadsBucket string
	Replicas    int
	// Workers is how many leads (and timers) are handled at once.
	Workers int
	// AckWait is how long the server waits for an acknowledgement before
	// it delivers a message again (a crash, a server restart).
	AckWait time.Duration
	// RouteRetry is how often routing tries again for a queued lead when
	// nothing says when a rep will be free.
	RouteRetry time.Duration
	// TimerTTL is how long a fired timer is kept in the timer stream
	// unhandled (a handled one is deleted).
	TimerTTL time.Duration
	// MasterKey (64 hex characters), if set, opens the vault, so routing
	// can match accounts by the sealed company name and reps' notes are
	// sealed. Handoff blinds no identity: it has no blind key.
	MasterKey string
	// ReadMasterKeys are master keys that only unwrap (a rotation).
	ReadMasterKeys string
	Grace          time.Duration
	LogJSON        bool

	// httpReady, if set, is told the HTTP/JSON API's address, nil when
	// it is off (tests); crashPoints is told of each crash point routing
	// passes (tests).
	httpReady   func(net.Addr)
	crashPoints func(p app.CrashPoint, leadID string)
	// keepFired keeps handled timers' fired copies (tests count them).
	keepFired bool
}

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "handoff:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	var cfg Config
	f := config.New("handoff")
	f.Listen(&cfg.Addr, "addr", "LEADFLOW_HANDOFF_ADDR", "127.0.0.1:7103", "gRPC listen address")
	f.String(&cfg.HTTPAddr, "http-addr", "LEADFLOW_HANDOFF_HTTP_ADDR", "127.0.0.1:7203", "HTTP/JSON API listen address (empty: no HTTP API)")
	f.String(&cfg.AuthKeys, "auth-keys", "LEADFLOW_AUTH_KEYS", "", "comma-separated Ed25519 public keys (64 hex chars each) whose tokens are trusted; empty turns auth off")
	f.String(&cfg.NATSURL, "nats", "LEADFLOW_NATS_URL", "", "NATS URL (required)")
	f.String(&cfg.NATSUser, "nats-user", "LEADFLOW_NATS_USER", "", "NATS user (empty: no credentials)")
	f.Secret(&cfg.NATSPassword, "nats-password", "LEADFLOW_NATS_PASSWORD", "NATS password of -nats-user")
	f.TLS(&cfg.TLS)
	f.String(&cfg.Stream, "stream", "LEADFLOW_STREAM", "LEADFLOW", "event stream name")
	f.String(&cfg.TimerStream, "timer-stream", "LEADFLOW_HANDOFF_TIMER_STREAM", "HANDOFF_TIMERS", "SLA timer stream name")
	f.String(&cfg.LoadsBucket, "loads-bucket", "LEADFLOW_HANDOFF_LOADS_BUCKET", "HANDOFF_LOAD", "KV bucket of reps' open leads")
	f.Int(&cfg.Replicas, "replicas", "LEADFLOW_REPLICAS", 1, "stream replicas (3 in a cluster)")
	f.Int(&cfg.Workers, "workers", "LEADFLOW_HANDOFF_WORKERS", 256, "leads handled at once (a decision waits on round trips, not the CPU)")
	f.Duration(&cfg.AckWait, "ack-wait", "LEADFLOW_ACK_WAIT", 2*time.Second, "redelivery delay of an unacknowledged event (under 5.5s: the 6s partition hand-over less a pull)")
	f.Duration(&cfg.RouteRetry, "route-retry", "LEADFLOW_HANDOFF_ROUTE_RETRY", 15*time.Minute, "how often routing retries a queued lead")
	f.Duration(&cfg.TimerTTL, "timer-ttl", "LEADFLOW_HANDOFF_TIMER_TTL", 30*24*time.Hour, "how long a fired timer is kept unhandled (a handled one is deleted)")
	f.Secret(&cfg.MasterKey, "master-key", "LEADFLOW_MASTER_KEY", "64 hex chars: opens sealed company names for account matching and seals the reps' notes; without it, notes and lost reasons are refused")
	f.Secret(&cfg.ReadMasterKeys, "read-master-keys", "LEADFLOW_READ_MASTER_KEYS", "comma-separated master keys that may also have wrapped stored data keys (a rotation)")
	f.Duration(&cfg.Grace, "grace", "LEADFLOW_GRACE", 10*time.Second, "how long running calls and handlers may finish on shutdown")
	f.Bool(&cfg.LogJSON, "log-json", "LEADFLOW_LOG_JSON", false, "JSON logs")
	if err := f.Parse(os.Args[1:]); err != nil {
		return err
	}
	log, shutdown, err := telemetry.Setup(telemetry.Config{Service: "handoff", JSON: cfg.LogJSON})
	if err != nil {
		return err
	}
	defer func() { _ = shutdown(context.Background()) }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, cfg, log, nil)
}
