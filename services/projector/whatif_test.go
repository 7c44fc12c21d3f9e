package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/projector/adapters"
	"github.com/leadflow/leadflow/services/projector/app"
)

// The models of the what-if fixture. Active (v1): a VP is worth 40, a
// webinar 20 (at most 40); 50 qualifies. Proposed (v2): a VP only 20, a
// company of 100 to 1,000 people 30, webinars as before, and students are
// out for good.
func whatIfModels() (active, proposed scoring.Model) {
	webinar := scoring.EngagementRule{ID: "webinar", Activity: eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED, Points: 20, Cap: 40, HalfLife: 1000 * time.Hour}
	vp := func(p int) scoring.FitRule {
		return scoring.FitRule{ID: "vp", Points: p, When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_VP}}}
	}
	active = scoring.Model{ID: scoring.ID, Version: 1, Threshold: 50, Fit: []scoring.FitRule{vp(40)}, Engagement: []scoring.EngagementRule{webinar}}
	proposed = scoring.Model{ID: scoring.ID, Version: 2, Threshold: 50,
		Fit:        []scoring.FitRule{vp(20), {ID: "mid-market", Points: 30, When: scoring.Criteria{MinEmployees: 100, MaxEmployees: 1000}}},
		Engagement: []scoring.EngagementRule{webinar},
		Disqualify: []scoring.DisqualifyRule{{ID: "student", Reason: "student", When: scoring.Criteria{SeniorityIn: []eventv1.Seniority{eventv1.Seniority_SENIORITY_STUDENT}}}}}
	return active, proposed
}

// whatIfModels writes the fixture's models: active v1, proposed v2.
func (w *world) whatIfModels(t *testing.T) {
	t.Helper()
	active, proposed := whatIfModels()
	subject := eventstore.ModelSubject("scoring")
	w.other(t, subject, -100, &eventv1.ScoringModelProposed{Model: scoring.ToProto(active)})
	w.other(t, subject, -99, &eventv1.ScoringModelActivated{Version: 1})
	w.other(t, subject, -98, &eventv1.ScoringModelProposed{Model: scoring.ToProto(proposed)})
}

// A proposed model replayed over March's leads, by campaign, with a known
// answer:
//
//	lead  campaign  profile            activity (before sales acted)  active (v1)    proposed (v2)   outcome
//	a     webinar   VP, 50 people      webinar                        40, 60: MQL    20, 40          won
//	b     webinar   manager, 300       webinar                        0, 20          30, 50: MQL     won
//	c     search    VP, 300            -                              40             50: MQL         rejected
//	d     search    VP, 50             webinar, webinar               40, 60: MQL    20, 40, 60: MQL rejected
//	e     -         student, 300       webinar ×3                     0..40          out (student)   rejected
//	f     webinar   VP, 50             webinar (after acceptance)     40             20              (captured in February)
//	g     webinar   VP, 50             webinar                        40, 60: MQL    20, 40          merged into a: not counted
//	h     search    VP, 300            -                              40             50: MQL         merged into c, unmerged
func TestWhatIfOfAProposedModel(t *testing.T) { testWhatIfOfAProposedModel(t, newWorld) }

