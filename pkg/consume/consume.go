// Package consume is the one stream reader every Leadflow service uses:
// partitioned durable pull consumers shared by every replica of a service,
// with explicit acks, per-key order, in-process retries with backoff, and dead
// letters that park their key until an operator re-drives or skips them.
//
// Partitions: a group (one consuming service) has Config.Partitions durables,
// one per partition of the stream's subjects (Config.Filter). Every running
// replica of the group announces itself in a KV bucket with a short TTL, and
// each partition belongs to the live member that rendezvous hashing picks, so
// partitions spread over the replicas and move when one joins or dies. Each
// durable is also a pinned priority group: the server delivers a partition to
// one client only, which fences a replica that still believes it owns one.
//
// Order: messages with one key (a lead) are handled one at a time, in stream
// order, by one worker. Across a hand-over it holds because AckWait is shorter
// than PinnedTTL: the messages a dead owner held expire, and the server
// redelivers them before any new one, before it pins the next owner; in
// batches, not in one order, so the next owner sorts that prefix by
// sequence before its workers see it. A clean hand-over naks what it
// holds, in order. A
// replica that finds a held message older than its lease (it was frozen, or
// its connection dropped) drops everything it holds of that partition.
//
// Delivery is at least once: a message is acked after its handler returned
// nil, and terminated only after its dead letter is stored, so a crash means
// redelivery, never a lost message. Handlers must tolerate a repeat.
//
// Dead letters live in their own stream (DefaultDeadLetterStream). A message
// that keeps failing is stored there and its key is parked: the group's later
// messages of that key are recorded behind it, in order, and acked, until
// Redrive handles the dead one again or Skip drops it; then the parked ones
// are handled in order. DeadLetters lists everything dead or parked.
//
// README.md lists what this package does not guarantee.
package consume

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// Msg is one stream message handed to a handler.
type Msg struct {
	Stream  string
	Subject string
	// Key is the message's ordering key (Config.Key).
	Key string
	// Seq is the message's stream sequence.
	Seq uint64
	// Time is when the stream stored the message.
	Time   time.Time
	Header nats.Header
	Data   []byte
	// Delivered is the server's delivery count, 1 on first delivery; 0 when
	// the message comes from a re-drive or from behind a parked key.
	Delivered uint64
}

// Handler handles one message. Returning nil acks it; an error retries it
// (see Config.Attempts) unless it is Permanent. The context is cancelled when
// Run is stopping and the shutdown grace has run out.
type Handler func(ctx context.Context, m Msg) error

