// Package app is intake's use cases: capture (one and bulk), activity,
// campaigns and their cost, consent, and reading a lead back from its
// events. It decides with pkg/lifecycle and stores through the ports
// below; it knows no gRPC and no NATS.
package app

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/vault"
)

// Leads stores lead events and the claims that keep identities unique
// (implemented in adapters on pkg/eventstore).
type Leads interface {
	// Claim takes a uniqueness claim for a lead. Errors: *ClaimedError
	// when the claim is already held.
	Claim(ctx context.Context, key ClaimKey, claim *eventv1.Claim) error
	// Create stores new leads' claims and first events all or nothing (one
	// atomic batch: for bulk import). Errors: *ClaimedError when a claim is
	// held, an error matching eventstore.ErrConflict.
	Create(ctx context.Context, leads ...NewLead) ([]uint64, error)
	// Append appends events to a lead at version expected (0: a new lead).
	// Errors: an error matching eventstore.ErrConflict.
	Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error)
	// Load returns a lead's events in order; none for an unknown lead.
	Load(ctx context.Context, leadID string) ([]eventstore.Record, error)
	// Claims returns the claims already held among keys, in one request.
	Claims(ctx context.Context, keys ...ClaimKey) (map[ClaimKey]*eventv1.Claim, error)
}

// Campaigns stores campaign events.
type Campaigns interface {
	// Append appends to a campaign at version expected; errors match
	// eventstore.ErrConflict when another write got there first.
	Append(ctx context.Context, campaignID string, expected uint64, ev *eventv1.Event) (uint64, error)
	Load(ctx context.Context, campaignID string) ([]eventstore.Record, error)
	// Exists reports whether a campaign was registered.
	Exists(ctx context.Context, campaignID string) (bool, error)
}

// Keys holds the per-lead data keys that seal personal data (pkg/vault).
type Keys interface {
	NewKey(leadID string) (*vault.Key, error)
	Key(ctx context.Context, leadID string) (*vault.Key, error)
	Save(ctx context.Context, keys ...*vault.Key) error
	Open(ctx context.Context, leadID string, sealed []byte) ([]byte, error)
	Blind(kind, value string) string
}

// Compile-time check that the vault serves as Keys.
var _ Keys = (*vault.Vault)(nil)

// ClaimKey names one uniqueness claim: its kind ("email", "ext") and a
// keyed hash of the value, never the value itself.
type ClaimKey struct {
	Kind string
	Hash string
}

// Claim is a claim to write: the key and what it points to.
type Claim struct {
	Key   ClaimKey
	Claim *eventv1.Claim
}

// NewLead is a lead's first event and the claims that come with it.
type NewLead struct {
	LeadID string
	Event  *eventv1.Event
	Claims []Claim
}

// App is intake's use cases.
type App struct {
	leads     Leads
	campaigns Campaigns
	keys      Keys
	policy    lifecycle.Policy
	now       func() time.Time
	log       *slog.Logger
}

// Option configures an App.
type Option func(*App)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(a *App) { a.now = now } }

// WithPolicy sets the SLA policy deadlines come from.
func WithPolicy(p lifecycle.Policy) Option { return func(a *App) { a.policy = p } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(a *App) { a.log = l } }

// New returns the use cases over their ports.
func New(leads Leads, campaigns Campaigns, keys Keys, opts ...Option) *App {
	a := &App{leads: leads, campaigns: campaigns, keys: keys, policy: lifecycle.DefaultPolicy(), now: time.Now, log: slog.Default()}
	for _, o := range opts {
		o(a)
	}
	return a
}

// eventPayload is one of the event payload messages (eventv1.LeadCaptured, ...).
type eventPayload = proto.Message

// maxRaces bounds how often a command reloads and decides again after
// losing an optimistic-concurrency race before it gives up (Aborted).
const maxRaces = 16

// leadEvent decides cmd on state and wraps payload as the resulting
// event, stamped with the state after it. Every lead event goes through
// here, so every one carries its lifecycle.
func (a *App) leadEvent(leadID string, state lifecycle.State, cmd lifecycle.Command, payload eventPayload, meta envelope.Meta, now time.Time) (*eventv1.Event, lifecycle.State, error) {
	return lifecycle.NewEvent(leadID, state, cmd, a.policy, payload, meta, now)
}

// stateOf is a lead's state: the lifecycle stamped on its last event.
func stateOf(recs []eventstore.Record) (lifecycle.State, uint64) {
	if len(recs) == 0 {
		return lifecycle.State{}, 0
	}
	last := recs[len(recs)-1]
	return lifecycle.FromProto(last.Event.GetLifecycle()), last.Seq
}
