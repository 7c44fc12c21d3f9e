package adapters

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/leadflow/leadflow/pkg/provision"
	"github.com/leadflow/leadflow/pkg/timer"
	"github.com/leadflow/leadflow/services/intake/app"
)

var _ app.Later = (*Later)(nil)

// TimerStream is the layout of intake's timer stream (pkg/timer), which
// pkg/provision makes.
var TimerStream = provision.IntakeTimers

// TimerGroup is the consumer group that reads intake's fired timers, in
// one partition.
const TimerGroup = "intake-timers"

// FiredTimers is the group's filter: every fired timer.
func FiredTimers(int) []string { return []string{TimerStream.Prefix + ".fired.>"} }

// Later schedules intake's timers as JetStream message schedules.
type Later struct{ s *timer.Scheduler }

// NewLater returns the scheduler; ttl (default 30 days) bounds how long
// fired timers are kept.
func NewLater(js jetstream.JetStream, ttl time.Duration) *Later {
	return &Later{s: timer.NewScheduler(js, TimerStream, ttl)}
}

// FinishErase schedules the lead's erasure to be finished at at. One
// slot a lead: asking again replaces the time.
func (l *Later) FinishErase(ctx context.Context, leadID string, at time.Time) error {
	return l.s.Schedule(ctx, timer.Timer{LeadID: leadID, ID: "erase", At: at, Payload: wrapperspb.String(app.FinishEraseTimer)})
}

// FinishUnmerge schedules the unmerge of the lead (the absorbed one) to
// be finished at at. One slot a lead: asking again replaces the time.
func (l *Later) FinishUnmerge(ctx context.Context, leadID string, at time.Time) error {
	return l.s.Schedule(ctx, timer.Timer{LeadID: leadID, ID: "unmerge", At: at, Payload: wrapperspb.String(app.FinishUnmergeTimer)})
}