func testWhatIfOfAProposedModel(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	s := w.start(t)
	w.whatIfModels(t)

	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	rep := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}
	capture := func(id string, h float64, campaign string, sen eventv1.Seniority, employees int32) *eventv1.Event {
		return w.lead(t, id, h, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"),
			Profile:     &eventv1.Profile{Seniority: sen, Employees: employees, EmailDomain: id + ".example"},
			Attribution: &eventv1.Attribution{Source: "web-form", CampaignId: campaign}})
	}
	webinar := func(id string, h float64) {
		w.lead(t, id, h, cmd(lifecycle.RecordActivity), &eventv1.ActivityRecorded{ActivityId: id + time.Duration(h*float64(time.Hour)).String(),
			Type: eventv1.ActivityType_ACTIVITY_TYPE_WEBINAR_ATTENDED})
	}
	toSales := func(id string, h float64) {
		w.lead(t, id, h, cmd(lifecycle.Qualify), &eventv1.LeadQualified{})
		w.lead(t, id, h+1, lifecycle.Command{Name: lifecycle.Assign, Owner: rep}, &eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}})
	}
	won := func(id string, h float64) {
		toSales(id, h)
		w.lead(t, id, h+2, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann"})
		w.lead(t, id, h+3, cmd(lifecycle.Convert), &eventv1.OpportunityCreated{OpportunityId: "o-" + id, Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 100}})
		w.lead(t, id, h+4, cmd(lifecycle.Win), &eventv1.DealWon{OpportunityId: "o-" + id})
	}
	rejected := func(id string, h float64) {
		toSales(id, h)
		w.lead(t, id, h+2, lifecycle.Command{Name: lifecycle.Reject, Reason: "no"}, &eventv1.LeadRejected{RepId: "ann", Reason: eventv1.RejectReason_REJECT_REASON_NOT_A_FIT})
	}
	vp, mgr, student := eventv1.Seniority_SENIORITY_VP, eventv1.Seniority_SENIORITY_MANAGER, eventv1.Seniority_SENIORITY_STUDENT

	capture("a", 0, "webinar", vp, 50)
	webinar("a", 1)
	won("a", 2)

	capture("b", 0, "webinar", mgr, 300)
	webinar("b", 1)
	won("b", 2)

	capture("c", 0, "search", vp, 300)
	rejected("c", 2)

	capture("d", 0, "search", vp, 50)
	webinar("d", 1)
	webinar("d", 2)
	rejected("d", 3)

	capture("e", 0, "", student, 300)
	webinar("e", 1)
	webinar("e", 2)
	webinar("e", 3)
	rejected("e", 4)

	capture("f", -20*24, "webinar", vp, 50)
	toSales("f", -20*24+1)
	w.lead(t, "f", -20*24+3, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "ann"})
	webinar("f", -20*24+4)

	capture("g", 0, "webinar", vp, 50)
	webinar("g", 1)
	w.lead(t, "g", 5, lifecycle.Command{Name: lifecycle.Merge, Reason: "a"}, &eventv1.LeadMerged{SurvivorLeadId: "a", AbsorbedLeadId: "g"})
	h := lifecycle.FromProto(capture("h", 0, "search", vp, 300).GetLifecycle())
	w.lead(t, "h", 5, lifecycle.Command{Name: lifecycle.Merge, Reason: "c"}, &eventv1.LeadMerged{SurvivorLeadId: "c", AbsorbedLeadId: "h"})
	w.lead(t, "h", 6, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: h.Status, Owner: h.Owner, Due: h.Deadline},
		&eventv1.LeadUnmerged{SurvivorLeadId: "c", AbsorbedLeadId: "h"})

	ctx := ctxT(t)
	for _, bad := range []struct {
		version uint32
		code    codes.Code
	}{{0, codes.InvalidArgument}, {1, codes.FailedPrecondition}, {9, codes.NotFound}} {
		if _, err := s.client.StartWhatIf(ctx, &projectorv1.StartWhatIfRequest{ProposedVersion: bad.version}); status.Code(err) != bad.code {
			t.Errorf("what-if of version %d: %v, want %v", bad.version, err, bad.code)
		}
	}
	started, err := s.client.StartWhatIf(ctx, &projectorv1.StartWhatIfRequest{ProposedVersion: 2, Period: marchPeriod()})
	if err != nil {
		t.Fatal(err)
	}
	var res *projectorv1.GetWhatIfResponse
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err = s.client.GetWhatIf(ctx, &projectorv1.GetWhatIfRequest{WhatIfId: started.GetWhatIfId()})
		if err != nil {
			t.Fatal(err)
		}
		if res.GetState() != projectorv1.WhatIfState_WHAT_IF_STATE_RUNNING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("what-if still running: %v", res)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res.GetState() != projectorv1.WhatIfState_WHAT_IF_STATE_DONE || res.GetProposedVersion() != 2 || res.GetActiveVersion() != 1 ||
		res.GetRead() == 0 || res.GetRead() != res.GetTotal() || !res.GetPeriod().GetFrom().AsTime().Equal(march.from) {
		t.Fatalf("what-if: %v", res)
	}
	rows := res.GetCampaigns()
	if len(rows) != 3 {
		t.Fatalf("rows: %v", rows)
	}
	//                 campaign  leads act prop gained lost won wonQ wonMiss rej rejOut
	checkWhatIf(t, rows[0], "", 1, 0, 0, 0, 0, 0, 0, 0, 1, 1)
	checkWhatIf(t, rows[1], "search", 3, 1, 3, 2, 0, 0, 0, 0, 2, 0)
	checkWhatIf(t, rows[2], "webinar", 2, 1, 1, 1, 1, 2, 1, 1, 0, 0)
	checkWhatIf(t, res.GetTotalRow(), "", 6, 2, 4, 3, 1, 2, 1, 1, 3, 1)
	for _, r := range append(rows, res.GetTotalRow()) {
		if r.GetAttribution() != projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH {
			t.Errorf("row %q stamped %v", r.GetCampaignId(), r.GetAttribution())
		}
	}

	// Every replica answers for it, after the one that ran it stopped too:
	// what-ifs are kept in PostgreSQL.
	other := w.start(t)
	s.stop()
	again, err := other.client.GetWhatIf(ctx, &projectorv1.GetWhatIfRequest{WhatIfId: started.GetWhatIfId()})
	if err != nil || !proto.Equal(again, res) {
		t.Fatalf("the what-if from another replica, after the first stopped: %v (%v), want %v", again, err, res)
	}
	// Any form of its UUID finds it (PostgreSQL takes only the plain
	// one: the others answered INTERNAL).
	if urn, err := other.client.GetWhatIf(ctx, &projectorv1.GetWhatIfRequest{WhatIfId: "urn:uuid:" + started.GetWhatIfId()}); err != nil || !proto.Equal(urn, res) {
		t.Fatalf("the what-if by its URN: %v (%v)", urn, err)
	}
	s = other

	// One whose replica stopped writing it while it ran is failed, not
	// left running forever.
	db, err := pgx.Connect(ctx, w.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	stale := uuid.NewString()
	if _, err := db.Exec(ctx, `INSERT INTO projector.what_ifs (id, proposed, active, read, total, started_at, updated_at)
		VALUES ($1, 2, 1, 10, 100, now() - interval '2 minutes', now() - interval '1 minute')`, stale); err != nil {
		t.Fatal(err)
	}
	res, err = s.client.GetWhatIf(ctx, &projectorv1.GetWhatIfRequest{WhatIfId: stale})
	if err != nil || res.GetState() != projectorv1.WhatIfState_WHAT_IF_STATE_FAILED || !strings.Contains(res.GetError(), "abandoned") || res.GetRead() != 10 {
		t.Fatalf("a what-if whose replica stopped: %v (%v)", res, err)
	}

	// The whole stream, February included: f counts, and the active model
	// never saw its webinar (sales had taken it on).
	started, err = s.client.StartWhatIf(ctx, &projectorv1.StartWhatIfRequest{ProposedVersion: 2,
		Period: &projectorv1.Period{To: timestamppb.New(march.to)}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		res, err = s.client.GetWhatIf(ctx, &projectorv1.GetWhatIfRequest{WhatIfId: started.GetWhatIfId()})
		if err != nil || res.GetState() != projectorv1.WhatIfState_WHAT_IF_STATE_RUNNING {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkWhatIf(t, res.GetTotalRow(), "", 7, 2, 4, 3, 1, 2, 1, 1, 3, 1)
	if _, err := s.client.GetWhatIf(ctx, &projectorv1.GetWhatIfRequest{WhatIfId: uuid.NewString()}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown what-if: %v", err)
	}
	if _, err := s.client.GetWhatIf(ctx, &projectorv1.GetWhatIfRequest{WhatIfId: "nope"}); status.Code(err) != codes.InvalidArgument || !violates(err, "what_if_id") {
		t.Errorf("a what-if id that is no id: %v, want INVALID_ARGUMENT naming what_if_id", err)
	}
}

func checkWhatIf(t *testing.T, r *projectorv1.WhatIfRow, campaign string, leads, act, prop, gained, lost, won, wonQ, wonMiss, rej, rejOut int64) {
	t.Helper()
	got := []int64{r.GetLeads(), r.GetMqlsActive(), r.GetMqlsProposed(), r.GetMqlsGained(), r.GetMqlsLost(), r.GetWon(),
		r.GetWonQualified(), r.GetWonMissed(), r.GetRejected(), r.GetRejectedKeptOut()}
	want := []int64{leads, act, prop, gained, lost, won, wonQ, wonMiss, rej, rejOut}
	if r.GetCampaignId() != campaign {
		t.Errorf("row %q, want %q", r.GetCampaignId(), campaign)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("row %q: %v, want %v", campaign, got, want)
			return
		}
	}
}

// A lead stored a little before the period begins but captured in it (a
// client clock ahead, which intake allows up to envelope.MaxClockAhead)
// is one of the period's leads.
func TestWhatIfCountsALeadStoredJustBeforeItsPeriod(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	w.whatIfModels(t)
	from := time.Now().Add(2 * time.Minute)
	w.leadAt(t, "ahead", from.Add(time.Minute), lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{SealedContact: []byte("s"),
		Attribution: &eventv1.Attribution{Source: "web-form", CampaignId: "clock"}})

	ctx := ctxT(t)
	started, err := s.client.StartWhatIf(ctx, &projectorv1.StartWhatIfRequest{ProposedVersion: 2, Period: &projectorv1.Period{From: timestamppb.New(from)}})
	if err != nil {
		t.Fatal(err)
	}
	var res *projectorv1.GetWhatIfResponse
	testenv.Eventually(t, 30*time.Second, func() bool {
		res, err = s.client.GetWhatIf(ctx, &projectorv1.GetWhatIfRequest{WhatIfId: started.GetWhatIfId()})
		return err != nil || res.GetState() != projectorv1.WhatIfState_WHAT_IF_STATE_RUNNING
	}, "the what-if did not finish")
	if err != nil || res.GetState() != projectorv1.WhatIfState_WHAT_IF_STATE_DONE {
		t.Fatalf("what-if: %v %v", res, err)
	}
	checkWhatIf(t, res.GetTotalRow(), "", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
}

// gatedReplayer holds every replay until open is closed: what-ifs that
// stay running.
type gatedReplayer struct {
	app.Replayer
	open chan struct{}
}

func (g gatedReplayer) Replay(ctx context.Context, from time.Time, fn func(uint64, string, *eventv1.Event), progress func(uint64, uint64)) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Replayer.Replay(ctx, from, fn, progress)
}

// Each what-if reads the whole stream and holds its period's leads in
// memory, so a replica runs two at a time: a request for one already
// running answers its id, and one more is refused until one finishes.
func TestWhatIfsRunTwoAtATimeOnAReplica(t *testing.T) {
	w := newWorld(t)
	w.whatIfModels(t)
	ctx := ctxT(t)
	jobs, st := w.whatIfPorts(t)
	gate := gatedReplayer{Replayer: st, open: make(chan struct{})}
	a := app.New(nil, nil, st, gate, jobs)
	t.Cleanup(a.Close)
	march := app.Period{From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}
	first, err := a.StartWhatIf(ctx, 2, march)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := a.StartWhatIf(ctx, 2, march); err != nil || again != first {
		t.Fatalf("the same what-if again: %q %v, want the running %q", again, err, first)
	}
	april := app.Period{From: march.To, To: march.To.AddDate(0, 1, 0)}
	if _, err := a.StartWhatIf(ctx, 2, april); err != nil {
		t.Fatal(err)
	}
	may := app.Period{From: april.To, To: april.To.AddDate(0, 1, 0)}
	if _, err := a.StartWhatIf(ctx, 2, may); !errors.Is(err, app.ErrTooManyWhatIfs) {
		t.Fatalf("a third what-if: %v, want %v", err, app.ErrTooManyWhatIfs)
	}
	close(gate.open)
	testenv.Eventually(t, 30*time.Second, func() bool {
		_, err := a.StartWhatIf(ctx, 2, may)
		return err == nil
	}, "no what-if started once the others were done")
	testenv.Eventually(t, 30*time.Second, func() bool {
		j, err := a.GetWhatIf(ctx, first)
		return err == nil && j.Done && j.Err == nil
	}, "the first what-if did not finish")
}

// slowFirstPut holds the first what-if's first write until open is
// closed, telling entered when it is there.
type slowFirstPut struct {
	app.WhatIfs
	once          sync.Once
	entered, open chan struct{}
}

func (s *slowFirstPut) Put(ctx context.Context, w app.WhatIf) error {
	s.once.Do(func() {
		close(s.entered)
		<-s.open
	})
	return s.WhatIfs.Put(ctx, w)
}

// A twin asked for while the first is still being stored waits for it
// and answers its id: it does not start a second replay.
func TestATwinWhatIfWaitsForTheFirstsStore(t *testing.T) {
	w := newWorld(t)
	w.whatIfModels(t)
	ctx := ctxT(t)
	jobs, st := w.whatIfPorts(t)
	slow := &slowFirstPut{WhatIfs: jobs, entered: make(chan struct{}), open: make(chan struct{})}
	a := app.New(nil, nil, st, st, slow)
	t.Cleanup(a.Close)
	march := app.Period{From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}
	type answer struct {
		id  string
		err error
	}
	first, twin := make(chan answer, 1), make(chan answer, 1)
	go func() {
		id, err := a.StartWhatIf(ctx, 2, march)
		first <- answer{id, err}
	}()
	<-slow.entered
	go func() {
		id, err := a.StartWhatIf(ctx, 2, march)
		twin <- answer{id, err}
	}()
	select {
	case got := <-twin:
		t.Fatalf("the twin answered %q %v before the first was stored", got.id, got.err)
	case <-time.After(200 * time.Millisecond):
	}
	close(slow.open)
	f, tw := <-first, <-twin
	if f.err != nil || tw.err != nil || f.id != tw.id {
		t.Fatalf("first %q %v, twin %q %v: want one what-if", f.id, f.err, tw.id, tw.err)
	}
}

// whatIfPorts are the what-if job store on w's database and the stream
// the app replays.
func (w *world) whatIfPorts(t *testing.T) (app.WhatIfs, *adapters.Stream) {
	t.Helper()
	pool, err := pgxpool.New(ctxT(t), w.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	jobs, err := adapters.NewWhatIfs(ctxT(t), pool)
	if err != nil {
		t.Fatal(err)
	}
	return jobs, adapters.NewStream(w.nats.JS, stream)
}

// A progress write that lands after the result (a heartbeat cut off by a
// shutdown, run by PostgreSQL after the final write) does not undo it.
func TestAWhatIfsResultOutlivesALateProgressWrite(t *testing.T) {
	w := newWorld(t)
	jobs, _ := w.whatIfPorts(t)
	start := time.Now().UTC().Truncate(time.Microsecond)
	running := app.WhatIf{ID: uuid.NewString(), Proposed: 2, Active: 1, Read: 5, Total: 10, Started: start, Updated: start}
	done := running
	done.Read, done.Done, done.Updated = 10, true, start.Add(time.Second)
	for _, x := range []app.WhatIf{running, done, running} {
		if err := jobs.Put(ctxT(t), x); err != nil {
			t.Fatal(err)
		}
	}
	got, err := jobs.Get(ctxT(t), running.ID)
	if err != nil || !got.Done || got.Read != 10 {
		t.Fatalf("after a late progress write: %+v %v, want the result", got, err)
	}
}

// stalledReplayer reads part of the stream, then waits on it until
// resume is closed, then replays it all.
type stalledReplayer struct {
	app.Replayer
	resume chan struct{}
}

func (s stalledReplayer) Replay(ctx context.Context, from time.Time, fn func(uint64, string, *eventv1.Event), progress func(uint64, uint64)) error {
	progress(1, 2)
	select {
	case <-s.resume:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Replayer.Replay(ctx, from, fn, progress)
}

// A what-if whose replay waits on the stream longer than the staleness
// bound (30 s by the replica's clock) is still running, not abandoned:
// its replica writes it on a clock, not only as messages come.
func TestAWhatIfWaitingOnTheStreamIsNotAbandoned(t *testing.T) {
	w := newWorld(t)
	w.whatIfModels(t)
	ctx := ctxT(t)
	jobs, st := w.whatIfPorts(t)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	resume := make(chan struct{})
	a := app.New(nil, nil, st, stalledReplayer{Replayer: st, resume: resume}, jobs,
		app.WithClock(func() time.Time { return time.Unix(0, now.Load()) }))
	t.Cleanup(a.Close)
	id, err := a.StartWhatIf(ctx, 2, app.Period{})
	if err != nil {
		t.Fatal(err)
	}
	now.Add(int64(31 * time.Second))    // the stream says nothing for that long
	time.Sleep(1500 * time.Millisecond) // a heartbeat, every second
	j, err := a.GetWhatIf(ctx, id)
	if err != nil || j.Done || j.Read != 1 || j.Total != 2 {
		t.Fatalf("what-if waiting on the stream: %+v %v, want running, 1 of 2 read", j, err)
	}
	close(resume)
	testenv.Eventually(t, 30*time.Second, func() bool {
		j, err = a.GetWhatIf(ctx, id)
		return err == nil && j.Done
	}, "the what-if did not finish")
	if j.Err != nil || j.Read == 0 {
		t.Fatalf("what-if done: %+v, want it read through, no error", j)
	}
}
