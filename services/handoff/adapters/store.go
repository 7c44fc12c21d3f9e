// Package adapters implements the handoff service's ports: leads and the
// routing, pool, target and campaign subjects on pkg/eventstore, rep
// capacity in a KV bucket, and SLA timers as JetStream message schedules.
package adapters

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/deadline"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/app"
)

// defaultTimeout bounds a JetStream API call whose caller set no deadline.
const defaultTimeout = 5 * time.Second

var (
	_ app.Leads   = (*Leads)(nil)
	_ app.Store   = (*Store)(nil)
	_ app.Subject = subject{}
)

// Subjects of the handoff service's own data in the event stream. The
// stream takes model.> subjects, so routing data sits beside the scoring
// model: eventstore has no routing helper, and the stream's subjects are
// eventstore's to set.
var (
	RoutingSubject = eventstore.ModelSubject("routing")
	TargetsSubject = eventstore.ModelSubject("sla-targets")
)

// PoolSubject is the subject of one pool's round-robin pointer.
func PoolSubject(poolID string) string {
	return eventstore.ModelSubject("routing-pool-" + eventstore.NameToken(poolID))
}

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

// Keyed returns the first answer of a rep's request id on a lead.
func (l *Leads) Keyed(ctx context.Context, leadID, requestID string) (string, eventstore.Record, bool, error) {
	return l.store.Keyed(ctx, service, eventstore.LeadSubject(leadID), requestID)
}

// AppendKeyed is Append, then sends the request id's record.
func (l *Leads) AppendKeyed(ctx context.Context, leadID string, expected uint64, requestID, outcome string, events ...*eventv1.Event) (uint64, error) {
	return l.store.AppendKeyed(ctx, service, eventstore.LeadSubject(leadID), expected, requestID, outcome, events...)
}

// Remember stores the record of a request id that wrote nothing, naming
// the lead's event eventID at version as its answer.
func (l *Leads) Remember(ctx context.Context, leadID, requestID, outcome string, version uint64, eventID string) error {
	return l.store.RememberKey(ctx, service, eventstore.LeadSubject(leadID), requestID, outcome, version, eventID)
}

// service scopes handoff's request ids: the same id sent to another
// service is another request.
const service = "handoff"

// States returns each lead's state from its last event, in one request.
func (l *Leads) States(ctx context.Context, leadIDs ...string) (map[string]lifecycle.State, error) {
	subjects := make([]string, len(leadIDs))
	for i, id := range leadIDs {
		subjects[i] = eventstore.LeadSubject(id)
	}
	last, err := l.store.Last(ctx, subjects...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]lifecycle.State, len(last))
	for i, id := range leadIDs {
		raw, ok := last[subjects[i]]
		if !ok {
			continue
		}
		ev, err := eventstore.DecodeEvent(raw.Data)
		if err != nil {
			return nil, fmt.Errorf("lead %s: %w", id, err)
		}
		out[id] = lifecycle.FromProto(ev.GetLifecycle())
	}
	return out, nil
}

// Event returns the event stored at seq.
func (l *Leads) Event(ctx context.Context, seq uint64) (*eventv1.Event, error) {
	raw, err := l.store.Get(ctx, seq)
	if err != nil {
		return nil, err
	}
	return eventstore.DecodeEvent(raw.Data)
}

// Store opens the service's other subjects.
type Store struct {
	store *eventstore.Store
	nc    *nats.Conn
}

// NewStore returns the subjects of the event stream store writes to, read
// through js (the connection store uses).
func NewStore(store *eventstore.Store, js jetstream.JetStream) *Store {
	return &Store{store: store, nc: js.Conn()}
}

// Routing is the routing data's subject.
func (s *Store) Routing() app.Subject { return s.subject(RoutingSubject) }

// Pool is a pool pointer's subject.
func (s *Store) Pool(poolID string) app.Subject { return s.subject(PoolSubject(poolID)) }

// Targets is the marketing targets' subject.
func (s *Store) Targets() app.Subject { return s.subject(TargetsSubject) }

// Campaign is a campaign's subject.
func (s *Store) Campaign(campaignID string) app.Subject {
	return s.subject(eventstore.CampaignSubject(campaignID))
}

func (s *Store) subject(name string) subject { return subject{s.store, s.nc, name} }

type subject struct {
	store *eventstore.Store
	nc    *nats.Conn
	name  string
}

func (s subject) LoadAfter(ctx context.Context, after uint64) ([]eventstore.Record, error) {
	return s.store.LoadAfter(ctx, s.name, after)
}

func (s subject) Last(ctx context.Context) (uint64, *eventv1.Event, error) {
	last, err := s.store.Last(ctx, s.name)
	if err != nil {
		return 0, nil, err
	}
	raw, ok := last[s.name]
	if !ok {
		return 0, nil, nil
	}
	ev, err := eventstore.DecodeEvent(raw.Data)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return raw.Seq, ev, nil
}

func (s subject) Version(ctx context.Context) (uint64, error) {
	return s.store.Version(ctx, s.name)
}

// LastAsOf asks the server for the subject's last message in a
// multi-last direct get, whose end-of-batch answer names the stream's last
// sequence when the server read it (Nats-UpTo-Sequence): so end fences the
// read, and one request serves every event stored up to end.
func (s subject) LastAsOf(ctx context.Context) (seq uint64, ev *eventv1.Event, end uint64, err error) {
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	req, err := json.Marshal(map[string]any{"multi_last": []string{s.name}})
	if err != nil {
		return 0, nil, 0, err
	}
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("%s: %w", s.name, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+s.store.Stream(), inbox, req); err != nil {
		return 0, nil, 0, fmt.Errorf("%s: %w", s.name, err)
	}
	for {
		m, err := sub.NextMsg(time.Until(deadlineOf(ctx)))
		if err != nil {
			return 0, nil, 0, fmt.Errorf("%s: last: %w", s.name, err)
		}
		switch m.Header.Get("Status") {
		case "404":
			if m.Header.Get("Description") == "No Results" { // an empty subject: no fence either
				return 0, nil, 0, nil
			}
			return 0, nil, 0, fmt.Errorf("%s: last: status 404 %s", s.name, m.Header.Get("Description"))
		case "204": // end of batch
			end, err := strconv.ParseUint(m.Header.Get("Nats-UpTo-Sequence"), 10, 64)
			if err != nil {
				return 0, nil, 0, fmt.Errorf("%s: end of batch without Nats-UpTo-Sequence (server before 2.11?): %w", s.name, err)
			}
			return seq, ev, end, nil
		case "":
			if seq, err = strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64); err != nil {
				return 0, nil, 0, fmt.Errorf("%s: sequence: %w", s.name, err)
			}
			if ev, err = eventstore.DecodeEvent(m.Data); err != nil {
				return 0, nil, 0, fmt.Errorf("%s: %w", s.name, err)
			}
		default:
			return 0, nil, 0, fmt.Errorf("%s: last: status %s %s", s.name, m.Header.Get("Status"), m.Header.Get("Description"))
		}
	}
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

func (s subject) Append(ctx context.Context, expected uint64, ev *eventv1.Event) (uint64, error) {
	return s.store.Append(ctx, s.name, expected, ev)
}
