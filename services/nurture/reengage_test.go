package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/nurture/app"
)

// scoreFor records, as qualification would, a score caused by cause with
// a verdict, and the LeadQualified it implies.
func (w *world) scoreFor(t testing.TB, leadID string, cause *eventv1.Event, total int, qualify bool) {
	t.Helper()
	verdict := eventv1.ScoreVerdict_SCORE_VERDICT_NONE
	if qualify {
		verdict = eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY
	}
	ctx := ctxT(t)
	subj := eventstore.LeadSubject(leadID)
	qual := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "qualification"}
	for range 100 {
		recs, err := w.store.Load(ctx, subj)
		if err != nil {
			t.Fatal(err)
		}
		l := recs[len(recs)-1]
		meta := envelope.Meta{Actor: qual, CorrelationID: cause.GetCorrelationId(), CausationID: cause.GetEventId()}
		scored, st, err := lifecycle.NewEvent(leadID, lifecycle.FromProto(l.Event.GetLifecycle()), lifecycle.Command{Name: lifecycle.Score, Score: total},
			lifecycle.DefaultPolicy(), &eventv1.LeadScored{ModelId: "scoring", ModelVersion: 1, Total: int32(total), Threshold: 50, Verdict: verdict}, meta, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		evs := []*eventv1.Event{scored}
		if qualify {
			meta.CausationID = scored.GetEventId()
			q, _, err := lifecycle.NewEvent(leadID, st, lifecycle.Command{Name: lifecycle.Qualify}, lifecycle.DefaultPolicy(),
				&eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: int32(total), Threshold: 50}, meta, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, q)
		}
		_, err = w.store.Append(ctx, subj, l.Seq, evs...)
		if errors.Is(err, eventstore.ErrConflict) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("kept losing races")
}

// waitFor waits until the lead has n events of type typ and returns them.
func (w *world) waitFor(t testing.TB, leadID, typ string, n int) []*eventv1.Event {
	t.Helper()
	var evs []*eventv1.Event
	eventually(t, 20*time.Second, func() bool {
		evs = w.events(t, leadID)
		return len(ofType(evs, typ)) >= n
	}, "lead %s: no %d %s: %v", leadID, n, typ, func() any { return types(evs) })
	return evs
}

// A nurtured lead that shows interest the program counts is re-engaged
// (LeadReengaged, caused by the activity); re-scored below the threshold
// it goes back to its program until the same review date; qualified, it
// is an MQL in its second journey cycle. A program that runs out without
// re-engagement exits with a next review date and the lead is enrolled
// in the exit rules' next program, by its review timer.
func TestReengagementAndProgramEnd(t *testing.T) { testReengagementAndProgramEnd(t, newWorld) }

