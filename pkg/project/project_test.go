package project_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/project"
)

// Every event of every lead and campaign is applied exactly once, in
// order, by the live groups; two projectors (replicas) share the work, one
// committing three batches at once.
func TestLiveProjectsEveryEventOnce(t *testing.T) {
	e := newEnv(t)
	want := e.workload(t, 40, 3, 4)
	p1 := newProjector(t, e.pool, e.nats.JS, func(c *project.Config) { c.Flushers = 3 })
	p2 := newProjector(t, e.connect(t), e.nats.JS)
	groups(t, e.nats.JS, p1)
	groups(t, e.nats.JS, p2)
	waitTally(t, p1, want)
	more := e.workload(t, 10, 2, 1)
	for s, seqs := range more {
		want[s] = append(want[s], seqs...)
	}
	waitTally(t, p1, want)
	st, err := p1.Status(ctxT(t))
	must(t, err)
	if st.Active != "tally_1" || st.Subjects != uint64(len(want)) || len(st.Unknown) != 0 {
		t.Errorf("status: %+v", st)
	}
	if s1, s2 := p1.Stats(), p2.Stats(); s1.Applied+s2.Applied != uint64(countSeqs(want)) || s1.Batches+s2.Batches == 0 {
		t.Errorf("stats %+v and %+v, want %d applied in all", s1, s2, countSeqs(want))
	}
}

func countSeqs(m map[string][]uint64) int {
	n := 0
	for _, s := range m {
		n += len(s)
	}
	return n
}

// handler runs p and returns a function that hands it one stored message,
// as pkg/consume would.
func handler(t *testing.T, e *env, p *project.Projector) func(seq uint64) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return func(seq uint64) error {
		raw, err := e.store.Get(ctxT(t), seq)
		must(t, err)
		return p.Handle(ctxT(t), consume.Msg{Stream: eventstore.DefaultStream, Subject: raw.Subject, Key: eventstore.LeadID(raw.Subject),
			Seq: raw.Seq, Time: raw.Time, Header: raw.Header, Data: raw.Data, Delivered: 1})
	}
}

// A message handed over again (a crash before the ack, a hand-over) is at
// or below its subject's checkpoint and changes nothing.
func TestRedeliveryIsANoOp(t *testing.T) {
	e := newEnv(t)
	p := newProjector(t, e.pool, e.nats.JS)
	handle := handler(t, e, p)
	lead := uuid.NewString()
	s1, s2 := e.appendActivity(t, lead), e.appendActivity(t, lead)
	for _, s := range []uint64{s1, s2, s1, s2, s2} {
		must(t, handle(s))
	}
	want := map[string][]uint64{eventstore.LeadSubject(lead): {s1, s2}}
	if diff := tallyDiff(tallied(t, p), want); diff != "" {
		t.Fatal(diff)
	}
	if st := p.Stats(); st.Applied != 2 || st.Redelivered != 3 {
		t.Errorf("stats %+v, want 2 applied and 3 redelivered", st)
	}
}

// An event whose version_before is past the lead's checkpoint follows a
// gap (here: its predecessors were never handed over, as after a skipped
// dead letter). The projector reads them from the stream first instead
// of building on the gap.
func TestGapIsFilledFromTheStream(t *testing.T) {
	e := newEnv(t)
	p := newProjector(t, e.pool, e.nats.JS)
	handle := handler(t, e, p)
	lead := uuid.NewString()
	s1, s2, s3, s4 := e.appendActivity(t, lead), e.appendActivity(t, lead), e.appendActivity(t, lead), e.appendActivity(t, lead)
	must(t, handle(s1))
	must(t, handle(s4))
	must(t, handle(s2)) // late: applied already by the gap read
	want := map[string][]uint64{eventstore.LeadSubject(lead): {s1, s2, s3, s4}}
	if diff := tallyDiff(tallied(t, p), want); diff != "" {
		t.Fatal(diff)
	}
	if st := p.Stats(); st.Gaps != 1 || st.Applied != 4 || st.Redelivered != 1 {
		t.Errorf("stats %+v, want 1 gap, 4 applied, 1 redelivered", st)
	}
}

