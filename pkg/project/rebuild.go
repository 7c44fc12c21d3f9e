package project

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// Progress is how far a rebuild has got.
type Progress struct {
	// Schema is the schema being built; Replaces the one it replaces.
	Schema   string
	Replaces string
	Started  time.Time
	// Position is the last stream sequence applied; End the stream's last
	// sequence when the rebuild last looked.
	Position uint64
	End      uint64
	// Events is how many messages were read.
	Events uint64
	// Swapped: Schema serves reads and live writes now. Done: the catch-up
	// after the swap is over too.
	Swapped bool
	Done    bool
	// Running: a process works on it now (holds the rebuild's lock); a
	// rebuild neither done nor running was cut off, and the next Rebuild
	// resumes it.
	Running bool
	// Err is why the last run stopped, if it failed; a resumed run clears
	// it.
	Err string
}

// Rebuild replays the stream from sequence 1 into a fresh schema with the
// projection's own Apply, while the active schema keeps serving. When the
// replay has caught up with the stream it swaps the schemas in one
// transaction (live batches in flight finish on the old one first; later
// ones write the new one) and catches up once more, for what live batches
// wrote to the old schema before the swap. report, if set, is called after
// every batch.
//
// A rebuild cut off (a crash, ctx) resumes where it stopped on the next
// call, in any process. The schema it replaced is kept until the next
// rebuild starts, then dropped.
//
// Rebuild returns ErrRebuildRunning while another rebuild of the
// projection runs.
func (p *Projector) Rebuild(ctx context.Context, report func(Progress)) (Progress, error) {
	return p.rebuild(ctx, report, false)
}

// ResumeSwapped finishes a rebuild cut off after its swap (Rebuild
// explains why that one cannot wait), deciding under the rebuild's lock,
// so that a rebuild another process finished meanwhile is not taken for
// a new one. It returns Progress{} with no error when there is none to
// finish, and ErrRebuildRunning while a rebuild runs.
func (p *Projector) ResumeSwapped(ctx context.Context, report func(Progress)) (Progress, error) {
	return p.rebuild(ctx, report, true)
}

func (p *Projector) rebuild(ctx context.Context, report func(Progress), swappedOnly bool) (Progress, error) {
	conn, err := p.cfg.Pool.Acquire(ctx)
	if err != nil {
		return Progress{}, fmt.Errorf("project: %w", err)
	}
	defer conn.Release()
	// A session lock, held by this connection for the whole rebuild: it
	// goes away with the process, so a crashed rebuild never blocks the
	// next.
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, rebuildLock(p.cfg.Name)).Scan(&got); err != nil {
		return Progress{}, fmt.Errorf("project: rebuild lock: %w", err)
	}
	if !got {
		return Progress{}, ErrRebuildRunning
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, rebuildLock(p.cfg.Name))
	}()

	pr, err := p.startRebuild(ctx, swappedOnly)
	if errors.Is(err, errNothingToResume) {
		return Progress{}, nil
	}
	if err != nil {
		return pr, err
	}
	p.log.Info("project: rebuild", "schema", pr.Schema, "replaces", pr.Replaces, "from", pr.Position+1, "swapped", pr.Swapped)
	if report != nil {
		report(pr)
	}
	pr, err = p.replay(ctx, pr, report)
	if err != nil && ctx.Err() != nil {
		// Cut off (a shutdown), like a crash: no failure to keep, and
		// nothing that should hold back the next start's resume.
		return pr, err
	}
	if err != nil {
		pr.Err = err.Error()
		if _, uerr := p.cfg.Pool.Exec(context.WithoutCancel(ctx), `UPDATE project.projections SET build_error = $2 WHERE name = $1`,
			p.cfg.Name, pr.Err); uerr != nil {
			p.log.Warn("project: record rebuild error", "err", uerr)
		}
		return pr, err
	}
	p.log.Info("project: rebuild done", "schema", pr.Schema, "events", pr.Events, "took", time.Since(pr.Started).Round(time.Millisecond))
	return pr, nil
}

