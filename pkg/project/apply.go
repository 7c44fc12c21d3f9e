package project

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// msg is one stream message to apply, from a consumer or a replay.
type msg struct {
	seq     uint64
	subject string
	time    time.Time
	typ     string // the Lf-Type header
	data    []byte
}

// checkpoint is where one subject stands in a schema.
type checkpoint struct {
	seq     uint64
	vb      uint64 // version_before of the last message applied, if isEvent
	isEvent bool
	changed bool
}

// eventTypes are the payload names this binary's schema knows.
var eventTypes = func() map[string]bool {
	oneof := (&eventv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("payload")
	m := map[string]bool{}
	for i := range oneof.Fields().Len() {
		m[string(oneof.Fields().Get(i).Message().Name())] = true
	}
	return m
}()

// Stats counts what a Projector did since it was created.
type Stats struct {
	// Batches is how many transactions committed.
	Batches uint64
	// Applied is how many events were handed to the projection.
	Applied uint64
	// Redelivered is how many messages were at or below their subject's
	// checkpoint: already applied, left alone.
	Redelivered uint64
	// Gaps is how many times a subject's missing events were read from
	// the stream before going on.
	Gaps uint64
	// Unknown is how many messages of unknown types were skipped.
	Unknown uint64
}

type stats struct {
	batches, applied, redelivered, gaps, unknown atomic.Uint64
}

// Stats returns what p did so far.
func (p *Projector) Stats() Stats {
	return Stats{Batches: p.stats.batches.Load(), Applied: p.stats.applied.Load(), Redelivered: p.stats.redelivered.Load(),
		Gaps: p.stats.gaps.Load(), Unknown: p.stats.unknown.Load()}
}

// target says where a batch goes: the active schema (live), or a schema
// being rebuilt, whose progress the batch records in the same transaction.
type target struct {
	schema   string // "" for the active schema
	position uint64 // rebuild: the last stream sequence this batch read
	read     int    // rebuild: the messages this batch read, projected or not
}

// applyBatch applies msgs (stream order) in one transaction: the
// projection's rows, then every subject's checkpoint and the unknown
// counts. A message at or below its subject's checkpoint is skipped; an
// event after a gap is preceded by the events missing before it, read
// from the stream.
func (p *Projector) applyBatch(ctx context.Context, to target, msgs []msg) error {
	tx, err := p.begin(ctx, to)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	cps, err := lockCheckpoints(ctx, tx, msgs)
	if err != nil {
		return err
	}
	var sq sequenced
	if err := p.sequence(ctx, cps, msgs, &sq); err != nil {
		return err
	}
	events, unknown := sq.events, sq.unknown

	if len(events) > 0 {
		if err := p.proj.Apply(ctx, tx, events); err != nil {
			return fmt.Errorf("project: apply %d events: %w", len(events), err)
		}
	}
	p.at(stageRows, events)
	if err := saveCheckpoints(ctx, tx, p.cfg.Name, cps, unknown, to); err != nil {
		return err
	}
	p.at(stageCheckpoint, events)
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("project: commit: %w", err)
	}
	p.at(stageCommitted, events)

	var nUnknown uint64
	for typ, u := range unknown {
		nUnknown += u.count
		p.log.Warn("project: skipped events of an unknown type", "type", typ, "count", u.count, "last_seq", u.last)
	}
	p.stats.batches.Add(1)
	p.stats.applied.Add(uint64(len(events)))
	p.stats.redelivered.Add(sq.dups)
	p.stats.gaps.Add(sq.gaps)
	p.stats.unknown.Add(nUnknown)
	return nil
}

// begin starts a batch's transaction, with search_path set to the
// schema it writes, in one round trip (BEGIN and the settings as one
// simple-protocol query, the names quoted as literals).
func (p *Projector) begin(ctx context.Context, to target) (pgx.Tx, error) {
	var q string
	if to.schema == "" {
		// FOR SHARE: a swap (an UPDATE of this row) waits for live batches
		// in flight, and batches after it write the new schema.
		q = `BEGIN; SELECT set_config('search_path', active, true) FROM project.projections WHERE name = ` + literal(p.cfg.Name) + ` FOR SHARE`
	} else {
		// A rebuild need not wait for its commits to reach disk: a crash
		// loses at most its last batches, position included, and it
		// resumes from the position that survived.
		q = `BEGIN; SELECT set_config('search_path', ` + literal(to.schema) + `, true), set_config('synchronous_commit', 'off', true)`
	}
	tx, err := p.cfg.Pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: q})
	if err != nil {
		return nil, fmt.Errorf("project: begin: %w", err)
	}
	return tx, nil
}

