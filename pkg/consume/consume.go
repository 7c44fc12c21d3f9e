// Package consume is the one stream reader every Leadflow service uses: a
// durable JetStream pull consumer with explicit acks, in-process retries with
// backoff, and a dead-letter stream that operators can list and re-drive.
//
// Ordering: the events of one lead share a subject, and a handler must see them
// in stream order. Run therefore partitions messages by hash(Subject) % Workers
// and each worker handles its messages one at a time, in the order fetched. A
// failing message keeps its worker busy while it is retried, so a later event
// of the same subject is never handled before an earlier one has been handled
// or dead-lettered. Different subjects are handled in parallel.
//
// Delivery is at least once: a message is acked only after its handler
// returned nil, and terminated only after its dead letter is stored, so a crash
// at any point means redelivery, never a lost message. Handlers must therefore
// tolerate seeing a message again (Msg.Delivered > 1 hints at it).
//
// Stopping: when ctx is cancelled Run lets its open pull end, lets running
// handlers finish (their context is cancelled after Config.ShutdownGrace),
// and hands every message it holds but has not finished back to the server
// (a nak with a tiny delay, which the server stores and later redelivers
// sorted by sequence), so the next Run or another replica gets them at once
// and in order. It then waits until the server has processed its acks.
//
// Dead letters live in their own stream (default "DEADLETTER", subjects
// "deadletter.>"): one entry per failed message at
// "deadletter.entry.<durable>.<stream seq>", with an empty body and headers
// naming the stream, subject, sequence, error, attempts and time. The message
// itself stays in its stream. Redrive publishes a request to
// "deadletter.redrive.<durable>.<stream seq>", which the running consumer
// handles through the same worker as the subject's live messages.
//
// README.md lists what this package does not guarantee.
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Msg is one stream message handed to a handler.
type Msg struct {
	Stream  string
	Subject string
	// Seq is the message's stream sequence.
	Seq uint64
	// Time is when the stream stored the message.
	Time   time.Time
	Header nats.Header
	Data   []byte
	// Delivered is the server's delivery count, 1 on first delivery. It is 0
	// when the message is re-driven from a dead letter (the consumer did not
	// deliver it).
	Delivered uint64
}

// Handler handles one message. Returning nil acks it; an error retries it
// (see Config.Attempts) unless it is Permanent. The context is cancelled when
// Run is stopping and the shutdown grace has run out.
type Handler func(ctx context.Context, m Msg) error

