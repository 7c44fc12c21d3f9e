package main

// The handoff pipeline: the real intake, qualification and handoff
// processes on a server of their own, so the consuming-stage floor can run
// on the same server first (its stream takes lead.>, as the event stream
// does). Two figures:
//
//   - capture → ASSIGNED latency at a steady rate (open loop: a lead's
//     clock starts when its capture was due, so a late sender counts), from
//     the stream's own timestamps of each lead's events, split by stage;
//     beside it, one append round trip measured by a probe during the run;
//   - routing decisions/s: the handoff group paused while a backlog of
//     qualified leads builds up, then resumed and timed until drained;
//     beside it, the floor (fetch, one append, ack per event).

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/natsserver"
)

var (
	handoffOn      = flag.Bool("handoff", true, "measure the handoff pipeline: capture → ASSIGNED latency and routing decisions/s")
	handoffOnly    = flag.Bool("handoff-only", false, "run only the handoff pipeline")
	handoffRate    = flag.Int("handoff-rate", 1000, "leads captured per second in the latency run")
	handoffFor     = flag.Duration("handoff-d", 10*time.Second, "length of the latency run")
	handoffBacklog = flag.Int("handoff-backlog", 10_000, "qualified leads waiting when routing resumes, for decisions/s")
)

const (
	// handoffGroup is the handoff service's lead consumer group
	// (services/handoff/ports.Group; services never import each other,
	// and neither does the bench import a service's main).
	handoffGroup = "handoff"
	// Routing data: a pool per territory, reps enough that capacity never
	// runs out in a run, and accounts that some leads match.
	benchPools       = 4
	benchRepsPerPool = 50
	benchRepCapacity = 500
	benchAccounts    = 100
	benchThreshold   = 50 // VP (25) + mid-market (20) + target country (5)
	// senders bounds the captures in flight in the latency run.
	senders = 64
)

var benchCountries = []string{"DE", "FR", "GB", "US"}

type handoffFigures struct {
	floor        floorRun
	floorEvents  int
	appendIdle   result // one append with expected sequence, c=1, nothing else running
	appendLoaded result // the same, from a probe during the latency run
	rate         int
	sent         int
	sendErrs     int
	lost         int           // captured, never assigned within the wait
	queued       int           // routed to the fallback queue instead
	e2e          result        // due → LeadAssigned stored
	intake       result        // due → LeadCaptured stored
	qualify      result        // LeadCaptured → LeadQualified stored
	route        result        // LeadQualified → LeadAssigned stored
	sendP99      time.Duration // CaptureLead call, p99
	backlog      int
	decisions    result // the backlog's routing decisions
	backlogSetup time.Duration
	cpu          map[string]time.Duration // CPU per lead in the latency run, until settled, by process
}

// cpuTimes reads each process's CPU time so far (user + system).
func cpuTimes(pids map[string]int) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue // not Linux: no CPU figures
		}
		// Fields after the command (which may hold spaces) start at ')'.
		rest := string(b[bytes.LastIndexByte(b, ')')+2:])
		f := strings.Fields(rest)
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[name] = time.Duration(ut+st) * time.Second / clockTicks
	}
	return out
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

func cpuUsed(before, after map[string]time.Duration, leads int) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, a := range after {
		if b, ok := before[name]; ok && leads > 0 {
			out[name] = (a - b) / time.Duration(leads)
		}
	}
	return out
}

// runHandoff measures the pipeline on a server of its own and prints it.
func runHandoff(ctx context.Context, w io.Writer, syncAlways bool) error {
	f, err := measureHandoff(ctx, syncAlways)
	if err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	f.print(w)
	return nil
}

