package natsserver_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// With TLS the server takes only clients that speak it and trust its CA,
// and keeps doing so after a restart.
func TestTLSOnly(t *testing.T) {
	certs := testenv.NewTLS(t)
	srv, err := natsserver.Start(natsserver.Config{Dir: t.TempDir(), TLS: certs.Server(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown() }()
	url := srv.URL()
	if nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client without the CA connected")
	}
	nc, js, err := eventstore.Dial(url, t.Name(), eventstore.WithCA(certs.CAFile))
	if err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Fatal("the server does not require TLS")
	}
	if srv, err = srv.Restart(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		_, err := js.AccountInfo(t.Context())
		return nc.IsConnected() && err == nil
	}, "no JetStream over TLS after a restart")
}
