// Package adapters implements qualification's ports on pkg/eventstore and
// JetStream.
package adapters

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/deadline"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/qualification/app"
)

// defaultTimeout bounds a JetStream API call whose caller set no deadline.
const defaultTimeout = 5 * time.Second

var (
	_ app.Leads  = (*Leads)(nil)
	_ app.Models = (*Models)(nil)
	_ app.Scans  = (*Scans)(nil)
)

// Leads reads and appends lead events.
type Leads struct{ store *eventstore.Store }

// NewLeads returns the lead repository.
func NewLeads(store *eventstore.Store) *Leads { return &Leads{store: store} }

// Load returns a lead's events.
func (l *Leads) Load(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	return l.store.Load(ctx, eventstore.LeadSubject(leadID))
}

// LoadAfter returns a lead's events after stream sequence after.
func (l *Leads) LoadAfter(ctx context.Context, leadID string, after uint64) ([]eventstore.Record, error) {
	return l.store.LoadAfter(ctx, eventstore.LeadSubject(leadID), after)
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

// service scopes qualification's request ids: the same id sent to
// another service is another request.
const service = "qualification"

// Models reads and appends the scoring model's events.
type Models struct {
	store *eventstore.Store
	js    jetstream.JetStream
}

// NewModels returns the model repository.
func NewModels(store *eventstore.Store, js jetstream.JetStream) *Models {
	return &Models{store: store, js: js}
}

var modelSubject = eventstore.ModelSubject(scoring.ID)

// LoadAfter returns the model's events after stream sequence after.
func (m *Models) LoadAfter(ctx context.Context, after uint64) ([]eventstore.Record, error) {
	return m.store.LoadAfter(ctx, modelSubject, after)
}

// Append appends to the model atomically at version expected.
func (m *Models) Append(ctx context.Context, expected uint64, events ...*eventv1.Event) (uint64, error) {
	return m.store.Append(ctx, modelSubject, expected, events...)
}

// Version is the sequence of the model's last event, 0 if none.
func (m *Models) Version(ctx context.Context) (uint64, error) {
	return m.store.Version(ctx, modelSubject)
}

// LastSeq is the stream's last sequence, from the stream's info.
func (m *Models) LastSeq(ctx context.Context) (uint64, error) {
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	s, err := m.js.Stream(ctx, m.store.Stream())
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", m.store.Stream(), err)
	}
	return s.CachedInfo().State.LastSeq, nil
}

// Scans are the re-score reads: one durable consumer per version on every
// lead event; the re-score acts on each lead's first event. Being durable, a scan resumes after a crash
// where it was acknowledged. Not DeliverLastPerSubject, which would read one
// message per lead: with explicit acks and MaxAckPending reached,
// nats-server 2.15.2 skips some leads in that mode (docs/operations.md).
type Scans struct {
	js     jetstream.JetStream
	stream string
}

// NewScans returns the scans on the named stream.
func NewScans(js jetstream.JetStream, stream string) *Scans { return &Scans{js: js, stream: stream} }

// Name is version n's durable name, "rescore-v<n>".
func (s *Scans) Name(n uint32) string { return "rescore-v" + strconv.FormatUint(uint64(n), 10) }

// Config is the consumer a scan is; pkg/consume updates it in place (the
// deliver policy it keeps), so the two must agree on the filter.
func (s *Scans) Config(n uint32) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       s.Name(n),
		Description:   fmt.Sprintf("re-score every lead under scoring model version %d", n),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		FilterSubject: eventstore.LeadSubjects,
	}
}

// Open creates version n's scan unless it exists, and returns where it is.
func (s *Scans) Open(ctx context.Context, n uint32) (app.Scan, error) {
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	c, err := s.js.CreateConsumer(ctx, s.stream, s.Config(n))
	if errors.Is(err, jetstream.ErrConsumerExists) {
		c, err = s.js.Consumer(ctx, s.stream, s.Name(n))
	}
	if err != nil {
		return app.Scan{}, fmt.Errorf("open scan %s: %w", s.Name(n), err)
	}
	return scanOf(c.CachedInfo()), nil
}

// Position returns where version n's scan is.
func (s *Scans) Position(ctx context.Context, n uint32) (app.Scan, bool, error) {
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	c, err := s.js.Consumer(ctx, s.stream, s.Name(n))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return app.Scan{}, false, nil
	}
	if err != nil {
		return app.Scan{}, false, fmt.Errorf("scan %s: %w", s.Name(n), err)
	}
	scan := scanOf(c.CachedInfo())
	if scan.HeldBack, err = consume.HeldBack(ctx, s.js, consume.DefaultDeadLetterStream, s.Name(n)); err != nil {
		return app.Scan{}, false, fmt.Errorf("scan %s: %w", s.Name(n), err)
	}
	return scan, true, nil
}

// Close deletes version n's scan and everything its group keeps on the
// dead-letter stream: no member will run that group again to re-drive a
// dead letter, which would list its lead as parked for ever.
func (s *Scans) Close(ctx context.Context, n uint32) error {
	return consume.RemoveGroup(ctx, s.js, s.stream, consume.DefaultDeadLetterStream, s.Name(n), 1)
}

func scanOf(ci *jetstream.ConsumerInfo) app.Scan {
	return app.Scan{Pending: ci.NumPending, Unacked: uint64(ci.NumAckPending), Acked: ci.AckFloor.Consumer, AckFloor: ci.AckFloor.Stream}
}