func measureHandoff(ctx context.Context, syncAlways bool) (f handoffFigures, err error) {
	dir, err := os.MkdirTemp("", "leadflow-bench-handoff-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)
	ns, err := natsserver.Start(natsserver.Config{Dir: filepath.Join(dir, "js"), SyncAlways: syncAlways})
	if err != nil {
		return f, err
	}
	defer ns.Shutdown()
	url := ns.URL()
	payload, err := captureEventSize()
	if err != nil {
		return f, err
	}
	if f.floor, f.floorEvents, err = handoffFloor(ctx, url, payload); err != nil {
		return f, fmt.Errorf("floor: %w", err)
	}
	probe, err := newAppendProbe(ctx, url, payload)
	if err != nil {
		return f, err
	}
	defer probe.close()
	f.appendIdle = probe.run(2 * time.Second)

	keys := []string{"LEADFLOW_MASTER_KEY=" + hexKey(), "LEADFLOW_BLIND_KEY=" + hexKey()}
	addrs := map[string]string{}
	pids := map[string]int{"bench (server, load)": os.Getpid()}
	for _, name := range []string{"intake", "qualification", "handoff"} {
		bin, err := buildService(dir, name)
		if err != nil {
			return f, err
		}
		// One vault for all three: handoff opens what intake sealed.
		p, err := startServiceEnv(ctx, bin, url, keys...)
		if err != nil {
			return f, err
		}
		defer p.stop()
		addrs[name] = p.addr
		pids[name] = p.cmd.Process.Pid
	}
	q, err := newQualification(ctx, url, addrs["qualification"])
	if err != nil {
		return f, err
	}
	defer q.close()
	if err := q.activate(ctx, benchThreshold); err != nil {
		return f, fmt.Errorf("activate model: %w", err)
	}
	pl, err := newPipeline(ctx, url, addrs["intake"], addrs["handoff"], q)
	if err != nil {
		return f, err
	}
	defer pl.close()
	if err := pl.setupRouting(ctx); err != nil {
		return f, fmt.Errorf("routing data: %w", err)
	}
	// Warm up every stage (connections, caches, pool pointers) and check
	// the pipeline routes at all before anything is timed.
	warm, _, errs := pl.send(ctx, 200, time.Second)
	if errs > 0 {
		return f, fmt.Errorf("warm-up: %d captures failed", errs)
	}
	if err := pl.settle(ctx, time.Minute); err != nil {
		return f, err
	}
	if tr, err := pl.trace(ctx, warm); err != nil {
		return f, err
	} else if tr.assigned == 0 {
		return f, fmt.Errorf("warm-up: none of %d leads was assigned (%d queued)", len(warm), tr.queued)
	}

	// Latency at a steady rate, with the append probe beside it.
	f.rate = *handoffRate
	var loaded result
	probeDone := make(chan struct{})
	go func() { loaded = probe.run(*handoffFor); close(probeDone) }()
	cpu0 := cpuTimes(pids)
	leads, sendP99, errs := pl.send(ctx, *handoffRate, *handoffFor)
	<-probeDone
	f.appendLoaded, f.sent, f.sendErrs, f.sendP99 = loaded, len(leads), errs, sendP99
	if err := pl.settle(ctx, 2*time.Minute); err != nil {
		return f, err
	}
	// Until every lead is through: a stage that fell behind does part of
	// its work after the sending stops.
	f.cpu = cpuUsed(cpu0, cpuTimes(pids), len(leads))
	tr, err := pl.trace(ctx, leads)
	if err != nil {
		return f, err
	}
	f.e2e, f.intake, f.qualify, f.route = tr.e2e, tr.intake, tr.qualify, tr.route
	f.lost, f.queued = len(leads)-tr.assigned-tr.queued, tr.queued

	// Decisions/s: a backlog of qualified leads, routing paused.
	f.backlog = *handoffBacklog
	began := time.Now()
	if err := pauseGroup(ctx, pl.js, handoffGroup); err != nil {
		return f, err
	}
	backlog, err := pl.captureAll(ctx, f.backlog)
	if err != nil {
		return f, err
	}
	if err := q.idle(ctx, 10*time.Minute); err != nil {
		return f, err
	}
	f.backlogSetup = time.Since(began)
	start := time.Now()
	if err := resumeGroup(ctx, pl.js, handoffGroup); err != nil {
		return f, err
	}
	if err := groupIdle(ctx, pl.js, handoffGroup, 10*time.Minute, 10*time.Millisecond); err != nil {
		return f, err
	}
	elapsed := time.Since(start)
	tr, err = pl.trace(ctx, backlog)
	if err != nil {
		return f, err
	}
	f.decisions = result{ops: tr.assigned + tr.queued, elapsed: elapsed}
	return f, nil
}

// handoffShape is handoff's concurrency: its -workers default and the
// MaxHeld its group runs with (services/handoff/run.go).
// Its floor is in leads: each lead's capture and score fetched and acked,
// its qualification fetched, appended to and acked.
var handoffShape = floorShape{workers: 256, maxAck: 64, lastOnly: true}

// handoffFloor is the consuming-stage floor (floor.go) through 16
// partition durables, as pkg/consume reads, on this server.
func handoffFloor(ctx context.Context, url string, size int) (floorRun, int, error) {
	nc, err := nats.Connect(url, nats.Name("bench-handoff-floor"), nats.SyncQueueLen(1024))
	if err != nil {
		return floorRun{}, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return floorRun{}, 0, err
	}
	const per = 3 // LeadCaptured, LeadScored, LeadQualified
	ids := make([]string, max(*floorEvents/per, 1))
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	r, err := floorOnce(ctx, js, ids, per, data, eventstore.Partitions, handoffShape)
	return r, len(ids) * per, err
}

// appendProbe appends one message at a time with an expected last subject
// sequence, as every event-store append does, to a stream of its own.
type appendProbe struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	data []byte
	last map[string]uint64
	n    int
}