func rebuildLock(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("leadflow.project.rebuild." + name))
	return int64(h.Sum64() >> 1)
}

// errNothingToResume: startRebuild found no swapped rebuild to finish.
var errNothingToResume = errors.New("project: no rebuild to resume")

// startRebuild picks up an interrupted rebuild, or starts a new one in
// the next generation's schema, dropping the schema the last rebuild
// replaced. swappedOnly: only a rebuild cut off after its swap, else
// errNothingToResume.
func (p *Projector) startRebuild(ctx context.Context, swappedOnly bool) (Progress, error) {
	var pr Progress
	err := p.locked(ctx, func(conn *pgx.Conn) error {
		var (
			active, building, previous *string
			generation                 int
			started, swapped, finished *time.Time
			position, events, end      int64
		)
		err := conn.QueryRow(ctx, `SELECT p.active, p.generation, p.building, p.previous, p.build_started_at, p.build_swapped_at,
			p.build_finished_at, coalesce(b.position, 0), coalesce(b.events, 0), p.build_end_seq
			FROM project.projections p LEFT JOIN project.build_progress b ON b.name = p.name AND b.schema = p.building
			WHERE p.name = $1`, p.cfg.Name).
			Scan(&active, &generation, &building, &previous, &started, &swapped, &finished, &position, &events, &end)
		if err != nil {
			return fmt.Errorf("project: control row: %w", err)
		}
		if swappedOnly && (building == nil || finished != nil || swapped == nil) {
			return errNothingToResume
		}
		if building != nil && finished == nil {
			// Resume: the schema holds its own checkpoints, so re-reading
			// from the recorded position applies nothing twice.
			pr = Progress{Schema: *building, Started: deref(started), Position: uint64(position), Events: uint64(events),
				End: uint64(end), Swapped: swapped != nil}
			if previous != nil {
				pr.Replaces = *previous
			}
			if !pr.Swapped {
				pr.Replaces = *active
			}
			if pr.Position == 0 && !pr.Swapped {
				// Nothing recorded: a fold may have loaded some tables. It
				// starts over, and so do its counts.
				if err := dropSchema(ctx, conn, pr.Schema); err != nil {
					return err
				}
				pr.Events = 0
				if _, err := conn.Exec(ctx, `UPDATE project.build_progress SET events = 0 WHERE name = $1 AND schema = $2`, p.cfg.Name, pr.Schema); err != nil {
					return fmt.Errorf("project: resume rebuild: %w", err)
				}
			}
			// A failed run's error is history now: only this run's counts.
			if _, err := conn.Exec(ctx, `UPDATE project.projections SET build_error = NULL WHERE name = $1`, p.cfg.Name); err != nil {
				return fmt.Errorf("project: resume rebuild: %w", err)
			}
			if err := p.migrate(ctx, conn, pr.Schema); err != nil {
				return err
			}
			return p.builtBy(ctx, conn, pr.Schema, pr.Position > 0 || pr.Swapped)
		}
		if previous != nil && *previous != *active {
			if err := dropSchema(ctx, conn, *previous); err != nil {
				return err
			}
		}
		next := p.schemaName(max(generation, generationOf(*active)) + 1)
		if err := dropSchema(ctx, conn, next); err != nil { // a leftover of an abandoned attempt
			return err
		}
		if err := p.migrate(ctx, conn, next); err != nil {
			return err
		}
		if err := p.builtBy(ctx, conn, next, false); err != nil {
			return err
		}
		pr = Progress{Schema: next, Replaces: *active, Started: time.Now()}
		// One transaction: progress left naming the old schema would never
		// be updated, and a resume would start over from sequence 1.
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE project.projections SET previous = NULL, building = $2, build_started_at = $3,
				build_end_seq = 0, build_swapped_at = NULL, build_finished_at = NULL, build_error = NULL WHERE name = $1`,
				p.cfg.Name, next, pr.Started); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO project.build_progress (name, schema) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET schema = excluded.schema, position = 0, events = 0`, p.cfg.Name, next)
			return err
		})
		if err != nil {
			return fmt.Errorf("project: start rebuild: %w", err)
		}
		return nil
	})
	return pr, err
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