// Config configures Run. Stream and Durable are required; every other field
// has a default.
type Config struct {
	// Stream is the stream to read.
	Stream string
	// Durable names the durable consumer and its dead letters. It must be one
	// subject token (no '.', '*', '>' or spaces) and unique per dead-letter
	// stream.
	Durable string
	// FilterSubjects optionally limits the consumer to these subjects.
	FilterSubjects []string
	// Workers is how many messages are handled at once, default 4. Messages
	// are partitioned by hash(Subject) % Workers, so one subject is handled in
	// order by one worker.
	Workers int
	// Attempts is how many times a message is tried in-process before it is
	// dead-lettered, default 5.
	Attempts int
	// Backoff is the wait after failed attempt n (1-based), default
	// DefaultBackoff.
	Backoff func(attempt int) time.Duration
	// AckWait is how long the server waits for an ack before redelivering,
	// default 30s. Run signals progress for every message it holds, so this
	// only matters when a process dies: its messages come back after AckWait.
	AckWait time.Duration
	// MaxDeliver caps server deliveries (crash loops), default 20; negative
	// means no cap. A message delivered this many times is dead-lettered after
	// its next failure, and one whose last delivery was never answered (the
	// process died again) is dead-lettered when the server gives up on it.
	MaxDeliver int
	// FetchBatch is the most messages one pull asks for, default 256. At most
	// 4·FetchBatch messages are held (fetched, unacked) at once.
	FetchBatch int
	// DeadLetter names the dead-letter stream, default "DEADLETTER". Run
	// creates it if it is missing.
	DeadLetter string
	// DeliverPolicy is where a new durable starts, default DeliverAll. It is
	// applied only when the durable is created.
	DeliverPolicy jetstream.DeliverPolicy
	// ShutdownGrace is how long in-flight handlers may run on after ctx is
	// cancelled before their context is cancelled too, default 5s.
	ShutdownGrace time.Duration
	// Pinned makes one Run of the durable the only one the server delivers
	// to (a JetStream pinned priority group); every other Run of it, in
	// other replicas of the service, waits as a hot standby and takes over
	// once the active one has not pulled for PinnedTTL. Per-subject order
	// then holds with several replicas, and a handler may keep per-subject
	// state in memory, knowing it sees every message of the durable.
	Pinned bool
	// PinnedTTL is how long the server keeps a silent Run pinned, default
	// 5s: the failover time after a crash. It must exceed the pull wait.
	PinnedTTL time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// pinGroup is the priority group every pinned Run pulls in.
const pinGroup = "leadflow"

// DefaultDeadLetterStream is the dead-letter stream used when
// Config.DeadLetter is empty.
const DefaultDeadLetterStream = "DEADLETTER"

const (
	defaultWorkers    = 4
	defaultAttempts   = 5
	defaultAckWait    = 30 * time.Second
	defaultMaxDeliver = 20
	defaultFetchBatch = 256
	defaultGrace      = 5 * time.Second

	// ioTimeout bounds every single call to the server.
	ioTimeout = 5 * time.Second
	// setupTimeout bounds one try at opening or creating the streams and
	// consumers (normally milliseconds); a lost request is retried after it.
	setupTimeout = ioTimeout
	// fetchWait is how long one pull waits for messages. It also bounds how
	// long a stop waits for the pull in flight, whose messages are handed
	// back (nak) rather than left to time out after AckWait.
	fetchWait = 500 * time.Millisecond
	// redriveBatch is how many re-drive requests are held at once.
	redriveBatch = 8
)

// DefaultBackoff is the default Config.Backoff: 50ms·2^(attempt-1), capped at
// 5s, of which a random half is jitter.
func DefaultBackoff(attempt int) time.Duration {
	const base, limit = 50 * time.Millisecond, 5 * time.Second
	d := limit
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 7 { // 50ms·2^6 = 3.2s; one more doubling passes the cap
		d = min(base<<(attempt-1), limit)
	}
	return d/2 + rand.N(d/2+1)
}

func (c Config) withDefaults() (Config, error) {
	if c.Stream == "" {
		return c, errors.New("consume: Config.Stream is required")
	}
	if err := checkToken("Config.Durable", c.Durable); err != nil {
		return c, err
	}
	if c.Workers <= 0 {
		c.Workers = defaultWorkers
	}
	if c.Attempts <= 0 {
		c.Attempts = defaultAttempts
	}
	if c.Backoff == nil {
		c.Backoff = DefaultBackoff
	}
	if c.AckWait <= 0 {
		c.AckWait = defaultAckWait
	}
	switch {
	case c.MaxDeliver == 0:
		c.MaxDeliver = defaultMaxDeliver
	case c.MaxDeliver < 0:
		c.MaxDeliver = -1
	}
	if c.FetchBatch <= 0 {
		c.FetchBatch = defaultFetchBatch
	}
	if c.DeadLetter == "" {
		c.DeadLetter = DefaultDeadLetterStream
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = defaultGrace
	}
	if c.PinnedTTL <= 0 {
		c.PinnedTTL = 5 * time.Second
	}
	if c.Pinned && c.PinnedTTL <= fetchWait {
		return c, fmt.Errorf("consume: PinnedTTL %s must exceed the pull wait %s", c.PinnedTTL, fetchWait)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// checkToken rejects names that cannot be one subject token, since durables
// are embedded in dead-letter subjects.
func checkToken(field, s string) error {
	if s == "" {
		return fmt.Errorf("consume: %s is required", field)
	}
	if strings.ContainsAny(s, ".*> \t\r\n") {
		return fmt.Errorf("consume: %s %q must be one subject token (no '.', '*', '>' or spaces)", field, s)
	}
	return nil
}

// Run creates or updates the durable pull consumer (explicit ack) and creates
// the dead-letter stream if it is missing, then fetches and dispatches
// messages to h until ctx is cancelled. It then stops fetching, hands back
// (naks) messages it has not started, lets in-flight handlers finish within
// Config.ShutdownGrace (after which their context is cancelled and their
// messages are handed back too), waits for every goroutine it started, and
// returns nil.
//
// Run returns an error for an invalid Config, when the server refuses the
// setup (missing stream, a dead-letter stream whose subjects clash, invalid
// consumer settings), or when the connection is closed. While the server is
// unreachable or starting, setup is retried until ctx ends, and so are
// transient errors while running (logged, with backoff).
func Run(ctx context.Context, js jetstream.JetStream, cfg Config, h Handler) error {
	if h == nil {
		return errors.New("consume: nil Handler")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	r, err := setup(ctx, js, cfg, h)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return r.run(ctx)
}

// runner is one Run: its consumers, worker queues and the messages it holds.
type runner struct {
	cfg Config
	js  jetstream.JetStream
	h   Handler
	// lastDelivery is when a live pull last brought messages (unix ns).
	lastDelivery atomic.Int64
	log          *slog.Logger
	src          jetstream.Stream
	dl           jetstream.Stream
	cons         jetstream.Consumer // the live durable
	redr         jetstream.Consumer // re-drive requests for this durable

	queues  []chan *item
	slots   chan struct{} // one token per live message Run may hold
	rslots  chan struct{} // one token per re-drive request Run may hold
	tracked tracker

	stop    <-chan struct{} // closed when Run starts stopping
	abort   context.CancelCauseFunc
	hctx    context.Context // handlers' context, cancelled after the grace
	ioctx   context.Context // carries ctx values, never cancelled: I/O has its own timeouts
	fatalMu sync.Mutex
	fatal   error

	// What flushSettles needs, per consumer (live, redriven): deliveries to
	// hand back once Run has stopped pulling, and the last one settled.
	settleMu    sync.Mutex
	back        [2][]jetstream.Msg
	lastSettled [2]string
}

// setup opens the stream, creates what is missing, and retries while the
// server is unreachable or starting (so services may start before NATS is
// up); it gives up at once when the server answers no, or when ctx ends.
func setup(ctx context.Context, js jetstream.JetStream, cfg Config, h Handler) (*runner, error) {
	log := cfg.Logger.With("durable", cfg.Durable, "stream", cfg.Stream)
	for attempt := 1; ; attempt++ {
		r, err := trySetup(ctx, js, cfg, h, log)
		if err == nil || refused(err) || ctx.Err() != nil {
			return r, err
		}
		if attempt&(attempt-1) == 0 {
			log.Warn("consume: setup failed; retrying", "error", err, "tries", attempt)
		}
		t := time.NewTimer(DefaultBackoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// refused reports whether the server answered no (a 4xx API error), or the
// connection is closed for good: retrying will not help.
func refused(err error) bool {
	if errors.Is(err, nats.ErrConnectionClosed) {
		return true
	}
	var je jetstream.JetStreamError
	if errors.As(err, &je) && je.APIError() != nil {
		return je.APIError().Code >= 400 && je.APIError().Code < 500
	}
	return false
}

func trySetup(ctx context.Context, js jetstream.JetStream, cfg Config, h Handler, log *slog.Logger) (*runner, error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()

	src, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("consume: stream %s: %w", cfg.Stream, err)
	}
	dl, err := ensureDeadLetterStream(ctx, js, cfg.DeadLetter, src.CachedInfo().Config.Replicas)
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, js: js, h: h, log: log, src: src, dl: dl}
	if r.cons, err = r.ensureConsumer(ctx); err != nil {
		return nil, err
	}
	r.redr, err = dl.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       redriveConsumer(cfg.Durable),
		Description:   "re-drive requests for " + cfg.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		FilterSubject: redriveSubject(cfg.Durable, "*"),
		MaxAckPending: 4 * redriveBatch,
	})
	if err != nil {
		return nil, fmt.Errorf("consume: re-drive consumer %s on %s: %w", redriveConsumer(cfg.Durable), cfg.DeadLetter, err)
	}
	return r, nil
}

func redriveConsumer(durable string) string { return durable + "_redrive" }

// maxHeld is how many live messages Run holds (fetched, not yet settled); it
// is also the consumer's MaxAckPending.
func (c Config) maxHeld() int { return 4 * c.FetchBatch }

func (r *runner) consumerConfig() jetstream.ConsumerConfig {
	cc := jetstream.ConsumerConfig{
		Durable:       r.cfg.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       r.cfg.AckWait,
		MaxDeliver:    r.cfg.MaxDeliver,
		MaxAckPending: r.cfg.maxHeld(),
		DeliverPolicy: r.cfg.DeliverPolicy,
	}
	if r.cfg.Pinned {
		cc.PriorityPolicy = jetstream.PriorityPolicyPinned
		cc.PriorityGroups = []string{pinGroup}
		cc.PinnedTTL = r.cfg.PinnedTTL
	}
	switch len(r.cfg.FilterSubjects) {
	case 0:
	case 1:
		cc.FilterSubject = r.cfg.FilterSubjects[0]
	default:
		cc.FilterSubjects = r.cfg.FilterSubjects
	}
	return cc
}

// ensureConsumer creates the durable, or updates it keeping where it started:
// the server refuses to change a consumer's deliver policy.
func (r *runner) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	cc := r.consumerConfig()
	for range 2 {
		existing, err := r.js.Consumer(ctx, r.cfg.Stream, r.cfg.Durable)
		switch {
		case err == nil:
			old := existing.CachedInfo().Config
			cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = old.DeliverPolicy, old.OptStartSeq, old.OptStartTime
			c, err := r.js.UpdateConsumer(ctx, r.cfg.Stream, cc)
			if err != nil {
				return nil, fmt.Errorf("consume: update consumer %s on %s: %w", r.cfg.Durable, r.cfg.Stream, err)
			}
			return c, nil
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			c, err := r.js.CreateConsumer(ctx, r.cfg.Stream, cc)
			if errors.Is(err, jetstream.ErrConsumerExists) {
				continue // another replica created it first: update it instead
			}
			if err != nil {
				return nil, fmt.Errorf("consume: create consumer %s on %s: %w", r.cfg.Durable, r.cfg.Stream, err)
			}
			return c, nil
		default:
			return nil, fmt.Errorf("consume: consumer %s on %s: %w", r.cfg.Durable, r.cfg.Stream, err)
		}
	}
	return nil, fmt.Errorf("consume: consumer %s on %s: created and deleted concurrently", r.cfg.Durable, r.cfg.Stream)
}

// ensureDeadLetterStream opens the dead-letter stream or creates it with as
// many replicas as the stream it serves. An existing one is left as it is.
func ensureDeadLetterStream(ctx context.Context, js jetstream.JetStream, name string, replicas int) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("consume: dead-letter stream %s: %w", name, err)
	}
	s, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "Leadflow dead letters and re-drive requests (pkg/consume)",
		Subjects:    []string{deadLetterPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		// One entry per failed message: dead-lettering it again replaces the
		// entry, and a repeated re-drive request replaces the pending one.
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.Stream(ctx, name) // created concurrently by another Run
	}
	if err != nil {
		return nil, fmt.Errorf("consume: create dead-letter stream %s: %w", name, err)
	}
	return s, nil
}

