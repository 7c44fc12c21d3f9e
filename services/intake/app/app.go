// Package app is intake's use cases: capture (one and bulk), activity,
// campaigns and their cost, consent, merge and unmerge, erasure and
// export, and reading a lead back from its events. It decides with
// pkg/lifecycle and stores through the ports below; it knows no gRPC and
// no NATS.
package app

import (
	"cmp"
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

// Leads stores lead events, the claims that keep identities unique and
// the records that make commands idempotent (implemented in adapters on
// pkg/eventstore). Errors matching eventstore.ErrConflict mean another
// writer got there first and nothing was stored.
type Leads interface {
	// Load returns a lead's events in order; none for an unknown lead.
	Load(ctx context.Context, leadID string) ([]eventstore.Record, error)
	// Head returns a lead's last event, nil if it has none: one read.
	Head(ctx context.Context, leadID string) (*eventstore.Record, error)
	// After returns a lead's first event after version, nil if none: one
	// read.
	After(ctx context.Context, leadID string, version uint64) (*eventstore.Record, error)
	// Get returns the event stored at a stream sequence.
	Get(ctx context.Context, seq uint64) (*eventstore.Record, error)
	// Append appends events to a lead at version expected.
	Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error)
	// Create writes a lead's first event if nothing is stored under its
	// id yet, neither events nor a claim whose token the id is.
	Create(ctx context.Context, leadID string, ev *eventv1.Event) (uint64, error)
	// Commit appends to several leads all or nothing; it returns each
	// lead's new version.
	Commit(ctx context.Context, appends ...LeadAppend) ([]uint64, error)
	// WriteEach writes one event to each of many leads, each as Create
	// or Append would, all sent at once; each is answered on its own (its
	// version, or its error).
	WriteEach(ctx context.Context, writes []LeadWrite) ([]uint64, []error)
	// Holders looks identities up, all in one read.
	Holders(ctx context.Context, keys ...ClaimKey) (map[ClaimKey]Holder, error)
	// Claim writes a claim (a release when its lead id is empty) if the
	// key is still as seen.
	Claim(ctx context.Context, key ClaimKey, seen Holder, claim *eventv1.Claim) error
	// Record returns the idempotency record of a token and its sequence,
	// nil when there is none.
	Record(ctx context.Context, token string) (*eventv1.IdempotencyRecord, uint64, error)
	// PutRecord writes a token's record if its sequence is expect (0: no
	// record yet).
	PutRecord(ctx context.Context, token string, rec *eventv1.IdempotencyRecord, expect uint64) (uint64, error)
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
	// Take returns a new key for the lead, stored already (ahead, in a
	// block of keys), so sealing costs no write.
	Take(ctx context.Context, leadID string) (*vault.Key, error)
	CachedKey(leadID string) (*vault.Key, bool)
	Open(ctx context.Context, leadID string, sealed []byte) ([]byte, error)
	// OpenVia opens what leadID's events hold that came through via, a lead
	// merged into it (vault.Vault.OpenVia).
	OpenVia(ctx context.Context, leadID, via string, sealed []byte) ([]byte, error)
	// Shred destroys the lead's keys: keyIDs name those from blocks.
	Shred(ctx context.Context, leadID string, keyIDs ...string) error
	Blind(kind, value string) string
	BlindID(kind, value string) string
}

// Compile-time check that the vault serves as Keys.
var _ Keys = (*vault.Vault)(nil)

// Identity kinds: the first token after "claim." in a claim's subject.
const (
	KindEmail = "email"
	KindExt   = "ext"
)

// ClaimKey names one identity: its kind and a keyed hash of the value
// (vault.BlindID), never the value itself.
type ClaimKey struct {
	Kind  string
	Token string
}

// Holder is what holds an identity now.
type Holder struct {
	// LeadID holds it; "" when nobody does.
	LeadID string
	// Released: an erasure gave it up.
	Released bool
	// Seq is the sequence of the identity's last claim, 0 if it never had
	// one: an email's own lead (the one whose id is its token) holds it
	// without a claim.
	Seq uint64
	// Head is that own lead's last event, when it holds it.
	Head *eventstore.Record
}

// Claim is a claim to write: the key and what it points to.
type Claim struct {
	Key   ClaimKey
	Claim *eventv1.Claim
}

// LeadWrite is one event for one lead: its first (Create), or appended
// at version Expected.
type LeadWrite struct {
	LeadID   string
	Event    *eventv1.Event
	Create   bool
	Expected uint64
}