func testReengagementAndProgramEnd(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	s := w.start(t, func(c *Config) { c.shortestProgram = time.Second }) // for the sprint
	put(t, s.client, &eventv1.NurtureProgram{ProgramId: "later", Name: "Later", Duration: days(30),
		ExitRules: &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{demo}}})
	put(t, s.client, &eventv1.NurtureProgram{ProgramId: "webinars", Name: "Webinar series", Duration: days(45),
		EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "smb", Causes: []eventv1.RecycleCause{rejected}, Segments: []string{"smb"}}},
		ExitRules:  &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{webinar}, ThenProgramId: "later"}})
	put(t, s.client, &eventv1.NurtureProgram{ProgramId: "sprint", Name: "Two-second sprint", Duration: durationpb.New(2 * time.Second),
		EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "mid", Causes: []eventv1.RecycleCause{rejected}, Segments: []string{"mid"}}},
		ExitRules:  &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{webinar}, ThenProgramId: "later"}})

	notQualified, qualified, ends := uuid.NewString(), uuid.NewString(), uuid.NewString()
	for _, l := range []string{notQualified, qualified} {
		w.accepted(t, l, "smb", 30)
		w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	}

	t.Run("re-engaged, not qualified", func(t *testing.T) {
		evs := w.nurtured(t, notQualified)
		enrolled := last(evs)
		review := enrolled.GetNurtureEnrolled().GetReviewAt().AsTime()
		w.activity(t, notQualified, eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN) // not counted by the program
		act := w.activity(t, notQualified, webinar)
		evs = w.waitFor(t, notQualified, "LeadReengaged", 1)
		re := ofType(evs, "LeadReengaged")
		if len(re) != 1 || re[0].GetCausationId() != act.GetEventId() || re[0].GetLeadReengaged().GetProgramId() != "webinars" ||
			re[0].GetLeadReengaged().GetActivityType() != webinar || re[0].GetLeadReengaged().GetCycle() != 1 {
			t.Fatalf("re-engagement: %v", re)
		}
		if st := stateOf(re[0]); st.Status != lifecycle.StatusNurturing || st.Deadline.After(time.Now().Add(time.Hour)) {
			t.Fatalf("after re-engagement: %+v", st)
		}
		w.scoreFor(t, notQualified, re[0], 35, false)
		evs = w.waitFor(t, notQualified, "NurtureEnrolled", 2)
		exit := ofType(evs, "NurtureExited")
		en := ofType(evs, "NurtureEnrolled")[1]
		if len(exit) != 1 || exit[0].GetNurtureExited().GetCause() != eventv1.NurtureExitCause_NURTURE_EXIT_CAUSE_NOT_QUALIFIED ||
			en.GetCausationId() != exit[0].GetEventId() || en.GetNurtureEnrolled().GetProgramId() != "webinars" ||
			!en.GetNurtureEnrolled().GetReviewAt().AsTime().Equal(review) || !stateOf(en).Deadline.Equal(review) {
			t.Fatalf("back to the program until %v: %v / %v", review, exit, en)
		}
	})
	t.Run("re-engaged, qualified again in cycle 2", func(t *testing.T) {
		w.nurtured(t, qualified)
		// Much the program does not count comes first: the activity it
		// does is heard all the same (it was not after 64 others).
		for range 70 {
			w.activity(t, qualified, eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN)
		}
		w.activity(t, qualified, webinar)
		evs := w.waitFor(t, qualified, "LeadReengaged", 1)
		w.scoreFor(t, qualified, ofType(evs, "LeadReengaged")[0], 72, true)
		got, err := s.client.GetLeadNurture(ctxT(t), &nurturev1.GetLeadNurtureRequest{LeadId: qualified})
		if err != nil || got.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_MQL || got.GetCycle() != 2 {
			t.Fatalf("after qualifying again: %v %v", got, err)
		}
		// Sent back "not now" before any routing in this journey: the
		// recycle names no segment, not the first journey's.
		w.write(t, qualified, lifecycle.Command{Name: lifecycle.Disqualify, Reason: "budget next year", NotNow: true},
			&eventv1.LeadDisqualified{RuleId: "budget", Reason: "budget next year", NotNow: true})
		evs = w.waitFor(t, qualified, "LeadRecycled", 2)
		if r := ofType(evs, "LeadRecycled")[1].GetLeadRecycled(); r.GetSegment() != "" || r.GetCycle() != 2 {
			t.Fatalf("the second journey's recycle: %v, want no segment, cycle 2", r)
		}
	})
	t.Run("program ends", func(t *testing.T) {
		// Rejected only now: its program lasts two seconds.
		w.accepted(t, ends, "mid", 30)
		w.reject(t, ends, eventv1.RejectReason_REJECT_REASON_NOT_READY, "mid")
		evs := w.nurtured(t, ends)
		if p := last(evs).GetNurtureEnrolled().GetProgramId(); p != "sprint" {
			t.Fatalf("enrolled in %s", p)
		}
		evs = w.waitFor(t, ends, "NurtureEnrolled", 2)
		exit := ofType(evs, "NurtureExited")
		en := ofType(evs, "NurtureEnrolled")
		if len(exit) != 1 {
			t.Fatalf("exits: %v", types(evs))
		}
		x := exit[0].GetNurtureExited()
		if x.GetCause() != eventv1.NurtureExitCause_NURTURE_EXIT_CAUSE_ENDED || x.GetNextProgramId() != "later" ||
			exit[0].GetCausationId() != en[0].GetEventId() || x.GetNextReviewAt().AsTime().Before(time.Now().Add(29*24*time.Hour)) {
			t.Fatalf("exit: %v", exit[0])
		}
		if exit[0].GetRecordedAt().AsTime().Before(en[0].GetNurtureEnrolled().GetReviewAt().AsTime()) {
			t.Fatalf("exited at %v, before the review %v", exit[0].GetRecordedAt().AsTime(), en[0].GetNurtureEnrolled().GetReviewAt().AsTime())
		}
		if st := stateOf(exit[0]); st.Status != lifecycle.StatusRecycled || st.Owner != lifecycle.QueueNurture {
			t.Fatalf("after the exit: %+v", st)
		}
		next := en[1]
		if next.GetCausationId() != exit[0].GetEventId() || next.GetNurtureEnrolled().GetProgramId() != "later" ||
			!next.GetNurtureEnrolled().GetReviewAt().AsTime().Equal(x.GetNextReviewAt().AsTime()) || lifecycle.Check(stateOf(next)) != nil {
			t.Fatalf("next enrolment: %v", next)
		}
	})
}

