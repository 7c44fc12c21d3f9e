// Package app is nurture's use cases: recycling a lead that sales gave
// back and enrolling it in a program chosen by the programs' entry rules;
// re-engaging a nurtured lead that shows interest and ending a program
// that runs out (Reconcile, driven by lead events, timers and re-drives);
// managing the programs; a manual recycle; and the no-lost-lead check over
// the whole stream. It decides with pkg/lifecycle and the program package
// and stores through the ports below; it knows no gRPC and no NATS.
package app

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/nurture/program"
)

// Group is nurture's consumer group on the lead stream; TimerGroup reads
// its fired timers. Both are shared by every replica.
const (
	Group      = "nurture"
	TimerGroup = "nurture-timers"
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
	// command's event type and the event it wrote; false: no record.
	Keyed(ctx context.Context, leadID, requestID string) (eventType string, last eventstore.Record, found bool, err error)
	// AppendKeyed is Append, then sends the request id's record without
	// waiting; a record not stored leaves the id to the events' own key.
	AppendKeyed(ctx context.Context, leadID string, expected uint64, requestID, eventType string, events ...*eventv1.Event) (uint64, error)
	// After returns the lead's first event after stream sequence seq;
	// false when there is none.
	After(ctx context.Context, leadID string, seq uint64) (eventstore.Record, bool, error)
	// TypeAt returns the type of the event stored at stream sequence seq.
	TypeAt(ctx context.Context, seq uint64) (string, error)
	// Stream is the name of the lead stream.
	Stream() string
}

// Programs reads and appends the program changes (subject
// model.nurture-programs).
type Programs interface {
	// LoadAfter returns the changes after stream sequence after.
	LoadAfter(ctx context.Context, after uint64) ([]eventstore.Record, error)
	// Version is the sequence of the last change, 0 if none.
	Version(ctx context.Context) (uint64, error)
	// Append appends one change at version expected (eventstore.ErrConflict).
	Append(ctx context.Context, expected uint64, ev *eventv1.Event) (uint64, error)
}

// Timers schedules the program reviews and the engagement deadlines of
// new leads (adapters, on JetStream message schedules).
type Timers interface {
	// Schedule makes t fire at its review_at. slot names the timer within
	// its lead: scheduling into a slot again replaces what waits there.
	Schedule(ctx context.Context, slot string, t *eventv1.NurtureTimer) error
}

// Head is one lead's last event as the index holds it.
type Head struct {
	LeadID  string
	Seq     uint64
	At      time.Time // when the stream stored it
	Type    string
	EventID string
	State   lifecycle.State
	// RecycleDue: the lead's last step is an SLABreached whose escalation
	// sends it back to nurture (attempts exhausted); facts, merges and
	// scores after it keep it, as they keep Breached.
	RecycleDue bool
	// Breached: the lead's last step is an SLABreached that escalated
	// nowhere (handoff escalates in the same append): the facts and
	// scores after it keep it. A replica's first read of a lead (its last
	// event only) does not see a breach before that event.
	Breached bool
	// Scored: every fact of the lead (lifecycle.Kind.Fact) has a score
	// covering it, the latest with no verdict owed: the scorer owes the
	// lead nothing. Unscored are the facts waiting (see Unscored).
	Scored   bool
	Unscored []string
	// Reengaged is the id of the lead's LeadReengaged while the lead waits,
	// NURTURING, for its score (the scorer's step); facts, other scores
	// and unmerges keep it. A replica's first read of a lead sees it only when
	// it is the last event.
	Reengaged string
	// Partial: Unscored may miss facts before the first event the index
	// read of the lead (a replica reads each lead's last event on start).
	Partial bool
}

// ClaimHead is one identity claim as the index holds it.
type ClaimHead struct {
	Subject string
	Kind    string
	LeadID  string
	At      time.Time
}

// Index holds the last event of every lead and every live identity claim
// (adapters, on an ordered consumer of the stream).
type Index interface {
	// View waits until the index holds every lead and claim message the
	// stream stored before the call, then calls fn with it; fn must not
	// keep it. It returns the stream sequence the view is complete up to.
	View(ctx context.Context, fn func(IndexView)) (uint64, error)
}

