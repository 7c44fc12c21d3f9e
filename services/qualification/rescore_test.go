package main

import (
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/provision"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/qualification/adapters"
	"github.com/leadflow/leadflow/services/qualification/app"
	"github.com/leadflow/leadflow/services/qualification/ports"
)

// v2 is the default model re-weighted: a lower threshold, webinars worth
// more, software companies preferred.
func v2() scoring.Model {
	m := scoring.Default()
	m.Description = "v2: lower threshold, webinars count more, software preferred"
	m.Threshold = 60
	m.Engagement[1].Points, m.Engagement[1].Cap = 20, 40
	m.Fit = append(m.Fit, scoring.FitRule{ID: "software", Description: "Software company", Points: 10,
		When: scoring.Criteria{IndustryIn: []string{"software"}}})
	return m
}

// scoreBy returns the lead's LeadScored events under version n.
func scoreBy(evs []*eventv1.Event, n uint32) []*eventv1.Event {
	var out []*eventv1.Event
	for _, ev := range ofType(evs, "LeadScored") {
		if ev.GetLeadScored().GetModelVersion() == n {
			out = append(out, ev)
		}
	}
	return out
}

// Activating a new version re-scores every open lead; the re-score equals
// scoring the lead from scratch under the new version, and a lead that is
// an MQL already is not qualified again.
func TestRescoreEqualsScoringFromScratch(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, scoring.Default())
	const n = 60
	ids := w.seed(t, n, variedProfile, variedActivities)
	w.settle(t)
	mqlBefore := map[string]bool{}
	events := 0 // what the scan reads
	for _, id := range ids {
		evs := w.events(t, id)
		mqlBefore[id] = len(ofType(evs, "LeadQualified")) == 1
		events += len(evs)
	}

	v := activate(t, s.client, v2())
	p := rescored(t, s.client, v)
	if p.GetTotal() != uint64(events) || p.GetDone() != uint64(events) {
		t.Errorf("progress %v, want %d of %d", p, events, events)
	}
	eventually(t, 10*time.Second, func() bool {
		_, err := w.nats.JS.Consumer(ctxT(t), consume.DefaultDeadLetterStream, "rescore-v2_redrive")
		return !consumerExists(t, w.nats.JS, "rescore-v2") && errors.Is(err, jetstream.ErrConsumerNotFound)
	}, "the finished re-score left its consumers behind")
	// From scratch: a trigger that changes no fact makes the live path
	// score each open lead under v2 with everything it knows.
	rescore := map[string]*eventv1.Event{}
	newLeads := 0
	for i, id := range ids {
		evs := w.events(t, id)
		got := scoreBy(evs, v)
		if i%10 == 9 { // at a competitor: disqualified under v1, finished
			if len(got) != 0 {
				t.Errorf("lead %d: a finished lead was re-scored", i)
			}
			continue
		}
		if len(got) != 1 {
			t.Fatalf("lead %d: %d re-scores", i, len(got))
		}
		rescore[id] = got[0]
		// A re-score is no engagement: a new lead waits for engagement
		// until the deadline its own last score gave it, not a new one.
		at := slices.IndexFunc(evs, func(e *eventv1.Event) bool { return e.GetEventId() == got[0].GetEventId() })
		before, after := evs[at-1].GetLifecycle(), got[0].GetLifecycle()
		if before.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_NEW && after.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_NEW {
			newLeads++
			if !after.GetDeadline().AsTime().Equal(before.GetDeadline().AsTime()) {
				t.Errorf("lead %d: the re-score moved its deadline from %v to %v", i, before.GetDeadline().AsTime(), after.GetDeadline().AsTime())
			}
		}
		w.consent(t, id, eventv1.ConsentChannel_CONSENT_CHANNEL_SMS, eventv1.ConsentStatus_CONSENT_STATUS_GRANTED)
	}
	if newLeads == 0 {
		t.Error("no new lead was re-scored: the test proves nothing about its deadline")
	}
	w.settle(t)
	newMQLs := 0
	for i, id := range ids {
		r, ok := rescore[id]
		if !ok {
			continue
		}
		evs := w.events(t, id)
		scratch := last(scoreBy(evs, v)).GetLeadScored()
		rs := r.GetLeadScored()
		if scratch.GetTotal() != rs.GetTotal() || scratch.GetFit() != rs.GetFit() || scratch.GetEngagement() != rs.GetEngagement() {
			t.Errorf("lead %d: re-score %d+%d=%d, from scratch %d+%d=%d", i, rs.GetFit(), rs.GetEngagement(), rs.GetTotal(),
				scratch.GetFit(), scratch.GetEngagement(), scratch.GetTotal())
		}
		q := ofType(evs, "LeadQualified")
		switch {
		case len(q) > 1:
			t.Errorf("lead %d qualified %d times", i, len(q))
		case mqlBefore[id] && q[0].GetLeadQualified().GetModelVersion() != 1:
			t.Errorf("lead %d: an MQL was qualified again", i)
		case !mqlBefore[id] && rs.GetTotal() >= 60:
			if len(q) != 1 || q[0].GetLeadQualified().GetModelVersion() != v || q[0].GetCausationId() != r.GetEventId() {
				t.Errorf("lead %d crossed v2's threshold on re-score: qualified %v", i, q)
			}
			newMQLs++
		case !mqlBefore[id] && len(q) != 0:
			t.Errorf("lead %d below the threshold was qualified", i)
		}
	}
	if newMQLs == 0 {
		t.Error("no lead crossed the lower threshold: the test proves nothing about re-score qualification")
	}
}

