// Command devstack is `make run`: the whole of Leadflow on one machine.
// It is not a service. It starts an embedded JetStream (data in .data/,
// kept across restarts), builds and starts every service as its own
// process, seeds a small demo data set through the public gRPC APIs, and
// prints where everything listens (gRPC and HTTP/JSON). Ctrl-C stops it all.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/pkg/provision"
)

// service is one process devstack runs.
type service struct {
	name string // folder under services/
	addr string
	http string   // its HTTP/JSON API's address
	args []string // beyond -addr, -http-addr and -nats
	web  string   // an HTTP page it serves, if any
}

func main() {
	dieWithParent()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func run() error {
	data := flag.String("data", ".data", "where JetStream, keys and binaries live")
	natsPort := flag.Int("nats-port", 4333, "NATS port (not 4222: an old server may own it)")
	syncAlways := flag.Bool("sync-always", false, "fsync every JetStream write before acknowledging it")
	seed := flag.Bool("seed", true, "load the demo data set")
	offset := flag.Int("port-offset", 0, "added to every API's and the dashboard's port (NATS has -nats-port): a second stack beside the first, or a test")
	database := flag.String("database", "leadflow", "the read models' database on the local PostgreSQL")
	flag.Parse()
	at := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port+*offset) }
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	dataDir, err := filepath.Abs(*data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "bin"), 0o755); err != nil {
		return err
	}
	if err := lockData(dataDir); err != nil {
		return err
	}
	keys, signer, passwords, err := loadKeys(filepath.Join(dataDir, "keys.env"))
	if err != nil {
		return err
	}
	token, err := operatorToken(signer)
	if err != nil {
		return err
	}

	_, statErr := os.Stat(filepath.Join(dataDir, "jetstream"))
	freshStream := errors.Is(statErr, fs.ErrNotExist)
	// nats-server with a log file exits from its accept loop on a busy
	// port, the reason only in the log: find out first.
	if *natsPort > 0 {
		if err := portFree(fmt.Sprintf("127.0.0.1:%d", *natsPort)); err != nil {
			return fmt.Errorf("NATS port %d is taken (%v): is another `make run` running? Stop it, or pick another port with -nats-port", *natsPort, err)
		}
	}
	services := []service{
		{name: "intake", addr: at(7101), http: at(7201)},
		{name: "qualification", addr: at(7102), http: at(7202)},
		{name: "handoff", addr: at(7103), http: at(7203)},
		{name: "nurture", addr: at(7104), http: at(7204)},
	}
	projector := service{name: "projector", addr: at(7105), http: at(7205), web: "http://" + at(7180) + "/"}
	// A busy port would otherwise show only as a service not getting
	// healthy; and it is checked before anything starts, the read model's
	// database (dropped for a fresh stream) included.
	for _, s := range append(services, projector) {
		for _, addr := range s.listens() {
			if err := portFree(addr); err != nil {
				return fmt.Errorf("%s's port %s is taken (%v): is another `make run` running? Stop it, or move every API with -port-offset", s.name, addr, err)
			}
		}
	}
	// A NATS user per service (pkg/natsauth), as in production: the
	// server's log in .data/nats.log names any permissions violation.
	ns, err := natsserver.Start(natsserver.Config{Dir: filepath.Join(dataDir, "jetstream"), Port: *natsPort, SyncAlways: *syncAlways,
		Users: natsauth.Users(passwords), LogFile: filepath.Join(dataDir, "nats.log")})
	if err != nil {
		return fmt.Errorf("start nats on port %d: %w", *natsPort, err)
	}
	defer ns.Shutdown()
	log.Info("jetstream up", "url", ns.URL(), "dir", filepath.Join(dataDir, "jetstream"), "sync_always", *syncAlways)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if dsn, err := readModelDatabase(ctx, freshStream, *database); err != nil {
		log.Warn("the projector needs PostgreSQL; running without it", "err", err)
	} else {
		projector.args = []string{"-postgres", dsn, "-http", at(7180)}
		services = append(services, projector)
	}
	// Every stream, made as the provisioner: the services' users may only
	// look them up (pkg/provision).
	if err := provisionStreams(ctx, ns.URL(), passwords[natsauth.Provisioner]); err != nil {
		if ctx.Err() != nil {
			return stopping(log)
		}
		return err
	}
	sup := &supervisor{log: log, procs: map[string]*proc{}, fatal: make(chan error, 1)}
	defer sup.stopAll()
	sup.start = func(s service) (*proc, error) {
		cmd := exec.Command(filepath.Join(dataDir, "bin", s.name), append([]string{"-addr", s.addr, "-http-addr", s.http, "-nats", ns.URL()}, s.args...)...)
		cmd.Env = append(os.Environ(), append(keys, "LEADFLOW_NATS_USER="+s.name, "LEADFLOW_NATS_PASSWORD="+passwords[s.name])...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		diesWithParent(cmd) // a devstack killed leaves no service behind
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", s.name, err)
		}
		return &proc{svc: s, cmd: cmd, done: make(chan struct{}), started: time.Now()}, nil
	}
	for _, s := range services {
		build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dataDir, "bin", s.name), "./services/"+s.name)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			if ctx.Err() != nil {
				return stopping(log)
			}
			return fmt.Errorf("build %s: %w", s.name, err)
		}
		p, err := sup.run(s)
		if err != nil {
			return err
		}
		if err := waitHealthy(ctx, s.addr, p); err != nil {
			if ctx.Err() != nil {
				return stopping(log)
			}
			return fmt.Errorf("%s: %w", s.name, err)
		}
		// From now on an exit is a crash to recover from, while later
		// services start and the demo seeds too.
		sup.watch(ctx, p)
		log.Info("service up", "service", s.name, "grpc", s.addr, "http", s.http)
	}

	conns := map[string]*grpc.ClientConn{}
	for _, s := range services {
		c, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer c.Close()
		conns[s.name] = c
	}
	var example string
	var captured time.Time
	if *seed {
		seedCtx := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
		if example, captured, err = seedDemo(seedCtx, conns, callerAs(signer), os.Stdout); err != nil {
			if ctx.Err() != nil {
				return stopping(log)
			}
			// The services are up: a demo step failing leaves the stack usable.
			fmt.Fprintf(os.Stdout, "\nWarning: the demo data is incomplete: %v\nThe stack runs on; the next run tries again.\n", err)
		}
	}
	printHelp(os.Stdout, *data, ns.URL(), services, example, captured, token, passwords[natsauth.Operator])

	select {
	case <-ctx.Done():
		return stopping(log)
	case err := <-sup.fatal:
		if ctx.Err() != nil { // Ctrl-C reaches the services too
			return stopping(log)
		}
		return err
	}
}