// IndexView is the index held still. Leads are in one slice, so a check
// of every lead reads memory in order.
type IndexView struct {
	Leads []Head
	// Pos maps a lead id to its head in Leads.
	Pos    map[string]int
	Claims map[string]*ClaimHead
}

// Lead returns a lead's head, nil if the lead has no events.
func (v IndexView) Lead(id string) *Head {
	if i, ok := v.Pos[id]; ok {
		return &v.Leads[i]
	}
	return nil
}

// Groups are the consumer groups' progress and dead letters (adapters, on
// pkg/consume and consumer infos).
type Groups interface {
	// AckFloors returns, per lead partition, the stream sequence up to
	// which group has handled every event.
	AckFloors(ctx context.Context, group string) ([]uint64, error)
	// DeadLetters lists every dead letter and parked lead of every group.
	DeadLetters(ctx context.Context) ([]consume.DeadLetter, error)
	// Redrive asks group to handle lead's dead letter again, then what
	// waits behind it; consume.ErrNotFound when there is none.
	Redrive(ctx context.Context, group, leadID string, seq uint64) error
	// Stopped reports whether group has run on the lead stream (its
	// durables exist) and has no live member now.
	Stopped(ctx context.Context, group string) (bool, error)
}

// App is nurture's use cases.
type App struct {
	leads    Leads
	programs Programs
	timers   Timers
	index    Index
	groups   Groups
	policy   lifecycle.Policy
	now      func() time.Time
	log      *slog.Logger
	// afterAppend, if set, is called after each lead event nurture
	// appends (tests stop a process there).
	afterAppend func(*eventv1.Event)

	catMu sync.Mutex
	cat   *program.Catalog // a snapshot; never changed once published
	catAt time.Time
}

// Option configures an App.
type Option func(*App)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(a *App) { a.now = now } }

// WithPolicy sets the lifecycle policy deadlines come from.
func WithPolicy(p lifecycle.Policy) Option { return func(a *App) { a.policy = p } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(a *App) { a.log = l } }

// WithShortestProgram accepts and runs programs as short as d instead of
// program.MinDuration (tests watch programs end in seconds).
func WithShortestProgram(d time.Duration) Option {
	return func(a *App) { a.cat = a.cat.WithShortest(d) }
}

// WithAfterAppend calls f after each lead event nurture appends, before
// anything else happens: tests use it to stop a process between two
// steps.
func WithAfterAppend(f func(*eventv1.Event)) Option { return func(a *App) { a.afterAppend = f } }

// New returns the use cases over their ports.
func New(leads Leads, programs Programs, timers Timers, index Index, groups Groups, opts ...Option) *App {
	a := &App{leads: leads, programs: programs, timers: timers, index: index, groups: groups,
		policy: lifecycle.DefaultPolicy(), now: time.Now, log: slog.Default(), cat: program.New()}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Actor is who nurture's own events are by.
var Actor = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "nurture", Team: eventv1.Team_TEAM_MARKETING}

// maxRaces bounds how often a write reloads and decides again after losing
// an optimistic-concurrency race before it gives up (Aborted).
const maxRaces = 16

// catalogMaxAge is how stale the programs may be for a decision on a lead
// event; the API reads them fresh.
const catalogMaxAge = time.Second

// catalog returns the programs, refreshed when older than maxAge (0:
// always). Refreshes are serialized and read only the changes since.
func (a *App) catalog(ctx context.Context, maxAge time.Duration) (*program.Catalog, error) {
	a.catMu.Lock()
	defer a.catMu.Unlock()
	if maxAge > 0 && a.now().Sub(a.catAt) < maxAge {
		return a.cat, nil
	}
	v, err := a.programs.Version(ctx)
	if err != nil {
		return nil, err
	}
	if v != a.cat.Seq {
		recs, err := a.programs.LoadAfter(ctx, a.cat.Seq)
		if err != nil {
			return nil, err
		}
		next := a.cat.Clone()
		for _, r := range recs {
			if ch := r.Event.GetNurtureProgramChanged(); ch != nil {
				next.Apply(r.Seq, r.Event.GetRecordedAt().AsTime(), ch)
			}
		}
		a.cat = next
	}
	a.catAt = a.now()
	return a.cat, nil
}
