// Package natsserver runs an embedded NATS server with JetStream, for tests
// and for the single-machine launcher. Production runs a real cluster
// (deploy/); this package exists so that tests and `make run` talk to the same
// server code, pinned in go.mod, instead of whatever NATS a machine happens to
// have on port 4222.
package natsserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config says where the server keeps its data and where it listens.
type Config struct {
	// Dir holds JetStream's files. A restart on the same Dir keeps every stream.
	Dir string
	// Host defaults to 127.0.0.1.
	Host string
	// Port 0 or -1 picks a free port. Never use 4222 here: an old NATS may own it.
	Port int
	// SyncAlways makes JetStream fsync every write before acknowledging it.
	// The default (false) syncs every two minutes, which loses acknowledged
	// writes on power loss or an OS crash, though not on a process crash.
	SyncAlways bool
	// Name is the server name; it must be stable across restarts of one Dir
	// and unique within a cluster.
	Name string
	// Cluster, when set, makes this server one node of a JetStream cluster.
	Cluster *Cluster
	// Users, when set, are the only clients the server accepts, each held
	// to its allow lists (pkg/natsauth builds them); none: anyone may
	// connect and do anything.
	Users []User
	// LogFile, when set, receives the server's log: errors, warnings and
	// notices, among them every permissions violation. Empty: no log.
	LogFile string
	// TLS, when set, is the certificate clients must connect over: the
	// server then refuses plaintext clients.
	TLS *tls.Config
}

// User is a client the server accepts by name and password, allowed to
// publish and subscribe only on the subjects listed (wildcards allowed).
type User struct {
	Name, Password     string
	Publish, Subscribe []string
}

// Cluster joins a server to others over routes.
type Cluster struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// Port is where this node listens for routes (on Host).
	Port int
	// Routes are every node's route URLs (nats://host:port), this node's
	// own included: each node then needs the same list.
	Routes []string
	// TLS, when set, is the routes' TLS, both ways: the node's certificate
	// and the CA its peers' certificates must chain to (RootCAs).
	TLS *tls.Config
}

// Server is a running embedded server.
type Server struct {
	srv *server.Server
	cfg Config
}

// readyWithin bounds the wait for a started server's listeners. A
// clustered node recovers its JetStream state before it listens: a
// restarted node under the race detector on a busy 2-core machine once
// took more than 10 s (TestEnsureWaitsForAQuorum), and once more than
// 30 s (TestReplicatedStreamOutlivesItsLeaders, in `.ci/run`).
const readyWithin = 60 * time.Second

// Start starts a server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("natsserver: Dir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = -1
	}
	if cfg.Name == "" {
		cfg.Name = "leadflow"
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
		// Event payloads are small, but bulk import batches are not.
		MaxPayload: 8 << 20,
	}
	for _, u := range cfg.Users {
		opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: u.Publish},
			Subscribe: &server.SubjectPermission{Allow: u.Subscribe},
		}})
	}
	if cfg.LogFile != "" {
		opts.NoLog, opts.LogFile, opts.Logtime = false, cfg.LogFile, true
	}
	if cfg.TLS != nil {
		opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, cfg.TLS, 2
	}
	if c := cfg.Cluster; c != nil {
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: cfg.Host, Port: c.Port}
		if c.TLS != nil {
			rt := c.TLS.Clone()
			rt.ClientCAs, rt.ClientAuth = rt.RootCAs, tls.RequireAndVerifyClientCert
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = rt, 2
		}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("natsserver: route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: new: %w", err)
	}
	if cfg.LogFile != "" {
		srv.ConfigureLogger()
	}
	srv.Start()
	if !srv.ReadyForConnections(readyWithin) {
		srv.Shutdown()
		return nil, fmt.Errorf("natsserver: not ready after %s", readyWithin)
	}
	return &Server{srv: srv, cfg: cfg}, nil
}

// URL is the client URL, nats://host:port.
func (s *Server) URL() string { return s.srv.ClientURL() }

// Shutdown stops the server and waits until it has stopped, so a new server
// can be started on the same Dir right away.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// Restart stops the server and starts a new one on the same Dir and port.
func (s *Server) Restart() (*Server, error) {
	cfg := s.cfg
	if addr, ok := s.srv.Addr().(*net.TCPAddr); ok {
		cfg.Port = addr.Port
	}
	s.Shutdown()
	return Start(cfg)
}

// Violations returns the lines of a server log (Config.LogFile) that report
// a permissions violation: a publish or a subscription the user's allow
// lists refused.
func Violations(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "Publish Violation") || strings.Contains(l, "Subscription Violation") || strings.Contains(l, "Permissions Violation") {
			out = append(out, l)
		}
	}
	return out
}
