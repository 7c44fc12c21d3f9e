// Package app is qualification's use cases: proposing, approving and
// reading scoring model versions; scoring a lead when one of its events
// arrives; re-scoring every open lead when a version activates; explaining
// a score. It decides with pkg/lifecycle and the model and registry
// packages, and stores through the ports below; it knows no gRPC and no
// NATS.
package app

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/qualification/registry"
)

// Leads reads and appends lead events (adapters, on pkg/eventstore).
type Leads interface {
	// Load returns a lead's events in order; none for an unknown lead.
	Load(ctx context.Context, leadID string) ([]eventstore.Record, error)
	// LoadAfter returns a lead's events after stream sequence after.
	LoadAfter(ctx context.Context, leadID string, after uint64) ([]eventstore.Record, error)
	// Append appends events atomically at version expected; an error
	// matching eventstore.ErrConflict when another writer got there first.
	Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error)
	// Keyed returns the first answer of a command by its request id on
	// the lead, found in O(1) from the record AppendKeyed stored: the
	// command's event type and the event it wrote; false: no record.
	Keyed(ctx context.Context, leadID, requestID string) (eventType string, last eventstore.Record, found bool, err error)
	// AppendKeyed is Append, then sends the request id's record without
	// waiting; a record not stored leaves the id to the events' own key.
	AppendKeyed(ctx context.Context, leadID string, expected uint64, requestID, eventType string, events ...*eventv1.Event) (uint64, error)
}

// Models reads and appends the scoring model's events (subject
// model.scoring).
type Models interface {
	// LoadAfter returns the model's events after stream sequence after.
	LoadAfter(ctx context.Context, after uint64) ([]eventstore.Record, error)
	// Append appends atomically at version expected (eventstore.ErrConflict).
	Append(ctx context.Context, expected uint64, events ...*eventv1.Event) (uint64, error)
	// Version is the sequence of the model's last event, 0 if none.
	Version(ctx context.Context) (uint64, error)
	// LastSeq is the stream's last sequence now.
	LastSeq(ctx context.Context) (uint64, error)
}

// Scans are the reads of every lead event that drive a re-score:
// one durable JetStream consumer per version, so a crash resumes it.
type Scans interface {
	// Name is the durable name of version n's scan.
	Name(n uint32) string
	// Open creates version n's scan unless it exists, and returns where it is.
	Open(ctx context.Context, n uint32) (Scan, error)
	// Position returns where version n's scan is; ok is false if it does
	// not exist.
	Position(ctx context.Context, n uint32) (scan Scan, ok bool, err error)
	// Close deletes version n's scan; a missing one is not an error.
	Close(ctx context.Context, n uint32) error
}

// Scan is a scan's position, from its consumer info.
type Scan struct {
	Pending  uint64 // not yet delivered
	Unacked  uint64 // delivered, not yet acknowledged
	Acked    uint64 // acknowledged deliveries (the ack floor's consumer sequence)
	AckFloor uint64 // stream sequence up to which every message is acknowledged
	// HeldBack counts the leads the scan's group holds behind a dead
	// letter: not re-scored until an operator re-drives or skips them.
	HeldBack int
}

// App is qualification's use cases.
type App struct {
	leads  Leads
	models Models
	scans  Scans
	policy lifecycle.Policy
	now    func() time.Time
	log    *slog.Logger
	maxAge time.Duration
	reg    registryCache
	folds  *leadCache
	// activated is nudged when this process activates a version, so its
	// re-score starts without waiting for the next poll.
	activated chan struct{}
}

// Activated is nudged when this process activates a version. Other
// replicas find out when they next look.
func (a *App) Activated() <-chan struct{} { return a.activated }

// Option configures an App.
type Option func(*App)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(a *App) { a.now = now } }

// WithPolicy sets the SLA policy lifecycle deadlines come from.
func WithPolicy(p lifecycle.Policy) Option { return func(a *App) { a.policy = p } }

// WithLeadCache sets how many leads' folds the live scorer keeps between
// their events (default 100,000; 0 turns the cache off).
func WithLeadCache(n int) Option { return func(a *App) { a.folds = newLeadCache(n) } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(a *App) { a.log = l } }

// New returns the use cases over their ports.
func New(leads Leads, models Models, scans Scans, opts ...Option) *App {
	a := &App{leads: leads, models: models, scans: scans, policy: lifecycle.DefaultPolicy(), now: time.Now,
		log: slog.Default(), maxAge: time.Second, reg: registryCache{reg: &registry.Registry{}}, folds: newLeadCache(100_000), activated: make(chan struct{}, 1)}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Actor is who qualification's own events are by.
var Actor = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "qualification"}

// maxRaces bounds how often a write reloads and decides again after losing
// an optimistic-concurrency race before it gives up (Aborted).
const maxRaces = 16

// registryCache keeps the model's history between reads. Scoring reads it
// for every event, so it is refreshed only when it may be stale (see
// registry); refreshes are serialized, so workers that all find it stale
// wait for one refresh instead of each doing their own.
type registryCache struct {
	mu   sync.Mutex
	reg  *registry.Registry // a snapshot; never changed once published
	asOf uint64             // every model event stored before this stream sequence is in reg
	at   time.Time          // when reg was refreshed
}

// registry returns the model's history, complete at least up to stream
// sequence seen (every model event stored before it is in it) and no
// older than maxAge. Use fresh for reads that must see every write
// before them (the API, and appends at the model's version).
func (a *App) registry(ctx context.Context, seen uint64, maxAge time.Duration) (*registry.Registry, error) {
	c := &a.reg
	c.mu.Lock()
	defer c.mu.Unlock()
	if seen <= c.asOf && a.now().Sub(c.at) < maxAge {
		return c.reg, nil
	}
	// The stream's end is read first: the model history loaded after it
	// holds every model event stored up to that end, so the refresh
	// serves every event up to it, not only the one that asked (a
	// backlog is served by one refresh, not one per event).
	end, err := a.models.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	if end < seen {
		// The stream's end as its leader tells it is before the event
		// being scored (on a cluster, a leader behind the replica whose
		// consumer delivered it): a model event before that one may be
		// missing from what the leader would give.
		return nil, eventstore.Behind("the lead stream", end, seen)
	}
	v, err := a.models.Version(ctx)
	if err != nil {
		return nil, err
	}
	if v != c.reg.Seq {
		recs, err := a.models.LoadAfter(ctx, c.reg.Seq)
		if err != nil {
			return nil, err
		}
		next := c.reg.Clone()
		next.Apply(recs...)
		c.reg = next
	}
	c.asOf = max(c.asOf, end)
	c.at = a.now()
	return c.reg, nil
}

// fresh is the registry read now: a maxAge of 0 always refreshes.
func (a *App) fresh(ctx context.Context) (*registry.Registry, error) {
	return a.registry(ctx, 0, 0)
}

// leadEvent decides cmd on state and wraps payload as the resulting
// event, stamped with the state after it. Every lead event qualification
// writes goes through here, so every one carries its lifecycle. Deadlines
// run from the wall clock: routing's clock starts when it can see the MQL.
func (a *App) leadEvent(leadID string, state lifecycle.State, cmd lifecycle.Command, payload eventPayload, meta envelope.Meta) (*eventv1.Event, lifecycle.State, error) {
	return lifecycle.NewEvent(leadID, state, cmd, a.policy, payload, meta, a.now())
}