// A replica killed -9 part way through a re-score leaves it to the next
// one, which finishes it: every open lead is scored once under the version.
// The kill lands while the scan runs; should a re-score finish before the
// kill, the next version is activated and the kill tried again.
func TestRescoreResumesAfterACrash(t *testing.T) {
	w := newWorld(t)
	const n = 600
	ids := w.seed(t, n, variedProfile, func(int) []eventv1.ActivityType { return nil })
	child, client := w.spawn(t)
	var v uint32
	for try := 0; ; try++ {
		if try == 5 {
			t.Fatal("every re-score finished before the kill could land")
		}
		m := scoring.Default()
		m.Threshold += try // a new version each try
		// Activated while the live consumer still reads the backlog: the
		// two race over the same leads, and still score each once.
		v = activate(t, client, m)
		var p *qualificationv1.GetRescoreProgressResponse
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
			var err error
			p, err = client.GetRescoreProgress(ctxT(t), &qualificationv1.GetRescoreProgressRequest{Version: v})
			if err == nil && p.GetState() != qualificationv1.RescoreState_RESCORE_STATE_PENDING && p.GetDone() > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("re-score of v%d did not start: %v %v", v, p, err)
			}
		}
		if p.GetState() == qualificationv1.RescoreState_RESCORE_STATE_RUNNING {
			child.Kill(t)
			t.Logf("killed at %d of %d", p.GetDone(), p.GetTotal())
			break
		}
	}
	s := w.start(t)
	if p := rescored(t, s.client, v); p.GetDone() != p.GetTotal() || p.GetTotal() < n { // every lead event read
		t.Errorf("progress after resuming: %v", p)
	}
	w.settle(t) // the live consumer scores the captures it had not read yet
	for i, id := range ids {
		if got := len(scoreBy(w.events(t, id), v)); got != 1 {
			t.Fatalf("lead %d scored %d times under v%d", i, got, v)
		}
	}
}

// A lead captured before any version was active is first scored by the
// re-score of the first activation: that score starts its wait for
// engagement, as a first score on the live path does (the re-score kept
// the capture's hour-long deadline, and nurture took the lead at once).
func TestAFirstScoreByRescoreStartsTheEngagementWindow(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	ids := w.seed(t, 10, variedProfile, func(int) []eventv1.ActivityType { return nil })
	w.settle(t)
	v := activate(t, s.client, scoring.Default())
	rescored(t, s.client, v)
	checked := 0
	for i, id := range ids {
		evs := w.events(t, id)
		got := scoreBy(evs, v)
		if len(got) != 1 {
			t.Fatalf("lead %d: %d scores", i, len(got))
		}
		st := got[0].GetLifecycle()
		if st.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_NEW {
			continue
		}
		checked++
		want := got[0].GetOccurredAt().AsTime().Add(lifecycle.DefaultPolicy().EngageWithin)
		if d := st.GetDeadline().AsTime().Sub(want); d < -time.Second || d > time.Second {
			t.Errorf("lead %d: first scored by the re-score, deadline %v, want %v", i, st.GetDeadline().AsTime(), want)
		}
	}
	if checked == 0 {
		t.Fatal("no lead stayed new: the test proves nothing about its deadline")
	}
}

