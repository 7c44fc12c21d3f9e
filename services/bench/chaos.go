package main

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/devcert"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/natsserver"
	"github.com/leadflow/leadflow/pkg/provision"
	projectorports "github.com/leadflow/leadflow/services/projector/ports"
)

var (
	chaosFor   = flag.Duration("chaos", 0, "instead of measuring: run intake, qualification, handoff, nurture and the projector, two replicas each, under kill -9 of them and of the server for this long while sales works the leads, then check every lead (make chaos)")
	chaosRate  = flag.Int("chaos-rate", 100, "leads captured a second during -chaos")
	chaosEvery = flag.Duration("chaos-every", 2*time.Second, "mean time between faults during -chaos")
	chaosNodes = flag.Int("chaos-nodes", 1, "NATS servers during -chaos: 3 runs a cluster whose streams keep three replicas, one node killed at a time")
)

// natsServe makes this binary a bare JetStream server (DIR:PORT), so that
// a chaos run can kill its server with SIGKILL like any other process.
var (
	natsServe   = flag.String("nats-serve", "", "internal to -chaos: run only a JetStream server on DIR:PORT until killed")
	natsName    = flag.String("nats-name", "leadflow-chaos", "internal to -chaos: the -nats-serve server's name")
	natsCluster = flag.String("nats-cluster", "", "internal to -chaos: the -nats-serve server's route PORT,ROUTE-URL,... (a cluster node)")
	natsUsers   = flag.Bool("nats-users", false, "internal to -chaos: the -nats-serve server takes only pkg/natsauth's users, passwords from $NATS_<ROLE>_PASSWORD")
	natsLogFile = flag.String("nats-log", "", "internal to -chaos: the -nats-serve server's log file")
	natsTLS     = flag.String("nats-tls", "", "internal to -chaos: the -nats-serve server's TLS files (pkg/devcert) in this folder: clients and routes over TLS only")
)

// serveNATS is the -nats-serve process.
func serveNATS(spec string) error {
	dir, portText, ok := strings.Cut(spec, ":")
	port, err := strconv.Atoi(portText)
	if !ok || err != nil {
		return fmt.Errorf("-nats-serve %q: want DIR:PORT", spec)
	}
	cfg := natsserver.Config{Dir: dir, Port: port, Name: *natsName, LogFile: *natsLogFile}
	if *natsUsers {
		cfg.Users = natsauth.Users(natsauth.PasswordsFromEnv())
	}
	var routeTLS *tls.Config
	if *natsTLS != "" {
		files := devcert.Files{CA: filepath.Join(*natsTLS, "ca.pem"), Cert: filepath.Join(*natsTLS, "cert.pem"), Key: filepath.Join(*natsTLS, "key.pem")}
		if cfg.TLS, err = (config.TLS{CertFile: files.Cert, KeyFile: files.Key}).Server(); err != nil {
			return err
		}
		routeTLS = cfg.TLS.Clone()
		if routeTLS.RootCAs, err = files.Roots(); err != nil {
			return err
		}
	}
	if *natsCluster != "" {
		routePort, routes, _ := strings.Cut(*natsCluster, ",")
		p, err := strconv.Atoi(routePort)
		if err != nil {
			return fmt.Errorf("-nats-cluster %q: want PORT,ROUTE-URL,...", *natsCluster)
		}
		cfg.Cluster = &natsserver.Cluster{Name: "leadflow-chaos", Port: p, Routes: strings.Split(routes, ","), TLS: routeTLS}
	}
	if _, err := natsserver.Start(cfg); err != nil {
		return err
	}
	select {}
}

// natsProc is one of the chaos run's servers, a child process.
type natsProc struct {
	name string
	dir  string
	port int
	// cluster is the -nats-cluster value of a cluster node, "" for one server.
	cluster string
	log     io.Writer
	// logFile is the server's own log (permissions violations among it);
	// env holds the users' passwords; tls is the folder of its TLS files.
	logFile string
	env     []string
	tls     string
	cmd     *exec.Cmd
}