// The later events of one commit on a lead carry version_before
// eventstore.VersionUnknown (their predecessor had no sequence when it was
// sent). Each follows the lead's event before it, next to it in the stream
// or with another subject's write of the same commit between: no gap. Such
// an event (an SLA breach and its escalation) once counted as a gap, and
// then failed for ever as a read behind it.
func TestLaterEventsOfACommitFollow(t *testing.T) {
	e := newEnv(t)
	p := newProjector(t, e.pool, e.nats.JS)
	handle := handler(t, e, p)
	lead, other := uuid.NewString(), uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	s1 := e.appendActivity(t, lead)
	next, err := e.store.Commit(ctxT(t),
		eventstore.Write{Subject: subj, Expect: s1, Event: activity(t, lead)},
		eventstore.Write{Subject: subj, Unchecked: true, Event: activity(t, lead)})
	must(t, err)
	between, err := e.store.Commit(ctxT(t),
		eventstore.Write{Subject: subj, Expect: next[1], Event: activity(t, lead)},
		eventstore.Write{Subject: eventstore.LeadSubject(other), Event: activity(t, other)},
		eventstore.Write{Subject: subj, Unchecked: true, Event: activity(t, lead)})
	must(t, err)
	all := append(append([]uint64{s1}, next...), between...)
	for _, s := range all {
		must(t, handle(s))
	}
	want := map[string][]uint64{subj: {s1, next[0], next[1], between[0], between[2]}, eventstore.LeadSubject(other): {between[1]}}
	if diff := tallyDiff(tallied(t, p), want); diff != "" {
		t.Fatal(diff)
	}
	if st := p.Stats(); st.Gaps != 0 || st.Applied != 6 {
		t.Errorf("stats %+v, want no gap and 6 applied", st)
	}
}

// A gap read that stops short of the event's predecessor (on a cluster,
// the stream's leader behind the replica whose consumer delivered the
// event) fails the event with eventstore.ErrBehind, for the consumer to
// retry, and applies nothing; the retry fills the gap.
func TestGapReadBehindIsRetried(t *testing.T) {
	e := newEnv(t)
	p := newProjector(t, e.pool, e.nats.JS)
	var short atomic.Bool
	short.Store(true)
	project.SetGapReader(p, func(ctx context.Context, subject string, after uint64) ([]eventstore.Record, error) {
		recs, err := e.store.LoadAfter(ctx, subject, after)
		if err == nil && len(recs) > 1 && short.CompareAndSwap(true, false) {
			recs = recs[:1] // the last missing one not applied yet
		}
		return recs, err
	})
	handle := handler(t, e, p)
	lead := uuid.NewString()
	s1, s2, s3, s4 := e.appendActivity(t, lead), e.appendActivity(t, lead), e.appendActivity(t, lead), e.appendActivity(t, lead)
	must(t, handle(s1))
	if err := handle(s4); !errors.Is(err, eventstore.ErrBehind) {
		t.Fatalf("s4 after a short gap read: %v, want ErrBehind", err)
	}
	want := map[string][]uint64{eventstore.LeadSubject(lead): {s1}}
	if diff := tallyDiff(tallied(t, p), want); diff != "" {
		t.Fatalf("after the short read: %s", diff)
	}
	must(t, handle(s4))
	want = map[string][]uint64{eventstore.LeadSubject(lead): {s1, s2, s3, s4}}
	if diff := tallyDiff(tallied(t, p), want); diff != "" {
		t.Fatal(diff)
	}
}

