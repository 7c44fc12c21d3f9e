// Package adapters implements nurture's ports on pkg/eventstore,
// pkg/consume and JetStream: the lead repository, the programs on
// model.nurture-programs, the review timers (message schedules), the
// consumer groups' progress and dead letters, and the index of every
// lead's last event that the no-lost-lead check reads.
package adapters

import (
	"context"
	"time"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/nurture/app"
)

// defaultTimeout bounds a JetStream API call whose caller set no deadline.
const defaultTimeout = 5 * time.Second

var (
	_ app.Leads    = (*Leads)(nil)
	_ app.Programs = (*Programs)(nil)
)

// Leads reads and appends lead events.
type Leads struct{ store *eventstore.Store }

// NewLeads returns the lead repository.
func NewLeads(store *eventstore.Store) *Leads { return &Leads{store: store} }

// Load returns a lead's events.
func (l *Leads) Load(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	return l.store.Load(ctx, eventstore.LeadSubject(leadID))
}

// Append appends events to a lead atomically at version expected.
func (l *Leads) Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	return l.store.Append(ctx, eventstore.LeadSubject(leadID), expected, events...)
}

// Keyed returns the first answer of a request id on a lead.
func (l *Leads) Keyed(ctx context.Context, leadID, requestID string) (string, eventstore.Record, bool, error) {
	return l.store.Keyed(ctx, service, eventstore.LeadSubject(leadID), requestID)
}

// AppendKeyed is Append, then sends the request id's record.
func (l *Leads) AppendKeyed(ctx context.Context, leadID string, expected uint64, requestID, outcome string, events ...*eventv1.Event) (uint64, error) {
	return l.store.AppendKeyed(ctx, service, eventstore.LeadSubject(leadID), expected, requestID, outcome, events...)
}

// service scopes nurture's request ids: the same id sent to another
// service is another request.
const service = "nurture"

// After returns the lead's first event after seq.
func (l *Leads) After(ctx context.Context, leadID string, seq uint64) (eventstore.Record, bool, error) {
	return l.store.NextEvent(ctx, eventstore.LeadSubject(leadID), seq)
}

// TypeAt returns the Lf-Type of the message stored at seq.
func (l *Leads) TypeAt(ctx context.Context, seq uint64) (string, error) {
	raw, err := l.store.Get(ctx, seq)
	if err != nil {
		return "", err
	}
	return raw.Header.Get(eventstore.HeaderType), nil
}

// Stream is the name of the lead stream.
func (l *Leads) Stream() string { return l.store.Stream() }

// ProgramsSubject holds the nurture programs' changes. The lead stream
// takes model.>, so the programs live there beside the scoring model.
var ProgramsSubject = eventstore.ModelSubject("nurture-programs")

// Programs reads and appends the program changes.
type Programs struct{ store *eventstore.Store }

// NewPrograms returns the program repository.
func NewPrograms(store *eventstore.Store) *Programs { return &Programs{store: store} }

// LoadAfter returns the changes after stream sequence after.
func (p *Programs) LoadAfter(ctx context.Context, after uint64) ([]eventstore.Record, error) {
	return p.store.LoadAfter(ctx, ProgramsSubject, after)
}

// Version is the sequence of the last change, 0 if none.
func (p *Programs) Version(ctx context.Context) (uint64, error) {
	return p.store.Version(ctx, ProgramsSubject)
}

// Append appends one change at version expected.
func (p *Programs) Append(ctx context.Context, expected uint64, ev *eventv1.Event) (uint64, error) {
	return p.store.Append(ctx, ProgramsSubject, expected, ev)
}