// start runs the server and waits until it accepts connections.
func (n *natsProc) start() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-nats-serve", fmt.Sprintf("%s:%d", n.dir, n.port), "-nats-name", n.name, "-nats-users", "-nats-log", n.logFile,
		"-nats-tls", n.tls}
	if n.cluster != "" {
		args = append(args, "-nats-cluster", n.cluster)
	}
	n.cmd = exec.Command(self, args...)
	n.cmd.Env = append(os.Environ(), n.env...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.port)); err == nil {
			c.Close()
			return nil
		}
	}
	return errors.New("nats server not listening after 30s")
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *natsProc) kill() {
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
}

func (n *natsProc) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// startNATS starts the run's servers: one, or a cluster of nodes whose
// streams then keep three replicas, each taking only the users of
// pkg/natsauth with passwords. It returns the client URL list.
func startNATS(dir string, nodes int, log io.Writer, passwords map[string]string, certs devcert.Files, operator nats.Option) ([]*natsProc, string, error) {
	var env []string
	for role, pw := range passwords {
		env = append(env, natsauth.PasswordEnv(role)+"="+pw)
	}
	ns := make([]*natsProc, nodes)
	var urls, routes []string
	routePorts := make([]int, nodes)
	for i := range ns {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		ns[i] = &natsProc{name: fmt.Sprintf("leadflow-chaos-%d", i), dir: filepath.Join(dir, fmt.Sprintf("js-%d", i)), port: port, log: log,
			logFile: filepath.Join(dir, fmt.Sprintf("nats-server-%d.log", i)), env: env, tls: filepath.Dir(certs.CA)}
		urls = append(urls, ns[i].url())
		if nodes > 1 {
			if routePorts[i], err = freePort(); err != nil {
				return nil, "", err
			}
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]))
		}
	}
	for i, n := range ns {
		if nodes > 1 {
			n.cluster = strconv.Itoa(routePorts[i]) + "," + strings.Join(routes, ",")
		}
		if err := n.start(); err != nil {
			return nil, "", err
		}
	}
	url := strings.Join(urls, ",")
	return ns, url, waitJetStream(url, time.Minute, operator)
}

// waitJetStream waits until JetStream answers: a cluster first elects its
// meta leader, and services creating their streams before that would exit.
func waitJetStream(url string, d time.Duration, opts ...nats.Option) error {
	nc, js, err := eventstore.Dial(url, "bench-chaos-wait", opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	var last error
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, last = js.AccountInfo(ctx)
		cancel()
		if last == nil {
			return nil
		}
	}
	return fmt.Errorf("jetstream not ready after %s: %w", d, last)
}

// chaosReplicas is how many processes of each service a chaos run keeps.
const chaosReplicas = 2

// chaosEngage is qualification's engagement window in a chaos run: a lead
// captured below the threshold goes to nurture this long after its score,
// on nurture's timers, while the faults go on.
const chaosEngage = 20 * time.Second

// belowThreshold reports whether capture i is one that scores below the
// threshold: sales never sees it, nurture takes it at its deadline.
func belowThreshold(i int) bool { return i%10 == 9 }

// fleet is the chaos run's service processes, each restartable.
type fleet struct {
	ctx      context.Context
	dir, url string
	env      []string
	extra    map[string][]string // environment of one service only
	bins     map[string]string

	mu    sync.Mutex
	procs map[string][]*proc // by service, one slot per replica; nil while down
	conns map[string]*grpc.ClientConn
}

