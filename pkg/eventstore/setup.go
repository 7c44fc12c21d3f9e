package eventstore

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/deadline"
)

// WithSetupTimeout gives ctx a deadline SetupTimeout away when it has none.
func WithSetupTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return deadline.Default(ctx, SetupTimeout)
}

// SetupTimeout is how long a process starting waits, when its caller set no
// deadline, for the server to create or confirm what it needs. A cluster
// that lost a node elects new leaders within seconds, and a service that
// exited instead would crash-loop.
const SetupTimeout = time.Minute

// setupAttempt bounds one attempt, so that a request lost to a dead
// leader is sent again instead of waiting out the whole setup.
const setupAttempt = 5 * time.Second

// Setup runs f until it succeeds, the server refuses it (Refused), or ctx
// ends; each attempt gets its own deadline, and failures are logged (log,
// or slog's default) at tries 1, 2, 4, 8... It is the one retry loop for
// idempotent setup calls: streams, buckets, consumer groups. Callers that
// must not wait forever give ctx a deadline (WithSetupTimeout).
func Setup(ctx context.Context, log *slog.Logger, f func(context.Context) error) error {
	if log == nil {
		log = slog.Default()
	}
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, setupAttempt)
		err := f(actx)
		acancel()
		if err == nil || Refused(err) || ctx.Err() != nil {
			return err
		}
		if attempt&(attempt-1) == 0 {
			log.Warn("setup failed; retrying", "error", err, "tries", attempt)
		}
		wait = min(2*wait, 2*time.Second)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// Refused reports whether the server answered no (a 4xx API error, or
// more replicas than a single server has), or the
// connection is closed for good: retrying will not help. Anything else (a
// timeout, no responders, a cluster without a leader for now) may pass, and
// so may "no suitable peers" while a node is down.
func Refused(err error) bool {
	if errors.Is(err, nats.ErrConnectionClosed) {
		return true
	}
	var je jetstream.JetStreamError
	if errors.As(err, &je) && je.APIError() != nil {
		e := je.APIError()
		return e.Code >= 400 && e.Code < 500 && e.ErrorCode != errNoSuitablePeers || e.ErrorCode == ErrCodeReplicasNotSupported
	}
	return false
}

// ErrCodeReplicasNotSupported is the server's JSStreamReplicasNotSupportedErr,
// a 500 that no retry mends: a single server asked for more replicas.
const ErrCodeReplicasNotSupported jetstream.ErrorCode = 10074

// errNoSuitablePeers is the server's JSClusterNoPeersErr: a replicated
// stream cannot be placed because too few nodes are up, for now.
const errNoSuitablePeers jetstream.ErrorCode = 10005

// Unavailable reports whether err says JetStream could not take a request
// at all, so nothing was stored: nobody listened (a server starting, a
// stream between leaders; a publish reports it as "no response from
// stream"), or the server answered that it is unavailable for now (503).
func Unavailable(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.As(err, &apiErr) && apiErr.Code == 503
}

// Unanswered reports whether a request to the server got no answer in its
// time, or a commit's outcome stayed unknown: on a cluster, a stream whose
// replicas are electing or catching up after a node died keeps its
// subscriptions but answers nothing, for as long as that lasts. It says
// nothing of the request itself, unlike a refusal.
func Unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, ErrUnknownOutcome)
}
