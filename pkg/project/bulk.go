package project

import (
	"context"
	"fmt"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// FoldingProjection is a Projection a rebuild can fold in memory. A
// rebuild into a fresh schema then hands every event to one Fold, in
// stream order, and writes the result once, with the schema's indexes
// dropped and built again after the load, instead of reading and writing
// each subject's rows batch after batch.
type FoldingProjection interface {
	Projection
	// NewFold returns an empty fold for one rebuild.
	NewFold() Fold
}

// Fold is a read model held in memory while a rebuild replays the stream.
type Fold interface {
	// Add folds events with the guarantees of Projection.Apply, and no
	// I/O. The slice is reused once Add returns.
	Add(events []Event) error
	// Loads returns everything folded, as rows to COPY into the schema
	// being built, whose tables are empty and have no indexes then (unique
	// ones included). Each load runs on a connection of its own, at the
	// same time as the others: their sources must not share mutable
	// state.
	Loads() []Load
}

// Load is rows a Fold writes into one table; a table may take several.
type Load struct {
	Table   string
	Columns []string
	Rows    pgx.CopyFromSource
}

// folding is a rebuild's in-memory fold: the projection's Fold, every
// subject's checkpoint, and the goroutine that folds batches while the
// replay reads the next one.
type folding struct {
	fold Fold
	cps  map[string]*checkpoint
	sq   sequenced
	// applied counts events handed to the fold.
	applied uint64
	// subjects is len(cps), for the replay to read while the fold runs.
	subjects atomic.Int64

	in       chan []msg
	done     chan error
	finished bool // done was read: err is the goroutine's
	err      error
}

func (p *Projector) newFolding(ctx context.Context) *folding {
	fp, ok := p.proj.(FoldingProjection)
	if !ok || p.cfg.RebuildFold < 0 {
		return nil
	}
	f := &folding{fold: fp.NewFold(), cps: map[string]*checkpoint{}, in: make(chan []msg, 1), done: make(chan error, 1)}
	go func() {
		for msgs := range f.in {
			if err := p.foldBatch(ctx, f, msgs); err != nil {
				f.done <- err
				return
			}
		}
		f.done <- nil
	}()
	return f
}

// add hands msgs to the folding goroutine, which owns them from now on.
// It returns the error of an earlier batch, if one failed.
func (f *folding) add(msgs []msg) error {
	if f.finished {
		return f.err
	}
	select {
	case f.in <- msgs:
		return nil
	case f.err = <-f.done:
		f.finished = true
		return f.err
	}
}

// wait stops the folding goroutine once it has folded what it was given,
// and returns its error. Read what was folded only after it.
func (f *folding) wait() error {
	if !f.finished {
		close(f.in)
		f.err, f.finished = <-f.done, true
	}
	return f.err
}

// foldBatch folds msgs (stream order), checked as a batch would check
// them.
func (p *Projector) foldBatch(ctx context.Context, f *folding, msgs []msg) error {
	f.sq.events = f.sq.events[:0]
	err := p.sequence(ctx, f.cps, msgs, &f.sq)
	f.subjects.Store(int64(len(f.cps)))
	if err != nil {
		return err
	}
	if len(f.sq.events) == 0 {
		return nil
	}
	if err := f.fold.Add(f.sq.events); err != nil {
		return fmt.Errorf("project: fold %d events: %w", len(f.sq.events), err)
	}
	f.applied += uint64(len(f.sq.events))
	return nil
}

// full reports whether the fold holds as many subjects as it may, or,
// under a memory limit (GOMEMLIMIT), whether the heap has reached half
// of it: the load after the fold needs room too, and a process killed
// for its memory would start the fold over forever.
func (p *Projector) full(f *folding) bool {
	if f.subjects.Load() >= int64(p.cfg.RebuildFold) {
		return true
	}
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		return false
	}
	heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(heap)
	return heap[0].Value.Uint64() >= uint64(limit/2)
}

