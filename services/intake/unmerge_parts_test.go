package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/intake/adapters"
	"github.com/leadflow/leadflow/services/intake/app"
	"github.com/nats-io/nats.go/jetstream"
)

// An unmerge that gives back more than one commit holds (a lead merged
// long enough to collect a thousand activities) writes the rest in
// commits of its own; an intake killed (SIGKILL) between them leaves the
// rest to the timer the unmerge set, or to a repeat of the unmerge,
// which write each replay once.
func TestALongUnmergeIsWrittenInParts(t *testing.T) {
	srv := testenv.StartNATS(t)
	e := startWith(t, srv, Config{Addr: "127.0.0.1:0", NATSURL: srv.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second, finishAfter: 2 * time.Second})
	ctx := longCtx(t)
	timers, err := e.nats.JS.Stream(ctx, adapters.TimerStream.Name)
	if err != nil {
		t.Fatal(err)
	}
	// handled waits until the lead's timers fired and were handled (their
	// fired copies deleted): what they write is not a repeat's.
	handled := func(lead string) {
		t.Helper()
		testenv.Eventually(t, time.Minute, func() bool {
			info, err := timers.Info(ctx, jetstream.WithSubjectFilter(adapters.TimerStream.Prefix+".at.*."+lead+".>"))
			if err == nil && info.State.Msgs == 0 {
				info, err = timers.Info(ctx, jetstream.WithSubjectFilter(adapters.TimerStream.Prefix+".fired.*."+lead))
			}
			return err == nil && info.State.Msgs == 0
		}, "the timers of lead %s were never handled", lead)
	}
	const n = eventstore.MaxBatch + 100
	pair := func(name string) (survivor, absorbed string) {
		survivor = e.capture(t, lead(name+"-keeper@parts.example")).GetLeadId()
		absorbed = e.capture(t, lead(name+"-dupe@parts.example")).GetLeadId()
		if _, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"}); err != nil {
			t.Fatal(err)
		}
		// One at a time: they all append to the survivor.
		for i := range n {
			if _, err := e.client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: absorbed, ActivityId: fmt.Sprint(name, i),
				Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}); err != nil {
				t.Fatal(err)
			}
		}
		return survivor, absorbed
	}
	unmerge := func(c intakev1.IntakeServiceClient, survivor, absorbed string) (*intakev1.UnmergeLeadsResponse, error) {
		return c.UnmergeLeads(ctx, &intakev1.UnmergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "two people"})
	}
	// Every activity is back on the absorbed lead, each once, and the
	// survivor holds none; the unmerge sent again writes nothing.
	check := func(survivor, absorbed string) {
		t.Helper()
		replays := map[string]int{}
		for _, ev := range e.timeline(t, absorbed) {
			if a := ev.GetActivityRecorded(); a.GetGivenBackBy() == survivor {
				replays[a.GetGivenBackEventId()]++
			}
		}
		if len(replays) != n {
			t.Fatalf("%d activities given back, want %d", len(replays), n)
		}
		for id, k := range replays {
			if k != 1 {
				t.Fatalf("activity %s given back %d times", id, k)
			}
		}
		if a, s := e.getLead(t, absorbed).GetActivities(), e.getLead(t, survivor).GetActivities(); a != n || s != 0 {
			t.Fatalf("activities after the unmerge: absorbed %d, survivor %d; want %d and 0", a, s, n)
		}
		handled(absorbed)
		before := e.counts(t)
		if r, err := unmerge(e.client, survivor, absorbed); err != nil || !r.GetReplayed() {
			t.Fatalf("the unmerge sent again: %v %v, want replayed", r, err)
		}
		e.assertCounts(t, before)
	}

	s, a := pair("one")
	if r, err := unmerge(e.client, s, a); err != nil || r.GetReplayed() {
		t.Fatalf("unmerge: %v %v", r, err)
	}
	check(s, a)

	// Killed between its commits, and never sent again: its timer, set
	// before the first, has the other intake write the rest.
	s, a = pair("two")
	c := startChild(t, e, app.AfterFirstPart)
	go func() { _, _ = unmerge(intakev1.NewIntakeServiceClient(c.conn), s, a) }()
	c.killAt(t, a)
	if got := e.getLead(t, a).GetActivities(); got == 0 || got >= n {
		t.Fatalf("after the kill the absorbed lead has %d activities back, want part of %d", got, n)
	}
	testenv.Eventually(t, time.Minute, func() bool { return e.getLead(t, a).GetActivities() == n }, "the rest was never given back")
	check(s, a)

	// Killed between its commits and sent again at once (its timer comes
	// seconds later, and finds the rest written).
	s, a = pair("three")
	c = startChild(t, e, app.AfterFirstPart)
	go func() { _, _ = unmerge(intakev1.NewIntakeServiceClient(c.conn), s, a) }()
	c.killAt(t, a)
	if _, err := unmerge(e.client, s, a); err != nil {
		t.Fatalf("the unmerge sent again after the kill: %v", err)
	}
	check(s, a)
}