func (r *runner) run(ctx context.Context) error {
	runCtx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	r.stop, r.abort, r.hctx, r.ioctx = runCtx.Done(), abort, hctx, context.WithoutCancel(ctx)

	held := r.cfg.maxHeld()
	r.slots = fullSemaphore(held)
	r.rslots = fullSemaphore(redriveBatch)
	r.tracked.items = make(map[*item]struct{})
	r.queues = make([]chan *item, r.cfg.Workers)
	var workers sync.WaitGroup
	for i := range r.queues {
		// Room for every message Run may hold, so a fetcher never waits on a
		// busy worker and one slow subject does not stall the others.
		q := make(chan *item, held+redriveBatch)
		r.queues[i] = q
		workers.Go(func() { r.work(q) })
	}

	// The advisory subscription exists before the first pull, so the server's
	// "max deliveries" advisory for a message this Run's pulls skip is seen.
	advisories := make(chan *nats.Msg, 64)
	advSub, err := r.js.Conn().ChanSubscribe(maxDeliveriesAdvisory(r.cfg.Stream, r.cfg.Durable), advisories)
	if err != nil {
		r.fail(fmt.Errorf("consume: subscribe to advisories: %w", err))
	}

	var feeders sync.WaitGroup
	if err == nil {
		feeders.Go(func() { r.fetchLoop(runCtx) })
		feeders.Go(func() { r.redriveLoop(runCtx) })
		feeders.Go(func() { r.advisoryLoop(runCtx, advisories) })
	}
	progressDone := make(chan struct{})
	var progress sync.WaitGroup
	progress.Go(func() { r.progressLoop(progressDone) })

	<-runCtx.Done()
	grace := time.AfterFunc(r.cfg.ShutdownGrace, cancelHandlers)
	stuck := time.AfterFunc(r.cfg.ShutdownGrace+5*time.Second, func() {
		r.log.Warn("consume: a handler still runs 5s after its context was cancelled; Run waits for it")
	})
	feeders.Wait()
	if advSub != nil {
		_ = advSub.Unsubscribe()
	}
	for _, q := range r.queues {
		close(q)
	}
	workers.Wait()
	grace.Stop()
	stuck.Stop()
	close(progressDone)
	progress.Wait()
	r.flushSettles()
	r.unpin()
	r.fatalMu.Lock()
	defer r.fatalMu.Unlock()
	return r.fatal
}

