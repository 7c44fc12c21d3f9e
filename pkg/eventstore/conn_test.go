package eventstore_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/leadflow/leadflow/pkg/devcert"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// The -nats-ca file is read at every connect, reconnects included, so a
// rotated CA is trusted at the next reconnect without a restart: while
// the file names only a CA that did not sign the server, reconnects are
// refused; once it holds a bundle with the server's CA, the connection
// comes back.
func TestNATSCAIsReadAtEachReconnect(t *testing.T) {
	n := testenv.StartNATSWithUsers(t)
	other, err := devcert.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	read := func(file string) []byte {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	write := func(pem ...[]byte) {
		t.Helper()
		var all []byte
		for _, p := range pem {
			all = append(all, p...)
		}
		if err := os.WriteFile(caFile, all, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	serverCA, otherCA := read(n.TLS.CAFile), read(other.CA)
	write(serverCA)
	nc, _, err := eventstore.Dial(n.Server.URL(), t.Name(), eventstore.WithUser(testenv.Admin, n.Passwords[testenv.Admin]), eventstore.WithCA(caFile))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	write(otherCA)
	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // about twenty reconnect attempts
	if nc.IsConnected() {
		t.Fatal("reconnected trusting a CA that did not sign the server")
	}
	write(otherCA, serverCA)
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatalf("not reconnected with the server's CA in the bundle: %v", nc.LastError())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// A URL's password is no part of a failed connection's error, which
// services print when they cannot start.
func TestDialErrorHidesThePassword(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	_, _, err = eventstore.Dial("nats://intake:S3cret-pw@"+addr, "test", nats.MaxReconnects(0), nats.Timeout(time.Second))
	if err == nil || strings.Contains(err.Error(), "S3cret-pw") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Dial: %v; want an error naming %s without the password", err, addr)
	}
}
