package adapters

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
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/handoff/app"
)

var _ app.Timers = (*Timers)(nil)

// DefaultTimerStream is the stream of the SLA timers.
const DefaultTimerStream = "HANDOFF_TIMERS"

// Timer subjects: a timer waits as a message schedule on
// handoff.timer.at.<partition>.<lead>.<timer id> (one schedule per
// subject: scheduling it again replaces it), and fires as a copy of its
// payload on handoff.timer.fired.<partition>.<lead>, which the timer
// consumer reads, partitioned like the lead subjects.
const (
	TimerSubjects = "handoff.timer.>"
	schedPrefix   = "handoff.timer.at."
	firedPrefix   = "handoff.timer.fired."
)

// FiredSubjects is the filter of one partition's fired timers.
func FiredSubjects(p int) []string { return []string{firedPrefix + strconv.Itoa(p) + ".>"} }

// TimerLeadID is the lead of a fired timer's subject, "" for others.
func TimerLeadID(subject string) string {
	rest, ok := strings.CutPrefix(subject, firedPrefix)
	if !ok {
		return ""
	}
	_, id, _ := strings.Cut(rest, ".")
	return id
}

// EnsureTimerStream creates or updates the timer stream. It allows
// message schedules, and purges: the server purges each schedule once
// it fired, which is why timers cannot live in the lead stream. Fired
// copies carry a TTL, so the stream does not grow without end.
func EnsureTimerStream(ctx context.Context, js jetstream.JetStream, name string, replicas int) error {
	if name == "" {
		name = DefaultTimerStream
	}
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              name,
		Description:       "handoff SLA timers: message schedules and their fired copies",
		Subjects:          []string{TimerSubjects},
		Storage:           jetstream.FileStorage,
		Replicas:          max(replicas, 1),
		Duplicates:        2 * time.Minute,
		AllowMsgSchedules: true,
		AllowMsgTTL:       true,
		AllowDirect:       true,
	})
	if err != nil {
		return fmt.Errorf("ensure timer stream %s: %w", name, err)
	}
	return nil
}

// Timers schedules SLA timers.
type Timers struct {
	js jetstream.JetStream
	// ttl is how long a fired timer is kept: long enough for a consumer
	// that was down to read it, and for a dead letter to be re-driven.
	ttl time.Duration
}

// NewTimers returns the scheduler; ttl (default 30 days) bounds how long
// fired timers are kept.
func NewTimers(js jetstream.JetStream, ttl time.Duration) *Timers {
	if ttl <= 0 {
		ttl = 30 * 24 * time.Hour
	}
	return &Timers{js: js, ttl: ttl}
}

// Schedule publishes each timer as a message schedule firing at its
// fire_at (a past fire_at fires at once). The message id (the timer id)
// drops a repeat within the duplicates window; after it, a repeat
// replaces the schedule, or schedules a fired timer again, which the
// timer's handler ignores.
func (t *Timers) Schedule(ctx context.Context, timers ...*eventv1.SLATimer) error {
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	// Published together, acknowledged together: one round trip for a
	// step's timers.
	acks := make([]jetstream.PubAckFuture, 0, len(timers))
	for _, tm := range timers {
		data, err := proto.Marshal(tm)
		if err != nil {
			return err
		}
		p := strconv.Itoa(eventstore.Partition(tm.GetLeadId()))
		m := nats.NewMsg(schedPrefix + p + "." + tm.GetLeadId() + "." + tm.GetTimerId())
		m.Data = data
		// Schedules have whole seconds: round up, never fire early.
		at := tm.GetFireAt().AsTime()
		if r := at.Truncate(time.Second); r.Before(at) {
			at = r.Add(time.Second)
		}
		ack, err := t.js.PublishMsgAsync(m,
			jetstream.WithScheduleAt(at),
			jetstream.WithScheduleTarget(firedPrefix+p+"."+tm.GetLeadId()),
			jetstream.WithScheduleTTL(t.ttl),
			jetstream.WithMsgID(tm.GetTimerId()))
		if err != nil {
			return fmt.Errorf("schedule timer %s: %w", tm.GetTimerId(), err)
		}
		acks = append(acks, ack)
	}
	for i, ack := range acks {
		select {
		case <-ack.Ok():
		case err := <-ack.Err():
			return fmt.Errorf("schedule timer %s: %w", timers[i].GetTimerId(), err)
		case <-ctx.Done():
			return fmt.Errorf("schedule timer %s: %w", timers[i].GetTimerId(), ctx.Err())
		}
	}
	return nil
}