// LeadAppend is events to append to one lead at a version.
type LeadAppend struct {
	LeadID   string
	Expected uint64
	Events   []*eventv1.Event
}

// App is intake's use cases.
type App struct {
	leads     Leads
	campaigns Campaigns
	keys      Keys
	policy    lifecycle.Policy
	now       func() time.Time
	log       *slog.Logger
	known     knownSet
	later     Later
	// finishAfter is when a cut-short erasure or unmerge is finished; at is told
	// of each crash point a command passes (tests).
	finishAfter time.Duration
	at          func(point CrashPoint, leadID string)
}

// CrashPoint names a place between two writes of one command, where a
// crash leaves the second to a repeat or a timer (tests kill a process
// there).
type CrashPoint string

// The crash points.
const (
	// AfterErased: a LeadErased is stored, the keys not yet shredded.
	AfterErased CrashPoint = "erased"
	// AfterClaims: a capture's claims made before its event are stored
	// (a person captured again after an erasure), the event not yet.
	AfterClaims CrashPoint = "claims"
	// AfterStored: a command's events are stored, the writes that follow
	// them (claims, merge candidates) not yet.
	AfterStored CrashPoint = "stored"
	// AfterFirstCandidate: a merge candidate is on one lead of the pair,
	// not yet on the other.
	AfterFirstCandidate CrashPoint = "candidate"
	// AfterFirstPart: an unmerge too long for one commit stored its
	// first, not yet the rest of what it gives back.
	AfterFirstPart CrashPoint = "part"
)

// passed tells the test hook, if any, that leadID's command is at p.
func (a *App) passed(p CrashPoint, leadID string) {
	if a.at != nil {
		a.at(p, leadID)
	}
}

// Later runs the part of a command after its commit point again a while
// later, in whichever replica, so that a crash between the two does not
// leave it undone until someone repeats the command: today an erasure's
// releases and shredding (FinishErase).
type Later interface {
	// FinishErase has FinishErase(leadID) called at at, at least once
	// (it is idempotent); asking again replaces the time.
	FinishErase(ctx context.Context, leadID string, at time.Time) error
	// FinishUnmerge has FinishUnmerge(leadID) called at at, at least
	// once (it is idempotent); asking again replaces the time.
	FinishUnmerge(ctx context.Context, leadID string, at time.Time) error
}

// Timer names, in a fired timer: the erasure, or the unmerge of the
// absorbed lead, to finish.
const (
	FinishEraseTimer   = "finish-erase"
	FinishUnmergeTimer = "finish-unmerge"
)

// Option configures an App.
type Option func(*App)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(a *App) { a.now = now } }

// WithPolicy sets the SLA policy deadlines come from.
func WithPolicy(p lifecycle.Policy) Option { return func(a *App) { a.policy = p } }

// WithLater sets what finishes a command cut short after its commit
// point, and how long after it (0: FinishAfter).
func WithLater(l Later, finishAfter time.Duration) Option {
	return func(a *App) { a.later, a.finishAfter = l, cmp.Or(finishAfter, FinishAfter) }
}

// WithCrashPoints calls f at each crash point a command passes (tests:
// a crash there).
func WithCrashPoints(f func(p CrashPoint, leadID string)) Option { return func(a *App) { a.at = f } }

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

// factEvent is an event that records a fact about the person and leaves
// the lifecycle as it is (a merge candidate, the survivor's side of a
// merge): it is allowed where a resubmission is, so the shared state
// machine still refuses it on a merged or erased lead.
func (a *App) factEvent(leadID string, state lifecycle.State, payload eventPayload, meta envelope.Meta) (*eventv1.Event, error) {
	ev, _, err := a.leadEvent(leadID, state, lifecycle.Command{Name: lifecycle.Resubmit}, payload, meta, a.now())
	return ev, err
}

// stateOf is a lead's state: the lifecycle stamped on its last event.
func stateOf(recs []eventstore.Record) (lifecycle.State, uint64) {
	if len(recs) == 0 {
		return lifecycle.State{}, 0
	}
	return headState(&recs[len(recs)-1])
}

// headState is the state and version a lead's last event gives.
func headState(head *eventstore.Record) (lifecycle.State, uint64) {
	if head == nil {
		return lifecycle.State{}, 0
	}
	return lifecycle.FromProto(head.Event.GetLifecycle()), head.Seq
}