// A program retired while a lead is in it keeps the lead until its
// review: re-engaged and re-scored below the threshold, the lead goes
// back to that program, re-engaging on its rules, not the default's.
func TestARetiredProgramKeepsItsLeadsUntilTheirReview(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	put(t, s.client, &eventv1.NurtureProgram{ProgramId: "demos-only", Name: "Demos only", Duration: days(30),
		EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "smb", Causes: []eventv1.RecycleCause{rejected}, Segments: []string{"smb"}}},
		ExitRules:  &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{demo}}})
	lead := uuid.NewString()
	w.accepted(t, lead, "smb", 30)
	w.reject(t, lead, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	enrolled := last(w.nurtured(t, lead)).GetNurtureEnrolled()
	if enrolled.GetProgramId() != "demos-only" {
		t.Fatalf("enrolled in %s, want demos-only", enrolled.GetProgramId())
	}
	if _, err := s.client.RetireProgram(ctxT(t), &nurturev1.RetireProgramRequest{ProgramId: "demos-only", ChangedBy: marketer}); err != nil {
		t.Fatal(err)
	}
	w.activity(t, lead, demo)
	re := ofType(w.waitFor(t, lead, "LeadReengaged", 1), "LeadReengaged")[0]
	w.scoreFor(t, lead, re, 35, false)
	back := ofType(w.waitFor(t, lead, "NurtureEnrolled", 2), "NurtureEnrolled")[1].GetNurtureEnrolled()
	if back.GetProgramId() != "demos-only" || !back.GetReviewAt().AsTime().Equal(enrolled.GetReviewAt().AsTime()) {
		t.Fatalf("back in %s until %v, want demos-only until %v", back.GetProgramId(), back.GetReviewAt().AsTime(), enrolled.GetReviewAt().AsTime())
	}
}

// An activity is judged by the program's rules when it comes: a program
// edited to count webinars re-engages its leads on webinars from then on,
// not on one from before the edit (woken by any later event).
func TestAProgramEditJudgesNoEarlierActivity(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	demosOnly := &eventv1.NurtureProgram{ProgramId: "demos", Name: "Demos", Duration: days(30),
		EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "smb", Causes: []eventv1.RecycleCause{rejected}, Segments: []string{"smb"}}},
		ExitRules:  &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{demo}}}
	put(t, s.client, demosOnly)
	lead := uuid.NewString()
	w.accepted(t, lead, "smb", 30)
	w.reject(t, lead, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	w.nurtured(t, lead)
	before := w.activity(t, lead, webinar) // not counted by the program then
	w.settle(t, group)
	edited := proto.CloneOf(demosOnly)
	edited.ExitRules.ReengageOn = append(edited.ExitRules.ReengageOn, webinar)
	put(t, s.client, edited)
	w.activity(t, lead, eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_OPEN) // wakes nurture
	w.settle(t, group)
	if re := ofType(w.events(t, lead), "LeadReengaged"); len(re) != 0 {
		t.Fatalf("re-engaged on the webinar from before the edit: %v", re)
	}
	after := w.activity(t, lead, webinar)
	re := ofType(w.waitFor(t, lead, "LeadReengaged", 1), "LeadReengaged")
	if len(re) != 1 || re[0].GetCausationId() != after.GetEventId() {
		t.Fatalf("re-engagements %v: want one, caused by the webinar after the edit (%s), not the one before (%s)",
			re, after.GetEventId(), before.GetEventId())
	}
}