// Config configures Run. Stream, Group and Filter are required; every other
// field has a default.
type Config struct {
	// Stream is the stream to read.
	Stream string
	// Group names the consuming service. Its durables are named after it
	// (Group, or Group_p<n> when partitioned), and its dead letters and
	// members are kept under it. One subject token.
	Group string
	// Partitions is how many durables share the group's work, default 1.
	Partitions int
	// Filter returns the filter subjects of partition p (0 ≤ p < Partitions).
	// A key must fall in one partition only.
	Filter func(p int) []string
	// Key returns a message's ordering key, one subject token. Default: the
	// subject with its dots replaced.
	Key func(subject string) string
	// Workers is how many messages are handled at once, default 16. A key
	// always maps to the same worker.
	Workers int
	// Attempts is how many times a message is tried in-process before it is
	// dead-lettered, default 5. Tries that failed because the server was
	// away (no responders, or the connection dropped meanwhile) do not count.
	Attempts int
	// Backoff is the wait after failed attempt n (1-based), default
	// DefaultBackoff.
	Backoff func(attempt int) time.Duration
	// AckWait is how long the server waits for an ack before redelivering,
	// default 2s. Run signals progress for every message it holds, so this
	// only matters when a process dies or freezes. It must be below PinnedTTL
	// minus the pull wait, so a dead owner's messages are redelivered before
	// the next owner's first new one.
	AckWait time.Duration
	// PinnedTTL is how long the server keeps a silent owner pinned, default
	// 6s: with the member TTL, the failover time after a crash.
	PinnedTTL time.Duration
	// MaxUnfinished is how many handlings of a message may start and never
	// end (their process died, froze or was cut off) before the next
	// delivery dead-letters it unhandled, default 5; negative means no cap.
	// Deliveries that start no handler (hand-backs, a member that never got
	// to it) do not count, however many: the durables deliver without end.
	MaxUnfinished int
	// MaxHeld is the most messages one partition hands out unacked (its
	// durable's MaxAckPending), default 64: a member owning all 16
	// partitions holds up to 1,024, enough to keep its workers busy, and a
	// short queue means few progress signals and a quick hand-over.
	MaxHeld int
	// DeadLetter names the dead-letter stream, default
	// DefaultDeadLetterStream. Run creates it if it is missing, where its
	// NATS user may (pkg/provision makes it in production).
	DeadLetter string
	// Members names the KV bucket of live members, default
	// DefaultMembersBucket. Run creates it if it is missing, where its
	// NATS user may.
	Members string
	// DeliverPolicy is where a new durable starts, default DeliverAll.
	DeliverPolicy jetstream.DeliverPolicy
	// ShutdownGrace is how long in-flight handlers may run on after ctx is
	// cancelled (or their partition moves) before their context is
	// cancelled, default 5s, and at most PinnedTTL minus AckWait and the
	// pull wait (3.5s by default): a member handing back stops pulling, and
	// what it holds must be back on the server before its pin lapses and
	// the next owner gets newer messages.
	ShutdownGrace time.Duration
	// DropHandled deletes a message from Stream once it is handled and
	// acked: for a stream whose messages are work, not history (a timer
	// stream's fired copies, which a lead queued for a month would
	// otherwise pile up by the thousand until their TTL). A message
	// settled another way (dead-lettered, parked, re-driven) stays until
	// its TTL; so does one whose process died between the ack and the
	// delete, or whose delete failed (logged).
	DropHandled bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// DefaultDeadLetterStream is the dead-letter stream used when
// Config.DeadLetter is empty.
const DefaultDeadLetterStream = "DEADLETTER"

// DefaultMembersBucket is the KV bucket of live members used when
// Config.Members is empty.
const DefaultMembersBucket = "LEADFLOW_MEMBERS"

// DefaultMaxHeld is Config.MaxHeld when it is not set.
const DefaultMaxHeld = 64

const (
	defaultWorkers       = 16
	defaultAttempts      = 5
	defaultAckWait       = 2 * time.Second
	defaultPinnedTTL     = 6 * time.Second
	defaultMaxUnfinished = 5
	defaultGrace         = 5 * time.Second

	// ioTimeout bounds every single call to the server.
	ioTimeout = 5 * time.Second
	// fetchWait is how long one pull waits for messages; an owner pulls
	// again at once, which keeps its pin even when it holds MaxHeld.
	fetchWait = 500 * time.Millisecond
	// fetchBatch is the most messages one pull asks for.
	fetchBatch = 256
	// heartbeat is how often a member renews its key and re-reads the
	// membership; memberTTL is how long a silent member counts as alive.
	heartbeat = time.Second
	memberTTL = 3 * time.Second
	// pinGroup is the priority group every owner pulls in.
	pinGroup = "leadflow"
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
	if err := checkToken("Config.Group", c.Group); err != nil {
		return c, err
	}
	if c.Filter == nil {
		return c, errors.New("consume: Config.Filter is required")
	}
	if c.Partitions <= 0 {
		c.Partitions = 1
	}
	if c.Key == nil {
		c.Key = func(subject string) string { return strings.ReplaceAll(subject, ".", "_") }
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
	if c.PinnedTTL <= 0 {
		c.PinnedTTL = defaultPinnedTTL
	}
	if c.AckWait+fetchWait >= c.PinnedTTL {
		return c, fmt.Errorf("consume: AckWait %s plus the pull wait %s must stay below PinnedTTL %s", c.AckWait, fetchWait, c.PinnedTTL)
	}
	switch {
	case c.MaxUnfinished == 0:
		c.MaxUnfinished = defaultMaxUnfinished
	case c.MaxUnfinished < 0:
		c.MaxUnfinished = -1
	}
	if c.MaxHeld <= 0 {
		c.MaxHeld = DefaultMaxHeld
	}
	if c.DeadLetter == "" {
		c.DeadLetter = DefaultDeadLetterStream
	}
	if c.Members == "" {
		c.Members = DefaultMembersBucket
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = defaultGrace
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for p := range c.Partitions {
		if len(c.Filter(p)) == 0 {
			return c, fmt.Errorf("consume: Config.Filter(%d) is empty", p)
		}
	}
	return c, nil
}

// Durable is the durable name of partition p of a group of n partitions.
func Durable(group string, p, n int) string {
	if n <= 1 {
		return group
	}
	return fmt.Sprintf("%s_p%02d", group, p)
}

// checkToken rejects names that cannot be one subject token, since groups
// and keys are embedded in subjects.
func checkToken(field, s string) error {
	if s == "" {
		return fmt.Errorf("consume: %s is required", field)
	}
	if strings.ContainsAny(s, ".*> \t\r\n") {
		return fmt.Errorf("consume: %s %q must be one subject token (no '.', '*', '>' or spaces)", field, s)
	}
	return nil
}

// Run joins the group and handles the messages of the partitions it owns
// until ctx is cancelled. It creates the durables, and the dead-letter stream
// and the member bucket when they are missing (where its NATS user may;
// else it waits for them). On stop it hands every partition
// back (in-flight handlers finish within Config.ShutdownGrace, held messages
// are naked in order, the pin is released), waits for every goroutine it
// started, and returns nil.
//
// Run returns an error for an invalid Config, when the server refuses the
// setup (missing stream, invalid consumer settings), or when the connection
// is closed. While the server is unreachable or starting, setup is retried
// until ctx ends, and so are transient errors while running.
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

// setup opens the stream, creates what is missing, and retries while the
// server is unreachable or starting (so services may start before NATS is
// up); it gives up at once when the server answers no, or when ctx ends.
func setup(ctx context.Context, js jetstream.JetStream, cfg Config, h Handler) (*runner, error) {
	log := cfg.Logger.With("group", cfg.Group, "stream", cfg.Stream)
	var r *runner
	err := eventstore.Setup(ctx, log, func(ctx context.Context) (err error) {
		r, err = trySetup(ctx, js, cfg, h, log)
		return err
	})
	return r, err
}

// trySetup is one attempt; eventstore.Setup bounds its time.
func trySetup(ctx context.Context, js jetstream.JetStream, cfg Config, h Handler, log *slog.Logger) (*runner, error) {
	src, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("consume: stream %s: %w", cfg.Stream, err)
	}
	replicas := src.CachedInfo().Config.Replicas
	dl, err := ensureDeadLetterStream(ctx, js, cfg.DeadLetter, replicas)
	if err != nil {
		return nil, err
	}
	members, err := ensureMembers(ctx, js, cfg.Members, replicas)
	if err != nil {
		return nil, err
	}
	r := newRunner(cfg, js, h, log, src, dl, members)
	for p := range cfg.Partitions {
		if r.parts[p].cons, err = r.ensureConsumer(ctx, p); err != nil {
			return nil, err
		}
	}
	if r.redr, err = r.ensureRedrive(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// ensureRedrive creates or updates the group's consumer of its re-drive
// and skip requests.
func (r *runner) ensureRedrive(ctx context.Context) (jetstream.Consumer, error) {
	c, err := r.dl.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       redriveConsumer(r.cfg.Group),
		Description:   "re-drive and skip requests for " + r.cfg.Group,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       10 * time.Second,
		FilterSubject: requestSubject(r.cfg.Group, "*"),
		MaxAckPending: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("consume: re-drive consumer of %s on %s: %w", r.cfg.Group, r.cfg.DeadLetter, err)
	}
	return c, nil
}

func redriveConsumer(group string) string { return group + "_redrive" }

func (r *runner) consumerConfig(p int) jetstream.ConsumerConfig {
	cc := jetstream.ConsumerConfig{
		Durable:        Durable(r.cfg.Group, p, r.cfg.Partitions),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        r.cfg.AckWait,
		MaxDeliver:     -1, // the server never gives up on a message: MaxUnfinished does, counting handlings
		MaxAckPending:  r.cfg.MaxHeld,
		DeliverPolicy:  r.cfg.DeliverPolicy,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{pinGroup},
		PinnedTTL:      r.cfg.PinnedTTL,
	}
	if f := r.cfg.Filter(p); len(f) == 1 {
		cc.FilterSubject = f[0]
	} else {
		cc.FilterSubjects = f
	}
	return cc
}

// ensureConsumer creates partition p's durable, or updates it keeping where
// it started: the server refuses to change a consumer's deliver policy.
func (r *runner) ensureConsumer(ctx context.Context, p int) (jetstream.Consumer, error) {
	cc := r.consumerConfig(p)
	for range 2 {
		existing, err := r.js.Consumer(ctx, r.cfg.Stream, cc.Durable)
		switch {
		case err == nil:
			old := existing.CachedInfo().Config
			cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = old.DeliverPolicy, old.OptStartSeq, old.OptStartTime
			c, err := r.js.UpdateConsumer(ctx, r.cfg.Stream, cc)
			if err != nil {
				return nil, fmt.Errorf("consume: update consumer %s on %s: %w", cc.Durable, r.cfg.Stream, err)
			}
			return c, nil
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			c, err := r.js.CreateConsumer(ctx, r.cfg.Stream, cc)
			if errors.Is(err, jetstream.ErrConsumerExists) {
				continue // another replica created it first: update it instead
			}
			if err != nil {
				return nil, fmt.Errorf("consume: create consumer %s on %s: %w", cc.Durable, r.cfg.Stream, err)
			}
			return c, nil
		default:
			return nil, fmt.Errorf("consume: consumer %s on %s: %w", cc.Durable, r.cfg.Stream, err)
		}
	}
	return nil, fmt.Errorf("consume: consumer %s on %s: created and deleted concurrently", cc.Durable, r.cfg.Stream)
}

// EnsureStreams makes what every group shares, or brings it to these
// settings: the dead-letter stream and the members bucket (empty names:
// the defaults). pkg/provision calls it; Run only opens them, or makes
// them where its NATS user may (without users).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, deadLetter, members string, replicas int) error {
	if _, err := eventstore.Ensure(ctx, js, deadLetterConfig(cmp.Or(deadLetter, DefaultDeadLetterStream), replicas)); err != nil {
		return fmt.Errorf("consume: dead-letter stream: %w", err)
	}
	ctx, cancel := eventstore.WithSetupTimeout(ctx)
	defer cancel()
	return eventstore.Setup(ctx, nil, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateKeyValue(ctx, membersConfig(cmp.Or(members, DefaultMembersBucket), replicas))
		return err
	})
}

func deadLetterConfig(name string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Description: "Leadflow dead letters, parked messages and re-drive requests (pkg/consume)",
		Subjects:    []string{deadLetterPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		// One message per subject: dead-lettering a message again replaces
		// its entry, and a repeated request replaces the pending one.
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
	}
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
	s, err = js.CreateStream(ctx, deadLetterConfig(name, replicas))
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.Stream(ctx, name) // created concurrently by another Run
	}
	if err != nil {
		return nil, fmt.Errorf("consume: create dead-letter stream %s: %w", name, err)
	}
	return s, nil
}