const probeStream = "BENCHPROBE"

func newAppendProbe(ctx context.Context, url string, size int) (*appendProbe, error) {
	nc, js, err := eventstore.Dial(url, "bench-append-probe")
	if err != nil {
		return nil, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: probeStream, Subjects: []string{"probe.>"},
		Storage: jetstream.FileStorage, AllowDirect: true}); err != nil {
		nc.Close()
		return nil, err
	}
	return &appendProbe{nc: nc, js: js, data: make([]byte, size), last: map[string]uint64{}}, nil
}

func (p *appendProbe) close() {
	_ = p.js.DeleteStream(context.Background(), probeStream)
	p.nc.Close()
}

// run appends every 5 ms for d, one at a time, and returns the round trips.
func (p *appendProbe) run(d time.Duration) result {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	var lat []time.Duration
	errs := 0
	start := time.Now()
	for end := start.Add(d); time.Now().Before(end); <-t.C {
		p.n++
		subj := "probe." + strconv.Itoa(p.n%100)
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ack, err := p.js.Publish(ctx, subj, p.data, jetstream.WithExpectLastSequencePerSubject(p.last[subj]))
		cancel()
		if err != nil {
			errs++
			continue
		}
		lat = append(lat, time.Since(began))
		p.last[subj] = ack.Sequence
	}
	return newResult(lat, time.Since(start), errs)
}

// serviceCreds is how the bench dials the services it starts: plaintext
// while measuring, TLS in a chaos run (runChaos sets it first).
var serviceCreds = grpc.WithTransportCredentials(insecure.NewCredentials())

// clientTLS trusts the CA in file (PEM) only.
func clientTLS(file string) (grpc.DialOption, error) {
	creds, err := credentials.NewClientTLSFromFile(file, "")
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(creds), nil
}

// startServiceEnv runs a service binary on a free port against natsURL,
// with env added to its environment, and waits until its gRPC health
// check says SERVING.
func startServiceEnv(ctx context.Context, bin, natsURL string, env ...string) (*proc, error) {
	return startServiceLog(ctx, bin, natsURL, os.Stderr, env...)
}

// startServiceLog is startServiceEnv with the service's log to stderr.
func startServiceLog(ctx context.Context, bin, natsURL string, stderr io.Writer, env ...string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "-addr", addr, "-http-addr", "", "-nats", natsURL) // replicas would share HTTP's default port
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, addr: addr}
	conn, err := grpc.NewClient(addr, serviceCreds)
	if err != nil {
		p.stop()
		return nil, err
	}
	defer conn.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s not healthy: %v", bin, err)
		}
	}
}

// pipeline drives intake and reads what the services wrote.
type pipeline struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	store   *eventstore.Store
	conns   []*grpc.ClientConn
	intake  []intakev1.IntakeServiceClient
	handoff handoffv1.HandoffServiceClient
	q       *qualification
	n       atomic.Int64
}

func newPipeline(ctx context.Context, url, intakeAddr, handoffAddr string, q *qualification, opts ...nats.Option) (*pipeline, error) {
	nc, js, err := eventstore.Dial(url, "bench-pipeline", opts...)
	if err != nil {
		return nil, err
	}
	pl := &pipeline{nc: nc, js: js, store: eventstore.New(js, eventstore.DefaultStream), q: q}
	for range 4 { // enough HTTP/2 connections that one is not the bottleneck
		conn, err := grpc.NewClient(intakeAddr, serviceCreds)
		if err != nil {
			pl.close()
			return nil, err
		}
		pl.conns = append(pl.conns, conn)
		pl.intake = append(pl.intake, intakev1.NewIntakeServiceClient(conn))
	}
	conn, err := grpc.NewClient(handoffAddr, serviceCreds)
	if err != nil {
		pl.close()
		return nil, err
	}
	pl.conns = append(pl.conns, conn)
	pl.handoff = handoffv1.NewHandoffServiceClient(conn)
	return pl, nil
}

