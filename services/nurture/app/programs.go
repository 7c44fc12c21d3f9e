package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/nurture/program"
)

// ProgramChanged is the answer to a program change.
type ProgramChanged struct {
	Program program.Entry
	// Version is the programs' version after the change.
	Version   uint32
	Unchanged bool
}

// PutProgram validates p against itself and every other active program
// and appends NurtureProgramChanged (the program's next revision) on
// model.nurture-programs at the programs' version; a racing change makes
// it read and check again. A program put exactly as it is writes nothing.
//
// Errors: *ValidationError (fields named "program.entry_rules[1]...",
// overlapping entry rules, an unknown then_program_id);
// eventstore.ErrConflict after repeated races.
func (a *App) PutProgram(ctx context.Context, p *eventv1.NurtureProgram, by *eventv1.Actor, meta envelope.Meta) (ProgramChanged, error) {
	var v violations
	by = meta.ActorOr(by)
	checkActor(&v, "changed_by", by)
	if p == nil {
		v.add("program", "is required")
	}
	if err := v.err(); err != nil {
		return ProgramChanged{}, err
	}
	return a.changeProgram(ctx, p.GetProgramId(), meta, by, func(cat *program.Catalog) (*eventv1.NurtureProgramChanged, bool, error) {
		ch, unchanged, err := cat.Put(p, by)
		var ve *program.ValidationError
		if errors.As(err, &ve) {
			var out violations
			for _, x := range ve.Violations {
				f := "program"
				if x.Field != "" {
					f += "." + x.Field
				}
				out.add(f, "%s", x.Description)
			}
			return nil, false, out.err()
		}
		return ch, unchanged, err
	})
}

// RetireProgram appends the NurtureProgramChanged that retires a program:
// it takes no new leads; leads in it stay until their review. Retiring a
// retired program writes nothing.
//
// Errors: *ValidationError (program_id malformed); ErrNotFound (no such
// program); *RefusedError (a built-in program, or one another program's exit rules
// send leads to); eventstore.ErrConflict after repeated races.
func (a *App) RetireProgram(ctx context.Context, id string, by *eventv1.Actor, meta envelope.Meta) (ProgramChanged, error) {
	var v violations
	by = meta.ActorOr(by)
	checkActor(&v, "changed_by", by)
	if msg := program.CheckID(id); msg != "" {
		v.add("program_id", "%s", msg)
	}
	if err := v.err(); err != nil {
		return ProgramChanged{}, err
	}
	return a.changeProgram(ctx, id, meta, by, func(cat *program.Catalog) (*eventv1.NurtureProgramChanged, bool, error) {
		ch, unchanged, err := cat.Retire(id, by)
		var refused *program.RefusedError
		switch {
		case errors.Is(err, program.ErrUnknown):
			return nil, false, fmt.Errorf("program %q: %w", id, ErrNotFound)
		case errors.As(err, &refused):
			return nil, false, &RefusedError{Reason: refused.Error()}
		}
		return ch, unchanged, err
	})
}

func (a *App) changeProgram(ctx context.Context, id string, meta envelope.Meta, by *eventv1.Actor,
	decide func(*program.Catalog) (*eventv1.NurtureProgramChanged, bool, error)) (ProgramChanged, error) {
	meta.Actor = by
	for attempt := range maxRaces {
		cat, err := a.catalog(ctx, 0)
		if err != nil {
			return ProgramChanged{}, err
		}
		ch, unchanged, err := decide(cat)
		if err != nil {
			return ProgramChanged{}, err
		}
		if unchanged {
			e, _ := cat.Get(id)
			return ProgramChanged{Program: e, Version: cat.Version, Unchanged: true}, nil
		}
		ev, err := envelope.NewEvent("", ch, meta, a.now())
		if err != nil {
			return ProgramChanged{}, err
		}
		_, err = a.programs.Append(ctx, cat.Seq, ev)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return ProgramChanged{}, err
			}
			continue
		}
		if err != nil {
			return ProgramChanged{}, err
		}
		if cat, err = a.catalog(ctx, 0); err != nil {
			return ProgramChanged{}, err
		}
		e, _ := cat.Get(id)
		a.log.InfoContext(ctx, "nurture program changed", "program", id, "revision", e.Program.GetRevision(), "change", ch.GetChange().String())
		return ProgramChanged{Program: e, Version: cat.Version}, nil
	}
	return ProgramChanged{}, fmt.Errorf("program %s: %w after %d races", id, eventstore.ErrConflict, maxRaces)
}

// GetProgram returns one program, retired or not.
//
// Errors: *ValidationError (malformed id), ErrNotFound.
func (a *App) GetProgram(ctx context.Context, id string) (program.Entry, error) {
	if msg := program.CheckID(id); msg != "" {
		return program.Entry{}, &ValidationError{Violations: []Violation{{Field: "program_id", Description: msg}}}
	}
	cat, err := a.catalog(ctx, 0)
	if err != nil {
		return program.Entry{}, err
	}
	e, ok := cat.Get(id)
	if !ok {
		return program.Entry{}, fmt.Errorf("program %q: %w", id, ErrNotFound)
	}
	return e, nil
}

// ListPrograms returns the programs by id, and the programs' version.
func (a *App) ListPrograms(ctx context.Context, includeRetired bool) ([]program.Entry, uint32, error) {
	cat, err := a.catalog(ctx, 0)
	if err != nil {
		return nil, 0, err
	}
	return cat.List(includeRetired), cat.Version, nil
}
