// Package app is the handoff service's use cases: routing a qualified
// lead, the CRM's commands (assign, reassign, accept, reject, contact
// attempts, opportunity, won or lost), the SLA timers and what each does
// when it fires, the handoff brief, and the routing data and marketing
// targets. It decides with pkg/lifecycle and the routing and sla packages,
// and stores through the ports below; it knows no gRPC and no NATS.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// Leads reads and appends lead events (adapters, on pkg/eventstore).
type Leads interface {
	// Load returns a lead's events in order; none for an unknown lead.
	Load(ctx context.Context, leadID string) ([]eventstore.Record, error)
	// Append appends events atomically at version expected; an error
	// matching eventstore.ErrConflict when another writer got there first.
	Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error)
	// Keyed returns the first answer of a command by its request id on
	// the lead, found in O(1) from the record AppendKeyed stored: the
	// command's event type and the last event it wrote; false: no record.
	Keyed(ctx context.Context, leadID, requestID string) (eventType string, last eventstore.Record, found bool, err error)
	// AppendKeyed is Append, then sends the request id's record without
	// waiting; a record not stored leaves the id to the events' own key.
	AppendKeyed(ctx context.Context, leadID string, expected uint64, requestID, eventType string, events ...*eventv1.Event) (uint64, error)
	// Remember stores the record of a request id that wrote nothing: its
	// answer is the lead as of its event eventID, at version; one stored
	// already (the same request at once) is kept.
	Remember(ctx context.Context, leadID, requestID, outcome string, version uint64, eventID string) error
	// States returns each lead's lifecycle state (stamped on its last
	// event) in one request; leads without events are absent.
	States(ctx context.Context, leadIDs ...string) (map[string]lifecycle.State, error)
	// Event returns the event stored at stream sequence seq.
	Event(ctx context.Context, seq uint64) (*eventv1.Event, error)
}

// Subject reads and appends the events of one non-lead subject: the
// routing data, a pool's pointer, the marketing targets.
type Subject interface {
	// LoadAfter returns the events after stream sequence after.
	LoadAfter(ctx context.Context, after uint64) ([]eventstore.Record, error)
	// Last returns the last event and its sequence (0, nil for none).
	Last(ctx context.Context) (uint64, *eventv1.Event, error)
	// LastAsOf is Last, and the stream's last sequence when it was read
	// (0 when the subject is empty): no event of the subject stored up to
	// end is missing.
	LastAsOf(ctx context.Context) (seq uint64, ev *eventv1.Event, end uint64, err error)
	// Version is the last event's sequence, counting every acknowledged
	// write: on a replicated stream, LastAsOf's replica may be behind.
	Version(ctx context.Context) (uint64, error)
	// Append appends at version expected (eventstore.ErrConflict).
	Append(ctx context.Context, expected uint64, ev *eventv1.Event) (uint64, error)
}

// Store opens the subjects the service keeps besides leads.
type Store interface {
	// Routing is subject model.routing.
	Routing() Subject
	// Pool is a pool's pointer, subject model.routing-pool-<uuid of id>.
	Pool(poolID string) Subject
	// Targets is subject model.sla-targets.
	Targets() Subject
	// Campaign is subject campaign.<id>.
	Campaign(campaignID string) Subject
}

// Reservations maps the leads a rep holds to when each was reserved.
type Reservations map[string]time.Time

// ErrStale is returned by Loads.Put when the rep's entry changed since it
// was read.
var ErrStale = errors.New("stale revision")

// Loads keeps each rep's open leads, for capacity (adapters, a KV bucket).
type Loads interface {
	// Count is how many leads a rep holds, as last seen; it may lag.
	Count(repID string) int
	// Get returns a rep's reservations and their revision (0: none yet):
	// as last seen, or with fresh as the bucket holds them now. The
	// caller must not change the map.
	Get(ctx context.Context, repID string, fresh bool) (Reservations, uint64, error)
	// Put stores them if the revision is still rev; ErrStale if not.
	Put(ctx context.Context, repID string, r Reservations, rev uint64) error
}

// Timers schedules SLA timers (adapters, JetStream message schedules).
type Timers interface {
	// Schedule makes each timer fire at its fire_at (at once if that is
	// past). A repeat within the stream's duplicates window is dropped;
	// after it, scheduling a timer again replaces it.
	Schedule(ctx context.Context, timers ...*eventv1.SLATimer) error
	// Reschedule is Schedule without the duplicate check: it schedules a
	// timer again however recently it was scheduled or fired.
	Reschedule(ctx context.Context, timers ...*eventv1.SLATimer) error
}