var (
	qualificationBin  string
	qualificationErr  error
	qualificationOnce sync.Once
)

// startQualification builds the real qualification service (once per
// test binary) and runs it as a process against w's JetStream.
func (w *world) startQualification(t *testing.T) qualificationv1.QualificationServiceClient {
	t.Helper()
	qualificationOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nurture-test-bin-")
		if err != nil {
			qualificationErr = err
			return
		}
		qualificationBin = filepath.Join(dir, "qualification")
		out, err := exec.Command("go", "build", "-o", qualificationBin, "github.com/leadflow/leadflow/services/qualification").CombinedOutput()
		if err != nil {
			qualificationErr = fmt.Errorf("build qualification: %v: %s", err, out)
		}
	})
	if qualificationErr != nil {
		t.Fatal(qualificationErr)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	cmd := exec.Command(qualificationBin, "-nats", w.nats.Server.URL(), "-addr", addr, "-http-addr", "", "-stream", stream)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := qualificationv1.NewQualificationServiceClient(conn)
	eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.ListModelVersions(ctx, &qualificationv1.ListModelVersionsRequest{})
		return err == nil
	}, "qualification did not start")
	return c
}

// With the real qualification service: a lead becomes an MQL, sales
// rejects it, nurture recycles and enrols it, it comes back to a webinar,
// nurture re-engages it, and the shared scoring model makes it an MQL
// again, in its second journey cycle.
func TestReengagedLeadQualifiesAgainWithQualification(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	q := w.startQualification(t)
	ctx := ctxT(t)
	m := &eventv1.ScoringModel{Description: "webinars qualify", Threshold: 50,
		EngagementRules: []*eventv1.EngagementRule{{Id: "webinar", Description: "Attended a webinar", ActivityType: webinar,
			Points: 30, Cap: 60, HalfLife: durationpb.New(30 * 24 * time.Hour)}}}
	marketing := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "mia", Team: eventv1.Team_TEAM_MARKETING}
	sales := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "sam", Team: eventv1.Team_TEAM_SALES}
	p, err := q.ProposeModel(ctx, &qualificationv1.ProposeModelRequest{Model: m, ProposedBy: marketing})
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []*eventv1.Actor{marketing, sales} {
		if _, err := q.ApproveModel(ctx, &qualificationv1.ApproveModelRequest{Version: p.GetVersion(), Approver: who}); err != nil {
			t.Fatal(err)
		}
	}

	l := uuid.NewString()
	w.capture(t, l)
	w.activity(t, l, webinar)
	w.activity(t, l, webinar)
	evs := w.waitFor(t, l, "LeadQualified", 1)
	ann := lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "ann"}
	w.write(t, l, lifecycle.Command{Name: lifecycle.Assign, Owner: ann}, &eventv1.LeadAssigned{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}, Segment: "smb"})
	w.write(t, l, lifecycle.Command{Name: lifecycle.Accept}, &eventv1.LeadAccepted{RepId: "ann", Segment: "smb"})
	w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	w.nurtured(t, l)
	w.activity(t, l, webinar)
	evs = w.waitFor(t, l, "LeadQualified", 2)
	got, err := s.client.GetLeadNurture(ctx, &nurturev1.GetLeadNurtureRequest{LeadId: l})
	if err != nil || got.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_MQL || got.GetCycle() != 2 {
		t.Fatalf("nurture view: %v %v", got, err)
	}
	var path []string
	for _, ev := range evs {
		switch ev.GetEventType() {
		case "LeadRejected", "LeadRecycled", "NurtureEnrolled", "LeadReengaged", "LeadQualified":
			path = append(path, ev.GetEventType())
		}
	}
	// Qualification scores the webinar too, but only the re-engagement's
	// score may qualify a nurtured lead: the way back is on record.
	want := []string{"LeadQualified", "LeadRejected", "LeadRecycled", "NurtureEnrolled", "LeadReengaged", "LeadQualified"}
	if !slices.Equal(path, want) {
		t.Fatalf("journey %v, want %v", path, want)
	}
}