func generationOf(schema string) int {
	i := strings.LastIndexByte(schema, '_')
	n, _ := strconv.Atoi(schema[i+1:])
	return n
}

// replayWait is how long the replay waits for more messages before it
// asks the server whether it has caught up.
const replayWait = 100 * time.Millisecond

// replay reads the stream from pr.Position+1 with an ordered consumer and
// applies it in batches to pr.Schema until it has caught up after the
// swap.
func (p *Projector) replay(ctx context.Context, pr Progress, report func(Progress)) (Progress, error) {
	st, err := p.cfg.JS.Stream(ctx, p.cfg.Stream)
	if err != nil {
		return pr, fmt.Errorf("project: stream %s: %w", p.cfg.Stream, err)
	}
	pr.End = max(pr.End, st.CachedInfo().State.LastSeq)
	if _, err := p.cfg.Pool.Exec(ctx, `UPDATE project.projections SET build_end_seq = $2 WHERE name = $1`, p.cfg.Name, int64(pr.End)); err != nil {
		return pr, fmt.Errorf("project: %w", err)
	}
	// No server-side filter: with many subjects the server serves a
	// filtered consumer far slower than it sends everything (measured by
	// BenchmarkProjector: one wildcard 5x, several wildcards 40x slower),
	// so the replay reads the whole stream and drops what it does not
	// project.
	cons, err := p.cfg.JS.OrderedConsumer(ctx, p.cfg.Stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   pr.Position + 1,
	})
	if err != nil {
		return pr, fmt.Errorf("project: replay consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * p.cfg.RebuildBatch))
	if err != nil {
		return pr, fmt.Errorf("project: replay: %w", err)
	}
	defer it.Stop()

	var (
		batch = make([]msg, 0, p.cfg.RebuildBatch)
		// pending is what the server still had for the replay when it
		// delivered the last message read.
		pending uint64
		// swapEnd is the stream's last sequence right after the swap.
		swapEnd uint64
		// read is the last stream sequence read, projected or not.
		read = pr.Position
		// fold holds a fresh schema's replay in memory until it is
		// written (nil: batch by batch). A resumed rebuild has written
		// already, so it goes batch by batch.
		fold   *folding
		folded uint64 // messages read into the fold, projected or not
	)
	if pr.Position == 0 && !pr.Swapped {
		fold = p.newFolding(ctx)
	}
	if pr.Swapped {
		// Resumed after its swap: what live batches wrote to the old
		// schema before it ends somewhere before the stream's end now.
		swapEnd = pr.End
	}
	defer func() {
		if fold != nil {
			_ = fold.wait()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return pr, err
		}
		batch = batch[:0]
		idle := false
		got := uint64(0) // messages read, projected or not: the bar's count
		for len(batch) < p.cfg.RebuildBatch {
			m, err := it.Next(jetstream.NextMaxWait(p.replayWait))
			if errors.Is(err, nats.ErrTimeout) {
				idle = true
				break
			}
			if err != nil {
				return pr, fmt.Errorf("project: replay: %w", err)
			}
			md, err := m.Metadata()
			if err != nil {
				return pr, fmt.Errorf("project: replay: %w", err)
			}
			pending = md.NumPending
			read = md.Sequence.Stream
			got++
			if p.wanted(m.Subject()) {
				batch = append(batch, msg{seq: md.Sequence.Stream, subject: m.Subject(), time: md.Timestamp,
					typ: m.Headers().Get(eventstore.HeaderType), data: m.Data()})
			}
			if pending == 0 {
				break // all there is: apply it now rather than wait for more
			}
		}
		switch {
		case fold != nil:
			folded += got
			if err := fold.add(batch); err != nil {
				return pr, err
			}
			batch = make([]msg, 0, p.cfg.RebuildBatch) // the fold owns the last one
			pr.End = max(pr.End, read+pending)
			// Progress while folding: messages read, nothing applied yet.
			if _, err := p.cfg.Pool.Exec(ctx, `UPDATE project.build_progress SET events = $3 WHERE name = $1 AND schema = $2`,
				p.cfg.Name, pr.Schema, int64(pr.Events+folded)); err != nil {
				return pr, fmt.Errorf("project: progress: %w", err)
			}
			if report != nil {
				r := pr
				r.Events += folded
				report(r)
			}
		case read > pr.Position:
			bctx, cancel := context.WithTimeout(ctx, batchTimeout)
			err := p.applyBatch(bctx, target{schema: pr.Schema, position: read, read: int(got)}, batch)
			cancel()
			if err != nil {
				return pr, err
			}
			pr.Position = read
			pr.End = max(pr.End, pr.Position+pending)
			pr.Events += got
			if report != nil {
				report(pr)
			}
		}
		caughtUp := false
		if idle {
			// Nothing came for a while: caught up, if the server has
			// nothing left for this consumer either.
			info, err := cons.Info(ctx)
			if err != nil {
				return pr, fmt.Errorf("project: replay: %w", err)
			}
			caughtUp = eventstore.CaughtUp(info, read)
		}
		nearEnd := caughtUp || (!idle && pending < uint64(p.cfg.RebuildBatch/2))
		if fold != nil && (nearEnd || p.full(fold)) {
			// Loaded, then on batch by batch: the swap waits for the next
			// batch, so the messages stored while the fold was loaded are
			// in the new schema first.
			if err := p.writeFold(ctx, pr.Schema, fold, read, pr.Events+folded); err != nil {
				return pr, err
			}
			pr.Position, pr.Events, fold = read, pr.Events+folded, nil
			if report != nil {
				report(pr)
			}
			continue
		}
		switch {
		case !pr.Swapped && nearEnd:
			// Caught up, or close enough that the rest is one batch: writers
			// never pause for a rebuild, so waiting for a quiet moment could
			// take forever.
			if err := p.swap(ctx, pr.Schema); err != nil {
				return pr, err
			}
			pr.Swapped = true
			info, err := st.Info(ctx)
			if err != nil {
				return pr, fmt.Errorf("project: replay: %w", err)
			}
			swapEnd = info.State.LastSeq
			p.log.Info("project: swapped", "schema", pr.Schema, "replaces", pr.Replaces, "position", pr.Position, "behind", pending)
			if report != nil {
				report(pr)
			}
		case pr.Swapped && (caughtUp || pr.Position >= swapEnd):
			// Past everything stored when the swap committed: every event a
			// live batch wrote to the old schema is here too.
			if _, err := p.cfg.Pool.Exec(ctx, `UPDATE project.projections SET building = NULL, build_finished_at = now() WHERE name = $1 AND building = $2`,
				p.cfg.Name, pr.Schema); err != nil {
				return pr, fmt.Errorf("project: finish rebuild: %w", err)
			}
			pr.Done = true
			if report != nil {
				report(pr)
			}
			return pr, nil
		}
	}
}

// swap makes schema the active one. The row lock it takes waits for live
// batches that read the old pointer (FOR SHARE) to commit.
func (p *Projector) swap(ctx context.Context, schema string) error {
	tag, err := p.cfg.Pool.Exec(ctx, `UPDATE project.projections SET previous = active, active = $2, generation = $3, build_swapped_at = now()
		WHERE name = $1 AND building = $2`, p.cfg.Name, schema, generationOf(schema))
	if err != nil {
		return fmt.Errorf("project: swap to %s: %w", schema, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("project: swap to %s: the projection is no longer building it", schema)
	}
	return nil
}

// wanted reports whether a subject is one of Config.Subjects (NATS
// wildcards: '*' one token, '>' the rest).
func (p *Projector) wanted(subject string) bool {
	for _, f := range p.cfg.Subjects {
		if subjectMatches(f, subject) {
			return true
		}
	}
	return false
}

func subjectMatches(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		st, srest, smore := strings.Cut(subject, ".")
		switch {
		case ft == ">":
			return true
		case ft != "*" && ft != st:
			return false
		case !fmore || !smore:
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}