// supervisor runs the services and starts one that exits again, as an
// orchestrator would: a crash, or a kill -9 to try recovery. One that
// exits within a minute of its start five times in a row stops the stack
// (fatal).
type supervisor struct {
	log   *slog.Logger
	start func(service) (*proc, error)
	fatal chan error

	mu      sync.Mutex
	procs   map[string]*proc
	stopped bool // stopAll began: nothing starts again
}

// errStopped: the stack is stopping.
var errStopped = errors.New("the stack is stopping")

// run starts s and keeps its process for stopAll.
func (sv *supervisor) run(s service) (*proc, error) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.stopped {
		return nil, errStopped
	}
	p, err := sv.start(s)
	if err != nil {
		return nil, err
	}
	sv.procs[s.name] = p
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// watch starts p's service again whenever it exits, until ctx is done.
func (sv *supervisor) watch(ctx context.Context, p *proc) {
	go func() {
		quick := 0 // exits in a row within a minute of a start
		for {
			select {
			case <-ctx.Done():
				return
			case <-p.done:
			}
			sv.mu.Lock()
			stopped := sv.stopped
			sv.mu.Unlock()
			if ctx.Err() != nil || stopped {
				return // Ctrl-C reaches the services too; or stopAll stopped it
			}
			name := p.svc.name
			if time.Since(p.started) > time.Minute {
				quick = 0
			} else if quick++; quick == 5 {
				select {
				case sv.fatal <- exitError(name+" exited five times in a row, each within a minute of its start", p.err):
				default:
				}
				return
			}
			sv.log.Warn("service exited; starting it again", "service", name, "err", exitError("exited", p.err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			next, err := sv.run(p.svc)
			if errors.Is(err, errStopped) {
				return
			}
			if err != nil {
				select {
				case sv.fatal <- err:
				default:
				}
				return
			}
			p = next
		}
	}()
}

// stopAll stops every service and waits for them.
func (sv *supervisor) stopAll() {
	sv.mu.Lock()
	sv.stopped = true
	procs := slices.Collect(maps.Values(sv.procs))
	sv.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		<-p.done
	}
}

// stopping is the answer to Ctrl-C: a clean exit, whatever it interrupted.
func stopping(log *slog.Logger) error {
	log.Info("stopping")
	return nil
}

// operatorToken is the operator's token: every scope, for the printed
// examples, leadctl and the demo data; the model's sign-offs use their
// signers' own (callerAs).
func operatorToken(signer ed25519.PrivateKey) (string, error) {
	return auth.Issue(signer, auth.Principal{Subject: "operator", Kind: eventv1.ActorKind_ACTOR_KIND_USER,
		Team: eventv1.Team_TEAM_OPERATIONS, Scopes: []string{auth.AllScopes}}, 30*24*time.Hour)
}

// callerAs gives a demo actor a token of its own, signed by signer.
func callerAs(signer ed25519.PrivateKey) asCaller {
	return func(ctx context.Context, who *eventv1.Actor, scopes ...string) (context.Context, error) {
		tok, err := auth.Issue(signer, auth.Principal{Subject: who.GetId(), Kind: who.GetKind(), Team: who.GetTeam(), Scopes: scopes}, time.Hour)
		return metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+tok)), err
	}
}