func (f *fleet) start(name string, slot int) error {
	logf, err := os.OpenFile(filepath.Join(f.dir, fmt.Sprintf("%s-%d.log", name, slot)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	p, err := startServiceLog(f.ctx, f.bins[name], f.url, logf, append(slices.Clone(f.env), f.extra[name]...)...)
	if err != nil {
		logf.Close()
		return fmt.Errorf("start %s-%d: %w", name, slot, err)
	}
	f.mu.Lock()
	f.procs[name][slot] = p
	f.mu.Unlock()
	return nil
}

// kill sends SIGKILL to one replica and waits for it to die.
func (f *fleet) kill(name string, slot int) {
	f.mu.Lock()
	p := f.procs[name][slot]
	f.procs[name][slot] = nil
	f.mu.Unlock()
	if p != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// conn returns a connection to a random live replica of a service.
func (f *fleet) conn(name string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var live []*proc
	for _, p := range f.procs[name] {
		if p != nil {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return nil, fmt.Errorf("no %s replica is up", name)
	}
	p := live[rand.IntN(len(live))]
	conn, ok := f.conns[p.addr]
	if !ok {
		var err error
		if conn, err = grpc.NewClient(p.addr, serviceCreds); err != nil {
			return nil, err
		}
		f.conns[p.addr] = conn
	}
	return conn, nil
}

func (f *fleet) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ps := range f.procs {
		for _, p := range ps {
			if p != nil {
				p.stop()
			}
		}
	}
	for _, c := range f.conns {
		c.Close()
	}
}

// chaosReport is what a chaos run did and found.
type chaosReport struct {
	captures, retries int
	faults            map[string]int
	leads             int
	sales             salesReport
	violations        []string
}

// runChaos captures leads at a steady rate while replicas are killed
// (SIGKILL) and restarted, the server process too, then waits for the
// pipeline to settle and checks every lead in the stream.
func runChaos(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "leadflow-chaos-")
	if err != nil {
		return err
	}
	natsLog, err := os.Create(filepath.Join(dir, "nats.log"))
	if err != nil {
		return err
	}
	defer natsLog.Close()
	if *chaosNodes != 1 && *chaosNodes != 3 {
		return fmt.Errorf("-chaos-nodes %d: want 1 or 3", *chaosNodes)
	}
	// Every process connects as its own NATS user, so the run exercises
	// the permissions under faults; the bench itself as the operator.
	passwords := map[string]string{}
	for _, r := range natsauth.Roles() {
		passwords[r.Name] = crand.Text()
	}
	// And over TLS, as production runs: NATS clients and routes, and the
	// services' APIs, with a throwaway CA.
	if err := os.Mkdir(filepath.Join(dir, "tls"), 0o700); err != nil {
		return err
	}
	certs, err := devcert.Write(filepath.Join(dir, "tls"))
	if err != nil {
		return err
	}
	if serviceCreds, err = clientTLS(certs.CA); err != nil {
		return err
	}
	asOperator := func(o *nats.Options) error {
		if err := eventstore.WithUser(natsauth.Operator, passwords[natsauth.Operator])(o); err != nil {
			return err
		}
		return eventstore.WithCA(certs.CA)(o)
	}
	ns, url, err := startNATS(dir, *chaosNodes, natsLog, passwords, certs, asOperator)
	defer func() {
		for _, n := range ns {
			n.kill()
		}
	}()
	if err != nil {
		return err
	}
	// Every stream made by the provisioner, as in production: the
	// services' users may only look them up.
	pnc, pjs, err := eventstore.Dial(url, "chaos-provision", eventstore.WithUser(natsauth.Provisioner, passwords[natsauth.Provisioner]),
		eventstore.WithCA(certs.CA))
	if err != nil {
		return err
	}
	err = provision.All(ctx, pjs, *chaosNodes)
	pnc.Close()
	if err != nil {
		return err
	}
	pg, dropDB, err := benchDatabase(ctx, *projectorPG)
	if err != nil {
		return fmt.Errorf("projector database: %w", err)
	}
	defer dropDB()
	f := &fleet{ctx: ctx, dir: dir, url: url, env: []string{"LEADFLOW_MASTER_KEY=" + hexKey(), "LEADFLOW_BLIND_KEY=" + hexKey(), fmt.Sprintf("LEADFLOW_REPLICAS=%d", *chaosNodes),
		"LEADFLOW_NATS_CA=" + certs.CA, "LEADFLOW_TLS_CERT=" + certs.Cert, "LEADFLOW_TLS_KEY=" + certs.Key},
		extra: map[string][]string{"projector": {"LEADFLOW_POSTGRES_URL=" + pg, "LEADFLOW_PROJECTOR_HTTP=127.0.0.1:0"}},
		bins:  map[string]string{}, procs: map[string][]*proc{}, conns: map[string]*grpc.ClientConn{}}
	services := []string{"intake", "qualification", "handoff", "nurture", "projector"}
	for _, name := range services {
		f.extra[name] = append(f.extra[name], "LEADFLOW_NATS_USER="+name, "LEADFLOW_NATS_PASSWORD="+passwords[name])
	}
	f.extra["qualification"] = append(f.extra["qualification"], "LEADFLOW_ENGAGE_WITHIN="+chaosEngage.String())
	for _, name := range services {
		bin, err := buildService(dir, name)
		if err != nil {
			return err
		}
		f.bins[name], f.procs[name] = bin, make([]*proc, chaosReplicas)
		for slot := range chaosReplicas {
			if err := f.start(name, slot); err != nil {
				return err
			}
		}
	}
	defer f.stop()
	q, err := newQualification(ctx, f.url, f.procs["qualification"][0].addr, asOperator)
	if err != nil {
		return err
	}
	defer q.close()
	if err := q.activate(ctx, benchThreshold); err != nil {
		return fmt.Errorf("activate model: %w", err)
	}
	pl, err := newPipeline(ctx, f.url, f.procs["intake"][0].addr, f.procs["handoff"][0].addr, q, asOperator)
	if err != nil {
		return err
	}
	defer pl.close()
	if err := pl.setupRouting(ctx); err != nil {
		return fmt.Errorf("routing data: %w", err)
	}

	rep := chaosReport{faults: map[string]int{}}
	fmt.Fprintf(w, "Leadflow chaos: %d replicas each of %s, %d NATS server(s); %d leads/s for %s, a fault every %s on average (logs in %s)\n",
		chaosReplicas, strings.Join(services, ", "), *chaosNodes, *chaosRate, *chaosFor, *chaosEvery, dir)
	var leads []string
	var retries int
	var sales salesReport
	routes, err := watchRouting(ctx, pl)
	if err != nil {
		return err
	}
	loadDone, salesDone := make(chan struct{}), make(chan struct{})
	acked := make(chan ackedLead, 1024)
	go func() {
		leads, retries = chaosLoad(ctx, f, pl, *chaosRate, *chaosFor, acked)
		close(acked)
		close(loadDone)
	}()
	go func() {
		// As long as the settling below may take: the pipeline drains
		// its backlog after the faults stop.
		sales = chaosSales(ctx, f, routes, acked, time.Now().Add(*chaosFor+5*time.Minute))
		close(salesDone)
	}()
	// Faults until the load stops: a replica, or a server, killed and
	// restarted a moment later (a server on its store and port). One
	// process is down at a time, so a cluster keeps its quorum.
	deadline := time.Now().Add(*chaosFor)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(float64(*chaosEvery) * (0.5 + rand.Float64())))
		if rand.IntN(8) < len(ns) {
			n := ns[rand.IntN(len(ns))]
			n.kill()
			rep.faults["nats kill -9"]++
			time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
			if err := n.start(); err != nil {
				return fmt.Errorf("restart nats: %w", err)
			}
			continue
		}
		name, slot := services[rand.IntN(len(services))], rand.IntN(chaosReplicas)
		f.kill(name, slot)
		rep.faults[name+" kill -9"]++
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
		if err := f.start(name, slot); err != nil {
			return err
		}
	}
	<-loadDone
	<-salesDone
	rep.captures, rep.retries, rep.sales = len(leads), retries, sales
	for !pl.nc.IsConnected() || !q.nc.IsConnected() { // after a last server restart
		time.Sleep(50 * time.Millisecond)
	}
	awaitEngageDeadlines(ctx, pl, leads, chaosEngage+2*time.Minute)
	// Nurture writes after handoff's events, and every group reads what
	// the others wrote: settle twice.
	for range 2 {
		if err := pl.settle(ctx, 5*time.Minute); err != nil {
			return fmt.Errorf("settle: %w", err)
		}
		for _, g := range []string{natsauth.NurtureGroup, projectorports.LeadGroup} {
			if err := groupIdle(ctx, pl.js, g, 5*time.Minute, 100*time.Millisecond); err != nil {
				return fmt.Errorf("settle %s: %w", g, err)
			}
		}
	}
	// Timers are scheduled by handoff's and nurture's lead consumers as
	// they see each LeadAssigned and NurtureEnrolled, so settled
	// consumers have scheduled them all.
	versions := map[string]uint64{}
	rep.leads, rep.violations, err = checkLeads(ctx, pl, leads, sales, versions)
	if err != nil {
		return err
	}
	rep.violations = append(rep.violations, sales.failed[:min(len(sales.failed), 50)]...)
	if n := len(sales.failed); n > 50 {
		rep.violations = append(rep.violations, fmt.Sprintf("and %d more sales calls not answered as they should be", n-50))
	}
	lost, err := checkLost(ctx, f)
	if err != nil {
		return err
	}
	rep.violations = append(rep.violations, lost...)
	bad, err := checkReadModel(ctx, pg, versions)
	if err != nil {
		return err
	}
	rep.violations = append(rep.violations, bad...)
	// A refused publish or subscription is logged by the server only: a
	// role missing a permission must fail the run, not hide in a retry.
	for _, n := range ns {
		b, err := os.ReadFile(n.logFile)
		if err != nil {
			return err
		}
		for _, v := range natsserver.Violations(string(b)) {
			rep.violations = append(rep.violations, "nats permissions: "+v)
		}
	}
	rep.print(w)
	if len(rep.violations) > 0 {
		return fmt.Errorf("%d violations; logs kept in %s", len(rep.violations), dir)
	}
	return os.RemoveAll(dir)
}