// Personal opens a lead's sealed personal data (adapters, pkg/vault):
// routing needs the company name, which intake seals, and the brief tells
// the rep the company, the title and what each activity said. Optional:
// without it, accounts match by email domain, and by the company name
// only of leads whose profile still carries it in the clear, briefs
// leave what is sealed out, and a rep's free text (a rejection's note, a
// lost deal's reason) is refused: it may name the person, so it is kept
// only sealed.
type Personal interface {
	// Personal returns what sealed holds, a LeadCaptured's or
	// LeadResubmitted's sealed_personal; nil when the lead was erased.
	// via is the merged lead it came through (merged_from), whose key
	// sealed it (vault.Vault.OpenVia); "" for the lead's own.
	Personal(ctx context.Context, leadID, via string, sealed []byte) (*eventv1.Personal, error)
	// Text returns sealed text, an ActivityRecorded's sealed_detail; ""
	// when the lead was erased.
	Text(ctx context.Context, leadID, via string, sealed []byte) (string, error)
	// Seal seals a rep's free text with the key that sealed with (one of
	// the lead's submissions), so the lead's erasure shreds it too;
	// ErrErased once it is erased.
	Seal(ctx context.Context, leadID string, with []byte, text string) ([]byte, error)
}

// App is the handoff service's use cases.
type App struct {
	personal   Personal
	leads      Leads
	store      Store
	loads      Loads
	timers     Timers
	policy     lifecycle.Policy
	now        func() time.Time
	log        *slog.Logger
	maxAge     time.Duration
	retryEvery time.Duration

	cfg     configCache
	folds   *leadCache
	poolsMu sync.Mutex
	pools   map[string]*poolEntry
	decided decidedCache
	pruned  sync.Map // rep id -> time of the last prune
	// at is told of each crash point routing passes (tests).
	at func(point CrashPoint, leadID string)
}

// CrashPoint names a place between two writes of one step, where a crash
// leaves the second to the step's retry (tests kill a process there).
type CrashPoint string

// Crash points.
const (
	// AfterTurn: routing took a pool's turn for a lead and reserved the
	// rep, and has not written the lead's event yet.
	AfterTurn CrashPoint = "turn"
	// AfterRoutingStored: a routing change is stored, what it asks of the
	// leads (an absence's hand-ons) not done yet, by the request or by
	// the routing group; leadID is "".
	AfterRoutingStored CrashPoint = "routing"
)

// passed tells the test hook, if any, that leadID's step is at p.
func (a *App) passed(p CrashPoint, leadID string) {
	if a.at != nil {
		a.at(p, leadID)
	}
}

// WithCrashPoints calls f at each crash point routing passes (tests: a
// crash there).
func WithCrashPoints(f func(p CrashPoint, leadID string)) Option { return func(a *App) { a.at = f } }

// Option configures an App.
type Option func(*App)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(a *App) { a.now = now } }

// WithPolicy sets the lifecycle policy for the deadlines the SLA policies
// do not set (close within, recycle within).
func WithPolicy(p lifecycle.Policy) Option { return func(a *App) { a.policy = p } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(a *App) { a.log = l } }

// WithPersonal lets routing read the sealed company name of a lead.
func WithPersonal(p Personal) Option { return func(a *App) { a.personal = p } }

// WithLeadCache sets how many leads' folds the lead consumer keeps
// between their events (default 50,000; 0 turns the cache off).
func WithLeadCache(n int) Option { return func(a *App) { a.folds = newLeadCache(n) } }

// WithRouteRetry sets how often routing tries again for a lead waiting in
// the fallback queue when nothing says when a rep will be free (default
// 15 minutes).
func WithRouteRetry(d time.Duration) Option {
	return func(a *App) {
		if d > 0 {
			a.retryEvery = d
		}
	}
}

// New returns the use cases over their ports.
func New(leads Leads, store Store, loads Loads, timers Timers, opts ...Option) *App {
	a := &App{leads: leads, store: store, loads: loads, timers: timers, policy: lifecycle.DefaultPolicy(), now: time.Now,
		log: slog.Default(), maxAge: time.Second, retryEvery: 15 * time.Minute,
		cfg: configCache{cfg: routing.New()}, folds: newLeadCache(50_000), pools: map[string]*poolEntry{}, decided: decidedCache{m: map[string]routing.Decision{}}}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Actor is who the service's own events are by.
var Actor = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "handoff", Team: eventv1.Team_TEAM_SALES}

// repActor is a rep acting through the CRM.
func repActor(repID string) *eventv1.Actor {
	return &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: repID, Team: eventv1.Team_TEAM_SALES}
}