// literal quotes s as an SQL string literal, for the one query that
// cannot take parameters (the simple protocol of BeginQuery).
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// sequenced is what messages come to once checked against their
// subjects' checkpoints.
type sequenced struct {
	// events are the ones to apply, in order, gap reads included.
	events     []Event
	unknown    map[string]*unknownCount
	dups, gaps uint64
}

// sequence checks msgs (stream order) against cps, moving each subject's
// checkpoint (a subject without one starts at zero): a message at or
// below it is a redelivery; an unknown type is counted and skipped; an
// event after a gap is preceded by the events missing before it, read
// from the stream.
func (p *Projector) sequence(ctx context.Context, cps map[string]*checkpoint, msgs []msg, sq *sequenced) error {
	if sq.unknown == nil {
		sq.unknown = map[string]*unknownCount{}
	}
	skip := func(typ string, seq uint64) {
		u := sq.unknown[typ]
		if u == nil {
			u = &unknownCount{}
			sq.unknown[typ] = u
		}
		u.count++
		u.last = max(u.last, seq)
	}
	for _, m := range msgs {
		cp := cps[m.subject]
		if cp == nil {
			cp = &checkpoint{}
			cps[m.subject] = cp
		}
		if m.seq <= cp.seq {
			sq.dups++
			continue
		}
		ev, typ := decode(m)
		// A type this binary does not know still has the envelope, and
		// with it the version it was appended at: what lies before it is
		// read as for any event, not jumped over.
		vb := ev.GetVersionBefore()
		if ev == nil {
			var known bool
			if vb, known = versionBefore(m.data); !known {
				// Not even an envelope: nothing says what lies before it,
				// and a read of the stream would not decode it either.
				skip(typ, m.seq)
				*cp = checkpoint{seq: m.seq, changed: true}
				continue
			}
		}
		// A later event of one commit carries VersionUnknown: next to the
		// event before it, nothing can lie between. (Events written before
		// 2026-12-01 carried the commit's expected version instead.)
		adjacent := cp.isEvent && m.seq == cp.seq+1 && (vb == eventstore.VersionUnknown || vb == cp.vb)
		if vb != cp.seq && !adjacent {
			missing, err := p.loadAfter(ctx, m.subject, cp.seq)
			if err != nil {
				return fmt.Errorf("project: read %s after gap at %d: %w", m.subject, cp.seq, err)
			}
			found, reached := 0, false
			for _, r := range missing {
				if r.Seq >= m.seq {
					reached = true
					break
				}
				found++
				if envelope.Payload(r.Event) == nil {
					skip(r.Event.GetEventType(), r.Seq)
					*cp = checkpoint{seq: r.Seq, changed: true}
					continue
				}
				sq.events = append(sq.events, Event{Seq: r.Seq, Subject: m.subject, Time: r.Time, Event: r.Event})
				*cp = checkpoint{seq: r.Seq, vb: r.Event.GetVersionBefore(), isEvent: true, changed: true}
			}
			if !reached {
				// The read does not show the event itself (on a cluster, a
				// stream leader behind the consumer's replica), so it may
				// miss what lies before it: fail the batch, to be retried,
				// rather than build on a gap.
				return fmt.Errorf("project: read %s after gap: %w", m.subject, eventstore.Behind(m.subject, cp.seq, m.seq))
			}
			if found > 0 || vb != eventstore.VersionUnknown {
				sq.gaps++
			}
		}
		if ev == nil {
			skip(typ, m.seq)
			*cp = checkpoint{seq: m.seq, vb: vb, isEvent: true, changed: true}
			continue
		}
		sq.events = append(sq.events, Event{Seq: m.seq, Subject: m.subject, Time: m.time, Event: ev})
		*cp = checkpoint{seq: m.seq, vb: vb, isEvent: true, changed: true}
	}
	return nil
}

func (p *Projector) at(s stage, events []Event) {
	if p.hook != nil {
		p.hook(s, events)
	}
}

type unknownCount struct{ count, last uint64 }

