package natsserver_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// Cluster routes over TLS, both ways: two nodes with the same CA form a
// JetStream cluster that keeps a stream on both.
func TestClusterRoutesOverTLS(t *testing.T) {
	certs := testenv.NewTLS(t)
	routeTLS := certs.Server(t)
	routeTLS.RootCAs = certs.Client().RootCAs
	ports := [2][2]int{}
	for i := range ports {
		for j := range ports[i] {
			ports[i][j] = testenv.FreePort(t)
		}
	}
	routes := []string{fmt.Sprintf("nats://127.0.0.1:%d", ports[0][1]), fmt.Sprintf("nats://127.0.0.1:%d", ports[1][1])}
	var urls []string
	for i := range ports {
		srv, err := natsserver.Start(natsserver.Config{Dir: t.TempDir(), Port: ports[i][0], Name: fmt.Sprintf("n%d", i), TLS: certs.Server(t),
			Cluster: &natsserver.Cluster{Name: "tls", Port: ports[i][1], Routes: routes, TLS: routeTLS}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Shutdown)
		urls = append(urls, srv.URL())
	}
	nc, js, err := eventstore.Dial(strings.Join(urls, ","), t.Name(), eventstore.WithCA(certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	testenv.Eventually(t, time.Minute, func() bool {
		_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "R2", Subjects: []string{"r2.>"}, Replicas: 2})
		return err == nil
	}, "no stream on both nodes: the routes did not form")
	if _, err := js.Publish(t.Context(), "r2.x", []byte("x")); err != nil {
		t.Fatal(err)
	}
}
