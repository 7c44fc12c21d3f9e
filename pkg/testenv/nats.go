// Package testenv starts the real servers that tests talk to: an embedded
// JetStream in a temporary folder and a fresh PostgreSQL database. Nothing
// here is a mock.
package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/natsserver"
)

// NATS is an embedded JetStream server and a client connected to it.
type NATS struct {
	Server *natsserver.Server
	Conn   *nats.Conn
	JS     jetstream.JetStream
	Dir    string
}

// StartNATS starts an embedded JetStream on a free port with its data in a
// temporary folder, and stops it when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{Dir: t.TempDir()}
	srv, err := natsserver.Start(natsserver.Config{Dir: n.Dir})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	n.Server = srv
	n.connect(t)
	t.Cleanup(func() {
		n.Conn.Close()
		n.Server.Shutdown()
	})
	return n
}

// Restart stops the server and starts it again on the same folder and port,
// as a crash and restart would; the client reconnects.
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	srv, err := n.Server.Restart()
	if err != nil {
		t.Fatalf("restart nats: %v", err)
	}
	n.Server = srv
	// The client reconnects on its own; wait until it has, so that the
	// test's next call does not race the reconnect.
	// Then until JetStream answers: the first request after a restart can
	// be lost while the server is still recovering its streams.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := n.JS.AccountInfo(ctx)
		cancel()
		if n.Conn.IsConnected() && err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("jetstream not answering after restart: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Connect opens another client connection, closed when the test ends.
func (n *NATS) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := eventstore.Dial(n.Server.URL(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

func (n *NATS) connect(t testing.TB) {
	t.Helper()
	nc, js := n.Connect(t)
	n.Conn, n.JS = nc, js
}
