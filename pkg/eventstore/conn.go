package eventstore

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/config"
)

// SyncQueueLen bounds every batch a reader may request on a Dial connection.
const SyncQueueLen = 1024

// asyncAnswerWait is how long an asynchronous publish waits for its
// answer: past every caller's deadline, so only an answer nobody waits
// for any more is given up. A variable for tests.
var asyncAnswerWait = 30 * time.Second

// Dial connects to NATS the way every Leadflow process does: reconnecting
// forever (a server restart is an outage to ride out, not a crash) and
// with a synchronous queue sized to the largest batch a Leadflow reader
// asks for (Load's direct-get batches, consumer fetches): the default
// allocates a 64k-slot channel for every short request, and anything
// smaller than a batch drops replies as a slow consumer. Errors the server
// reports on its own (a permissions violation) are logged. An asynchronous
// publish whose answer never comes is given up after asyncAnswerWait:
// else it stays pending until a reconnect, and once 4,000 wait (a stream
// leader gone quiet on a cluster) every later one fails. opts come last
// and win: WithUser for credentials, WithCA for TLS.
func Dial(url, name string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.SyncQueueLen(SyncQueueLen),
		nats.ErrorHandler(logAsyncError),
	}, opts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", config.Redacted(url), err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(asyncAnswerWait))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// WithUser connects as user (a pkg/natsauth role) with its password, and
// takes replies under the user's own inbox prefix, the only one its
// permissions let it subscribe to. An empty user connects without
// credentials.
func WithUser(user, password string) nats.Option {
	return func(o *nats.Options) error {
		if user == "" {
			return nil
		}
		o.User, o.Password = user, password
		return nats.CustomInboxPrefix(InboxPrefix(user))(o)
	}
}

// WithCA connects over TLS, trusting the server's certificate when a CA
// in file (PEM) signed it. nats.go reads the file at every handshake, so a
// rotated CA bundle is trusted from the next reconnect on, without a
// restart. An empty file changes nothing: a tls:// URL then uses the
// system's roots.
func WithCA(file string) nats.Option {
	return func(o *nats.Options) error {
		if file == "" {
			return nil
		}
		return nats.RootCAs(file)(o)
	}
}

// InboxPrefix is where user's replies arrive: _INBOX.<user>.
func InboxPrefix(user string) string { return "_INBOX." + user }

func logAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if sub != nil {
		slog.Warn("nats", "err", err, "subject", sub.Subject)
		return
	}
	slog.Warn("nats", "err", err)
}
