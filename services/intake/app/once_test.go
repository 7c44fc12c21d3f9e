package app_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/adapters"
	"github.com/leadflow/leadflow/services/intake/app"
	"github.com/leadflow/leadflow/services/intake/form"
)

// crashing is the real lead store, except that it can fail the next
// event write the way a crash would: after the command's record, before
// its event.
type crashing struct {
	*adapters.Leads
	crashNext atomic.Bool
	crashEach atomic.Bool // the next WriteEach fails every write
}

func (c *crashing) WriteEach(ctx context.Context, writes []app.LeadWrite) ([]uint64, []error) {
	if c.crashEach.CompareAndSwap(true, false) {
		errs := make([]error, len(writes))
		for i := range errs {
			errs[i] = errCrash
		}
		return make([]uint64, len(writes)), errs
	}
	return c.Leads.WriteEach(ctx, writes)
}

var errCrash = errors.New("crashed before the event")

func (c *crashing) Create(ctx context.Context, leadID string, ev *eventv1.Event) (uint64, error) {
	if c.crashNext.CompareAndSwap(true, false) {
		return 0, errCrash
	}
	return c.Leads.Create(ctx, leadID, ev)
}

func (c *crashing) Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	if c.crashNext.CompareAndSwap(true, false) {
		return 0, errCrash
	}
	return c.Leads.Append(ctx, leadID, expected, events...)
}

type fixture struct {
	app   *app.App
	leads *crashing
	store *eventstore.Store
	keys  *vault.Vault
	nats  *testenv.NATS
}

// fresh is an app as another process runs it: its own vault, whose cache
// holds no key yet.
func (f *fixture) fresh(t *testing.T) *app.App {
	t.Helper()
	keys, err := vault.New(context.Background(), f.nats.JS, vault.Config{MasterKey: make32(1), BlindKey: make32(2)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	return app.New(f.leads, adapters.NewCampaigns(f.store), keys)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, eventstore.StreamConfig{}, nil)
}

// newFixtureWith is newFixture on a stream of cfg, its app told of crash
// points through at (nil: not told).
func newFixtureWith(t *testing.T, cfg eventstore.StreamConfig, at func(f *fixture, p app.CrashPoint, lead string)) *fixture {
	t.Helper()
	n := testenv.StartNATS(t)
	ctx := context.Background()
	if _, err := eventstore.EnsureStream(ctx, n.JS, cfg); err != nil {
		t.Fatal(err)
	}
	keys, err := vault.New(ctx, n.JS, vault.Config{MasterKey: make32(1), BlindKey: make32(2)})
	if err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(n.JS, "")
	f := &fixture{leads: &crashing{Leads: adapters.NewLeads(store)}, store: store, keys: keys, nats: n}
	var opts []app.Option
	if at != nil {
		opts = append(opts, app.WithCrashPoints(func(p app.CrashPoint, lead string) { at(f, p, lead) }))
	}
	f.app = app.New(f.leads, adapters.NewCampaigns(store), keys, opts...)
	return f
}

func make32(b byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b
	}
	return k
}

