package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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
			a.rebuilt()
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

// WhatIfs stores what-ifs where every replica reads them.
type WhatIfs interface {
	// Put writes w, replacing what was stored under its id.
	Put(ctx context.Context, w WhatIf) error
	// Get reads a what-if; ErrNotFound if none has that id.
	Get(ctx context.Context, id string) (WhatIf, error)
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
	// Started is when it started; Updated when its replica last wrote it.
	Started, Updated time.Time
}

// whatIfEvery is how often a running what-if's progress is written;
// whatIfStale is how long one may go unwritten before it counts as
// abandoned (its replica stopped).
const (
	whatIfEvery = time.Second
	whatIfStale = 30 * time.Second
)

// maxWhatIfs is how many what-ifs a replica runs at once.
const maxWhatIfs = 2

// whatIfKey is what a what-if compares: a second request for a running
// one gets its id.
type whatIfKey struct {
	proposed, active uint32
	from, to         time.Time
}

// startingWhatIf is a what-if being stored: its id, or the error that
// stopped it, once stored is closed.
type startingWhatIf struct {
	stored chan struct{}
	id     string
	err    error
}

func (s *startingWhatIf) wait(ctx context.Context) (string, error) {
	select {
	case <-s.stored:
		return s.id, s.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// ErrWhatIfAbandoned is the error of a what-if whose replica stopped
// before it was done.
var ErrWhatIfAbandoned = errors.New("abandoned: the replica running it stopped; start it again")

// StartWhatIf replays proposed version n over the leads captured in p and
// compares it with the active version. It returns at once with the
// what-if's id. It returns a *ValidationError for version 0 or a bad
// period, ErrNotFound for a version never proposed, and a *RefusedError
// for one already activated. A what-if of the same versions and period running on this
// replica answers its id; past maxWhatIfs it returns ErrTooManyWhatIfs.
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
		return "", fmt.Errorf("scoring model version %d was never proposed: %w", n, ErrNotFound)
	case versions.Activated[n]:
		return "", &RefusedError{Field: "proposed_version", Reason: fmt.Sprintf("version %d was activated already: its results are real, not what-if", n)}
	}
	replay := whatif.New(nil, proposed, p.From, p.To)
	if act, ok := versions.Models[versions.Active]; ok {
		replay = whatif.New(&act, proposed, p.From, p.To)
	}
	now := a.now()
	job := WhatIf{ID: uuid.NewString(), Proposed: n, Active: versions.Active, Period: p, Started: now, Updated: now}
	key := whatIfKey{proposed: n, active: versions.Active, from: p.From, to: p.To}
	a.mu.Lock()
	id, ok := a.running[key]
	twin := a.starting[key]
	switch {
	case ok:
		a.mu.Unlock()
		return id, nil
	case twin != nil:
		a.mu.Unlock()
		return twin.wait(ctx)
	case len(a.running)+len(a.starting) >= maxWhatIfs:
		a.mu.Unlock()
		return "", ErrTooManyWhatIfs
	}
	// Its id is given to a twin only once it is stored, so GetWhatIf
	// finds it; a twin arriving meanwhile waits for the store.
	st := &startingWhatIf{stored: make(chan struct{})}
	a.starting[key] = st
	a.mu.Unlock()
	err = a.whatIfs.Put(ctx, job)
	a.mu.Lock()
	delete(a.starting, key)
	if err == nil {
		a.running[key] = job.ID
		st.id = job.ID
	} else {
		st.err = err
	}
	close(st.stored)
	a.mu.Unlock()
	if err != nil {
		return "", err
	}
	done := func() {
		a.mu.Lock()
		if a.running[key] == job.ID {
			delete(a.running, key)
		}
		a.mu.Unlock()
	}

	a.wg.Go(func() {
		defer done()
		// Progress is written on a clock, not as messages come: a replay
		// waiting on the stream, or a write refused for a while, must
		// not read as abandoned once it goes on.
		var (
			mu          sync.Mutex // read and total, between the replay and its heartbeat
			read, total uint64
		)
		stop, beat := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(beat)
			t := time.NewTicker(whatIfEvery)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				mu.Lock()
				job.Read, job.Total, job.Updated = read, total, a.now()
				w := job
				mu.Unlock()
				if err := a.whatIfs.Put(a.ctx, w); err != nil {
					a.log.Warn("what-if progress", "id", job.ID, "err", err)
				}
			}
		}()
		err := a.replayer.Replay(a.ctx, p.From, func(_ uint64, subject string, ev *eventv1.Event) {
			replay.Apply(ev.GetLeadId(), ev)
		}, func(r, t uint64) {
			mu.Lock()
			read, total = r, t
			mu.Unlock()
		})
		close(stop)
		<-beat // its last write comes before the result's
		job.Read, job.Total = read, total
		job.Done, job.Err, job.Result, job.Updated = true, err, replay.Result(), a.now()
		if err != nil {
			a.log.Warn("what-if failed", "id", job.ID, "version", n, "err", err)
		}
		// The last write outlives Close: a what-if cut off by a shutdown is
		// recorded as failed, not left running.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), 10*time.Second)
		defer cancel()
		if err := a.whatIfs.Put(ctx, job); err != nil {
			a.log.Error("what-if result", "id", job.ID, "err", err)
		}
	})
	return job.ID, nil
}