// Interest the program counts that comes while a re-engagement waits for
// its score, or after the re-score sent the lead out of its program and
// before it is enrolled again, is in no score: it re-engages the lead
// once more (a demo request after a webinar must not wait 45 days). What
// a score has seen re-engages nobody twice.
func TestInterestDuringTheRescoreIsHeard(t *testing.T) {
	w := newWorld(t)
	late := uuid.NewString() // gets a demo request right after its exit
	var (
		once    sync.Once
		demoErr = make(chan error, 1)
		demoEv  *eventv1.Event
	)
	s := w.start(t, func(c *Config) {
		c.afterAppend = func(ev *eventv1.Event) {
			if ev.GetLeadId() != late || ev.GetNurtureExited() == nil {
				return
			}
			once.Do(func() {
				// Before nurture enrols the lead again: its append races this.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var err error
				demoEv, err = w.appendLead(ctx, lifecycle.DefaultPolicy(), late, lifecycle.Command{Name: lifecycle.RecordActivity},
					&eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: demo}, intakeActor)
				demoErr <- err
			})
		}
	})
	webinars := &eventv1.NurtureProgram{ProgramId: "webinars", Name: "Webinar series", Duration: days(45),
		EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "smb", Causes: []eventv1.RecycleCause{rejected}, Segments: []string{"smb"}}},
		ExitRules:  &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{webinar, demo}}}
	put(t, s.client, webinars)
	pending := uuid.NewString()
	for _, l := range []string{pending, late} {
		w.accepted(t, l, "smb", 30)
		w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
		w.nurtured(t, l)
		w.activity(t, l, webinar)
	}
	// isDemo checks that re is the re-engagement by demo request d.
	isDemo := func(t *testing.T, re, d *eventv1.Event) {
		t.Helper()
		if re.GetCausationId() != d.GetEventId() || re.GetLeadReengaged().GetActivityType() != demo {
			t.Fatalf("re-engagement %v, want one caused by the demo request %s", re, d.GetEventId())
		}
	}

	t.Run("while the re-score is pending", func(t *testing.T) {
		re := ofType(w.waitFor(t, pending, "LeadReengaged", 1), "LeadReengaged")[0]
		d := w.activity(t, pending, demo) // qualification scores re as of re: without it
		// An edit of the program meanwhile: the demo, put off until the
		// score, is judged all the same.
		renamed := proto.CloneOf(webinars)
		renamed.Name = "Webinar series (renamed)"
		put(t, s.client, renamed)
		w.scoreFor(t, pending, re, 35, false)
		var evs []*eventv1.Event
		eventually(t, 20*time.Second, func() bool {
			evs = w.events(t, pending)
			return len(ofType(evs, "LeadReengaged")) == 2 || len(ofType(evs, "NurtureEnrolled")) == 2
		}, "lead %s: neither re-engaged nor enrolled again: %v", pending, func() any { return types(evs) })
		if n := len(ofType(evs, "NurtureExited")); n != 0 {
			t.Fatalf("the lead left its program before the demo request was scored: %v", types(evs))
		}
		again := ofType(evs, "LeadReengaged")[1]
		isDemo(t, again, d)
		// Its score, low too, sends the lead back to the program: once.
		w.scoreFor(t, pending, again, 40, false)
		w.waitFor(t, pending, "NurtureEnrolled", 2)
		w.settle(t, group)
		if evs := w.events(t, pending); len(ofType(evs, "LeadReengaged")) != 2 || len(ofType(evs, "NurtureEnrolled")) != 2 {
			t.Fatalf("a scored activity re-engaged the lead again: %v", types(evs))
		}
	})
	t.Run("between the exit and the enrolment", func(t *testing.T) {
		re := ofType(w.waitFor(t, late, "LeadReengaged", 1), "LeadReengaged")[0]
		w.scoreFor(t, late, re, 35, false)
		select {
		case err := <-demoErr:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("nurture did not exit the lead")
		}
		evs := w.waitFor(t, late, "LeadReengaged", 2)
		isDemo(t, ofType(evs, "LeadReengaged")[1], demoEv)
		var path []string
		for _, ev := range evs[len(evs)-4:] {
			path = append(path, ev.GetEventType())
		}
		if want := []string{"NurtureExited", "ActivityRecorded", "NurtureEnrolled", "LeadReengaged"}; !slices.Equal(path, want) {
			t.Fatalf("path %v, want %v", path, want)
		}
	})
}

