package eventstore_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

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
