// Package app is the projector's use cases: lead search and detail, the
// reports, rebuilds and what-if replays. It validates queries, fills in
// defaults and runs them through the ports below; it knows no gRPC, no
// SQL and no NATS.
//
// Report answers are the API's messages (projectorv1): the read side's
// answer shape is its contract, and copying each report into a parallel
// set of structs would add nothing but a place for the two to drift.
package app

import (
	"context"
	"log/slog"
	"sync"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/services/projector/whatif"
)

// Queries reads the read model (adapters.Queries). Each call reads one
// snapshot.
type Queries interface {
	// SearchLeads returns a page of leads and the token of the next page.
	SearchLeads(ctx context.Context, q LeadQuery) ([]*projectorv1.Lead, string, error)
	// GetLead returns one lead in full; ErrNotFound if it has no events.
	GetLead(ctx context.Context, id string) (*projectorv1.GetLeadResponse, error)
	Funnel(ctx context.Context, q FunnelQuery) (*projectorv1.GetFunnelResponse, error)
	// Campaigns reports every campaign; Currency must be resolved.
	Campaigns(ctx context.Context, q CampaignQuery) (*projectorv1.GetCampaignReportResponse, error)
	SLA(ctx context.Context, q SLAQuery) (*projectorv1.GetSLAComplianceResponse, error)
	Performance(ctx context.Context, q PerformanceQuery) (*projectorv1.GetPerformanceResponse, error)
	Accounts(ctx context.Context, q AccountQuery) (*projectorv1.GetAccountsResponse, error)
	Queues(ctx context.Context, q QueueQuery) (*projectorv1.GetQueuesResponse, error)
	// Currencies lists the currencies of the money a report shows.
	Currencies(ctx context.Context, s CurrencyScope) ([]string, error)
}

// Projection is the read model's machinery (a *project.Projector).
type Projection interface {
	Status(ctx context.Context) (project.Status, error)
	Rebuild(ctx context.Context, report func(project.Progress)) (project.Progress, error)
	ResumeSwapped(ctx context.Context, report func(project.Progress)) (project.Progress, error)
	// Outdated reports whether the active schema was built by older rules
	// of the read model, and by which version.
	Outdated(ctx context.Context) (bool, int, error)
}

// Models reads the scoring model's history from the stream.
type Models interface {
	// Scoring returns every proposed version and the active one (0: none).
	Scoring(ctx context.Context) (whatif.Versions, error)
}

// Replayer reads lead events from the stream for a what-if.
type Replayer interface {
	// Replay hands fn every lead event stored since from (nil: the start),
	// but one that is not its subject's lead's (envelope.Check),
	// up to the stream's end when it started, in order. progress is told
	// how many it read of how many.
	Replay(ctx context.Context, from time.Time, fn func(seq uint64, subject string, ev *eventv1.Event), progress func(read, total uint64)) error
}

// App is the projector's use cases.
type App struct {
	queries  Queries
	proj     Projection
	models   Models
	replayer Replayer
	log      *slog.Logger
	now      func() time.Time
	rebuilt  func()

	// jobs run in goroutines the App owns; Close stops and waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	whatIfs WhatIfs
	// running are the what-ifs this replica runs, by what they compare;
	// starting, those being stored.
	mu       sync.Mutex
	running  map[whatIfKey]string
	starting map[whatIfKey]*startingWhatIf
}

// Option configures an App.
type Option func(*App)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(a *App) { a.now = now } }

// WithRebuilt sets what a rebuild that swapped its schema in calls: the
// reports read another read model now.
func WithRebuilt(f func()) Option { return func(a *App) { a.rebuilt = f } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(a *App) { a.log = l } }

// New returns the use cases over their ports. Close stops the jobs it
// started.
func New(q Queries, p Projection, m Models, r Replayer, w WhatIfs, opts ...Option) *App {
	ctx, cancel := context.WithCancel(context.Background())
	a := &App{queries: q, proj: p, models: m, replayer: r, whatIfs: w, log: slog.Default(), now: time.Now, rebuilt: func() {},
		ctx: ctx, cancel: cancel, running: map[whatIfKey]string{}, starting: map[whatIfKey]*startingWhatIf{}}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Close stops running rebuilds and what-ifs and waits for them. A rebuild
// cut off resumes on the next StartRebuild.
func (a *App) Close() {
	a.cancel()
	a.wg.Wait()
}