// Interest another lead's person showed while merged into a nurtured lead
// went back with the unmerge: it re-engages the survivor no more, even
// when the survivor's own re-engagement is scored after the unmerge.
func TestInterestGivenBackReengagesNobodyHere(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	putWebinars(t, s.client)
	survivor, absorbed := uuid.NewString(), uuid.NewString()
	w.accepted(t, survivor, "smb", 30)
	w.reject(t, survivor, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	w.nurtured(t, survivor)
	w.activity(t, survivor, webinar)
	re := ofType(w.waitFor(t, survivor, "LeadReengaged", 1), "LeadReengaged")[0]

	prior := stateOf(w.capture(t, absorbed))
	merged := &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "same person"}
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, merged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, merged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.RecordActivity},
		&eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: webinar, MergedFrom: absorbed})
	unmerged := &eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "two people"}
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: prior.Status, Owner: prior.Owner, Due: prior.Deadline}, unmerged)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Resubmit}, unmerged)

	w.scoreFor(t, survivor, re, 35, false)
	w.waitFor(t, survivor, "NurtureEnrolled", 2)
	w.settle(t, group)
	if evs := w.events(t, survivor); len(ofType(evs, "LeadReengaged")) != 1 {
		t.Fatalf("the other person's webinar re-engaged the survivor: %v", types(evs))
	}
}

// Interest that came while nurture was stopped is judged however much
// followed it: a demo request behind 64 page views re-engages the lead.
func TestInterestBehindManyOtherFactsReengages(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	l := uuid.NewString()
	w.accepted(t, l, "smb", 30)
	w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	w.nurtured(t, l)
	w.settle(t, group)
	s.stop()
	want := w.activity(t, l, demo)
	for range 64 {
		w.activity(t, l, eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT) // not counted by the default program
	}
	w.start(t)
	evs := w.waitFor(t, l, "LeadReengaged", 1)
	if re := ofType(evs, "LeadReengaged")[0]; re.GetCausationId() != want.GetEventId() {
		t.Fatalf("re-engagement %v, want one caused by the demo request %s", re, want.GetEventId())
	}
}

// Interest that occurred before the lead was recycled, synced late (a
// webinar platform's upload), was sales' to see: it re-engages nobody.
// What occurs after the recycle does.
func TestInterestThatOccurredBeforeTheRecycleIsNotJudged(t *testing.T) {
	w, _, l, rejected, _ := webinarLead(t)
	w.occurred = rejected.GetOccurredAt().AsTime().Add(-2 * time.Hour)
	w.activity(t, l, webinar)
	w.occurred = time.Time{}
	w.settle(t, group)
	if evs := w.events(t, l); len(ofType(evs, "LeadReengaged")) != 0 {
		t.Fatalf("a webinar attended before the rejection re-engaged the lead: %v", types(evs))
	}
	now := w.activity(t, l, webinar)
	if re := ofType(w.waitFor(t, l, "LeadReengaged", 1), "LeadReengaged")[0]; re.GetCausationId() != now.GetEventId() {
		t.Fatalf("re-engagement %v, want one caused by the webinar since %s", re, now.GetEventId())
	}
}

// A new lead recycled unqualified was never sales': interest that
// occurred before its recycle, synced late, is its program's to judge
// (its scorer may not qualify a lead in nurture): a demo request made
// five minutes before the deadline and stored after the recycle
// re-engages it.
func TestLateInterestOfALeadRecycledUnqualifiedReengages(t *testing.T) {
	w := newWorld(t)
	w.start(t)
	l := uuid.NewString()
	w.capture(t, l)
	w.scored(t, l, 20, 2*time.Second)
	recycled := ofType(w.waitFor(t, l, "NurtureEnrolled", 1), "LeadRecycled")[0]
	if c := recycled.GetLeadRecycled().GetCause(); c != notQualified {
		t.Fatalf("recycled %v, want not qualified", c)
	}
	w.lateDemoReengages(t, l, recycled)
}

