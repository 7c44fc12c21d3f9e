package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// ChangeRouting is one change to the routing data.
type ChangeRouting struct {
	// Field names the change in the request ("team", "rules"), for errors.
	Field  string
	Change *eventv1.RoutingChanged
	By     *eventv1.Actor
	// ExpectedVersion, if not 0, must be the routing version now.
	ExpectedVersion uint32
}

// Changed is the answer to a routing change.
type Changed struct {
	Version   uint32
	Unchanged bool
}

// ChangeRouting validates a change against the routing data and appends
// it as RoutingChanged with the next version, at the data's version (a
// racing change makes it read and validate again). A change that sets
// what is in force already writes nothing, whatever version it expected
// (a retry). Every routing decision after it records the new version.
//
// Errors: *ValidationError (the fields named under in.Field),
// *StaleVersionError, eventstore.ErrConflict after repeated races.
func (a *App) ChangeRouting(ctx context.Context, in ChangeRouting, meta envelope.Meta) (Changed, error) {
	var v violations
	in.By = meta.ActorOr(in.By)
	checkActor(&v, "changed_by", in.By)
	if err := v.err(); err != nil {
		return Changed{}, err
	}
	meta.Actor = in.By
	for attempt := range maxRaces {
		cfg, err := a.freshConfig(ctx)
		if err != nil {
			return Changed{}, err
		}
		if vs := cfg.Validate(in.Field, in.Change); len(vs) > 0 {
			return Changed{}, &ValidationError{Violations: vs}
		}
		if cfg.Unchanged(in.Change) {
			// Also a retry of a change whose answer was lost, expected
			// version and all: what follows it may not have been done.
			return Changed{Version: cfg.Version, Unchanged: true}, a.routingChanged(ctx, cfg, in.Change)
		}
		if in.ExpectedVersion != 0 && in.ExpectedVersion != cfg.Version {
			return Changed{}, &StaleVersionError{Expected: in.ExpectedVersion, Actual: cfg.Version}
		}
		ch := proto.CloneOf(in.Change)
		ch.Version, ch.ChangedBy = cfg.Version+1, in.By
		ev, err := envelope.NewEvent("", ch, meta, a.now())
		if err != nil {
			return Changed{}, err
		}
		_, err = a.store.Routing().Append(ctx, cfg.Seq, ev)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return Changed{}, err
			}
			continue
		}
		if err != nil {
			return Changed{}, err
		}
		a.cfg.mu.Lock()
		a.cfg.started = time.Time{} // this process reads its own change at once
		a.cfg.mu.Unlock()
		a.log.InfoContext(ctx, "routing changed", "version", ch.GetVersion(), "change", in.Field, "by", in.By.GetId())
		a.passed(AfterRoutingStored, "")
		// Stored: what it asks of the leads is done now, whether or not
		// the caller waits for it, and again by the routing group
		// (RoutingStored), which a process stopped here leaves it to.
		after, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if cfg, err = a.freshConfig(after); err == nil {
			err = a.routingChanged(after, cfg, ch)
		}
		return Changed{Version: ch.GetVersion()}, err
	}
	return Changed{}, fmt.Errorf("change routing: %w after %d races", eventstore.ErrConflict, maxRaces)
}

// RoutingStored does what the stored routing change ev asks of the leads,
// read from the routing data now (ev's change included), for the routing
// group: again after ChangeRouting did it, or for the first time when its
// process stopped before it could. Doing it twice changes nothing.
func (a *App) RoutingStored(ctx context.Context, ev *eventv1.Event) error {
	ch := ev.GetRoutingChanged()
	if ch == nil {
		return nil
	}
	a.passed(AfterRoutingStored, "")
	cfg, err := a.freshConfig(ctx)
	if err != nil {
		return err
	}
	return a.routingChanged(ctx, cfg, ch)
}

// routingChanged does what a stored change asks of the leads: an
// absence hands on the leads its rep has not accepted when it starts,
// and whether it takes working time depends on the rep's team hours too;
// a rep made inactive hands them on at once. cfg includes the change.
func (a *App) routingChanged(ctx context.Context, cfg *routing.Config, ch *eventv1.RoutingChanged) error {
	var reps []string
	switch {
	case ch.GetOutOfOffice() != nil:
		reps = []string{ch.GetOutOfOffice().GetRepId()}
	case ch.GetRep() != nil:
		reps = []string{ch.GetRep().GetRepId()}
	case ch.GetTeam() != nil:
		for _, id := range SortedKeys(cfg.Reps) {
			if cfg.Reps[id].GetTeamId() == ch.GetTeam().GetTeamId() {
				reps = append(reps, id)
			}
		}
	}
	var errs []error // one rep's failure keeps none of the others from their timers
	for _, rep := range reps {
		if len(cfg.Absences[rep]) == 0 && !cfg.Inactive(rep) {
			continue
		}
		if err := a.absenceChanged(ctx, cfg, rep); err != nil {
			errs = append(errs, fmt.Errorf("routing version %d stored; handing on %s's leads: %w", cfg.Version, rep, err))
		}
	}
	return errors.Join(errs...)
}

// Routing returns the routing data at its current version.
func (a *App) Routing(ctx context.Context) (*routing.Config, error) {
	return a.freshConfig(ctx)
}

// SortedKeys returns a map's keys in order, for listing routing data.
func SortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
