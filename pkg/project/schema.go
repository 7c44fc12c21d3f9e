package project

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// controlDDL is the control schema, shared by every projection: which
// schema serves each read model, and how far its rebuild has got.
const controlDDL = `
CREATE SCHEMA IF NOT EXISTS project;
CREATE TABLE IF NOT EXISTS project.projections (
	name              text PRIMARY KEY,
	active            text NOT NULL,
	generation        int NOT NULL,
	previous          text,
	building          text,
	build_started_at  timestamptz,
	build_end_seq     bigint NOT NULL DEFAULT 0,
	build_swapped_at  timestamptz,
	build_finished_at timestamptz,
	build_error       text
);
-- A rebuild's progress, written in each of its batches' transactions. A
-- table of its own: live batches hold a share lock on their projection's
-- row for their whole transaction, and a rebuild batch waiting for it
-- while they wait for its checkpoint rows would deadlock.
CREATE TABLE IF NOT EXISTS project.build_progress (
	name     text PRIMARY KEY,
	schema   text NOT NULL,
	position bigint NOT NULL DEFAULT 0,
	events   bigint NOT NULL DEFAULT 0
);`

// schemaDDL is what the projector keeps in every read-model schema, next
// to the projection's own tables and in the same transactions.
const schemaDDL = `
CREATE TABLE IF NOT EXISTS checkpoints (
	subject        text COLLATE "C" PRIMARY KEY, -- byte order: sorts skip the C library
	seq            bigint NOT NULL,
	-- version_before of the last message applied; NULL when it was not an event
	version_before bigint
);
CREATE TABLE IF NOT EXISTS unknown_events (
	event_type text PRIMARY KEY,
	count      bigint NOT NULL,
	last_seq   bigint NOT NULL
);
-- The version of the rules that built the schema (Config.Rules); none in
-- a schema built before versions were kept, which counts as 0.
CREATE TABLE IF NOT EXISTS rules (
	version int NOT NULL
);`

// setupLock is the advisory lock key held while schemas are created and
// migrated, so replicas starting together do it once.
const setupLock = 0x6c6561646670 // "leadfp"

func (p *Projector) setup(ctx context.Context) error {
	return p.locked(ctx, func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, controlDDL); err != nil {
			return fmt.Errorf("project: control schema: %w", err)
		}
		var active string
		err := conn.QueryRow(ctx, `SELECT active FROM project.projections WHERE name = $1`, p.cfg.Name).Scan(&active)
		first := errors.Is(err, pgx.ErrNoRows)
		if first {
			active = p.schemaName(1)
			_, err = conn.Exec(ctx, `INSERT INTO project.projections (name, active, generation) VALUES ($1, $2, 1)`, p.cfg.Name, active)
		}
		if err != nil {
			return fmt.Errorf("project: control row of %s: %w", p.cfg.Name, err)
		}
		if err := p.migrate(ctx, conn, active); err != nil {
			return err
		}
		if first {
			return p.builtBy(ctx, conn, active, false)
		}
		return nil
	})
}

// builtBy records in schema that these rules build it: a new schema's
// version, or for one resumed, the older of the two (some of its rows are
// the earlier run's).
func (p *Projector) builtBy(ctx context.Context, conn *pgx.Conn, schema string, resumed bool) error {
	t := pgx.Identifier{schema, "rules"}.Sanitize()
	q := `INSERT INTO ` + t + ` (version) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM ` + t + `)`
	if resumed {
		q = `UPDATE ` + t + ` SET version = least(version, $1)`
	}
	if _, err := conn.Exec(ctx, q, p.cfg.Rules); err != nil {
		return fmt.Errorf("project: rules of %s: %w", schema, err)
	}
	return nil
}

// Outdated reports whether the active schema was built by rules older
// than Config.Rules, and by which version (0: before versions were kept).
func (p *Projector) Outdated(ctx context.Context) (bool, int, error) {
	var active string
	if err := p.cfg.Pool.QueryRow(ctx, `SELECT active FROM project.projections WHERE name = $1`, p.cfg.Name).Scan(&active); err != nil {
		return false, 0, fmt.Errorf("project: control row of %s: %w", p.cfg.Name, err)
	}
	var v int
	if err := p.cfg.Pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+pgx.Identifier{active, "rules"}.Sanitize()).Scan(&v); err != nil {
		return false, 0, fmt.Errorf("project: rules of %s: %w", active, err)
	}
	return v < p.cfg.Rules, v, nil
}

// locked runs f on a pooled connection holding the setup lock.
func (p *Projector) locked(ctx context.Context, f func(*pgx.Conn) error) error {
	return locked(ctx, p.cfg.Pool, f)
}

func locked(ctx context.Context, pool *pgxpool.Pool, f func(*pgx.Conn) error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("project: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(setupLock)); err != nil {
		return fmt.Errorf("project: setup lock: %w", err)
	}
	defer func() {
		// Unlock on a fresh context: ctx may be what ended f.
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(setupLock))
	}()
	return f(conn.Conn())
}

func (p *Projector) schemaName(generation int) string {
	return fmt.Sprintf("%s_%d", p.cfg.Name, generation)
}

// migrate creates schema if it is missing, with the projector's tables,
// and applies the projection's migrations to it (goose, with its version
// table in the schema itself).
func (p *Projector) migrate(ctx context.Context, conn *pgx.Conn, schema string) error {
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+ident); err != nil {
		return fmt.Errorf("project: create schema %s: %w", schema, err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("project: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, schema); err != nil {
		return fmt.Errorf("project: %w", err)
	}
	if _, err := tx.Exec(ctx, schemaDDL); err != nil {
		return fmt.Errorf("project: tables of %s: %w", schema, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("project: tables of %s: %w", schema, err)
	}

	n, err := gooseUp(ctx, p.cfg.Pool, schema, p.proj.Migrations())
	if err != nil {
		return err
	}
	if n > 0 {
		p.log.Info("project: migrated", "schema", schema, "applied", n)
	}
	return nil
}

// gooseUp applies migrations to schema (goose, with its version table in
// the schema) and returns how many it applied.
func gooseUp(ctx context.Context, pool *pgxpool.Pool, schema string, migrations fs.FS) (int, error) {
	cc := pool.Config().ConnConfig.Copy()
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["search_path"] = schema
	db := stdlib.OpenDB(*cc)
	defer db.Close()
	prov, err := goose.NewProvider(goose.DialectPostgres, db, migrations, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return 0, fmt.Errorf("project: migrations of %s: %w", schema, err)
	}
	res, err := prov.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("project: migrate %s: %w", schema, err)
	}
	return len(res), nil
}

// Migrate creates schema if it is missing and applies migrations (goose
// SQL files at the root of the FS) to it, for a service's own tables
// beside its read models. Replicas starting together apply them once.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string, migrations fs.FS) error {
	return locked(ctx, pool, func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
			return fmt.Errorf("project: create schema %s: %w", schema, err)
		}
		_, err := gooseUp(ctx, pool, schema, migrations)
		return err
	})
}

// dropSchema drops a schema the projection no longer uses.
func dropSchema(ctx context.Context, conn *pgx.Conn, schema string) error {
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		return fmt.Errorf("project: drop schema %s: %w", schema, err)
	}
	return nil
}