// So is a new lead sent to nurture by hand before it qualified: sales
// never had it either, and a demo request made before the recycle,
// synced after it, re-engages it.
func TestLateInterestOfANewLeadRecycledByHandReengages(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	l := uuid.NewString()
	w.capture(t, l)
	w.scored(t, l, 20, time.Hour)
	if _, err := s.client.RecycleLead(ctxT(t), &nurturev1.RecycleLeadRequest{LeadId: l, Note: "not for sales yet", Actor: marketer}); err != nil {
		t.Fatal(err)
	}
	recycled := ofType(w.waitFor(t, l, "NurtureEnrolled", 1), "LeadRecycled")[0]
	w.lateDemoReengages(t, l, recycled)
}

// A re-engaged lead scored below the threshold goes back to its program
// until that program's review; an enrolment written only after the
// review passed (nurture killed between the exit and it) takes the lead
// where the review would have: the program that follows, not the same
// program for a fresh term.
func TestAnEnrolmentLateForItsReviewTakesTheNextProgram(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	put(t, s.client, &eventv1.NurtureProgram{ProgramId: "wb", Name: "Webinars", Duration: days(45),
		EntryRules: []*eventv1.NurtureEntryRule{{RuleId: "smb", Causes: []eventv1.RecycleCause{rejected}, Segments: []string{"smb"}}},
		ExitRules:  &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{webinar}, ThenProgramId: "nurture-default"}})
	l := uuid.NewString()
	w.accepted(t, l, "smb", 30)
	w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	review := last(w.nurtured(t, l)).GetNurtureEnrolled().GetReviewAt().AsTime()
	w.activity(t, l, webinar)
	re := ofType(w.waitFor(t, l, "LeadReengaged", 1), "LeadReengaged")[0]
	w.settle(t, group)
	s.stop() // only the calls below act
	w.scoreFor(t, l, re, 35, false)

	// The exit, a minute before the review; killed before the enrolment.
	ctx, cancel := context.WithCancel(ctxT(t))
	before := w.nurtureWith(app.WithClock(func() time.Time { return review.Add(-time.Minute) }),
		app.WithAfterAppend(func(ev *eventv1.Event) {
			if ev.GetNurtureExited() != nil {
				cancel()
			}
		}))
	_, _ = before.Reconcile(ctx, l, envelope.Meta{})
	if x := ofType(w.events(t, l), "NurtureExited"); len(x) != 1 || x[0].GetNurtureExited().GetNextProgramId() != "wb" {
		t.Fatalf("exits %v, want one back to wb until its review", x)
	}
	if n := len(ofType(w.events(t, l), "NurtureEnrolled")); n != 1 {
		t.Fatalf("%d enrolments, want the first alone: the kill came before the second", n)
	}
	// Back an hour after the review.
	if _, err := w.nurtureAt(review.Add(time.Hour)).Reconcile(ctxT(t), l, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if e := last(ofType(w.events(t, l), "NurtureEnrolled")).GetNurtureEnrolled(); e.GetProgramId() != "nurture-default" {
		t.Fatalf("enrolled in %q until %v after wb's review %v passed, want nurture-default", e.GetProgramId(), e.GetReviewAt().AsTime(), review)
	}
}

// lateDemoReengages stores a demo request made five minutes before the
// lead's recycle (a late sync) and checks that it re-engages the lead.
func (w *world) lateDemoReengages(t *testing.T, l string, recycled *eventv1.Event) {
	t.Helper()
	w.occurred = recycled.GetOccurredAt().AsTime().Add(-5 * time.Minute)
	late := w.activity(t, l, demo)
	w.occurred = time.Time{}
	if re := ofType(w.waitFor(t, l, "LeadReengaged", 1), "LeadReengaged")[0]; re.GetCausationId() != late.GetEventId() {
		t.Fatalf("re-engagement %v, want one caused by the late demo request %s", re, late.GetEventId())
	}
}