// maxRaces bounds how often a write reloads and decides again after losing
// an optimistic-concurrency race before it gives up (Aborted).
const maxRaces = 16

// configCache keeps the routing data between reads. A refresh reads the
// routing subject's last change together with the stream's end (one
// request), and the changes after the cached ones, if any: the data then
// holds every change stored up to that end. So a lead event at or below
// the end is routed without a read, a backlog is served by one refresh,
// and workers that wait while one refreshes share its result.
type configCache struct {
	mu      sync.Mutex
	cfg     *routing.Config // a snapshot; never changed once published
	asOf    uint64          // the stream's end when cfg was read
	started time.Time       // when the last refresh started (zero: refresh next time)
}

// config returns the routing data including every change stored at or
// before stream sequence seq, or every change stored before seen (a
// time); with neither, any no older than maxAge.
func (a *App) config(ctx context.Context, seq uint64, seen time.Time) (*routing.Config, error) {
	c := &a.cfg
	c.mu.Lock()
	defer c.mu.Unlock()
	now := a.now()
	switch {
	case seq > 0 && seq <= c.asOf:
		return c.cfg, nil
	case !seen.IsZero() && c.started.After(seen):
		return c.cfg, nil
	case seq == 0 && seen.IsZero() && !c.started.IsZero() && now.Sub(c.started) < a.maxAge:
		return c.cfg, nil
	}
	last, _, end, err := a.store.Routing().LastAsOf(ctx)
	if err != nil {
		return nil, err
	}
	if !seen.IsZero() || end < seq {
		// The API reads every change acknowledged before the call (a
		// PutRep naming the team a PutTeam just made, through another
		// node), and routing every change stored before its event (which
		// a consumer on another replica delivered); the replica that
		// answered may be behind.
		v, err := a.store.Routing().Version(ctx)
		if err != nil {
			return nil, err
		}
		last = max(last, v)
	}
	if last != c.cfg.Seq {
		recs, err := a.store.Routing().LoadAfter(ctx, c.cfg.Seq)
		if err != nil {
			return nil, err
		}
		next := c.cfg.Clone()
		for _, r := range recs {
			if ch := r.Event.GetRoutingChanged(); ch != nil {
				next.Apply(r.Seq, ch)
			}
		}
		c.cfg = next
	}
	c.asOf, c.started = max(c.asOf, end), now
	return c.cfg, nil
}

// freshConfig is the routing data including every change made before the
// call: for the API.
func (a *App) freshConfig(ctx context.Context) (*routing.Config, error) {
	return a.config(ctx, 0, a.now())
}

// configKnowing returns the routing data, refreshed when it does not know
// the rep (one added a moment ago).
func (a *App) configKnowing(ctx context.Context, repIDs ...string) (*routing.Config, error) {
	cfg, err := a.config(ctx, 0, time.Time{})
	if err != nil {
		return nil, err
	}
	for _, r := range repIDs {
		if _, ok := cfg.Reps[r]; !ok {
			return a.freshConfig(ctx)
		}
	}
	return cfg, nil
}

// leadEvent decides cmd on state and wraps payload as the resulting
// event, stamped with the state after it.
func (a *App) leadEvent(leadID string, state lifecycle.State, cmd lifecycle.Command, p lifecycle.Policy, payload eventPayload, meta envelope.Meta, now time.Time) (*eventv1.Event, lifecycle.State, error) {
	return lifecycle.NewEvent(leadID, state, cmd, p, payload, meta, now)
}

// noteEvent wraps payload as a lead event that is not a lifecycle
// transition (OpportunityStageChanged): stamped with the
// state unchanged, allowed only in the statuses given, else refused as
// the lifecycle refuses.
func noteEvent(leadID string, state lifecycle.State, command string, allowed []lifecycle.Status, payload eventPayload, meta envelope.Meta, now time.Time) (*eventv1.Event, error) {
	ok := false
	for _, s := range allowed {
		ok = ok || s == state.Status
	}
	if !ok {
		return nil, &lifecycle.RefusedError{Command: lifecycle.CommandName(command), Status: state.Status,
			Reason: fmt.Sprintf("lead is not %s", statusList(allowed))}
	}
	ev, err := envelope.NewEvent(leadID, payload, meta, now)
	if err != nil {
		return nil, err
	}
	ev.Lifecycle = lifecycle.ToProto(state)
	return ev, nil
}

func statusList(ss []lifecycle.Status) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += " or "
		}
		out += s.String()
	}
	return out
}

// within is a deadline as the lifecycle policy wants it: a duration from
// now, at least a second.
func within(now, due time.Time) time.Duration {
	return max(due.Sub(now), time.Second)
}