// A command on a lead whose unmerge has yet to write the rest of what it
// gives back (its intake stopped between its commits) writes that rest
// first: merging the lead away, unmerging a lead from it, and erasing it
// each find every replay on it.
func TestCommandsOnALeadOwedReplaysWriteThemFirst(t *testing.T) {
	n := testenv.StartNATS(t)
	reached := make(chan chan struct{}, 1)
	cfg := Config{Addr: "127.0.0.1:0", NATSURL: n.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second}
	cfg.crashPoints = func(p app.CrashPoint, lead string) {
		if p == app.AfterFirstPart {
			g := make(chan struct{})
			reached <- g
			<-g
		}
	}
	e := startWith(t, n, cfg)
	ctx := longCtx(t)
	merge := func(survivor, absorbed string) {
		t.Helper()
		if _, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"}); err != nil {
			t.Fatal(err)
		}
	}
	// owed makes a new lead (prep runs on it), merges it into survivor,
	// sends a thousand activities and then tail through it, and unmerges
	// it up to its first commit, where that unmerge stays until release
	// is called.
	owed := func(name, survivor string, prep, tail func(absorbed string)) (absorbed string, release func()) {
		absorbed = e.capture(t, withExt(lead(name+"@owed.example"), "ext-"+name)).GetLeadId()
		prep(absorbed)
		merge(survivor, absorbed)
		for i := range eventstore.MaxBatch {
			if _, err := e.client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: absorbed, ActivityId: fmt.Sprint(name, i),
				Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}); err != nil {
				t.Fatal(err)
			}
		}
		tail(absorbed)
		done := make(chan error, 1)
		go func() {
			_, err := e.client.UnmergeLeads(ctx, &intakev1.UnmergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "two people"})
			done <- err
		}()
		g := <-reached
		var open sync.Once
		t.Cleanup(func() { open.Do(func() { close(g) }) }) // a failed check does not leave it stuck
		return absorbed, func() {
			open.Do(func() { close(g) })
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	replays := func(leadID, by string) (n int) {
		for _, ev := range e.timeline(t, leadID) {
			if ev.GetActivityRecorded().GetGivenBackBy() == by || ev.GetLeadResubmitted().GetGivenBackBy() == by {
				n++
			}
		}
		return n
	}
	keeper := e.capture(t, lead("keeper@owed.example")).GetLeadId()

	// Merged away: every replay is on it, before its LeadMerged.
	none := func(string) {}
	a, release := owed("away", keeper, none, none)
	other := e.capture(t, lead("other@owed.example")).GetLeadId()
	merge(other, a)
	if got := replays(a, keeper); got != eventstore.MaxBatch {
		t.Errorf("merged away with %d of %d replays", got, eventstore.MaxBatch)
	}
	release()

	// A lead merged into it unmerged: what came through that lead goes
	// to it, not to the lead it was merged into.
	below := e.capture(t, lead("below@owed.example")).GetLeadId()
	a, release = owed("middle", keeper, func(a string) { merge(a, below) }, func(string) {
		e.capture(t, lead("below@owed.example")) // through below, to keeper
	})
	if _, err := e.client.UnmergeLeads(ctx, &intakev1.UnmergeLeadsRequest{SurvivorLeadId: a, AbsorbedLeadId: below, Reason: "two people"}); err != nil {
		t.Fatal(err)
	}
	if got := replays(below, a); got != 1 {
		t.Errorf("the lead below got %d replays of its form, want 1", got)
	}
	release()

	// A withdrawal sent to it: the grant its person sent while merged,
	// given back in the later part, is written first and does not stand
	// over the withdrawal.
	a, release = owed("consent", keeper, none, func(a string) { e.setConsent(t, a, emailChannel, granted) })
	e.setConsent(t, a, emailChannel, withdrawn)
	if got := consentOf(e.getLead(t, a), emailChannel); got != withdrawn {
		t.Errorf("email consent %v after the person withdrew, want withdrawn", got)
	}
	release()
	if got := consentOf(e.getLead(t, a), emailChannel); got != withdrawn {
		t.Errorf("email consent %v once the unmerge is done, want withdrawn", got)
	}
	// scored appends a score of lead a as qualification would, so the
	// lead's last event is another service's, not the unmerge's.
	scored := func(a string) {
		t.Helper()
		tl := e.timeline(t, a)
		e.appendRaw(t, &eventv1.Event{LeadId: a, EventType: "LeadScored", Actor: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "qualification"},
			Lifecycle: tl[len(tl)-1].GetLifecycle(), Payload: &eventv1.Event_LeadScored{LeadScored: &eventv1.LeadScored{Total: 10, Threshold: 50}}})
	}
	// So with another service's event last (qualification scores the
	// replays): the rest, written after the withdrawal, leaves the grant
	// the withdrawal is newer than.
	a, release = owed("scored", keeper, none, func(a string) { e.setConsent(t, a, emailChannel, granted) })
	scored(a)
	e.setConsent(t, a, emailChannel, withdrawn)
	release()
	if got := consentOf(e.getLead(t, a), emailChannel); got != withdrawn {
		t.Errorf("email consent %v once the unmerge is done after a score, want withdrawn", got)
	}

	// A withdrawal the lead already reads (the person withdrew before the
	// merge and granted while merged, which the unmerge's rest gives
	// back), which writes nothing, by SetConsent or by a form: the rest
	// first, then the withdrawal is written after it.
	for name, withdraw := range map[string]func(a string){
		"noop": func(a string) { e.setConsent(t, a, emailChannel, withdrawn) },
		"formnoop": func(string) {
			form := withExt(lead("formnoop@owed.example"), "ext-formnoop")
			form.Consents = []*eventv1.Consent{{Channel: emailChannel, Status: withdrawn}}
			e.capture(t, form)
		},
	} {
		a, release = owed(name, keeper, func(a string) { e.setConsent(t, a, emailChannel, withdrawn) }, func(a string) { e.setConsent(t, a, emailChannel, granted) })
		scored(a)
		if got := consentOf(e.getLead(t, a), emailChannel); got != withdrawn {
			t.Fatalf("%s: email consent %v before the rest, want withdrawn (its own, from before the merge)", name, got)
		}
		withdraw(a)
		release()
		if got := consentOf(e.getLead(t, a), emailChannel); got != withdrawn {
			t.Errorf("%s: email consent %v after a withdrawal that found it withdrawn, once the unmerge is done, want withdrawn", name, got)
		}
	}

	// A lead merged into it whose person withdrew: the withdrawal the
	// merge carries in is newer than the grant the rest gives back, which
	// is written first.
	a, release = owed("into", keeper, none, func(a string) { e.setConsent(t, a, emailChannel, granted) })
	withdrew := e.capture(t, lead("withdrew@owed.example")).GetLeadId()
	e.setConsent(t, withdrew, emailChannel, withdrawn)
	merge(a, withdrew)
	release()
	if got := consentOf(e.getLead(t, a), emailChannel); got != withdrawn {
		t.Errorf("email consent %v after a merge carried a withdrawal in, once the unmerge is done, want withdrawn", got)
	}

	// Exported: every activity its person sent is in the export.
	a, release = owed("export", keeper, none, none)
	x, err := e.client.ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: a})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(x.GetActivities()); got != eventstore.MaxBatch {
		t.Errorf("exported %d of %d activities", got, eventstore.MaxBatch)
	}
	release()

	// Erased: the identities its last forms claimed are released too.
	a, release = owed("erased", keeper, none, func(string) {
		e.capture(t, withExt(lead("erased-new@owed.example"), "ext-erased")) // a new email, through a
	})
	if _, err := e.client.EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: a, Reason: "access request"}); err != nil {
		t.Fatal(err)
	}
	tl := e.timeline(t, a)
	erased := tl[len(tl)-1].GetLeadErased()
	newEmail := e.vault(t).BlindID("email", "erased-new@owed.example")
	if !slices.ContainsFunc(erased.GetReleased(), func(id *eventv1.Identity) bool { return id.GetToken() == newEmail }) {
		t.Errorf("the erasure released %v, not the email its last form brought", erased.GetReleased())
	}
	release()
}

// longCtx is ctxT for a test that sends thousands of calls: under the
// race detector they take longer than ctxT allows.
func longCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
