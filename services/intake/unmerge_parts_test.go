package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/intake/app"
)

// An unmerge that gives back more than one commit holds (a lead merged
// long enough to collect a thousand activities) writes the rest in
// commits of its own; an intake killed (SIGKILL) between them leaves the
// rest to a repeat of the unmerge, which writes each replay once.
func TestALongUnmergeIsWrittenInParts(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
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
}

// While an unmerge's rest waits to be written, its lead is not merged
// away: the rest would have nowhere to go. Once written, it may be.
func TestAnUnfinishedUnmergeHoldsOffAMerge(t *testing.T) {
	n := testenv.StartNATS(t)
	reached, gate := make(chan string, 1), make(chan struct{})
	cfg := Config{Addr: "127.0.0.1:0", NATSURL: n.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second}
	cfg.crashPoints = func(p app.CrashPoint, lead string) {
		if p == app.AfterFirstPart {
			reached <- lead
			<-gate
		}
	}
	e := startWith(t, n, cfg)
	ctx := ctxT(t)
	survivor := e.capture(t, lead("hold-keeper@parts.example")).GetLeadId()
	absorbed := e.capture(t, lead("hold-dupe@parts.example")).GetLeadId()
	other := e.capture(t, lead("hold-other@parts.example")).GetLeadId()
	if _, err := e.client.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"}); err != nil {
		t.Fatal(err)
	}
	for i := range eventstore.MaxBatch {
		if _, err := e.client.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: absorbed, ActivityId: fmt.Sprint("h", i),
			Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.client.UnmergeLeads(ctx, &intakev1.UnmergeLeadsRequest{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "two people"})
		done <- err
	}()
	<-reached
	merge := &intakev1.MergeLeadsRequest{SurvivorLeadId: other, AbsorbedLeadId: absorbed, Reason: "third try"}
	_, err := e.client.MergeLeads(ctx, merge)
	close(gate)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "still being given back") {
		t.Fatalf("merging a lead whose unmerge is unfinished: %v, want FailedPrecondition", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.MergeLeads(ctx, merge); err != nil {
		t.Fatalf("merging it once its unmerge is done: %v", err)
	}
}