// chaosLoad captures rate leads a second for d, each with its own
// idempotency key, retrying each (same key, any live replica) until it is
// acknowledged: a capture whose answer was lost in a crash must not make a
// second lead. It hands each answer to acked as it comes, and returns the
// lead of each capture, in order, and how many retries it took.
func chaosLoad(ctx context.Context, f *fleet, pl *pipeline, rate int, d time.Duration, acked chan<- ackedLead) ([]string, int) {
	total := max(int(float64(rate)*d.Seconds()), 1)
	out := make([]string, total)
	var retries atomic.Int64
	var wg sync.WaitGroup
	every := time.Second / time.Duration(rate)
	start := time.Now()
	giveUp := start.Add(d + 2*time.Minute) // then out[i] stays "", reported as unacknowledged
	for i := range total {
		if wait := time.Until(start.Add(time.Duration(i) * every)); wait > 0 {
			time.Sleep(wait)
		}
		req := pl.lead()
		if belowThreshold(i) {
			req.Profile.Title, req.Profile.Seniority = "Marketing Manager", eventv1.Seniority_SENIORITY_MANAGER
		}
		req.IdempotencyKey = fmt.Sprintf("chaos-%d", i)
		wg.Go(func() {
			err := untilAnswered(ctx, giveUp, &retries, func(ctx context.Context) error {
				conn, err := f.conn("intake")
				if err != nil {
					return err
				}
				res, err := intakev1.NewIntakeServiceClient(conn).CaptureLead(ctx, req)
				if err == nil {
					out[i] = res.GetLeadId()
				}
				return err
			})
			if err == nil {
				acked <- ackedLead{i, out[i]}
			}
		})
	}
	wg.Wait()
	return out, int(retries.Load())
}

