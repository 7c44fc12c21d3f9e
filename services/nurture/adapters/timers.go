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
	"github.com/leadflow/leadflow/services/nurture/app"
)

var _ app.Timers = (*Timers)(nil)

// DefaultTimerStream is the stream of the review timers.
const DefaultTimerStream = "NURTURE_TIMERS"

// Timer subjects: a review waits as a message schedule on
// nurture.timer.at.<partition>.<lead>.<enrolment id> (one schedule per
// subject: scheduling it again replaces it) and fires as a copy of its
// payload on nurture.timer.fired.<partition>.<lead>, which the timer
// group reads, partitioned like the lead subjects.
const (
	TimerSubjects = "nurture.timer.>"
	schedPrefix   = "nurture.timer.at."
	firedPrefix   = "nurture.timer.fired."
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
// message schedules and purges: the server purges each schedule once it
// fired, which is why timers cannot live in the lead stream. Fired copies
// carry a TTL, so the stream does not grow without end.
func EnsureTimerStream(ctx context.Context, js jetstream.JetStream, name string, replicas int) error {
	if name == "" {
		name = DefaultTimerStream
	}
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              name,
		Description:       "nurture review timers: message schedules and their fired copies",
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

// Timers schedules review timers.
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

// Schedule publishes t as a message schedule firing at its review_at,
// rounded up to the whole second the server counts in (a past one fires
// at once). A repeat replaces the schedule, or schedules a fired timer
// again, which Reconcile then finds has nothing to do. No message id: a
// timer scheduled again because it fired early must not be dropped as a
// duplicate.
func (t *Timers) Schedule(ctx context.Context, tm *eventv1.NurtureTimer) error {
	ctx, cancel := deadline.Default(ctx, defaultTimeout)
	defer cancel()
	data, err := proto.Marshal(tm)
	if err != nil {
		return err
	}
	at := tm.GetReviewAt().AsTime()
	if r := at.Truncate(time.Second); r.Before(at) {
		at = r.Add(time.Second)
	}
	p := strconv.Itoa(eventstore.Partition(tm.GetLeadId()))
	m := nats.NewMsg(schedPrefix + p + "." + tm.GetLeadId() + "." + tm.GetTimerId())
	m.Data = data
	_, err = t.js.PublishMsg(ctx, m,
		jetstream.WithScheduleAt(at),
		jetstream.WithScheduleTarget(firedPrefix+p+"."+tm.GetLeadId()),
		jetstream.WithScheduleTTL(t.ttl))
	if err != nil {
		return fmt.Errorf("schedule review %s: %w", tm.GetTimerId(), err)
	}
	return nil
}