func (pl *pipeline) close() {
	for _, c := range pl.conns {
		c.Close()
	}
	pl.nc.Close()
}

var benchOps = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "bench", Team: eventv1.Team_TEAM_OPERATIONS}

// setupRouting is one team per territory, a weighted pool of reps each,
// a rule per territory, and accounts owned by reps of the pools.
func (pl *pipeline) setupRouting(ctx context.Context) error {
	c := pl.handoff
	var rules []*eventv1.RoutingRule
	for p := range benchPools {
		team, pool := fmt.Sprintf("team%d", p), &eventv1.Pool{PoolId: fmt.Sprintf("pool%d", p)}
		if _, err := c.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: team}, ChangedBy: benchOps}); err != nil {
			return err
		}
		for r := range benchRepsPerPool {
			id := fmt.Sprintf("rep%d-%02d", p, r)
			if _, err := c.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: id, TeamId: team, Capacity: benchRepCapacity, Active: true}, ChangedBy: benchOps}); err != nil {
				return err
			}
			pool.Members = append(pool.Members, &eventv1.PoolMember{RepId: id, Weight: uint32(1 + r%3)})
		}
		if _, err := c.PutPool(ctx, &handoffv1.PutPoolRequest{Pool: pool, ChangedBy: benchOps}); err != nil {
			return err
		}
		rules = append(rules, &eventv1.RoutingRule{RuleId: "territory-" + benchCountries[p], Segment: "mid-market", PoolId: pool.PoolId,
			When: &eventv1.RuleCriteria{CountryIn: []string{benchCountries[p]}, MinEmployees: 50}})
	}
	if _, err := c.SetRoutingRules(ctx, &handoffv1.SetRoutingRulesRequest{Rules: &eventv1.RoutingRules{Rules: rules, FallbackQueue: "sales-fallback"}, ChangedBy: benchOps}); err != nil {
		return err
	}
	for a := range benchAccounts {
		owner := fmt.Sprintf("rep%d-%02d", a%benchPools, a%benchRepsPerPool)
		if _, err := c.PutAccount(ctx, &handoffv1.PutAccountRequest{Account: &eventv1.Account{AccountId: fmt.Sprintf("acct%03d", a),
			Name: fmt.Sprintf("Account %03d GmbH", a), Domains: []string{fmt.Sprintf("acct%03d.example", a)}, OwnerRepId: owner}, ChangedBy: benchOps}); err != nil {
			return err
		}
	}
	return nil
}

// lead is the n-th bench lead: one in twenty matches an account by email
// domain and one in twenty by its (sealed) company name; the rest go by
// territory. Every one qualifies on its capture.
func (pl *pipeline) lead() *intakev1.CaptureLeadRequest {
	n := pl.n.Add(1)
	email, company := "p"+strconv.FormatInt(n, 10)+"@firm"+strconv.FormatInt(n%997, 10)+".example", "Firm "+strconv.FormatInt(n, 10)+" Ltd"
	switch n % 20 {
	case 0:
		email = "p" + strconv.FormatInt(n, 10) + fmt.Sprintf("@acct%03d.example", n%benchAccounts)
	case 1:
		company = fmt.Sprintf("ACCOUNT %03d", n%benchAccounts)
	}
	return &intakev1.CaptureLeadRequest{
		Contact:     &eventv1.Contact{Email: email, FirstName: "Bench", LastName: "Mark"},
		Profile:     &eventv1.Profile{Company: company, Title: "VP Engineering", Seniority: eventv1.Seniority_SENIORITY_VP, Employees: 250, Country: benchCountries[n%int64(len(benchCountries))]},
		Attribution: &eventv1.Attribution{Source: "web-form"},
	}
}

// sent is one capture: the lead and when it was due.
type sent struct {
	id  string
	due time.Time
}