// pauseScoring pauses the live consumer's durables; resume resumes them.
func (w *world) pauseScoring(t testing.TB) (resume func()) {
	t.Helper()
	var durables []string
	for p := range eventstore.Partitions {
		durables = append(durables, consume.Durable(ports.Group, p, eventstore.Partitions))
	}
	for _, d := range durables {
		if _, err := w.nats.JS.PauseConsumer(ctxT(t), stream, d, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		t.Helper()
		for _, d := range durables {
			if _, err := w.nats.JS.ResumeConsumer(ctxT(t), stream, d); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Engagement the live scorer had not reached when a re-score scored it
// moves a new lead's deadline, as its live score would have: the live
// scorer then skips it (the re-score saw its facts), so no other score
// could. The lead engaged on day 29 must not be recycled on day 30. A lead
// with nothing new since its score keeps its deadline.
func TestEngagementARescoreCoversMovesTheDeadline(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	activateFirst(t, s.client, webinarModel(60))
	engaged, idle := uuid.NewString(), uuid.NewString()
	w.capture(t, engaged, &eventv1.Profile{Country: "DE"})
	w.capture(t, idle, &eventv1.Profile{Country: "DE"})
	w.settle(t)
	deadline := func(lead string) time.Time { return last(w.events(t, lead)).GetLifecycle().GetDeadline().AsTime() }
	idleFirst := deadline(idle)

	resume := w.pauseScoring(t)
	act := w.activity(t, engaged, webinar)
	rescored(t, s.client, activate(t, s.client, webinarModel(55)))
	resume()
	w.settle(t)

	evs := w.events(t, engaged)
	if n := len(ofType(evs, "LeadScored")); n != 2 || len(causedBy(evs, act.GetEventId())) != 0 {
		t.Fatalf("%d scores, %d caused by the webinar: want the capture's and the re-score's, the webinar skipped", n, len(causedBy(evs, act.GetEventId())))
	}
	if got, want := deadline(engaged), act.GetRecordedAt().AsTime().Add(lifecycle.DefaultPolicy().EngageWithin); got.Before(want) {
		t.Fatalf("engaged lead's deadline %s, want at least %s (30 days from the webinar)", got, want)
	}
	if got := deadline(idle); !got.Equal(idleFirst) {
		t.Fatalf("idle lead's deadline moved from %s to %s by a re-score", idleFirst, got)
	}
}

// A replica still working through a version's re-score after a later
// version activated writes nothing more: it would score, even qualify,
// under rules no longer in force. Replica b knows of the activation;
// replica a, its clock stopped, keeps the model history from before it,
// and finds out from the lead, scored under the later version.
func TestARescoreWritesNothingOnceItsVersionIsSuperseded(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	replica := func(opts ...app.Option) *app.App {
		return app.New(adapters.NewLeads(w.store), adapters.NewModels(w.store, w.nats.JS), adapters.NewScans(w.nats.JS, stream),
			append(opts, app.WithLogger(slog.New(slog.DiscardHandler)))...)
	}
	stopped := time.Now()
	a, b := replica(app.WithClock(func() time.Time { return stopped })), replica()
	lead := uuid.NewString()
	w.capture(t, lead, vpProfile("analytical.example")) // fit 50
	recs, err := w.store.Load(ctx, eventstore.LeadSubject(lead))
	if err != nil {
		t.Fatal(err)
	}
	lenient := scoring.Default()
	lenient.Threshold = 50
	old := signOff(t, b, lenient)
	if _, _, err := a.PendingRescore(ctx); err != nil { // a reads the history now
		t.Fatal(err)
	}
	current := signOff(t, b, scoring.Default()) // threshold 70

	wroteNothing := func(who string) {
		t.Helper()
		if evs := w.events(t, lead); len(scoreBy(evs, old.Version)) != 0 || len(ofType(evs, "LeadQualified")) != 0 {
			t.Fatalf("%s: the superseded v%d's re-score wrote %d scores, %d qualifications",
				who, old.Version, len(scoreBy(evs, old.Version)), len(ofType(evs, "LeadQualified")))
		}
	}
	if err := b.RescoreLead(ctx, old, lead, recs[0].Seq, 0); err != nil {
		t.Fatal(err)
	}
	wroteNothing("b, before v2's re-score")
	if err := b.RescoreLead(ctx, current, lead, recs[0].Seq, 0); err != nil {
		t.Fatal(err)
	}
	if n := len(scoreBy(w.events(t, lead), current.Version)); n != 1 {
		t.Fatalf("the active v%d's re-score wrote %d scores, want 1", current.Version, n)
	}
	if err := a.RescoreLead(ctx, old, lead, recs[0].Seq, 0); err != nil {
		t.Fatal(err)
	}
	wroteNothing("a, with the history from before v2")
}

// A re-score that reaches a lead after a trigger the live scorer has not
// handled yet scores that trigger's facts, so it is dated no earlier than
// the trigger: an MQL it makes is not counted before the activity that
// made it.
func TestARescoreIsDatedNoEarlierThanTheFactsItScores(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	b := app.New(adapters.NewLeads(w.store), adapters.NewModels(w.store, w.nats.JS), adapters.NewScans(w.nats.JS, stream),
		app.WithLogger(slog.New(slog.DiscardHandler)))
	lead := uuid.NewString()
	w.capture(t, lead, vpProfile("dated.example"))
	recs, err := w.store.Load(ctx, eventstore.LeadSubject(lead))
	if err != nil {
		t.Fatal(err)
	}
	job := signOff(t, b, webinarModel(50))
	time.Sleep(20 * time.Millisecond)
	w.activity(t, lead, webinar)
	act := w.activity(t, lead, webinar) // 60: an MQL, found by the re-score first
	if err := b.RescoreLead(ctx, job, lead, recs[0].Seq, 0); err != nil {
		t.Fatal(err)
	}
	q := ofType(w.events(t, lead), "LeadQualified")
	if len(q) != 1 {
		t.Fatalf("%d LeadQualified, want the re-score's", len(q))
	}
	if got, trigger := q[0].GetOccurredAt().AsTime(), act.GetRecordedAt().AsTime(); got.Before(trigger) {
		t.Fatalf("qualified as of %v, before the webinar it rests on, recorded %v (the activation: %v)", got, trigger, job.Activation.At)
	}
}

// signOff has both teams approve m through a, and returns the re-score
// its activation starts.
func signOff(t *testing.T, a *app.App, m scoring.Model) app.Rescore {
	t.Helper()
	ctx := ctxT(t)
	p, err := a.ProposeModel(ctx, app.ProposeModel{Model: scoring.ToProto(m), ProposedBy: marketing}, envelope.Meta{CorrelationID: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []*eventv1.Actor{marketing, sales} {
		if _, err := a.ApproveModel(ctx, p.Version, who, envelope.Meta{CorrelationID: uuid.NewString()}); err != nil {
			t.Fatal(err)
		}
	}
	job, ok, err := a.PendingRescore(ctx)
	if err != nil || !ok || job.Version != p.Version {
		t.Fatalf("re-score of v%d: %+v %v %v", p.Version, job, ok, err)
	}
	return job
}

// A re-score abandoned while no replica ran it (a newer version was
// activated) is closed at the next start with its dead letters, not only
// its consumer: no member runs that group again to re-drive them, and
// nurture's lost-lead check would list their leads as parked for ever.
func TestClosingARescoreScanRemovesItsDeadLetters(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	if err := provision.All(ctx, w.nats.JS, 1); err != nil {
		t.Fatal(err)
	}
	scans := adapters.NewScans(w.nats.JS, stream)
	if _, err := w.nats.JS.CreateOrUpdateConsumer(ctx, stream, scans.Config(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.nats.JS.Publish(ctx, "deadletter.entry."+scans.Name(2)+".k1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := consume.HeldBack(ctx, w.nats.JS, consume.DefaultDeadLetterStream, scans.Name(2)); err != nil || n != 1 {
		t.Fatalf("held back before: %d (%v), want the dead letter", n, err)
	}
	if err := scans.Close(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n, err := consume.HeldBack(ctx, w.nats.JS, consume.DefaultDeadLetterStream, scans.Name(2)); err != nil || n != 0 {
		t.Errorf("held back after closing: %d (%v), want none", n, err)
	}
	if _, err := w.nats.JS.Consumer(ctx, stream, scans.Name(2)); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("the scan's consumer after closing: %v, want not found", err)
	}
}

// A replica killed between opening a re-score's scan and recording
// ScoringModelRescoreStarted, with a later version activated before any
// replica started that re-score, leaves the scan of a version nobody
// will re-score: the next clean-up deletes it anyway.
func TestAScanOpenedButNeverStartedIsClosedOnceSuperseded(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	a := app.New(adapters.NewLeads(w.store), adapters.NewModels(w.store, w.nats.JS), adapters.NewScans(w.nats.JS, stream),
		app.WithLogger(slog.New(slog.DiscardHandler)))
	scans := adapters.NewScans(w.nats.JS, stream)
	first := signOff(t, a, scoring.Default())
	if _, err := scans.Open(ctx, first.Version); err != nil { // then killed
		t.Fatal(err)
	}
	if err := a.CloseFinishedRescores(ctx); err != nil {
		t.Fatal(err)
	}
	if !consumerExists(t, w.nats.JS, scans.Name(first.Version)) {
		t.Fatal("the active version's scan was closed before its re-score ran")
	}
	signOff(t, a, v2())
	if err := a.CloseFinishedRescores(ctx); err != nil {
		t.Fatal(err)
	}
	if consumerExists(t, w.nats.JS, scans.Name(first.Version)) {
		t.Error("the superseded version's scan, opened and never started, is still there")
	}
}