// fail stops Run with err as its result.
func (r *runner) fail(err error) {
	r.fatalMu.Lock()
	if r.fatal == nil {
		r.fatal = err
	}
	r.fatalMu.Unlock()
	r.abort(err)
}

func (r *runner) stopping() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// sleep waits d and reports false if Run started stopping first.
func (r *runner) sleep(d time.Duration) bool {
	if d <= 0 {
		return !r.stopping()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.stop:
		return false
	}
}

func fullSemaphore(n int) chan struct{} {
	s := make(chan struct{}, n)
	for range n {
		s <- struct{}{}
	}
	return s
}

// acquire takes at least lowWater tokens (waiting for them) and then as many
// more as are free, up to high. It reports false if ctx ended first; tokens
// taken so far are then given back.
func acquire(ctx context.Context, sem chan struct{}, lowWater, high int) (int, bool) {
	if ctx.Err() != nil {
		return 0, false // a select below would pick a free token half the time
	}
	n := 0
	for n < lowWater {
		select {
		case <-sem:
			n++
		case <-ctx.Done():
			release(sem, n)
			return 0, false
		}
	}
	for n < high {
		select {
		case <-sem:
			n++
		default:
			return n, true
		}
	}
	return n, true
}

func release(sem chan struct{}, n int) {
	for range n {
		sem <- struct{}{}
	}
}

// partition maps a subject to its worker (FNV-1a).
func partition(subject string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(subject); i++ {
		h ^= uint32(subject[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// unpin hands a pinned durable over at once on a clean stop, instead of
// after PinnedTTL: a rolling restart then moves scoring to a standby in a
// round trip. Only a Run that was receiving messages unpins, so a standby
// that stops does not knock the active Run off its pin.
func (r *runner) unpin() {
	if !r.cfg.Pinned || time.Since(time.Unix(0, r.lastDelivery.Load())) > r.cfg.PinnedTTL {
		return
	}
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	s, err := r.js.Stream(ctx, r.cfg.Stream)
	if err == nil {
		err = s.UnpinConsumer(ctx, r.cfg.Durable, pinGroup)
	}
	if err != nil {
		r.log.Warn("consume: unpin on stop failed; a standby takes over after PinnedTTL", "durable", r.cfg.Durable, "error", err)
	}
}