func capture(email, key string) form.Capture {
	return form.Capture{
		IdempotencyKey: key,
		Contact:        &eventv1.Contact{Email: email, FirstName: "Ada"},
		Attribution:    &eventv1.Attribution{Source: "web-form"},
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A command cut short between its record and its event leaves a record
// without an event; its repeat writes the event, once, and later repeats
// answer it.
func TestRepeatCompletesACommandCutShortAfterItsRecord(t *testing.T) {
	f := newFixture(t)
	ctx := ctxT(t)
	meta := envelope.Meta{CorrelationID: "c"}

	f.leads.crashNext.Store(true)
	if _, err := f.app.CaptureLead(ctx, capture("cut@example.com", "k-1"), meta); !errors.Is(err, errCrash) {
		t.Fatalf("first capture: %v, want the crash", err)
	}
	done, err := f.app.CaptureLead(ctx, capture("cut@example.com", "k-1"), meta)
	if err != nil || done.Outcome != app.Created || done.Replayed {
		t.Fatalf("repeat after the crash: %+v %v", done, err)
	}
	again, err := f.app.CaptureLead(ctx, capture("cut@example.com", "k-1"), meta)
	if err != nil || !again.Replayed || again.Version != done.Version || again.LeadID != done.LeadID {
		t.Fatalf("repeat after completion: %+v %v, want %+v replayed", again, err, done)
	}

	act := app.RecordActivity{LeadID: done.LeadID, ActivityID: "a-1", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT, Detail: "/docs"}
	f.leads.crashNext.Store(true)
	if _, err := f.app.RecordActivity(ctx, act, meta); !errors.Is(err, errCrash) {
		t.Fatalf("first activity: %v, want the crash", err)
	}
	w1, err := f.app.RecordActivity(ctx, act, meta)
	if err != nil || w1.Replayed {
		t.Fatalf("activity repeat after the crash: %+v %v", w1, err)
	}
	w2, err := f.app.RecordActivity(ctx, act, meta)
	if err != nil || !w2.Replayed || w2.Version != w1.Version {
		t.Fatalf("activity repeat after completion: %+v %v, want version %d", w2, err, w1.Version)
	}
	recs, err := f.store.Load(ctx, eventstore.LeadSubject(done.LeadID))
	if err != nil || len(recs) != 2 {
		t.Fatalf("lead holds %d events (%v), want the capture and the activity once each", len(recs), err)
	}
}

// Repeats of one keyed request racing each other store one event and all
// answer it.
func TestRacingRepeatsStoreOneEvent(t *testing.T) {
	f := newFixture(t)
	ctx := ctxT(t)
	first, err := f.app.CaptureLead(ctx, capture("racer@example.com", ""), envelope.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	const racers = 12
	var wg sync.WaitGroup
	res := make([]app.Written, racers)
	errs := make([]error, racers)
	act := app.RecordActivity{LeadID: first.LeadID, ActivityID: "race-1", Type: eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST}
	for i := range racers {
		wg.Go(func() { res[i], errs[i] = f.app.RecordActivity(ctx, act, envelope.Meta{}) })
	}
	wg.Wait()
	fresh := 0
	for i := range racers {
		if errs[i] != nil || res[i].Version != res[0].Version {
			t.Fatalf("racer %d: %+v %v, racer 0 %+v", i, res[i], errs[i], res[0])
		}
		if !res[i].Replayed {
			fresh++
		}
	}
	recs, err := f.store.Load(ctx, eventstore.LeadSubject(first.LeadID))
	if err != nil || len(recs) != 2 {
		t.Fatalf("lead holds %d events (%v), want 2", len(recs), err)
	}
	if fresh < 1 {
		t.Fatalf("%d racers wrote, want at least one to have", fresh)
	}
}

// gate holds a store's next write until release, once it has told
// reached: a request held between its record and its event.
type gate struct {
	reached, release chan struct{}
	once             sync.Once
}

func newGate() *gate { return &gate{reached: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) hold() {
	wait := false
	g.once.Do(func() { wait = true })
	if wait {
		close(g.reached)
		<-g.release
	}
}

// race sends in through first, whose store holds its write at g, and
// meanwhile the same request through the store repeatOn builds around
// letGo, which lets the first finish: it returns both answers.
func race(t *testing.T, f *fixture, in form.Capture, first app.Leads, g *gate, repeatOn func(letGo func()) app.Leads) (app.CaptureResult, app.CaptureResult) {
	t.Helper()
	ctx := ctxT(t)
	var (
		firstRes app.CaptureResult
		firstErr error
		wg       sync.WaitGroup
	)
	wg.Go(func() {
		firstRes, firstErr = app.New(first, adapters.NewCampaigns(f.store), f.keys).CaptureLead(ctx, in, envelope.Meta{})
	})
	<-g.reached
	again, err := app.New(repeatOn(func() {
		close(g.release)
		wg.Wait()
	}), adapters.NewCampaigns(f.store), f.keys).CaptureLead(ctx, in, envelope.Meta{})
	if firstErr != nil || err != nil {
		t.Fatalf("first %v, repeat %v", firstErr, err)
	}
	return firstRes, again
}

// slowCreate is the real lead store whose first Create waits at its gate.
type slowCreate struct {
	*adapters.Leads
	*gate
}

func (s *slowCreate) Create(ctx context.Context, leadID string, ev *eventv1.Event) (uint64, error) {
	s.hold()
	return s.Leads.Create(ctx, leadID, ev)
}

// afterFirst is the real lead store that runs meanwhile once, after its
// first look for a record's event.
type afterFirst struct {
	*adapters.Leads
	meanwhile func()
	done      atomic.Bool
}

func (l *afterFirst) After(ctx context.Context, leadID string, version uint64) (*eventstore.Record, error) {
	r, err := l.Leads.After(ctx, leadID, version)
	if l.done.CompareAndSwap(false, true) {
		l.meanwhile()
	}
	return r, err
}

// A repeat of a keyed capture sent while the first is between its record
// and its event (a client's retry on a timeout) finds the record without
// its event, and the event stored by the time it decides again: it must
// answer what the first stored, and leave the record saying so.
func TestARepeatRacingTheFirstWriteAnswersWhatItStored(t *testing.T) {
	f := newFixture(t)
	ctx := ctxT(t)
	in := capture("retry@race.example", "k-race")
	g := newGate()
	firstRes, again := race(t, f, in, &slowCreate{Leads: adapters.NewLeads(f.store), gate: g}, g, func(letGo func()) app.Leads {
		return &afterFirst{Leads: adapters.NewLeads(f.store), meanwhile: letGo}
	})
	if firstRes.Outcome != app.Created || again.Outcome != app.Created || again.LeadID != firstRes.LeadID || again.Version != firstRes.Version {
		t.Errorf("first answered %+v, the repeat %+v", firstRes, again)
	}
	later, err := f.app.CaptureLead(ctx, in, envelope.Meta{})
	if err != nil || !later.Replayed || later.Outcome != app.Created || later.Version != firstRes.Version {
		t.Errorf("a later repeat answered %+v (%v), want the first answer %+v", later, err, firstRes)
	}
	recs, err := f.store.Load(ctx, eventstore.LeadSubject(firstRes.LeadID))
	if err != nil || len(recs) != 1 {
		t.Fatalf("lead holds %d events (%v), want the capture once", len(recs), err)
	}
}

// slowAppend is the real lead store whose first Append waits at its
// gate.
type slowAppend struct {
	*adapters.Leads
	*gate
}

func (s *slowAppend) Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	s.hold()
	return s.Leads.Append(ctx, leadID, expected, events...)
}

// holdersMeanwhile is the real lead store that runs meanwhile once, at
// its first look-up of identity holders.
type holdersMeanwhile struct {
	*adapters.Leads
	meanwhile func()
	done      atomic.Bool
}

func (l *holdersMeanwhile) Holders(ctx context.Context, keys ...app.ClaimKey) (map[app.ClaimKey]app.Holder, error) {
	if l.done.CompareAndSwap(false, true) {
		l.meanwhile()
	}
	return l.Leads.Holders(ctx, keys...)
}

// A keyed re-submission that also withdraws a consent is written as one
// commit of two events, which the server cannot drop a second copy of by
// message id. A repeat that found the first's record before its events,
// and read the lead after they were stored, must answer them, not store
// the re-submission again.
func TestARepeatRacingAResubmissionWithAConsentStoresNothing(t *testing.T) {
	f := newFixture(t)
	ctx := ctxT(t)
	created, err := f.app.CaptureLead(ctx, capture("consent@race.example", ""), envelope.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	in := capture("consent@race.example", "k-consent")
	in.Consents = []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN}}
	g := newGate()
	firstRes, again := race(t, f, in, &slowAppend{Leads: adapters.NewLeads(f.store), gate: g}, g, func(letGo func()) app.Leads {
		return &holdersMeanwhile{Leads: adapters.NewLeads(f.store), meanwhile: letGo}
	})
	if firstRes.Outcome != app.Resubmitted || again.Outcome != app.Resubmitted || again.Version != firstRes.Version {
		t.Errorf("first answered %+v, the repeat %+v", firstRes, again)
	}
	recs, err := f.store.Load(ctx, eventstore.LeadSubject(created.LeadID))
	if err != nil || len(recs) != 3 {
		t.Fatalf("lead holds %d events (%v), want the capture, the re-submission and the withdrawal once each", len(recs), err)
	}
}

// A record that points past its event (a racing repeat's plan record, or
// one re-pointed by another attempt of the key) is still answered from
// the event, found in the lead's history: once the server's duplicate
// window is over nothing else would stop the event being stored again.
func TestARecordPointingPastItsEventStillAnswers(t *testing.T) {
	f := newFixtureWith(t, eventstore.StreamConfig{Duplicates: time.Second}, nil)
	ctx := ctxT(t)
	in := capture("past@race.example", "k-past")
	first, err := f.app.CaptureLead(ctx, in, envelope.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	token := f.keys.BlindID("idem-capture", "k-past")
	rec, seq, err := f.leads.Record(ctx, token)
	if err != nil || rec == nil {
		t.Fatalf("record %v (%v)", rec, err)
	}
	rec.VersionBefore, rec.Outcome = first.Version, string(app.Resubmitted)
	if _, err := f.leads.PutRecord(ctx, token, rec, seq); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past the duplicate window
	again, err := f.app.CaptureLead(ctx, in, envelope.Meta{})
	if err != nil || !again.Replayed || again.Outcome != app.Created || again.Version != first.Version {
		t.Errorf("repeat answered %+v (%v), want the first answer %+v again", again, err, first)
	}
	recs, err := f.store.Load(ctx, eventstore.LeadSubject(first.LeadID))
	if err != nil || len(recs) != 1 {
		t.Fatalf("lead holds %d events (%v), want the capture once", len(recs), err)
	}
}

var emailWithdrawn = []*eventv1.Consent{{Channel: eventv1.ConsentChannel_CONSENT_CHANNEL_EMAIL, Status: eventv1.ConsentStatus_CONSENT_STATUS_WITHDRAWN}}

// resubmissions counts the lead's LeadResubmitted events by event id.
func resubmissions(t *testing.T, f *fixture, lead string) map[string]int {
	t.Helper()
	recs, err := f.store.Load(ctxT(t), eventstore.LeadSubject(lead))
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, r := range recs {
		if r.Event.GetLeadResubmitted() != nil {
			n[r.Event.GetEventId()]++
		}
	}
	return n
}

// A merge lands while a keyed re-submission with a consent change is held
// between its record and its append: the first re-decides onto the
// survivor, and its repeat, which read the record naming the absorbed
// lead, must not store the commit a second time there (the two attempts'
// record writes at one version conflict; they used to share a message id,
// so the second took the first's record for its own).
func TestARepeatRacingAMergedResubmissionStoresItOnce(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	absorbed, survivor := captured(t, f.app, "p@merge.example"), captured(t, f.app, "s@merge.example")
	in := capture("p@merge.example", "k-merge")
	in.Consents = emailWithdrawn
	g := newGate()
	firstRes, again := race(t, f, in, &slowAppend{Leads: adapters.NewLeads(f.store), gate: g}, g, func(letGo func()) app.Leads {
		if _, err := f.app.MergeLeads(ctx, app.MergeLeads{Survivor: survivor, Absorbed: absorbed, Reason: "same person"}, meta); err != nil {
			t.Fatal(err)
		}
		return &holdersMeanwhile{Leads: adapters.NewLeads(f.store), meanwhile: letGo}
	})
	if again.Version != firstRes.Version {
		t.Errorf("first answered %+v, the repeat %+v", firstRes, again)
	}
	for id, n := range resubmissions(t, f, survivor) {
		if n != 1 {
			t.Errorf("the survivor holds re-submission %s %d times", id, n)
		}
	}
}

// appendMeanwhile is the real lead store that runs meanwhile once, before
// its first Append.
type appendMeanwhile struct {
	*adapters.Leads
	meanwhile func()
	done      atomic.Bool
}

func (l *appendMeanwhile) Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	if l.done.CompareAndSwap(false, true) {
		l.meanwhile()
	}
	return l.Leads.Append(ctx, leadID, expected, events...)
}

// A repeat whose plan differs in length from what the first stored (a
// consent withdrawn by another caller meanwhile made the first's commit
// one event, the repeat planned two) answers the stored commit's version,
// as the first did, and so do later repeats.
func TestARepeatAnswersTheStoredCommitsVersion(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	lead := captured(t, f.app, "v@more.example")
	in := capture("v@more.example", "k-more")
	in.Consents = emailWithdrawn
	g := newGate()
	firstRes, again := race(t, f, in, &slowAppend{Leads: adapters.NewLeads(f.store), gate: g}, g, func(letGo func()) app.Leads {
		return &appendMeanwhile{Leads: adapters.NewLeads(f.store), meanwhile: func() {
			if _, err := f.app.SetConsent(ctx, app.SetConsent{LeadID: lead, Consent: emailWithdrawn[0], Source: "preference-center"}, meta); err != nil {
				t.Errorf("set consent: %v", err)
			}
			letGo()
		}}
	})
	later, err := f.app.CaptureLead(ctx, in, meta)
	if err != nil || again.Version != firstRes.Version || later.Version != firstRes.Version {
		t.Errorf("versions: first %d, racing repeat %d, later repeat %d (%v)", firstRes.Version, again.Version, later.Version, err)
	}
}

// countingLoads is the real lead store that counts whole-lead loads and
// runs meanwhile once, before its first Append.
type countingLoads struct {
	appendMeanwhile
	loads atomic.Int32
}

func (c *countingLoads) Load(ctx context.Context, id string) ([]eventstore.Record, error) {
	c.loads.Add(1)
	return c.Leads.Load(ctx, id)
}

// A keyed command that loses its append to another writer looks for its
// own record's event where the record points, without reading the lead's
// history: activities racing scores are ordinary traffic.
func TestAKeyedWriteThatLosesARaceLoadsNothing(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	lead := captured(t, f.app, "hot@lead.example")
	c := &countingLoads{appendMeanwhile: appendMeanwhile{Leads: adapters.NewLeads(f.store), meanwhile: func() {
		if _, err := f.app.RecordActivity(ctx, app.RecordActivity{LeadID: lead, ActivityID: "other", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}, meta); err != nil {
			t.Errorf("the other activity: %v", err)
		}
	}}}
	w, err := app.New(c, adapters.NewCampaigns(f.store), f.keys).RecordActivity(ctx,
		app.RecordActivity{LeadID: lead, ActivityID: "mine", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}, meta)
	if err != nil || w.Replayed {
		t.Fatalf("%+v %v", w, err)
	}
	if n := c.loads.Load(); n != 0 {
		t.Errorf("a keyed activity that lost one race loaded the lead %d times, want 0", n)
	}
}

// laggingReplica is the real lead store whose first holders look-up is
// answered by a replica behind (a snapshot taken earlier), and which runs
// meanwhile once, before its first Append.
type laggingReplica struct {
	appendMeanwhile
	snap   map[app.ClaimKey]app.Holder
	lagged atomic.Bool
}

func (l *laggingReplica) Holders(ctx context.Context, keys ...app.ClaimKey) (map[app.ClaimKey]app.Holder, error) {
	if l.lagged.CompareAndSwap(false, true) {
		return l.snap, nil
	}
	return l.Leads.Holders(ctx, keys...)
}

// A repeat that read the lead from a replica behind plans its commit
// before the first's, so the record it writes points before the event the
// first then stores: when its own append loses, it must still find that
// event, not store the re-submission again (a commit of two events
// carries no message id the server would drop it by).
func TestARepeatReadingBehindTheFirstStoresNothing(t *testing.T) {
	f := newFixture(t)
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	const email = "lag@replica.example"
	lead := captured(t, f.app, email)
	key := app.ClaimKey{Kind: app.KindEmail, Token: f.keys.BlindID(app.KindEmail, email)}
	snap, err := adapters.NewLeads(f.store).Holders(ctx, key)
	if err != nil || snap[key].LeadID != lead {
		t.Fatalf("snapshot %+v %v", snap, err)
	}
	// Another writer moves the lead on after the lagging replica's view.
	if _, err := f.app.RecordActivity(ctx, app.RecordActivity{LeadID: lead, ActivityID: "w", Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}, meta); err != nil {
		t.Fatal(err)
	}
	in := capture(email, "k-lag")
	in.Consents = emailWithdrawn
	g := newGate()
	firstRes, again := race(t, f, in, &slowAppend{Leads: adapters.NewLeads(f.store), gate: g}, g, func(letGo func()) app.Leads {
		return &laggingReplica{appendMeanwhile: appendMeanwhile{Leads: adapters.NewLeads(f.store), meanwhile: letGo}, snap: snap}
	})
	if again.Version != firstRes.Version {
		t.Errorf("first answered %+v, the repeat %+v", firstRes, again)
	}
	for id, n := range resubmissions(t, f, lead) {
		if n != 1 {
			t.Errorf("the lead holds re-submission %s %d times", id, n)
		}
	}
}

// A record an older intake kept per content, for a capture keyed by its
// external id alone, answers that capture sent again as it did: the
// first answer, nothing written.
func TestARecordAnOlderIntakeKeptAnswersAsBefore(t *testing.T) {
	f := newFixture(t)
	ctx := ctxT(t)
	in := capture("older@x.example", "")
	in.ExternalID = &eventv1.ExternalId{System: "crm", Id: "o-1"}
	first, err := f.app.CaptureAsOlderIntake(ctx, in, envelope.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.app.CaptureLead(ctx, in, envelope.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || again.LeadID != first.LeadID || again.Version != first.Version {
		t.Fatalf("sent again to a new intake: %+v, want the first answer %+v", again, first)
	}
	if recs, err := f.store.Load(ctx, eventstore.LeadSubject(first.LeadID)); err != nil || len(recs) != 1 {
		t.Fatalf("the lead holds %d events (%v), want 1", len(recs), err)
	}
}
