// Package timer keeps a service's durable timers as JetStream message
// schedules, in a stream of the service's own: the lead stream denies
// purge, and the server purges a schedule once it fires.
//
// A timer waits on <prefix>.at.<partition>.<lead>.<timer id> (one schedule
// per subject: scheduling it again replaces it) and fires as a copy of its
// payload on <prefix>.fired.<partition>.<lead>, which the service reads
// with a pkg/consume group partitioned like the lead subjects.
package timer

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/deadline"
	"github.com/leadflow/leadflow/pkg/eventstore"
)

// Stream is one service's timer stream: its name and subject prefix, such
// as "handoff.timer".
type Stream struct {
	Name        string
	Prefix      string
	Description string
}

// Subjects is the stream's subject filter.
func (s Stream) Subjects() string { return s.Prefix + ".>" }

// FiredSubjects is the filter of partition p's fired timers.
func (s Stream) FiredSubjects(p int) []string {
	return []string{s.Prefix + ".fired." + strconv.Itoa(p) + ".>"}
}

// LeadID is the lead of a fired timer's subject, "" for any other.
func (s Stream) LeadID(subject string) string {
	rest, ok := strings.CutPrefix(subject, s.Prefix+".fired.")
	if !ok {
		return ""
	}
	_, id, _ := strings.Cut(rest, ".")
	return id
}

// Ensure creates or updates the stream. It allows message schedules and
// purges; fired copies carry a TTL, so it does not grow without end, and
// a consuming group deletes each once handled (consume.Config.DropHandled).
func (s Stream) Ensure(ctx context.Context, js jetstream.JetStream, replicas int) error {
	_, err := eventstore.Ensure(ctx, js, jetstream.StreamConfig{
		Name:              s.Name,
		Description:       s.Description,
		Subjects:          []string{s.Subjects()},
		Storage:           jetstream.FileStorage,
		Replicas:          max(replicas, 1),
		Duplicates:        2 * time.Minute,
		AllowMsgSchedules: true,
		// The server turns roll-ups on for schedules (and purges with
		// them); asked for, so that the settings compare as wanted.
		AllowRollup: true,
		AllowMsgTTL: true,
		AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("ensure timer stream %s: %w", s.Name, err)
	}
	return nil
}

// Timer is one timer to schedule.
type Timer struct {
	LeadID string
	// ID names the timer within its lead; scheduling an ID again replaces
	// the waiting schedule.
	ID string
	At time.Time
	// Payload is what fires.
	Payload proto.Message
	// Dedupe drops a repeat within the stream's duplicates window (the
	// lead and the timer id are the message id). Leave it off for a timer scheduled
	// again on purpose, which must not be dropped as a duplicate.
	Dedupe bool
}

// Scheduler schedules the timers of one stream.
type Scheduler struct {
	js     jetstream.JetStream
	stream Stream
	// ttl is how long a fired timer is kept unhandled: long enough for a
	// consumer that was down to read it, and for a dead letter to be
	// re-driven.
	ttl time.Duration
}

// MinTTL is the shortest time a fired timer may be kept: it waits that
// long for a consumer that is down, and the server refuses a message TTL
// under a second, which would fail every schedule.
const MinTTL = time.Hour

// CheckTTL refuses a fired timers' TTL (flag) under MinTTL; 0 is the
// default.
func CheckTTL(flag string, ttl time.Duration) error {
	if ttl != 0 && ttl < MinTTL {
		return fmt.Errorf("%s %s: must be at least %s (a fired timer waits that long for its consumer), or 0 for 30 days", flag, ttl, MinTTL)
	}
	return nil
}

// NewScheduler returns the scheduler of s; ttl (default 30 days) bounds
// how long fired timers are kept.
func NewScheduler(js jetstream.JetStream, s Stream, ttl time.Duration) *Scheduler {
	if ttl <= 0 {
		ttl = 30 * 24 * time.Hour
	}
	return &Scheduler{js: js, stream: s, ttl: ttl}
}

// Schedule publishes timers as message schedules, together, and waits for
// every acknowledgement: one round trip. Schedules count whole seconds, so
// a time is rounded up, never early; a past one fires at once.
func (s *Scheduler) Schedule(ctx context.Context, timers ...Timer) error {
	ctx, cancel := deadline.Default(ctx, 5*time.Second)
	defer cancel()
	acks := make([]jetstream.PubAckFuture, 0, len(timers))
	for _, tm := range timers {
		data, err := proto.Marshal(tm.Payload)
		if err != nil {
			return err
		}
		p := strconv.Itoa(eventstore.Partition(tm.LeadID))
		m := nats.NewMsg(s.stream.Prefix + ".at." + p + "." + tm.LeadID + "." + tm.ID)
		m.Data = data
		at := tm.At
		if r := at.Truncate(time.Second); r.Before(at) {
			at = r.Add(time.Second)
		}
		opts := []jetstream.PublishOpt{
			jetstream.WithScheduleAt(at),
			jetstream.WithScheduleTarget(s.stream.Prefix + ".fired." + p + "." + tm.LeadID),
			jetstream.WithScheduleTTL(s.ttl),
		}
		if tm.Dedupe {
			opts = append(opts, jetstream.WithMsgID(tm.LeadID+"."+tm.ID))
		}
		ack, err := s.js.PublishMsgAsync(m, opts...)
		if err != nil {
			return fmt.Errorf("schedule timer %s: %w", tm.ID, err)
		}
		acks = append(acks, ack)
	}
	for i, ack := range acks {
		select {
		case <-ack.Ok():
		case err := <-ack.Err():
			return fmt.Errorf("schedule timer %s: %w", timers[i].ID, err)
		case <-ctx.Done():
			return fmt.Errorf("schedule timer %s: %w", timers[i].ID, ctx.Err())
		}
	}
	return nil
}
