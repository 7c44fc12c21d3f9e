package adapters

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/provision"
	"github.com/leadflow/leadflow/pkg/timer"
	"github.com/leadflow/leadflow/services/nurture/app"
)

var _ app.Timers = (*Timers)(nil)

// DefaultTimerStream is the stream of nurture's timers.
const DefaultTimerStream = "NURTURE_TIMERS"

// timers is the layout of nurture's timer stream (pkg/timer), which
// pkg/provision makes.
var timers = provision.NurtureTimers

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

// Timers schedules nurture's timers.
type Timers struct{ s *timer.Scheduler }

// NewTimers returns the scheduler; ttl (default 30 days) bounds how long
// fired timers are kept.
func NewTimers(js jetstream.JetStream, ttl time.Duration) *Timers {
	return &Timers{s: timer.NewScheduler(js, timers, ttl)}
}

// Schedule publishes tm as a message schedule in slot, firing at its
// review_at. A repeat replaces the schedule, or schedules a fired timer
// again, which Reconcile then finds has nothing to do. No message id: a
// timer scheduled again because it fired early must not be dropped as a
// duplicate.
func (t *Timers) Schedule(ctx context.Context, slot string, tm *eventv1.NurtureTimer) error {
	return t.s.Schedule(ctx, timer.Timer{LeadID: tm.GetLeadId(), ID: slot, At: tm.GetReviewAt().AsTime(), Payload: tm})
}
