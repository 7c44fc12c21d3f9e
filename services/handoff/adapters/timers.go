package adapters

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/provision"
	"github.com/leadflow/leadflow/pkg/timer"
	"github.com/leadflow/leadflow/services/handoff/app"
)

var _ app.Timers = (*Timers)(nil)

// DefaultTimerStream is the stream of handoff's timers.
const DefaultTimerStream = "HANDOFF_TIMERS"

// timers is the layout of handoff's timer stream (pkg/timer), which
// pkg/provision makes.
var timers = provision.HandoffTimers

// FiredSubjects is the filter of one partition's fired timers.
func FiredSubjects(p int) []string { return timers.FiredSubjects(p) }

// TimerLeadID is the lead of a fired timer's subject, "" for others.
func TimerLeadID(subject string) string { return timers.LeadID(subject) }

// EnsureTimerStream creates or updates the timer stream (name defaults to
// DefaultTimerStream).
func EnsureTimerStream(ctx context.Context, js jetstream.JetStream, name string, replicas int) error {
	s := timers
	if name != "" {
		s.Name = name
	}
	return s.Ensure(ctx, js, replicas)
}

// Timers schedules handoff's timers.
type Timers struct{ s *timer.Scheduler }

// NewTimers returns the scheduler; ttl (default 30 days) bounds how long
// fired timers are kept.
func NewTimers(js jetstream.JetStream, ttl time.Duration) *Timers {
	return &Timers{s: timer.NewScheduler(js, timers, ttl)}
}

// Schedule publishes timers as message schedules, in one round trip. The
// timer id is the message id, so the server drops a repeat within the
// duplicates window; after it, a repeat replaces the schedule, or
// schedules a fired timer again, which the timer's handler ignores.
func (t *Timers) Schedule(ctx context.Context, tms ...*eventv1.SLATimer) error {
	return t.schedule(ctx, true, tms)
}

// Reschedule publishes timers without a message id, so none is dropped
// as a repeat.
func (t *Timers) Reschedule(ctx context.Context, tms ...*eventv1.SLATimer) error {
	return t.schedule(ctx, false, tms)
}

func (t *Timers) schedule(ctx context.Context, dedupe bool, tms []*eventv1.SLATimer) error {
	out := make([]timer.Timer, len(tms))
	for i, tm := range tms {
		at := tm.GetFireAt().AsTime()
		if s := tm.GetScheduledAt(); s != nil && s.AsTime().After(at) {
			at = s.AsTime()
		}
		out[i] = timer.Timer{LeadID: tm.GetLeadId(), ID: tm.GetTimerId(), At: at, Payload: tm, Dedupe: dedupe}
	}
	return t.s.Schedule(ctx, out...)
}
