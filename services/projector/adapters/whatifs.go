package adapters

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/services/projector/app"
	"github.com/leadflow/leadflow/services/projector/whatif"
)

//go:embed jobs_migrations/*.sql
var jobsMigrations embed.FS

// JobsSchema is the projector's own schema, beside its read models.
const JobsSchema = "projector"

// WhatIfs keeps what-ifs in PostgreSQL (app.WhatIfs).
type WhatIfs struct{ pool *pgxpool.Pool }

var _ app.WhatIfs = (*WhatIfs)(nil)

// NewWhatIfs applies the projector schema's migrations and returns the
// store.
func NewWhatIfs(ctx context.Context, pool *pgxpool.Pool) (*WhatIfs, error) {
	sub, err := fs.Sub(jobsMigrations, "jobs_migrations")
	if err != nil {
		return nil, err
	}
	if err := project.Migrate(ctx, pool, JobsSchema, sub); err != nil {
		return nil, err
	}
	return &WhatIfs{pool: pool}, nil
}

// Put writes w, replacing what was stored under its id unless that is
// done: a progress write that lands late never undoes a result.
func (s *WhatIfs) Put(ctx context.Context, w app.WhatIf) error {
	var result []byte
	if w.Done && w.Err == nil {
		var err error
		if result, err = json.Marshal(w.Result); err != nil {
			return fmt.Errorf("what-if %s: %w", w.ID, err)
		}
	}
	errText := ""
	if w.Err != nil {
		errText = w.Err.Error()
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO projector.what_ifs
		(id, proposed, active, period_from, period_to, read, total, done, error, result, started_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (id) DO UPDATE SET read = excluded.read, total = excluded.total, done = excluded.done,
			error = excluded.error, result = excluded.result, updated_at = excluded.updated_at
		WHERE NOT what_ifs.done`,
		w.ID, int32(w.Proposed), int32(w.Active), bound(w.Period.From), bound(w.Period.To), int64(w.Read), int64(w.Total),
		w.Done, errText, result, w.Started, w.Updated)
	if err != nil {
		return fmt.Errorf("what-if %s: %w", w.ID, err)
	}
	return nil
}

// Get reads a what-if; app.ErrNotFound if none has that id.
func (s *WhatIfs) Get(ctx context.Context, id string) (app.WhatIf, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return app.WhatIf{}, fmt.Errorf("what-if %q: %w", id, app.ErrNotFound)
	}
	id = u.String() // PostgreSQL takes none of the other forms Parse does (urn:uuid:, braces)
	var (
		w                app.WhatIf
		proposed, active int32
		from, to         *time.Time
		read, total      int64
		errText          string
		result           []byte
	)
	err = s.pool.QueryRow(ctx, `SELECT id::text, proposed, active, period_from, period_to, read, total, done, error, result, started_at, updated_at
		FROM projector.what_ifs WHERE id = $1`, id).
		Scan(&w.ID, &proposed, &active, &from, &to, &read, &total, &w.Done, &errText, &result, &w.Started, &w.Updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return app.WhatIf{}, fmt.Errorf("what-if %s: %w", id, app.ErrNotFound)
	}
	if err != nil {
		return app.WhatIf{}, fmt.Errorf("what-if %s: %w", id, err)
	}
	w.Proposed, w.Active, w.Read, w.Total = uint32(proposed), uint32(active), uint64(read), uint64(total)
	if from != nil {
		w.Period.From = *from
	}
	if to != nil {
		w.Period.To = *to
	}
	if errText != "" {
		w.Err = errors.New(errText)
	}
	if result != nil {
		var r whatif.Result
		if err := json.Unmarshal(result, &r); err != nil {
			return app.WhatIf{}, fmt.Errorf("what-if %s: result: %w", id, err)
		}
		w.Result = r
	}
	return w, nil
}