// writeFold writes a rebuild's fold into its schema: it drops the
// indexes of the schema's tables, copies every load in, builds every
// index again (Config.RebuildConns loads, then builds, at once, each in a
// transaction of its own), and then records the rebuild's position. A
// crash before that last commit leaves the position at 0: the next
// Rebuild drops the schema and starts over.
func (p *Projector) writeFold(ctx context.Context, schema string, f *folding, position, events uint64) error {
	if err := f.wait(); err != nil {
		return err
	}
	start := time.Now()
	restore, err := p.dropIndexes(ctx, schema)
	if err != nil {
		return err
	}
	loads := append(f.fold.Loads(), Load{Table: "checkpoints", Columns: []string{"subject", "seq", "version_before"}, Rows: checkpointRows(f.cps)})
	// Every table's rows first, then every index: a table may come in
	// several loads, and one table's indexes build side by side.
	err = p.parallel(ctx, len(loads), func(i int) error { return p.load(ctx, schema, loads[i]) })
	if err != nil {
		return err
	}
	loaded := time.Now()
	var builds []string
	for _, qs := range restore {
		builds = append(builds, qs...)
	}
	err = p.parallel(ctx, len(builds), func(i int) error {
		tx, err := p.begin(ctx, target{schema: schema})
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		if _, err := tx.Exec(ctx, `SELECT set_config('maintenance_work_mem', '256MB', true)`); err != nil {
			return fmt.Errorf("project: build index: %w", err)
		}
		if _, err := tx.Exec(ctx, builds[i]); err != nil {
			return fmt.Errorf("project: build index: %s: %w", builds[i], err)
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		return err
	}
	// Fresh tables have no statistics: without them the planner guesses,
	// and the reports read a million rows by nested loops.
	var tables []string
	for _, l := range loads {
		if !slices.Contains(tables, l.Table) {
			tables = append(tables, l.Table)
		}
	}
	err = p.parallel(ctx, len(tables), func(i int) error {
		tx, err := p.begin(ctx, target{schema: schema})
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		if _, err := tx.Exec(ctx, `ANALYZE `+pgx.Identifier{tables[i]}.Sanitize()); err != nil {
			return fmt.Errorf("project: analyze %s: %w", tables[i], err)
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		return err
	}
	copied := time.Now()
	p.at(stageRows, nil)

	tx, err := p.begin(ctx, target{schema: schema})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for typ, u := range f.sq.unknown {
		if _, err := tx.Exec(ctx, `INSERT INTO unknown_events (event_type, count, last_seq) VALUES ($1, $2, $3)`,
			typ, int64(u.count), int64(u.last)); err != nil {
			return fmt.Errorf("project: unknown events: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE project.build_progress SET position = $3, events = $4 WHERE name = $1 AND schema = $2`,
		p.cfg.Name, schema, int64(position), int64(events)); err != nil {
		return fmt.Errorf("project: progress: %w", err)
	}
	p.at(stageCheckpoint, nil)
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("project: commit fold: %w", err)
	}
	p.at(stageCommitted, nil)
	p.log.Info("project: fold written", "schema", schema, "subjects", len(f.cps), "events", f.applied, "loads", len(loads),
		"copy", loaded.Sub(start).Round(time.Millisecond), "indexes", len(builds), "index and analyze", copied.Sub(loaded).Round(time.Millisecond))
	var nUnknown uint64
	for typ, u := range f.sq.unknown {
		nUnknown += u.count
		p.log.Warn("project: skipped events of an unknown type", "type", typ, "count", u.count, "last_seq", u.last)
	}
	p.stats.batches.Add(1)
	p.stats.applied.Add(f.applied)
	p.stats.redelivered.Add(f.sq.dups)
	p.stats.gaps.Add(f.sq.gaps)
	p.stats.unknown.Add(nUnknown)
	return nil
}

// parallel runs f(0), ..., f(n-1), Config.RebuildConns at once, and
// returns the first error.
func (p *Projector) parallel(ctx context.Context, n int, f func(i int) error) error {
	next := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range min(p.cfg.RebuildConns, n) {
		wg.Go(func() {
			for i := range next {
				errs <- f(i)
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// load copies one load's rows in a transaction of its own.
func (p *Projector) load(ctx context.Context, schema string, l Load) error {
	tx, err := p.begin(ctx, target{schema: schema})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	start := time.Now()
	n, err := tx.CopyFrom(ctx, pgx.Identifier{l.Table}, l.Columns, l.Rows)
	if err != nil {
		return fmt.Errorf("project: copy %s: %w", l.Table, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("project: load %s: %w", l.Table, err)
	}
	p.log.Debug("project: loaded", "schema", schema, "table", l.Table, "rows", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func checkpointRows(cps map[string]*checkpoint) pgx.CopyFromSource {
	s := &cpSource{cps: cps, subjects: make([]string, 0, len(cps)), i: -1}
	for subject := range cps {
		s.subjects = append(s.subjects, subject)
	}
	return s
}

// cpSource copies checkpoints through one reused row: pgx encodes a row
// before it asks for the next, and a fold's heap is large enough that
// every allocation here costs a scan of it.
type cpSource struct {
	cps      map[string]*checkpoint
	subjects []string
	i        int
	vb       int64
	vals     []any
}

func (s *cpSource) Next() bool {
	s.i++
	if s.i == len(s.subjects) {
		return false
	}
	subject := s.subjects[s.i]
	cp := s.cps[subject]
	var vb *int64
	if cp.isEvent {
		s.vb = int64(cp.vb)
		vb = &s.vb
	}
	s.vals = append(s.vals[:0], subject, int64(cp.seq), vb)
	return true
}

func (s *cpSource) Values() ([]any, error) { return s.vals, nil }

func (s *cpSource) Err() error { return nil }

// dropIndexes drops every index (primary keys and unique constraints
// included) of the tables in schema but goose's, and returns the
// statements that build them again, by table.
func (p *Projector) dropIndexes(ctx context.Context, schema string) (map[string][]string, error) {
	tx, err := p.cfg.Pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("project: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, `SELECT t.relname, ic.relname, pg_get_indexdef(i.indexrelid), c.conname, pg_get_constraintdef(c.oid)
		FROM pg_index i
		JOIN pg_class t ON t.oid = i.indrelid
		JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = t.relnamespace
		LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = t.oid
		WHERE n.nspname = $1 AND t.relname <> 'goose_db_version' ORDER BY t.relname, ic.relname`, schema)
	if err != nil {
		return nil, fmt.Errorf("project: indexes of %s: %w", schema, err)
	}
	type index struct{ table, name, def, con, condef string }
	var idx []index
	for rows.Next() {
		var x index
		var con, condef *string
		if err := rows.Scan(&x.table, &x.name, &x.def, &con, &condef); err != nil {
			return nil, fmt.Errorf("project: indexes of %s: %w", schema, err)
		}
		if con != nil {
			x.con, x.condef = *con, *condef
		}
		idx = append(idx, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("project: indexes of %s: %w", schema, err)
	}
	restore := map[string][]string{}
	for _, x := range idx {
		table := pgx.Identifier{schema, x.table}.Sanitize()
		drop := `DROP INDEX ` + pgx.Identifier{schema, x.name}.Sanitize()
		build := x.def
		if x.con != "" {
			drop = `ALTER TABLE ` + table + ` DROP CONSTRAINT ` + pgx.Identifier{x.con}.Sanitize()
			build = `ALTER TABLE ` + table + ` ADD CONSTRAINT ` + pgx.Identifier{x.con}.Sanitize() + ` ` + x.condef
		}
		if _, err := tx.Exec(ctx, drop); err != nil {
			return nil, fmt.Errorf("project: %s: %w", drop, err)
		}
		restore[x.table] = append(restore[x.table], build)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("project: drop indexes of %s: %w", schema, err)
	}
	return restore, nil
}