// checkLeads reads every lead of the stream and checks what a crash must
// never do: a capture acknowledged twice as two leads or not stored, a
// lead stored that no capture acknowledged, a broken version chain, an
// event applied twice (two scores of one trigger, two verdicts, two
// assignments), a qualified lead never routed, an assignment without its
// SLA timers, or what sales did not stored as it should be (checkSales).
func checkLeads(ctx context.Context, pl *pipeline, leads []string, sales salesReport, versions map[string]uint64) (int, []string, error) {
	var bad []string
	report := func(format string, args ...any) {
		if len(bad) < 50 {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	acked := map[string]int{}
	for i, id := range leads {
		if id == "" {
			report("capture %d was never acknowledged, retried for two minutes after the run", i)
			continue
		}
		if prev, ok := acked[id]; ok {
			report("captures %d and %d (two people) answered the same lead %s", prev, i, id)
		}
		acked[id] = i
	}
	stream, err := pl.js.Stream(ctx, eventstore.DefaultStream)
	if err != nil {
		return 0, nil, err
	}
	stored, err := subjectCounts(ctx, stream, "lead.>")
	if err != nil {
		return 0, nil, err
	}
	timers, err := pl.js.Stream(ctx, "HANDOFF_TIMERS")
	if err != nil {
		return 0, nil, err
	}
	scheduled, err := subjectCounts(ctx, timers, "handoff.timer.at.>")
	if err != nil {
		return 0, nil, err
	}
	timersOf := timersByLead(scheduled)
	reviews, err := pl.js.Stream(ctx, "NURTURE_TIMERS")
	if err != nil {
		return 0, nil, err
	}
	scheduled, err = subjectCounts(ctx, reviews, "nurture.timer.at.>")
	if err != nil {
		return 0, nil, err
	}
	reviewsOf := timersByLead(scheduled)
	for subj := range stored {
		if id := eventstore.LeadID(subj); id != "" {
			if _, ok := acked[id]; !ok {
				report("lead %s is stored but no capture was answered with it", id)
			}
		}
	}
	stories := 0
	for i, id := range leads {
		if id == "" {
			continue
		}
		if _, ok := stored[eventstore.LeadSubject(id)]; !ok {
			report("lead %s was acknowledged but is not stored", id)
			continue
		}
		recs, err := pl.store.Load(ctx, eventstore.LeadSubject(id))
		if err != nil {
			return 0, nil, err
		}
		var prev, prevVB uint64
		scored := map[string]int{}
		count := map[string]int{}
		for _, r := range recs {
			ev := r.Event
			// The later events of one commit carry VersionUnknown (before
			// 2026-12-01: the commit's version, stored next to each other).
			vb := ev.GetVersionBefore()
			later := prev != 0 && (vb == eventstore.VersionUnknown || (vb == prevVB && r.Seq == prev+1))
			if vb != prev && !later {
				report("lead %s: event %d (%s) follows version %d, the lead was at %d", id, r.Seq, ev.GetEventType(), vb, prev)
			}
			prev, prevVB = r.Seq, ev.GetVersionBefore()
			count[ev.GetEventType()]++
			if _, ok := ev.GetPayload().(*eventv1.Event_LeadScored); ok {
				if scored[ev.GetCausationId()]++; scored[ev.GetCausationId()] > 1 {
					report("lead %s: scored twice for trigger %s", id, ev.GetCausationId())
				}
			}
		}
		versions[id] = prev
		if sales.gaveUp[id] && stories < 20 {
			stories++
			// When each step was stored tells a stage that fell behind
			// from one that never got the lead.
			var story []string
			for _, r := range recs {
				story = append(story, r.Event.GetEventType()+" "+r.Time.Format("15:04:05.000"))
			}
			report("lead %s (partition %d), which sales gave up on: %s", id, eventstore.Partition(id), strings.Join(story, ", "))
		}
		act, worked := sales.done[id]
		checkSales(id, act, worked, count, recs[len(recs)-1].Event, reviewsOf[id], report)
		for _, typ := range []string{"LeadCaptured", "LeadQualified", "LeadAssigned", "LeadQueued"} {
			if count[typ] > 1 {
				report("lead %s: %d × %s", id, count[typ], typ)
			}
		}
		switch {
		case count["LeadCaptured"] == 0:
			report("lead %s: no LeadCaptured", id)
		case belowThreshold(i):
			checkBelowThreshold(id, count, recs, reviewsOf[id], report)
		case count["LeadQualified"] == 0:
			report("lead %s: never qualified (every chaos lead but those below the threshold qualifies on its capture)", id)
		case count["LeadAssigned"]+count["LeadQueued"] == 0:
			report("lead %s: qualified but never routed", id)
		case count["LeadAssigned"] == 1 && timersOf[id] < 2:
			report("lead %s: assigned with %d of its 2 acceptance timers scheduled", id, timersOf[id])
		}
	}
	return len(stored), bad, nil
}

// checkBelowThreshold checks a lead captured below the threshold: never
// qualified and, once its engagement deadline passed, recycled by nurture
// as not qualified and enrolled once, with its review timer.
func checkBelowThreshold(id string, count map[string]int, recs []eventstore.Record, reviews int, report func(string, ...any)) {
	var (
		cause eventv1.RecycleCause
		// due is the engagement deadline of the lead's state before the
		// recycle (its last score set it), recycled the recycle's time.
		due, recycled time.Time
	)
	for i, r := range recs {
		if x := r.Event.GetLeadRecycled(); x != nil {
			cause, recycled = x.GetCause(), r.Time
			if i > 0 {
				due = recs[i-1].Event.GetLifecycle().GetDeadline().AsTime()
			}
		}
	}
	switch st := recs[len(recs)-1].Event.GetLifecycle().GetStatus(); {
	case count["LeadQualified"] > 0:
		report("lead %s (below the threshold): qualified", id)
	case count["LeadRecycled"] != 1 || cause != eventv1.RecycleCause_RECYCLE_CAUSE_NOT_QUALIFIED:
		report("lead %s (below the threshold): %d LeadRecycled, the last %s, want one NOT_QUALIFIED", id, count["LeadRecycled"], cause)
	case recycled.Before(due.Add(-time.Second)):
		// The timer fires at the deadline the score set; a second of
		// slack for the services' and the server's clocks.
		report("lead %s (below the threshold): recycled at %s, before its engagement deadline %s", id, recycled.Format(time.TimeOnly), due.Format(time.TimeOnly))
	case count["NurtureEnrolled"] != 1 || st != eventv1.LeadStatus_LEAD_STATUS_NURTURING:
		report("lead %s (below the threshold): %d NurtureEnrolled, ends %s", id, count["NurtureEnrolled"], st)
	case reviews == 0:
		report("lead %s (below the threshold): enrolled without its review timer", id)
	}
}

// awaitEngageDeadlines waits, up to bound, until no lead captured below
// the threshold is NEW any more: nurture takes each at its engagement
// deadline. What is still NEW then, checkLeads reports.
func awaitEngageDeadlines(ctx context.Context, pl *pipeline, leads []string, bound time.Duration) {
	var subjects []string
	for i, id := range leads {
		if id != "" && belowThreshold(i) {
			subjects = append(subjects, eventstore.LeadSubject(id))
		}
	}
	for deadline := time.Now().Add(bound); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(time.Second) {
		if !anyNew(ctx, pl, subjects) {
			return
		}
	}
}

// anyNew reports whether a lead of subjects is still NEW, by its last
// event, read in batches (a batch that cannot be read counts as NEW).
func anyNew(ctx context.Context, pl *pipeline, subjects []string) bool {
	for batch := range slices.Chunk(subjects, 500) {
		last, err := pl.store.Last(ctx, batch...)
		if err != nil || len(last) < len(batch) {
			return true
		}
		for _, raw := range last {
			ev, err := eventstore.DecodeEvent(raw.Data)
			if err != nil || ev.GetLifecycle().GetStatus() == eventv1.LeadStatus_LEAD_STATUS_NEW {
				return true
			}
		}
	}
	return false
}

// checkReadModel compares the projector's leads table with the stream:
// one row a lead, each at the version of the lead's last event (a row
// behind missed an event; one ahead cannot be; a row twice is a key
// violation PostgreSQL would have refused).
func checkReadModel(ctx context.Context, pg string, versions map[string]uint64) ([]string, error) {
	conn, err := pgx.Connect(ctx, pg)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var schema string
	if err := conn.QueryRow(ctx, `SELECT active FROM project.projections WHERE name = 'leads'`).Scan(&schema); err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT lead_id, version FROM `+pgx.Identifier{schema, "leads"}.Sanitize())
	if err != nil {
		return nil, err
	}
	var bad []string
	seen := 0
	for rows.Next() {
		var id string
		var v int64
		if err := rows.Scan(&id, &v); err != nil {
			return nil, err
		}
		seen++
		want, ok := versions[id]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("read model: lead %s is not in the stream", id))
		case uint64(v) != want:
			bad = append(bad, fmt.Sprintf("read model: lead %s at version %d, the stream at %d", id, v, want))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if seen != len(versions) {
		bad = append(bad, fmt.Sprintf("read model: %d leads, the stream %d", seen, len(versions)))
	}
	return bad[:min(len(bad), 50)], nil
}

// timersByLead counts the timers of each lead, from their subjects
// (<prefix>.timer.at.<partition>.<lead>.<timer id>).
func timersByLead(subjects map[string]uint64) map[string]int {
	out := map[string]int{}
	for subj := range subjects {
		if t := strings.Split(subj, "."); len(t) >= 6 {
			out[t[4]]++
		}
	}
	return out
}

// subjectCounts is how many messages each subject matching filter holds.
func subjectCounts(ctx context.Context, s jetstream.Stream, filter string) (map[string]uint64, error) {
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}

func (r chaosReport) print(w io.Writer) {
	var faults []string
	for _, k := range slices.Sorted(maps.Keys(r.faults)) {
		faults = append(faults, fmt.Sprintf("%s %d", k, r.faults[k]))
	}
	fmt.Fprintf(w, "  faults: %s\n", strings.Join(faults, ", "))
	fmt.Fprintf(w, "  captures acknowledged: %d (%d retries with the same idempotency key); leads stored: %d\n", r.captures, r.retries, r.leads)
	acts := map[salesAct]int{}
	for _, a := range r.sales.done {
		acts[a]++
	}
	fmt.Fprintf(w, "  sales, through any live handoff replica: %d rejected, %d accepted, %d lost as deals, %d left assigned (%d retried calls)\n",
		acts[reject], acts[accept], acts[loseDeal], acts[leaveAssigned], r.sales.retries)
	if len(r.violations) == 0 {
		fmt.Fprintf(w, "  every lead checked: one lead a capture, versions chained, no event applied twice, every lead over the threshold qualified and routed, every assignment's timers scheduled, every rejection and lost deal recycled and enrolled in nurture once with its review timer, every lead below the threshold (1 in 10) recycled as not qualified at its engagement deadline (%s after its score), not before, and enrolled once, nothing lost, parked or orphaned by nurture's own check, the read model at every lead's version\n", chaosEngage)
		return
	}
	fmt.Fprintf(w, "  VIOLATIONS:\n")
	for _, v := range r.violations {
		fmt.Fprintf(w, "    %s\n", v)
	}
}
