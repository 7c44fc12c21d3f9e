package project

import (
	"context"
	"time"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// Crash points of a batch, for the kill tests.
const (
	StageRows       = int(stageRows)
	StageCheckpoint = int(stageCheckpoint)
	StageCommitted  = int(stageCommitted)
)

// SetHook makes p call f at each stage of every batch with the batch's
// events. Set it before p runs.
func SetHook(p *Projector, f func(stage int, events []Event)) {
	p.hook = func(s stage, evs []Event) { f(int(s), evs) }
}

// SetGapReader makes p read the events missing after a gap with f. Set
// it before p runs.
func SetGapReader(p *Projector, f func(ctx context.Context, subject string, after uint64) ([]eventstore.Record, error)) {
	p.loadAfter = f
}

// SetReplayWait makes p's rebuilds wait d for more messages before they
// ask the server whether they have caught up. Set it before p runs.
func SetReplayWait(p *Projector, d time.Duration) { p.replayWait = d }