// listens are the addresses s serves on.
func (s service) listens() []string {
	addrs := []string{s.addr, s.http}
	if u, err := url.Parse(s.web); err == nil && u.Host != "" {
		addrs = append(addrs, u.Host)
	}
	return addrs
}

// portFree reports why addr cannot be listened on, or nil.
func portFree(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return lis.Close()
}

// proc is a service process; done closes once it has exited, with err.
type proc struct {
	svc     service
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	err     error
}

// exitError says that a process exited, and how if not cleanly.
func exitError(what string, err error) error {
	if err == nil {
		return errors.New(what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// loadKeys reads the dev master and blind keys, the token signing key and
// a NATS password per role, creating each once, so a restart can still
// open the personal data it sealed before and the tokens and passwords it
// printed stay valid. It returns the services' environment (the public
// key, never the signing key), the signing key and the NATS passwords by
// role.
func loadKeys(path string) ([]string, ed25519.PrivateKey, map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil, err
	}
	lines := strings.Fields(string(b))
	have := map[string]string{}
	for _, l := range lines {
		k, v, _ := strings.Cut(l, "=")
		have[k] = v
	}
	added := false
	names := []string{"LEADFLOW_MASTER_KEY", "LEADFLOW_BLIND_KEY", "LEADFLOW_AUTH_SIGNING_KEY"}
	for _, r := range natsauth.Roles() {
		names = append(names, natsauth.PasswordEnv(r.Name))
	}
	for _, k := range names {
		if have[k] == "" {
			have[k] = randomHex()
			lines = append(lines, k+"="+have[k])
			added = true
		}
	}
	if added {
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			return nil, nil, nil, err
		}
	}
	signer, err := auth.ParsePrivateKey(have["LEADFLOW_AUTH_SIGNING_KEY"])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	passwords := map[string]string{}
	for _, r := range natsauth.Roles() {
		passwords[r.Name] = have[natsauth.PasswordEnv(r.Name)]
	}
	env := []string{"LEADFLOW_MASTER_KEY=" + have["LEADFLOW_MASTER_KEY"], "LEADFLOW_BLIND_KEY=" + have["LEADFLOW_BLIND_KEY"],
		"LEADFLOW_AUTH_KEYS=" + hex.EncodeToString(signer.Public().(ed25519.PublicKey))}
	return env, signer, passwords, nil
}

func provisionStreams(ctx context.Context, url, password string) error {
	nc, js, err := eventstore.Dial(url, "devstack-provision", eventstore.WithUser(natsauth.Provisioner, password))
	if err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	defer nc.Close()
	return provision.All(ctx, js, 1)
}

func randomHex() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// waitHealthy waits until p serves at addr, and gives up as soon as p
// has exited: its log above says why.
func waitHealthy(ctx context.Context, addr string, p *proc) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	h := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		res, err := h.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not healthy at %s: %v", addr, err)
		}
		select {
		case <-p.done:
			return exitError("exited before it was healthy", p.err)
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
