package app_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/services/projector/app"
)

// outdated is a read model built by older rules whose rebuilds fail.
type outdated struct {
	status  project.Status
	rebuilt atomic.Int32
}

func (o *outdated) Status(context.Context) (project.Status, error) { return o.status, nil }
func (o *outdated) Rebuild(_ context.Context, report func(project.Progress)) (project.Progress, error) {
	o.rebuilt.Add(1)
	return project.Progress{}, errors.New("no space left on device")
}
func (o *outdated) ResumeSwapped(context.Context, func(project.Progress)) (project.Progress, error) {
	return project.Progress{}, nil
}
func (o *outdated) Outdated(context.Context) (bool, int, error) { return true, 0, nil }

// A read model built by older rules is rebuilt without an operator, but a
// rebuild that failed waits for one: retried by itself every 30 s, it
// could fail (and fill a disk) forever.
func TestAnOutdatedReadModelIsRebuiltUntilARebuildFails(t *testing.T) {
	p := &outdated{}
	a := app.New(nil, p, nil, nil, nil)
	defer a.Close()
	if err := a.ResumeRebuild(context.Background()); err == nil {
		t.Fatal("the first rebuild's failure was not reported")
	}
	if got := p.rebuilt.Load(); got != 1 {
		t.Fatalf("rebuilds started: %d, want 1", got)
	}
	p.status.Rebuild = &project.Progress{Schema: "leads_2", Err: "no space left on device"}
	for range 3 {
		if err := a.ResumeRebuild(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.rebuilt.Load(); got != 1 {
		t.Fatalf("rebuilds started after a failed one: %d, want none", got-1)
	}
	if _, err := a.StartRebuild(context.Background()); err == nil || p.rebuilt.Load() != 2 {
		t.Fatalf("an operator's rebuild: %v, started %d", err, p.rebuilt.Load())
	}
	// One cut off by a shutdown (no error: pkg/project records none) is
	// resumed by itself.
	p.status.Rebuild.Err = ""
	_ = a.ResumeRebuild(context.Background())
	if got := p.rebuilt.Load(); got != 3 {
		t.Fatalf("a rebuild cut off by a shutdown: started %d, want it resumed", got-2)
	}
}