// GetWhatIf returns a what-if's progress and result, from any replica.
// It returns ErrNotFound for an unknown id. One whose replica stopped
// writing it before it was done is reported failed (ErrWhatIfAbandoned).
func (a *App) GetWhatIf(ctx context.Context, id string) (WhatIf, error) {
	if _, err := uuid.Parse(id); err != nil {
		var v violations
		v.add("what_if_id", "must be a what-if id, the UUID StartWhatIf answered")
		return WhatIf{}, v.err()
	}
	w, err := a.whatIfs.Get(ctx, id)
	if err != nil {
		return WhatIf{}, err
	}
	if !w.Done && a.now().Sub(w.Updated) > whatIfStale {
		w.Done, w.Err = true, ErrWhatIfAbandoned
	}
	return w, nil
}

// ResumeRebuild finishes a rebuild cut off after its swap (a crash, a
// rolling update, an error during its catch-up): the schema serving now
// may lack what live batches wrote to the old one just before the swap,
// so it cannot wait for an operator. A rebuild cut off before its swap
// waits for the next StartRebuild (the old schema serves meanwhile),
// unless the schema serving was built by older rules of the read model:
// then it starts or resumes that rebuild itself, unless its last run
// failed. The projector calls it
// now and then (ResumeEvery); a rebuild running anywhere makes it a no-op.
func (a *App) ResumeRebuild(ctx context.Context) error {
	st, err := a.proj.Status(ctx)
	if err != nil {
		return err
	}
	if r := st.Rebuild; r != nil && r.Running {
		return nil
	}
	if r := st.Rebuild; r == nil || !r.Swapped || r.Done {
		if r != nil && !r.Done && r.Err != "" {
			return nil // a failed rebuild waits for an operator's StartRebuild: retried by itself, it could fail forever
		}
		return a.rebuildOutdated(ctx)
	}
	pr, err := a.proj.ResumeSwapped(ctx, nil)
	switch {
	case errors.Is(err, project.ErrRebuildRunning):
		return nil
	case err != nil:
		return err
	case pr.Done:
		a.log.Info("rebuild cut off after its swap: finished", "schema", pr.Schema, "events", pr.Events)
		a.rebuilt() // the replica that swapped it in was cut off before telling
	}
	return nil
}

// rebuildOutdated starts a rebuild (or resumes one cut off) when the
// active schema was built by older rules of the read model: its stored
// folds and rows keep those rules' view until every lead is folded again.
func (a *App) rebuildOutdated(ctx context.Context) error {
	old, built, err := a.proj.Outdated(ctx)
	if err != nil || !old {
		return err
	}
	schema, err := a.StartRebuild(ctx)
	switch {
	case errors.Is(err, ErrBusy):
		return nil
	case err != nil:
		return err
	}
	a.log.Info("read model built by older rules: rebuilding it while it serves", "built_by", built, "schema", schema)
	return nil
}

// ResumeEvery is how often the projector looks for a rebuild cut off
// after its swap, or for a read model built by older rules.
const ResumeEvery = 30 * time.Second