// A message of a type this binary does not know (a newer writer's event)
// is counted and skipped; the lead's next event still follows it.
func TestUnknownTypesAreCountedAndSkipped(t *testing.T) {
	e := newEnv(t)
	p := newProjector(t, e.pool, e.nats.JS)
	handle := handler(t, e, p)
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	s1 := e.appendActivity(t, lead)
	ack := e.appendUnknown(t, lead, s1)
	s3 := e.appendActivity(t, lead)
	for _, s := range []uint64{s1, ack.Sequence, s3} {
		must(t, handle(s))
	}
	if diff := tallyDiff(tallied(t, p), map[string][]uint64{subj: {s1, s3}}); diff != "" {
		t.Fatal(diff)
	}
	st, err := p.Status(ctxT(t))
	must(t, err)
	if st.Unknown["LeadTeleported"] != 1 || st.Stats.Gaps != 0 || st.Stats.Unknown != 1 {
		t.Errorf("status %+v, want LeadTeleported counted once and no gap", st)
	}
	// Counted once, also when handed over again.
	must(t, handle(ack.Sequence))
	if st, _ := p.Status(ctxT(t)); st.Unknown["LeadTeleported"] != 1 {
		t.Errorf("unknown after redelivery: %v", st.Unknown)
	}
	// A rebuild that folds in memory counts and skips it the same way.
	f, err := project.New(ctxT(t), config(e.pool, e.nats.JS), foldingTally{})
	must(t, err)
	if _, err := f.Rebuild(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
	if diff := tallyDiff(tallied(t, f), map[string][]uint64{subj: {s1, s3}}); diff != "" {
		t.Fatalf("after a folded rebuild: %s", diff)
	}
	if st, _ := f.Status(ctxT(t)); st.Active != "tally_2" || st.Unknown["LeadTeleported"] != 1 {
		t.Errorf("after a folded rebuild: active %s, unknown %v", st.Active, st.Unknown)
	}
}

// appendUnknown appends to lead, after version, an event of a type this
// binary does not know (a newer writer's): its envelope, its payload in a
// field this schema has not got.
func (e *env) appendUnknown(t *testing.T, lead string, version uint64) *jetstream.PubAck {
	t.Helper()
	data, err := proto.Marshal(&eventv1.Event{EventId: uuid.NewString(), LeadId: lead, EventType: "LeadTeleported", VersionBefore: version})
	must(t, err)
	data = protowire.AppendTag(data, 999, protowire.BytesType)
	data = protowire.AppendBytes(data, []byte("to the moon"))
	return e.appendRaw(t, lead, version, data)
}

// appendRaw appends data to lead, after version, as a LeadTeleported.
func (e *env) appendRaw(t *testing.T, lead string, version uint64, data []byte) *jetstream.PubAck {
	t.Helper()
	m := nats.NewMsg(eventstore.LeadSubject(lead))
	m.Header.Set(eventstore.HeaderType, "LeadTeleported")
	m.Header.Set(eventstore.HeaderEventID, uuid.NewString())
	m.Data = data
	ack, err := e.nats.JS.PublishMsg(ctxT(t), m, jetstream.WithExpectLastSequencePerSubject(version))
	must(t, err)
	return ack
}

// A message that is no event at all (not even its envelope decodes) is
// counted and skipped as it comes, live and in a rebuild, and the lead's
// next event follows it.
func TestAMessageThatIsNoEventIsSkipped(t *testing.T) {
	e := newEnv(t)
	p := newProjector(t, e.pool, e.nats.JS)
	handle := handler(t, e, p)
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	s1 := e.appendActivity(t, lead)
	bad := e.appendRaw(t, lead, s1, []byte{0x80})
	s3 := e.appendActivity(t, lead)
	for _, s := range []uint64{s1, bad.Sequence, s3} {
		must(t, handle(s))
	}
	if diff := tallyDiff(tallied(t, p), map[string][]uint64{subj: {s1, s3}}); diff != "" {
		t.Fatal(diff)
	}
	if st, _ := p.Status(ctxT(t)); st.Unknown["LeadTeleported"] != 1 {
		t.Errorf("unknown %v, want LeadTeleported once", st.Unknown)
	}
	f, err := project.New(ctxT(t), config(e.pool, e.nats.JS), foldingTally{})
	must(t, err)
	if _, err := f.Rebuild(ctxT(t), nil); err != nil {
		t.Fatalf("a rebuild over it: %v", err)
	}
}

// An event of an unknown type is no excuse to jump a gap: one delivered
// before the lead's events it follows (a skipped dead letter, a durable
// started late) has them read first, as a known one would.
func TestAnUnknownTypeAfterAGapHasItRead(t *testing.T) {
	e := newEnv(t)
	p := newProjector(t, e.pool, e.nats.JS)
	handle := handler(t, e, p)
	lead := uuid.NewString()
	subj := eventstore.LeadSubject(lead)
	s1, s2 := e.appendActivity(t, lead), e.appendActivity(t, lead)
	u := e.appendUnknown(t, lead, s2)
	s4 := e.appendActivity(t, lead)
	for _, s := range []uint64{s1, u.Sequence, s4} {
		must(t, handle(s))
	}
	if diff := tallyDiff(tallied(t, p), map[string][]uint64{subj: {s1, s2, s4}}); diff != "" {
		t.Fatal(diff)
	}
	if st := p.Stats(); st.Gaps != 1 || st.Unknown != 1 {
		t.Errorf("stats %+v, want one gap read and the unknown counted", st)
	}
}

// Migrations run on start; a second projector on the same database (a
// replica, a restart) finds them applied and the same active schema.
func TestMigrationsAppliedOnStart(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	ps := make([]*project.Projector, 3)
	errs := make([]error, 3)
	for i := range ps {
		wg.Go(func() { ps[i], errs[i] = project.New(ctxT(t), config(e.pool, e.nats.JS), tally{}) })
	}
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
	var version int64
	must(t, e.pool.QueryRow(ctxT(t), `SELECT max(version_id) FROM tally_1.goose_db_version`).Scan(&version))
	if version != 2 {
		t.Errorf("goose version %d, want 2 (testdata/migrations)", version)
	}
	st, err := ps[2].Status(ctxT(t))
	must(t, err)
	if st.Active != "tally_1" {
		t.Errorf("active %q", st.Active)
	}
}

// A rebuild replays the stream into a fresh schema while the live
// projection keeps serving and keeps being written; it then swaps, and
// catches up on what the live side wrote to the old schema meanwhile.
// Reads see the old schema, whole, until the swap, and the new one after.
//
// It runs batch by batch, with the whole replay folded in memory and
// copied in (indexes built after), and with a fold of 10 subjects written
// before the rest goes batch by batch.
func TestRebuildSwapsWhileServing(t *testing.T) {
	for _, c := range []struct {
		name  string
		proj  project.Projection
		fold  int           // Config.RebuildFold
		batch int           // Config.RebuildBatch
		wait  time.Duration // how long a read waits before asking the server
	}{
		{"batches", tally{}, 0, 0, 0},
		{"fold", foldingTally{}, 0, 0, 0},
		{"fold then batches", foldingTally{}, 10, 50, 0},
		// A read that gives up at once asks the server while messages it
		// delivered are still on their way: they are not caught up.
		{"impatient reads", tally{}, 0, 20, time.Microsecond},
	} {
		t.Run(c.name, func(t *testing.T) { rebuildSwapsWhileServing(t, c.proj, c.fold, c.batch, c.wait) })
	}
}

func rebuildSwapsWhileServing(t *testing.T, proj project.Projection, fold, batch int, wait time.Duration) {
	e := newEnv(t)
	want := e.workload(t, 60, 4, 3)
	cfg := config(e.pool, e.nats.JS)
	cfg.RebuildFold, cfg.RebuildBatch = fold, batch
	p, err := project.New(ctxT(t), cfg, proj)
	must(t, err)
	if wait > 0 {
		project.SetReplayWait(p, wait)
	}
	groups(t, e.nats.JS, p)
	waitTally(t, p, want)

	// Writers go on during the rebuild, for a bounded while: on a loaded
	// machine an impatient replay of small batches can be slower than
	// writers that never stop, and then never catches up (CI saw it).
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		done = make(chan struct{})
	)
	wg.Go(func() {
		for range 400 {
			select {
			case <-done:
				return
			default:
			}
			more := e.workload(t, 2, 1, 0)
			mu.Lock()
			for s, seqs := range more {
				want[s] = append(want[s], seqs...)
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	var reports []project.Progress
	pr, err := p.Rebuild(ctxT(t), func(pr project.Progress) {
		reports = append(reports, pr)
		st, err := p.Status(context.Background())
		// Until the swap, readers are served by the old schema.
		if !pr.Swapped && (err != nil || st.Active != "tally_1") {
			t.Errorf("while building: active %q, %v", st.Active, err)
		}
		// The writers go on: the status's end moves with the position
		// (it stayed the stream's end at the start, behind it).
		if b := st.Rebuild; b != nil && b.Position > b.End {
			t.Errorf("status while building: position %d past its end %d", b.Position, b.End)
		}
	})
	close(done)
	wg.Wait()
	must(t, err)
	if pr.Schema != "tally_2" || pr.Replaces != "tally_1" || !pr.Swapped || !pr.Done || pr.Events == 0 || len(reports) < 2 {
		t.Fatalf("rebuild %+v after %d reports", pr, len(reports))
	}
	// A fold reports messages read before anything is applied.
	_, folding := proj.(project.FoldingProjection)
	if folded := slices.ContainsFunc(reports, func(r project.Progress) bool { return r.Position == 0 && r.Events > 0 }); folded != folding {
		t.Errorf("progress while folding: %v, want %v", folded, folding)
	}
	mu.Lock()
	defer mu.Unlock()
	waitTally(t, p, want)
	st, err := p.Status(ctxT(t))
	must(t, err)
	if st.Active != "tally_2" || st.Rebuild == nil || !st.Rebuild.Done {
		t.Errorf("status after rebuild: %+v", st)
	}
	// A second rebuild drops the schema the first replaced.
	if _, err := p.Rebuild(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
	var schemas []string
	rows, err := e.pool.Query(ctxT(t), `SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tally_%' ORDER BY 1`)
	must(t, err)
	schemas, err = pgx.CollectRows(rows, pgx.RowTo[string])
	must(t, err)
	if len(schemas) != 2 || schemas[0] != "tally_2" || schemas[1] != "tally_3" {
		t.Errorf("schemas after two rebuilds: %v", schemas)
	}
	waitTally(t, p, want)
}

// A folded rebuild drops a fresh schema's indexes to load it, so it must
// build every one again, primary keys and unique constraints as such,
// and leave statistics behind.
func TestFoldedRebuildBuildsEveryIndexAgain(t *testing.T) {
	e := newEnv(t)
	e.workload(t, 20, 3, 2)
	p, err := project.New(ctxT(t), config(e.pool, e.nats.JS), foldingTally{})
	must(t, err)
	if _, err := p.Rebuild(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
	indexes := func(schema string) []string {
		rows, err := e.pool.Query(ctxT(t), `SELECT ic.relname || ' ' || replace(pg_get_indexdef(i.indexrelid), $1 || '.', '') ||
				' primary=' || i.indisprimary || ' valid=' || i.indisvalid || ' constraint=' || coalesce(c.conname || '/' || c.contype::text, '-')
			FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
			LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid
			WHERE n.nspname = $1 AND ic.relname NOT LIKE 'goose%' ORDER BY 1`, schema)
		must(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		must(t, err)
		return out
	}
	migrated, rebuilt := indexes("tally_1"), indexes("tally_2")
	if len(migrated) < 5 || !slices.Equal(rebuilt, migrated) {
		t.Errorf("indexes after the rebuild:\n%s\nmigrated:\n%s", strings.Join(rebuilt, "\n"), strings.Join(migrated, "\n"))
	}
	var stats int
	must(t, e.pool.QueryRow(ctxT(t), `SELECT count(*) FROM pg_stats WHERE schemaname = 'tally_2' AND tablename = 'tally'`).Scan(&stats))
	if stats == 0 {
		t.Error("no statistics on the loaded table after the rebuild")
	}
}

// Only one rebuild of a projection runs at a time.
func TestOneRebuildAtATime(t *testing.T) {
	e := newEnv(t)
	e.workload(t, 200, 5, 0)
	p := newProjector(t, e.pool, e.nats.JS)
	other := newProjector(t, e.connect(t), e.nats.JS)
	started := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	var err1 error
	wg.Go(func() {
		_, err1 = p.Rebuild(ctxT(t), func(project.Progress) { once.Do(func() { close(started) }); time.Sleep(20 * time.Millisecond) })
	})
	<-started
	if _, err := other.Rebuild(ctxT(t), nil); !errors.Is(err, project.ErrRebuildRunning) {
		t.Errorf("second rebuild: %v, want ErrRebuildRunning", err)
	}
	wg.Wait()
	must(t, err1)
}

func TestConfigIsChecked(t *testing.T) {
	e := newEnv(t)
	for i, c := range []project.Config{
		{Name: "Bad-Name", Pool: e.pool, JS: e.nats.JS, Subjects: []string{"lead.>"}},
		{Name: "ok", JS: e.nats.JS, Subjects: []string{"lead.>"}},
		{Name: "ok", Pool: e.pool, JS: e.nats.JS},
	} {
		if _, err := project.New(ctxT(t), c, tally{}); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}

}

// The status says whether a rebuild runs: a rebuild cut off is neither
// done nor running, and has no error (a shutdown is no failure: a
// projector resumes it by itself when its rules are newer).
func TestRebuildStatusSaysWhetherItRuns(t *testing.T) {
	e := newEnv(t)
	e.workload(t, 200, 5, 0)
	p := newProjector(t, e.pool, e.nats.JS)
	other := newProjector(t, e.connect(t), e.nats.JS)
	status := func() project.Progress {
		t.Helper()
		st, err := other.Status(ctxT(t))
		must(t, err)
		if st.Rebuild == nil {
			t.Fatal("no rebuild in the status")
		}
		return *st.Rebuild
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	var during project.Progress
	_, err := p.Rebuild(ctx, func(project.Progress) {
		if during.Schema == "" {
			during = status()
		}
		cancel()
	})
	if err == nil {
		t.Fatal("a rebuild cut off reported success")
	}
	if !during.Running || during.Done || during.Err != "" {
		t.Errorf("while it ran: %+v", during)
	}
	if cut := status(); cut.Running || cut.Done || cut.Err != "" {
		t.Errorf("cut off: %+v", cut)
	}

	var resumed project.Progress
	_, err = p.Rebuild(ctxT(t), func(project.Progress) {
		if resumed.Schema == "" {
			resumed = status()
		}
	})
	must(t, err)
	if !resumed.Running || resumed.Err != "" || resumed.Schema != during.Schema {
		t.Errorf("resumed: %+v, cut off in %s", resumed, during.Schema)
	}
	if done := status(); !done.Done || done.Running || done.Err != "" {
		t.Errorf("done: %+v", done)
	}
}

// PostgreSQL out of reach for a few seconds (a restart, a failover:
// connections cut, then refused) is no message's fault: the live groups
// wait for it and dead-letter nothing, and every event is applied once it
// is back. Each message in flight was once dead-lettered within a second,
// its lead parked until an operator re-drove it.
func TestDatabaseOutageDeadLettersNothing(t *testing.T) {
	e := newEnv(t)
	p := newProjector(t, e.pool, e.nats.JS)
	groups(t, e.nats.JS, p)
	want := e.workload(t, 10, 2, 1)
	waitTally(t, p, want)

	cfg, err := pgx.ParseConfig(e.dsn)
	must(t, err)
	db := cfg.Database
	cfg.Database = "postgres"
	admin, err := pgx.ConnectConfig(ctxT(t), cfg)
	must(t, err)
	t.Cleanup(func() { admin.Close(context.Background()) })
	allow := func(on bool) {
		t.Helper()
		_, err := admin.Exec(ctxT(t), "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" WITH ALLOW_CONNECTIONS "+map[bool]string{true: "true", false: "false"}[on])
		must(t, err)
	}
	allow(false)
	t.Cleanup(func() { allow(true) })
	_, err = admin.Exec(ctxT(t), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db)
	must(t, err)
	more := e.workload(t, 10, 2, 1)
	time.Sleep(3 * time.Second) // a message's attempts are spent in under one
	allow(true)
	for s, seqs := range more {
		want[s] = append(want[s], seqs...)
	}
	back := time.Now()
	waitTally(t, p, want)
	t.Logf("caught up %v after the database was back", time.Since(back).Round(time.Millisecond))
	dls, err := consume.DeadLetters(ctxT(t), e.nats.JS, consume.DefaultDeadLetterStream)
	must(t, err)
	if len(dls) != 0 {
		t.Fatalf("dead letters after the outage: %+v", dls)
	}
}

// ResumeSwapped finishes only a rebuild cut off after its swap: with none
// (never started, finished meanwhile by another process) it starts
// nothing, where Rebuild would start a whole new one.
func TestResumeSwappedStartsNothingNew(t *testing.T) {
	e := newEnv(t)
	p := newProjector(t, e.pool, e.nats.JS)
	groups(t, e.nats.JS, p)
	want := e.workload(t, 5, 2, 1)
	waitTally(t, p, want)
	pr, err := p.ResumeSwapped(ctxT(t), nil)
	if err != nil || pr.Schema != "" {
		t.Fatalf("resume with no rebuild: %+v, %v; want nothing", pr, err)
	}
	if _, err := p.Rebuild(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
	pr, err = p.ResumeSwapped(ctxT(t), nil)
	if err != nil || pr.Schema != "" {
		t.Fatalf("resume after a finished rebuild: %+v, %v; want nothing", pr, err)
	}
	st, err := p.Status(ctxT(t))
	must(t, err)
	if st.Active != "tally_2" || st.Rebuild == nil || !st.Rebuild.Done {
		t.Fatalf("status %+v, want tally_2 active and its rebuild done", st)
	}
}

// A folding rebuild cut off while folding starts over when asked again,
// and so do its counts: the events it reports are the stream's, once.
func TestAFoldCutOffCountsItsEventsOnce(t *testing.T) {
	e := newEnv(t)
	lead := uuid.NewString()
	for range 6 {
		e.appendActivity(t, lead)
	}
	cfg := config(e.pool, e.nats.JS)
	cfg.RebuildBatch = 2
	f, err := project.New(ctxT(t), cfg, foldingTally{})
	must(t, err)
	ctx, cancel := context.WithCancel(ctxT(t))
	if _, err := f.Rebuild(ctx, func(pr project.Progress) {
		if pr.Events >= 2 {
			cancel()
		}
	}); err == nil {
		t.Fatal("the rebuild cut off while folding ended well")
	}
	pr, err := f.Rebuild(ctxT(t), nil)
	must(t, err)
	if pr.Events != 6 {
		t.Fatalf("the rebuild asked again reports %d events, want the stream's 6", pr.Events)
	}
}

// A folding rebuild's count is of the messages it read, projected or
// not, as its bar measures them against the stream's end: on a stream
// half of claims its last report while folding is the whole stream, not
// half of it.
func TestAFoldCountsEveryMessageItReads(t *testing.T) {
	e := newEnv(t)
	f := foldingHalfClaims(t, e)(6)
	var lastFold project.Progress
	pr, err := f.Rebuild(ctxT(t), func(pr project.Progress) {
		if pr.Position == 0 {
			lastFold = pr
		}
	})
	must(t, err)
	if lastFold.Events != 12 || lastFold.End != 12 || pr.Events != 12 {
		t.Fatalf("folding reported %d of %d messages, and %d at the end; want 12 of 12, and 12", lastFold.Events, lastFold.End, pr.Events)
	}
}

// A rebuild cut off after its fold is written goes on batch by batch,
// and counts every message it reads there too: the count it returns is
// the one its status shows, the stream's.
func TestAResumedRebuildCountsEveryMessageAsItsStatusDoes(t *testing.T) {
	e := newEnv(t)
	both := foldingHalfClaims(t, e)
	f := both(6)
	ctx, cancel := context.WithCancel(ctxT(t))
	if _, err := f.Rebuild(ctx, func(pr project.Progress) {
		if pr.Position > 0 {
			cancel() // the fold is written
		}
	}); err == nil {
		t.Fatal("the rebuild cut off after its fold ended well")
	}
	both(2)
	pr, err := f.Rebuild(ctxT(t), nil)
	must(t, err)
	st, err := f.Status(ctxT(t))
	must(t, err)
	if pr.Events != 16 || st.Rebuild == nil || st.Rebuild.Events != pr.Events {
		t.Fatalf("the resumed rebuild returned %d messages, its status says %v; want the stream's 16 in both", pr.Events, st.Rebuild)
	}
}

// foldingHalfClaims returns a folding projector, rebuilding 2 messages a
// batch, of a stream that add fills: each call stores n activities of one
// lead, each followed by a claim the projector does not want.
func foldingHalfClaims(t *testing.T, e *env) (add func(n int) *project.Projector) {
	t.Helper()
	lead := uuid.NewString()
	cfg := config(e.pool, e.nats.JS)
	cfg.RebuildBatch = 2
	f, err := project.New(ctxT(t), cfg, foldingTally{})
	must(t, err)
	claims := 0
	return func(n int) *project.Projector {
		for range n {
			e.appendActivity(t, lead)
			if _, err := e.nats.JS.Publish(ctxT(t), fmt.Sprintf("claim.test.%d", claims), []byte("{}")); err != nil {
				t.Fatal(err)
			}
			claims++
		}
		return f
	}
}
