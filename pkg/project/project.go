// Package project is the one way Leadflow builds read models in
// PostgreSQL from the event stream.
//
// A Projection says how events change its tables (Apply) and how its
// tables look (goose migrations). A Projector runs it:
//
//   - Live: Handle is a pkg/consume handler. Messages handed to it by every
//     consumer worker at once are committed together (group commit): one
//     transaction holds the rows of the whole batch and the checkpoint of
//     every subject in it, so a crash at any point either keeps both or
//     neither. Handle returns, and the message is acked, only after that
//     transaction committed.
//   - Checkpoints are per subject (a lead, a campaign, a model): the stream
//     sequence of the subject's last message applied. A message at or
//     below it is a redelivery and changes nothing. A lead event whose
//     version_before is not the checkpoint (nor VersionUnknown, right
//     after it) may follow a gap (a skipped dead
//     letter, a durable created late, another writer of the same schema):
//     the projector reads the missing events from the stream
//     (eventstore.Store.LoadAfter) and applies them first, in the same
//     transaction, instead of building on the gap. Each batch locks its
//     subjects' checkpoint rows, so two projectors (replicas, a rebuild
//     catching up) never apply one subject's events twice or out of order.
//   - Messages whose type this binary's schema does not know are counted
//     (per type, in the same transaction) and skipped; the checkpoint
//     moves past them.
//   - Every read model lives in a schema of its own, <name>_<n>. The
//     control table project.projections names the active one. Migrations
//     are applied to it on start.
//   - Rebuild replays the stream from sequence 1 into a fresh schema with
//     the same checks, reporting progress, while the active schema keeps
//     serving; once caught up it swaps the pointer in one transaction and
//     catches up once more. A FoldingProjection is folded in memory and
//     loaded with COPY, indexes built after; other projections go through
//     Apply batch by batch. Read runs a query in one snapshot of the
//     active schema.
//
// README.md lists what this package does not guarantee.
package project

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Event is one decoded event handed to a projection, with where the
// stream stored it.
type Event struct {
	Seq     uint64
	Subject string
	// Time is when the stream stored it.
	Time  time.Time
	Event *eventv1.Event
}

// Projection is a read model: its tables and how events change them.
type Projection interface {
	// Migrations returns goose SQL migrations at the root of the FS (pass
	// fs.Sub(embedded, "migrations")). They are applied to every schema of
	// the read model, with search_path set to it: create tables unqualified.
	Migrations() fs.FS
	// Apply writes what events change. It runs inside the batch's
	// transaction with search_path set to the schema being written. The
	// events are in stream order, each new to this schema and each
	// following its subject's previous one without a gap; events of one
	// subject are never split between concurrent calls. Apply must not
	// commit or roll back tx. An error rolls the whole batch back.
	Apply(ctx context.Context, tx pgx.Tx, events []Event) error
}

// Config configures a Projector.
type Config struct {
	// Name names the read model: its schemas are Name_1, Name_2, ... and
	// its row in project.projections. Lower case letters, digits and '_'.
	Name string
	// Pool is the PostgreSQL pool. Its connections must allow the
	// projector to create schemas.
	Pool *pgxpool.Pool
	// JS and Stream are the event stream: gaps are read from it, and
	// Rebuild replays it.
	JS     jetstream.JetStream
	Stream string
	// Subjects are the filter subjects of everything the projection reads
	// (Rebuild replays these); the consumer groups that feed Handle should
	// cover the same.
	Subjects []string
	// MaxBatch is the most messages one transaction holds, live; default
	// 256. Rebuild uses RebuildBatch, default 10,000: the more events of
	// one lead a batch holds, the fewer times the lead's rows are written.
	MaxBatch     int
	RebuildBatch int
	// Flushers is how many live batches commit at once, each in its own
	// transaction and never two with the same subject; default 1.
	Flushers int
	// RebuildFold is the most subjects a rebuild of a FoldingProjection
	// folds in memory before it writes them (under GOMEMLIMIT, also no
	// more than half the limit of heap); the rest of that rebuild goes
	// batch by batch. Default 2,000,000 (the lead read model: at most 4 KB
	// of heap a lead, measured at 1M); negative: never fold.
	RebuildFold int
	// RebuildConns is how many loads (then index builds) of a fold run at
	// once, each on its own connection; default 4.
	RebuildConns int
	// Rules is the version of the projection's rules: how Apply turns
	// events into rows. A schema records the version that built it, and
	// Outdated tells an active schema built by older rules, which only a
	// rebuild puts right (rows written before keep the old rules' view).
	// Raise it when Apply's meaning changes; 0 leaves schemas unversioned.
	Rules  int
	Logger *slog.Logger
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)

func (c Config) withDefaults() (Config, error) {
	if !nameRE.MatchString(c.Name) {
		return c, fmt.Errorf("project: Config.Name %q: lower case letters, digits and '_', starting with a letter", c.Name)
	}
	if c.Pool == nil || c.JS == nil {
		return c, errors.New("project: Config.Pool and Config.JS are required")
	}
	if c.Stream == "" {
		c.Stream = eventstore.DefaultStream
	}
	if len(c.Subjects) == 0 {
		return c, errors.New("project: Config.Subjects is required")
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.RebuildBatch <= 0 {
		c.RebuildBatch = 10000
	}
	if c.Flushers <= 0 {
		c.Flushers = 1
	}
	if c.RebuildConns <= 0 {
		c.RebuildConns = 4
	}
	if c.RebuildFold == 0 {
		c.RebuildFold = 2_000_000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Projector runs one Projection. Create it with New, run Run, and plug
// Handle into pkg/consume.
type Projector struct {
	cfg   Config
	proj  Projection
	store *eventstore.Store
	log   *slog.Logger
	queue chan *item
	stats stats
	hook  func(stage, []Event)
	// loadAfter reads a subject's events after a gap: store.LoadAfter,
	// replaced in tests.
	loadAfter func(ctx context.Context, subject string, after uint64) ([]eventstore.Record, error)
	// replayWait is how long a rebuild's read waits for more messages
	// before it asks the server whether it has caught up (tests shorten it).
	replayWait time.Duration

	stopOnce sync.Once
	stopCh   chan struct{} // closed when Run has returned
}

// New sets up the projection's control row and its active schema (created
// as Name_1 on first use) and applies its migrations there, under an
// advisory lock, so replicas starting together do it once.
func New(ctx context.Context, cfg Config, p Projection) (*Projector, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	pr := &Projector{cfg: cfg, proj: p, store: eventstore.New(cfg.JS, cfg.Stream), log: cfg.Logger.With("projection", cfg.Name),
		queue: make(chan *item, 4*cfg.MaxBatch), stopCh: make(chan struct{}), replayWait: replayWait}
	pr.loadAfter = pr.store.LoadAfter
	if err := pr.setup(ctx); err != nil {
		return nil, err
	}
	return pr, nil
}

// stage is a point in a batch's transaction, for tests that crash there
// (export_test.go).
type stage int

const (
	// stageRows: the projection's rows are written, the checkpoints not.
	stageRows stage = iota + 1
	// stageCheckpoint: rows and checkpoints are written, not committed.
	stageCheckpoint
	// stageCommitted: the transaction committed; the messages are not
	// acked yet.
	stageCommitted
)

// ErrRebuildRunning is returned by Rebuild while another rebuild of the
// same projection runs (in this process or another).
var ErrRebuildRunning = errors.New("project: a rebuild is running")

// ErrStopped is returned by Handle when the Projector's Run has ended.
var ErrStopped = errors.New("project: projector stopped")
