package testenv

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/natsserver"
)

// Cluster is a JetStream cluster of embedded servers, each with its own
// folder and fixed ports so that a stopped node starts again as itself,
// and a client that knows every node.
type Cluster struct {
	Nodes []*natsserver.Server // nil while a node is stopped
	Conn  *nats.Conn
	JS    jetstream.JetStream
	cfgs  []natsserver.Config
}

// StartCluster starts a cluster of nodes and waits until JetStream
// answers (its meta leader is elected). Everything stops when the test ends.
func StartCluster(t testing.TB, nodes int) *Cluster {
	t.Helper()
	c := &Cluster{Nodes: make([]*natsserver.Server, nodes), cfgs: make([]natsserver.Config, nodes)}
	dir := t.TempDir()
	var routes, urls []string
	for i := range nodes {
		port, routePort := FreePort(t), FreePort(t)
		c.cfgs[i] = natsserver.Config{
			Dir: filepath.Join(dir, fmt.Sprint(i)), Port: port, Name: fmt.Sprintf("node-%d", i),
			Cluster: &natsserver.Cluster{Name: "leadflow-test", Port: routePort},
		}
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePort))
		urls = append(urls, c.URL(i))
	}
	t.Cleanup(func() {
		if c.Conn != nil {
			c.Conn.Close()
		}
		for _, n := range c.Nodes {
			if n != nil {
				n.Shutdown()
			}
		}
	})
	for i := range nodes {
		c.cfgs[i].Cluster.Routes = routes
		c.StartNode(t, i)
	}
	nc, js, err := eventstore.Dial(strings.Join(urls, ","), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	c.Conn, c.JS = nc, js
	Eventually(t, time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	}, "jetstream cluster not answering")
	return c
}

// StopNode shuts node i down.
func (c *Cluster) StopNode(i int) {
	c.Nodes[i].Shutdown()
	c.Nodes[i] = nil
}

// StartNode starts node i (again) on its folder and ports.
func (c *Cluster) StartNode(t testing.TB, i int) {
	t.Helper()
	srv, err := natsserver.Start(c.cfgs[i])
	if err != nil {
		t.Fatalf("start node %d: %v", i, err)
	}
	c.Nodes[i] = srv
}

// URL is node i's client URL.
func (c *Cluster) URL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.cfgs[i].Port) }

// Node is the index of the node named name (a stream's leader), or -1.
func (c *Cluster) Node(name string) int {
	for i, cfg := range c.cfgs {
		if cfg.Name == name {
			return i
		}
	}
	return -1
}

// FreePort is a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().(*net.TCPAddr).Port
}
