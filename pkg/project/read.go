package project

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Read runs f in a read-only transaction on one snapshot of the active
// schema (search_path set to it), so every figure f reads is from the
// same moment, and a swap never splits a report between two schemas.
func (p *Projector) Read(ctx context.Context, f func(tx pgx.Tx) error) error {
	tx, err := p.cfg.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("project: read: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT set_config('search_path', active, true) FROM project.projections WHERE name = $1`, p.cfg.Name); err != nil {
		return fmt.Errorf("project: read: %w", err)
	}
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Status is where a projection stands.
type Status struct {
	// Active is the schema serving reads and live writes.
	Active string
	// Rebuild is the latest rebuild, if there was one.
	Rebuild *Progress
	// Unknown counts the skipped messages of each unknown type in the
	// active schema.
	Unknown map[string]uint64
	// Subjects is how many subjects the active schema holds, and Position
	// the highest stream sequence it has applied.
	Subjects uint64
	Position uint64
	// Stats are this process's counters.
	Stats Stats
}

// Status reads where the projection stands.
func (p *Projector) Status(ctx context.Context) (Status, error) {
	var s Status
	var (
		building, previous         *string
		started, swapped, finished *time.Time
		position, events, end      int64
		buildErr                   *string
		active                     string
	)
	// The rebuild's lock is read before its row and again after: a
	// rebuild records its end, then lets go of the lock, so one that let
	// go before the first read shows done in the row; one that took it
	// after, and recorded itself before the row was read, holds it still
	// at the second. Read after the row alone, a rebuild ending between
	// the two reads looked stopped (not done, nobody holding it).
	heldBefore, err := p.rebuildHeld(ctx)
	if err != nil {
		return s, err
	}
	err = p.cfg.Pool.QueryRow(ctx, `SELECT p.active, p.building, p.previous, p.build_started_at, p.build_swapped_at, p.build_finished_at,
		coalesce(b.position, 0), coalesce(b.events, 0), p.build_end_seq, p.build_error
		FROM project.projections p LEFT JOIN project.build_progress b ON b.name = p.name WHERE p.name = $1`, p.cfg.Name).
		Scan(&active, &building, &previous, &started, &swapped, &finished, &position, &events, &end, &buildErr)
	if err != nil {
		return s, fmt.Errorf("project: status: %w", err)
	}
	s.Active = active
	if started != nil {
		// The end is the stream's at the replay's start; writers go on, so
		// a catch-up passes it: never show a position past the end.
		pr := &Progress{Started: *started, Position: uint64(position), Events: uint64(events), End: uint64(max(end, position)),
			Swapped: swapped != nil, Done: finished != nil}
		switch {
		case building != nil:
			pr.Schema = *building
		default:
			pr.Schema = active
		}
		if previous != nil {
			pr.Replaces = *previous
		}
		if building != nil && swapped == nil {
			pr.Replaces = active
		}
		if buildErr != nil {
			pr.Err = *buildErr
		}
		if !pr.Done {
			heldAfter, err := p.rebuildHeld(ctx)
			if err != nil {
				return s, err
			}
			pr.Running = heldBefore || heldAfter
		}
		s.Rebuild = pr
	}
	err = p.Read(ctx, func(tx pgx.Tx) error {
		var n, pos int64
		if err := tx.QueryRow(ctx, `SELECT count(*), coalesce(max(seq), 0) FROM checkpoints`).Scan(&n, &pos); err != nil {
			return err
		}
		s.Subjects, s.Position = uint64(n), uint64(pos)
		rows, err := tx.Query(ctx, `SELECT event_type, count FROM unknown_events ORDER BY event_type`)
		if err != nil {
			return err
		}
		s.Unknown = map[string]uint64{}
		for rows.Next() {
			var typ string
			var c int64
			if err := rows.Scan(&typ, &c); err != nil {
				return err
			}
			s.Unknown[typ] = uint64(c)
		}
		return rows.Err()
	})
	if err != nil {
		return s, fmt.Errorf("project: status: %w", err)
	}
	s.Stats = p.Stats()
	return s, nil
}

// rebuildHeld reports whether a process holds the rebuild's lock. The lock
// is a session's, so it goes with a dead process.
func (p *Projector) rebuildHeld(ctx context.Context) (bool, error) {
	var held bool
	err := p.cfg.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND objsubid = 1 AND (classid::bigint << 32 | objid::bigint) = $1)`, rebuildLock(p.cfg.Name)).Scan(&held)
	if err != nil {
		return false, fmt.Errorf("project: status: %w", err)
	}
	return held, nil
}
