package app

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/projector/whatif"
)

type oneProposal struct{}

func (oneProposal) Scoring(context.Context) (whatif.Versions, error) {
	return whatif.Versions{Models: map[uint32]scoring.Model{2: scoring.Default()}, Activated: map[uint32]bool{}}, nil
}

// stalledReplay reads one message of two, then waits on the stream until
// go is closed.
type stalledReplay struct{ resume chan struct{} }

func (r stalledReplay) Replay(ctx context.Context, _ time.Time, _ func(uint64, string, *eventv1.Event), progress func(read, total uint64)) error {
	progress(1, 2)
	select {
	case <-r.resume:
	case <-ctx.Done():
		return ctx.Err()
	}
	progress(2, 2)
	return nil
}

type memWhatIfs struct {
	mu sync.Mutex
	m  map[string]WhatIf
}

func (s *memWhatIfs) Put(_ context.Context, w WhatIf) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[w.ID] = w
	return nil
}

func (s *memWhatIfs) Get(_ context.Context, id string) (WhatIf, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.m[id]
	if !ok {
		return WhatIf{}, ErrNotFound
	}
	return w, nil
}

// A what-if whose replay waits on the stream longer than the staleness
// bound is still running, not abandoned: its replica writes it on a
// clock, not only as messages come.
func TestAWhatIfWaitingOnTheStreamIsNotAbandoned(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	resume := make(chan struct{})
	a := New(nil, nil, oneProposal{}, stalledReplay{resume}, &memWhatIfs{m: map[string]WhatIf{}},
		WithLogger(slog.New(slog.DiscardHandler)), WithClock(func() time.Time { return time.Unix(0, now.Load()) }))
	defer a.Close()
	ctx := context.Background()
	id, err := a.StartWhatIf(ctx, 2, Period{})
	if err != nil {
		t.Fatal(err)
	}
	now.Add(int64(whatIfStale + time.Second)) // the stream says nothing for longer than that
	time.Sleep(whatIfEvery + time.Second/2)
	w, err := a.GetWhatIf(ctx, id)
	if err != nil || w.Done || w.Read != 1 || w.Total != 2 {
		t.Fatalf("what-if waiting on the stream: %+v %v, want running, 1 of 2 read", w, err)
	}
	close(resume)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		w, err = a.GetWhatIf(ctx, id)
		if err == nil && w.Done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("what-if not done: %+v %v", w, err)
		}
	}
	if w.Err != nil || w.Read != 2 {
		t.Fatalf("what-if done: %+v, want 2 read, no error", w)
	}
}