// send captures rate leads a second for d, each due at its slot whether
// or not the previous calls have returned (up to senders in flight).
func (pl *pipeline) send(ctx context.Context, rate int, d time.Duration) ([]sent, time.Duration, int) {
	total := max(int(float64(rate)*d.Seconds()), 1)
	type job struct {
		i   int
		due time.Time
	}
	jobs := make(chan job, total)
	out := make([]sent, total)
	calls := make([]time.Duration, total)
	var errs atomic.Int64
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for j := range jobs {
				began := time.Now()
				res, err := pl.intake[j.i%len(pl.intake)].CaptureLead(ctx, pl.lead())
				calls[j.i] = time.Since(began)
				if err != nil || res.GetLeadId() == "" {
					errs.Add(1)
					continue
				}
				out[j.i] = sent{id: res.GetLeadId(), due: j.due}
			}
		})
	}
	start := time.Now()
	every := time.Second / time.Duration(rate)
	for i := range total {
		due := start.Add(time.Duration(i) * every)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		jobs <- job{i, due}
	}
	close(jobs)
	wg.Wait()
	ok := out[:0]
	var lat []time.Duration
	for i, s := range out {
		if s.id != "" {
			ok = append(ok, s)
			lat = append(lat, calls[i])
		}
	}
	return ok, newResult(lat, 0, 0).p99, int(errs.Load())
}

// captureAll captures n leads as fast as intake takes them.
func (pl *pipeline) captureAll(ctx context.Context, n int) ([]sent, error) {
	out := make([]sent, n)
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				res, err := pl.intake[i%len(pl.intake)].CaptureLead(ctx, pl.lead())
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				out[i] = sent{id: res.GetLeadId(), due: time.Now()}
			}
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return nil, *e
	}
	return out, nil
}

// settle waits until qualification and handoff have nothing pending.
func (pl *pipeline) settle(ctx context.Context, bound time.Duration) error {
	if err := pl.q.idle(ctx, bound); err != nil {
		return err
	}
	return groupIdle(ctx, pl.js, handoffGroup, bound, 50*time.Millisecond)
}

type traced struct {
	assigned, queued            int
	e2e, intake, qualify, route result
}

// trace reads every lead's events and times each stage from the stream's
// timestamps (the bench's clock: the server runs in this process).
func (pl *pipeline) trace(ctx context.Context, leads []sent) (traced, error) {
	var tr traced
	var mu sync.Mutex
	var e2e, intake, qualify, route []time.Duration
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(leads); i = int(next.Add(1) - 1) {
				recs, err := pl.store.Load(ctx, eventstore.LeadSubject(leads[i].id))
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				var captured, qualified, assigned time.Time
				queued := false
				for _, r := range recs {
					switch r.Event.GetPayload().(type) {
					case *eventv1.Event_LeadCaptured:
						captured = r.Time
					case *eventv1.Event_LeadQualified:
						qualified = r.Time
					case *eventv1.Event_LeadAssigned:
						assigned = r.Time
					case *eventv1.Event_LeadQueued:
						queued = true
					}
				}
				mu.Lock()
				switch {
				case !assigned.IsZero():
					tr.assigned++
					e2e = append(e2e, assigned.Sub(leads[i].due))
					intake = append(intake, captured.Sub(leads[i].due))
					qualify = append(qualify, qualified.Sub(captured))
					route = append(route, assigned.Sub(qualified))
				case queued:
					tr.queued++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return tr, *e
	}
	tr.e2e, tr.intake, tr.qualify, tr.route = newResult(e2e, 0, 0), newResult(intake, 0, 0), newResult(qualify, 0, 0), newResult(route, 0, 0)
	return tr, nil
}

func groupDurables(group string) []string {
	names := make([]string, eventstore.Partitions)
	for p := range names {
		names[p] = consume.Durable(group, p, eventstore.Partitions)
	}
	return names
}

// pauseGroup stops a group's deliveries (JetStream consumer pause) and
// waits until what it holds is handled.
func pauseGroup(ctx context.Context, js jetstream.JetStream, group string) error {
	for _, name := range groupDurables(group) {
		if _, err := js.PauseConsumer(ctx, eventstore.DefaultStream, name, time.Now().Add(24*time.Hour)); err != nil {
			return fmt.Errorf("pause %s: %w", name, err)
		}
	}
	return groupIdle(ctx, js, group, time.Minute, 50*time.Millisecond)
}

func resumeGroup(ctx context.Context, js jetstream.JetStream, group string) error {
	for _, name := range groupDurables(group) {
		if _, err := js.ResumeConsumer(ctx, eventstore.DefaultStream, name); err != nil {
			return fmt.Errorf("resume %s: %w", name, err)
		}
	}
	return nil
}

// groupIdle waits until none of a group's durables has anything pending
// or unacknowledged; a paused durable counts only what it delivered.
func groupIdle(ctx context.Context, js jetstream.JetStream, group string, bound, every time.Duration) error {
	for deadline := time.Now().Add(bound); ; time.Sleep(every) {
		var pending, unacked uint64
		var err error
		for _, name := range groupDurables(group) {
			var c jetstream.Consumer
			// Asked again until bound: a killed node's consumers have no
			// leader for a moment.
			if c, err = js.Consumer(ctx, eventstore.DefaultStream, name); err != nil {
				err = fmt.Errorf("consumer %s: %w", name, err)
				break
			}
			info := c.CachedInfo()
			if !info.Paused {
				pending += info.NumPending
			}
			unacked += uint64(info.NumAckPending)
		}
		if err == nil && pending == 0 && unacked == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				return err
			}
			return fmt.Errorf("group %s still busy after %s: %d pending, %d unacked", group, bound, pending, unacked)
		}
	}
}

