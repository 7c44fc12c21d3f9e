// Package testenv starts the real servers that tests talk to: an embedded
// JetStream in a temporary folder and a fresh PostgreSQL database. Nothing
// here is a mock.
package testenv

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/pkg/provision"
)

// NATS is an embedded JetStream server and a client connected to it.
type NATS struct {
	Server *natsserver.Server
	Conn   *nats.Conn
	JS     jetstream.JetStream
	Dir    string
	// Passwords are the role users' passwords (pkg/natsauth), by role;
	// nil when the server takes anyone (StartNATS).
	Passwords map[string]string
	// TLS is the certificate the server answers with, and its CA; nil
	// when the server is plaintext (StartNATS).
	TLS *TLS
}

// Admin is the user StartNATSWithUsers adds for the test itself: it may do
// anything, as tests set up and inspect what the roles may not touch.
const Admin = "test-admin"

// StartNATS starts an embedded JetStream on a free port with its data in a
// temporary folder, and stops it when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{Dir: t.TempDir()}
	return startNATS(t, n, natsserver.Config{Dir: n.Dir})
}

// StartNATSWithUsers is StartNATS as production runs it: over TLS only
// (TLS), with a user per pkg/natsauth role (random passwords, in
// Passwords) and nobody else but Admin, whose connection is Conn, and
// every stream made by the provisioner user (pkg/provision), as the
// services' users may only look them up. The server logs to Dir/nats.log,
// permissions violations included.
func StartNATSWithUsers(t testing.TB) *NATS {
	t.Helper()
	n := StartNATSWithUsersOnly(t)
	_, js := n.ConnectAs(t, natsauth.Provisioner)
	if err := provision.All(context.Background(), js, 1); err != nil {
		t.Fatal(err)
	}
	return n
}

// StartNATSWithUsersOnly is StartNATSWithUsers before provisioning: the
// server holds no stream.
func StartNATSWithUsersOnly(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{Dir: t.TempDir(), Passwords: map[string]string{}, TLS: NewTLS(t)}
	for _, r := range natsauth.Roles() {
		n.Passwords[r.Name] = rand.Text()
	}
	n.Passwords[Admin] = rand.Text()
	users := append(natsauth.Users(n.Passwords), natsserver.User{Name: Admin, Password: n.Passwords[Admin], Publish: []string{">"}, Subscribe: []string{">"}})
	return startNATS(t, n, natsserver.Config{Dir: filepath.Join(n.Dir, "jetstream"), Users: users, LogFile: filepath.Join(n.Dir, "nats.log"),
		TLS: n.TLS.Server(t)})
}

func startNATS(t testing.TB, n *NATS, cfg natsserver.Config) *NATS {
	t.Helper()
	srv, err := natsserver.Start(cfg)
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

// Connect opens another client connection, closed when the test ends: as
// Admin when the server has users.
func (n *NATS) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	if n.Passwords != nil {
		return n.ConnectAs(t, Admin)
	}
	return n.dial(t)
}

// ConnectAs opens a connection as user (a pkg/natsauth role, or Admin),
// closed when the test ends; opts come after Dial's own.
func (n *NATS) ConnectAs(t testing.TB, user string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return n.dial(t, append([]nats.Option{eventstore.WithUser(user, n.Passwords[user])}, opts...)...)
}

func (n *NATS) dial(t testing.TB, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	if n.TLS != nil {
		opts = append([]nats.Option{eventstore.WithCA(n.TLS.CAFile)}, opts...)
	}
	nc, js, err := eventstore.Dial(n.Server.URL(), t.Name(), opts...)
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

// Violations returns the permissions violations the server logged
// (StartNATSWithUsers), one line each.
func (n *NATS) Violations(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.Dir, "nats.log"))
	if err != nil {
		t.Fatal(err)
	}
	return natsserver.Violations(string(b))
}

// NoViolations fails the test when it ends (after what the test started
// later has stopped) if the server logged a permissions violation.
func (n *NATS) NoViolations(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		for _, v := range n.Violations(t) {
			t.Errorf("nats: %s", v)
		}
	})
}