// decode returns the message's event, or nil and the name to count it
// under when this binary's schema does not know its type.
func decode(m msg) (*eventv1.Event, string) {
	if !eventTypes[m.typ] {
		if m.typ == "" {
			return nil, "(no type)"
		}
		return nil, m.typ
	}
	ev := &eventv1.Event{}
	if err := proto.Unmarshal(m.data, ev); err != nil || ev.GetEventType() != m.typ || envelope.Payload(ev) == nil {
		return nil, m.typ + " (undecodable)"
	}
	return ev, ""
}

// versionBefore is the version_before of an event this binary cannot
// decode as one of its types; false if even the envelope does not decode.
func versionBefore(data []byte) (uint64, bool) {
	ev := &eventv1.Event{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return 0, false
	}
	return ev.GetVersionBefore(), true
}

// lockCheckpoints returns the checkpoint of every subject in msgs, each
// row locked for the transaction. Missing rows are inserted first, so
// that a concurrent batch on the same new subject waits here instead of
// applying it twice. Rows are taken in subject order: two batches never
// wait on each other in a cycle.
func lockCheckpoints(ctx context.Context, tx pgx.Tx, msgs []msg) (map[string]*checkpoint, error) {
	subjects := make([]string, 0, len(msgs))
	for _, m := range msgs {
		subjects = append(subjects, m.subject)
	}
	slices.Sort(subjects)
	subjects = slices.Compact(subjects)
	// One round trip: the insert runs before the select that locks.
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO checkpoints (subject, seq)
		SELECT s, 0 FROM unnest($1::text[]) AS s ORDER BY s ON CONFLICT DO NOTHING`, subjects)
	b.Queue(`SELECT subject, seq, version_before FROM checkpoints
		WHERE subject = ANY($1) ORDER BY subject FOR UPDATE`, subjects)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("project: checkpoints: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("project: lock checkpoints: %w", err)
	}
	defer rows.Close()
	cps := make(map[string]*checkpoint, len(subjects))
	for rows.Next() {
		var (
			subject string
			seq     int64
			vb      *int64
		)
		if err := rows.Scan(&subject, &seq, &vb); err != nil {
			return nil, fmt.Errorf("project: lock checkpoints: %w", err)
		}
		cp := &checkpoint{seq: uint64(seq)}
		if vb != nil {
			cp.vb, cp.isEvent = uint64(*vb), true
		}
		cps[subject] = cp
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("project: lock checkpoints: %w", err)
	}
	rows.Close()
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("project: lock checkpoints: %w", err)
	}
	if len(cps) != len(subjects) {
		return nil, fmt.Errorf("project: locked %d of %d checkpoints", len(cps), len(subjects))
	}
	return cps, nil
}

// saveCheckpoints writes the moved checkpoints and the unknown counts and,
// for a rebuild, its progress: all in the batch's transaction, in one
// round trip.
func saveCheckpoints(ctx context.Context, tx pgx.Tx, name string, cps map[string]*checkpoint, unknown map[string]*unknownCount, to target) error {
	var (
		subjects []string
		seqs     []int64
		vbs      []*int64
	)
	for s, cp := range cps {
		if !cp.changed {
			continue
		}
		subjects = append(subjects, s)
		seqs = append(seqs, int64(cp.seq))
		if cp.isEvent {
			vb := int64(cp.vb)
			vbs = append(vbs, &vb)
		} else {
			vbs = append(vbs, nil)
		}
	}
	b := &pgx.Batch{}
	if len(subjects) > 0 {
		b.Queue(`UPDATE checkpoints c SET seq = u.seq, version_before = u.vb
			FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(subject, seq, vb) WHERE c.subject = u.subject`, subjects, seqs, vbs)
	}
	// In type order: batches writing one schema (replicas, a rebuild
	// catching up) never wait for each other in a cycle.
	for _, typ := range slices.Sorted(maps.Keys(unknown)) {
		u := unknown[typ]
		b.Queue(`INSERT INTO unknown_events (event_type, count, last_seq) VALUES ($1, $2, $3)
			ON CONFLICT (event_type) DO UPDATE SET count = unknown_events.count + excluded.count,
			last_seq = greatest(unknown_events.last_seq, excluded.last_seq)`, typ, int64(u.count), int64(u.last))
	}
	if to.schema != "" {
		b.Queue(`UPDATE project.build_progress SET position = greatest(position, $2), events = events + $3
			WHERE name = $1 AND schema = $4`, name, int64(to.position), int64(to.read), to.schema)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("project: save checkpoints: %w", err)
	}
	return nil
}