func (f handoffFigures) print(w io.Writer) {
	fmt.Fprintf(w, "Leadflow handoff: intake → qualification → handoff, three processes on a server of their own;\n")
	fmt.Fprintf(w, "  routing data: %d pools of %d weighted reps (a rule per country), %d accounts; 1 lead in 20 matches one by domain, 1 in 20 by its sealed company name\n",
		benchPools, benchRepsPerPool, benchAccounts)
	fmt.Fprintf(w, "  one append with expected last subject seq, c=1:  idle p50 %s p99 %s;  during the latency run p50 %s p99 %s\n",
		ms(f.appendIdle.p50), ms(f.appendIdle.p99), ms(f.appendLoaded.p50), ms(f.appendLoaded.p99))
	fmt.Fprintf(w, "  capture → ASSIGNED at %d leads/s for %s (%d leads; %d capture errors; CaptureLead call p99 %s):\n",
		f.rate, *handoffFor, f.sent, f.sendErrs, ms(f.sendP99))
	fmt.Fprintf(w, "    %-46s p50 %9s   p99 %9s   (%s / %s loaded append round trips)\n", "end to end: capture due → LeadAssigned stored",
		ms(f.e2e.p50), ms(f.e2e.p99), ratio(float64(f.e2e.p50), float64(f.appendLoaded.p50)), ratio(float64(f.e2e.p99), float64(f.appendLoaded.p99)))
	for _, s := range []struct {
		name string
		r    result
	}{{"intake: due → LeadCaptured stored", f.intake}, {"qualification: LeadCaptured → LeadQualified", f.qualify}, {"handoff: LeadQualified → LeadAssigned", f.route}} {
		fmt.Fprintf(w, "    %-46s p50 %9s   p99 %9s\n", s.name, ms(s.r.p50), ms(s.r.p99))
	}
	if len(f.cpu) > 0 {
		fmt.Fprintf(w, "    CPU per lead:")
		var total time.Duration
		for _, name := range slices.Sorted(maps.Keys(f.cpu)) {
			fmt.Fprintf(w, "  %s %s", name, ms(f.cpu[name]))
			total += f.cpu[name]
		}
		fmt.Fprintf(w, "  (all %s, counted until every lead is through: %.0f%% of %d cores at this rate)\n", ms(total), 100*total.Seconds()*float64(f.rate)/float64(gomaxprocs()), gomaxprocs())
	}
	if f.lost > 0 || f.queued > 0 {
		fmt.Fprintf(w, "    %d leads queued, %d never assigned\n", f.queued, f.lost)
	}
	fmt.Fprintf(w, "  routing decisions: a backlog of %d qualified leads (built in %s), routing resumed and timed until drained:\n",
		f.backlog, f.backlogSetup.Round(100*time.Millisecond))
	fmt.Fprintf(w, "    %8.0f decisions/s   %s of the consuming-stage floor through %d partition durables, same server: %.0f leads/s\n",
		f.decisions.rate(), ratio(f.decisions.rate(), f.floor.rate()), f.floor.durables, f.floor.rate())
	fmt.Fprintf(w, "    (the floor: per lead three events fetched and acked, the last appended to with expected seq, its append fetched and acked;\n")
	fmt.Fprintf(w, "    %d events, %d workers and %d held per durable as handoff runs. A decision is a pool turn,\n", f.floorEvents, f.floor.shape.workers, f.floor.shape.maxAck)
	fmt.Fprintf(w, "    a capacity reservation and LeadAssigned, each written with a concurrency check)\n")
	if f.floor.errs > 0 || f.floor.cut {
		fmt.Fprintf(w, "    floor: %d errors (%v), cut %v\n", f.floor.errs, f.floor.firstErr, f.floor.cut)
	}
	fmt.Fprintln(w)
}
