package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/services/projector/whatif"
)

// Status says where the read model stands.
func (a *App) Status(ctx context.Context) (project.Status, error) {
	return a.proj.Status(ctx)
}

// StartRebuild starts a rebuild of the read model in the background, or
// resumes an interrupted one, and returns the schema it builds once it
// has started. It returns ErrBusy while another rebuild runs, here or in
// another replica.
func (a *App) StartRebuild(ctx context.Context) (string, error) {
	started := make(chan project.Progress, 1)
	failed := make(chan error, 1)
	a.wg.Go(func() {
		pr, err := a.proj.Rebuild(a.ctx, func(pr project.Progress) {
			select {
			case started <- pr:
			default:
			}
		})
		failed <- err
		switch {
		case err != nil && !errors.Is(err, project.ErrRebuildRunning) && a.ctx.Err() == nil:
			a.log.Error("rebuild failed", "schema", pr.Schema, "err", err)
		case err == nil:
			a.log.Info("rebuild done", "schema", pr.Schema, "events", pr.Events)
		}
	})
	select {
	case pr := <-started:
		return pr.Schema, nil
	case err := <-failed:
		if errors.Is(err, project.ErrRebuildRunning) {
			return "", ErrBusy
		}
		return "", err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// whatIfJob is one what-if, in memory: a restart forgets it.
type whatIfJob struct {
	id       string
	proposed uint32
	active   uint32
	period   Period

	read, total uint64
	done        bool
	err         error
	result      whatif.Result
}

// WhatIf is a what-if's progress, and its result once done.
type WhatIf struct {
	ID       string
	Proposed uint32
	Active   uint32
	Period   Period
	Read     uint64
	Total    uint64
	Done     bool
	Err      error
	Result   whatif.Result
}

// maxWhatIfs is how many what-ifs are kept; the oldest go first.
const maxWhatIfs = 32

// StartWhatIf replays proposed version n over the leads captured in p and
// compares it with the active version. It returns at once with the
// what-if's id. It returns a *ValidationError for version 0 or a bad
// period, and a *RefusedError for a version never proposed or already
// activated.
func (a *App) StartWhatIf(ctx context.Context, n uint32, p Period) (string, error) {
	var v violations
	if n == 0 {
		v.add("proposed_version", "is required")
	}
	p.check(&v, "period")
	if err := v.err(); err != nil {
		return "", err
	}
	versions, err := a.models.Scoring(ctx)
	if err != nil {
		return "", err
	}
	proposed, ok := versions.Models[n]
	switch {
	case !ok:
		return "", &RefusedError{Field: "proposed_version", Reason: fmt.Sprintf("version %d was never proposed", n)}
	case versions.Activated[n]:
		return "", &RefusedError{Field: "proposed_version", Reason: fmt.Sprintf("version %d was activated already: its results are real, not what-if", n)}
	}
	replay := whatif.New(nil, proposed, p.From, p.To)
	if act, ok := versions.Models[versions.Active]; ok {
		replay = whatif.New(&act, proposed, p.From, p.To)
	}
	job := &whatIfJob{id: uuid.NewString(), proposed: n, active: versions.Active, period: p}
	a.mu.Lock()
	a.whatIfs[job.id] = job
	a.order = append(a.order, job.id)
	for len(a.order) > maxWhatIfs {
		delete(a.whatIfs, a.order[0])
		a.order = a.order[1:]
	}
	a.mu.Unlock()

	a.wg.Go(func() {
		err := a.replayer.Replay(a.ctx, p.From, func(_ uint64, subject string, ev *eventv1.Event) {
			replay.Apply(ev.GetLeadId(), ev)
		}, func(read, total uint64) {
			a.mu.Lock()
			job.read, job.total = read, total
			a.mu.Unlock()
		})
		res := replay.Result()
		a.mu.Lock()
		defer a.mu.Unlock()
		job.done, job.err, job.result = true, err, res
		if err != nil {
			a.log.Warn("what-if failed", "id", job.id, "version", n, "err", err)
		}
	})
	return job.id, nil
}

// GetWhatIf returns a what-if's progress and result. It returns
// ErrNotFound for an unknown id (or one this process forgot).
func (a *App) GetWhatIf(_ context.Context, id string) (WhatIf, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	j, ok := a.whatIfs[id]
	if !ok {
		return WhatIf{}, fmt.Errorf("what-if %s: %w", id, ErrNotFound)
	}
	return WhatIf{ID: j.id, Proposed: j.proposed, Active: j.active, Period: j.period, Read: j.read, Total: j.total,
		Done: j.done, Err: j.err, Result: j.result}, nil
}
