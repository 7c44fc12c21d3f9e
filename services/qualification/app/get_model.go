package app

import (
	"context"
	"fmt"

	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/qualification/registry"
)

// VersionView is one version with where it stands.
type VersionView struct {
	Number uint32
	registry.Version
	State registry.State
}

func view(reg *registry.Registry, n uint32) VersionView {
	v, _ := reg.Get(n)
	v.Approvals = reg.Standing(n) // what counts towards its sign-off
	return VersionView{Number: n, Version: v, State: reg.State(n)}
}

// GetModel returns version n, or the active one for 0.
//
// Errors: ErrNotFound (unknown version, or none active).
func (a *App) GetModel(ctx context.Context, n uint32) (VersionView, error) {
	reg, err := a.fresh(ctx)
	if err != nil {
		return VersionView{}, err
	}
	return lookup(reg, n)
}

func lookup(reg *registry.Registry, n uint32) (VersionView, error) {
	if n == 0 {
		if n = reg.Active; n == 0 {
			return VersionView{}, fmt.Errorf("active model: none yet: %w", ErrNotFound)
		}
	}
	if _, ok := reg.Get(n); !ok {
		return VersionView{}, fmt.Errorf("model version %d: %w", n, ErrNotFound)
	}
	return view(reg, n), nil
}

// ListModelVersions returns every version, oldest first, and the active
// version's number (0 if none).
func (a *App) ListModelVersions(ctx context.Context) ([]VersionView, uint32, error) {
	reg, err := a.fresh(ctx)
	if err != nil {
		return nil, 0, err
	}
	out := make([]VersionView, len(reg.Versions))
	for i := range reg.Versions {
		out[i] = view(reg, uint32(i+1))
	}
	return out, reg.Active, nil
}

// DiffModels lists the changes from version from to version to.
//
// Errors: *ValidationError (a version missing), ErrNotFound.
func (a *App) DiffModels(ctx context.Context, from, to uint32) ([]scoring.Change, error) {
	var v violations
	if from == 0 {
		v.add("from_version", "is required")
	}
	if to == 0 {
		v.add("to_version", "is required")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	reg, err := a.fresh(ctx)
	if err != nil {
		return nil, err
	}
	x, err := lookup(reg, from)
	if err != nil {
		return nil, err
	}
	y, err := lookup(reg, to)
	if err != nil {
		return nil, err
	}
	return scoring.Diff(x.Model, y.Model), nil
}
