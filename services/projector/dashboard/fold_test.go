package dashboard_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/projector/dashboard"
)

func rec(seq uint64, typ string, cycle int32, p *eventv1.Event) eventstore.Record {
	p.EventType = typ
	p.OccurredAt = timestamppb.New(time.Date(2026, 3, 2, 9, int(seq), 0, 0, time.UTC))
	if p.Lifecycle == nil {
		p.Lifecycle = &eventv1.Lifecycle{Cycle: cycle}
	}
	return eventstore.Record{Seq: seq, Event: p}
}

func TestSignOffFollowsTheStream(t *testing.T) {
	mkt := &eventv1.Actor{Id: "maria", Team: eventv1.Team_TEAM_MARKETING}
	sales := &eventv1.Actor{Id: "sam", Team: eventv1.Team_TEAM_SALES}
	ev := func(p any) *eventv1.Event {
		e := &eventv1.Event{}
		switch x := p.(type) {
		case *eventv1.ScoringModelProposed:
			e.Payload = &eventv1.Event_ScoringModelProposed{ScoringModelProposed: x}
		case *eventv1.ScoringModelApproved:
			e.Payload = &eventv1.Event_ScoringModelApproved{ScoringModelApproved: x}
		case *eventv1.ScoringModelActivated:
			e.Payload = &eventv1.Event_ScoringModelActivated{ScoringModelActivated: x}
		}
		return e
	}
	s := dashboard.FoldSignOff([]eventstore.Record{
		rec(1, "", 0, ev(&eventv1.ScoringModelProposed{Model: &eventv1.ScoringModel{Version: 1, Threshold: 50}, ProposedBy: mkt})),
		rec(2, "", 0, ev(&eventv1.ScoringModelApproved{Version: 1, Approver: mkt})),
		rec(3, "", 0, ev(&eventv1.ScoringModelApproved{Version: 1, Approver: sales})),
		rec(4, "", 0, ev(&eventv1.ScoringModelActivated{Version: 1})),
		rec(5, "", 0, ev(&eventv1.ScoringModelProposed{Model: &eventv1.ScoringModel{Version: 2, Threshold: 60}, ProposedBy: mkt})),
		rec(6, "", 0, ev(&eventv1.ScoringModelApproved{Version: 2, Approver: sales})),
		rec(7, "", 0, ev(&eventv1.ScoringModelProposed{Model: &eventv1.ScoringModel{Version: 3}})),
		rec(8, "", 0, ev(&eventv1.ScoringModelApproved{Version: 3, Approver: mkt})),
		rec(9, "", 0, ev(&eventv1.ScoringModelApproved{Version: 3, Approver: sales})),
		rec(10, "", 0, ev(&eventv1.ScoringModelActivated{Version: 3})),
	})
	if s.Active != 3 || len(s.Versions) != 3 {
		t.Fatalf("active %d, %d versions", s.Active, len(s.Versions))
	}
	// Newest first. v2, proposed before v3 went live, can no longer be
	// approved: not awaiting sign-off.
	v3, v2, v1 := s.Versions[0], s.Versions[1], s.Versions[2]
	if v3.State != "active" || v2.State != "superseded" || v1.State != "superseded" {
		t.Errorf("states %s %s %s", v3.State, v2.State, v1.State)
	}
	if len(v2.Approvals) != 1 || v2.Approvals[0].Team != "sales" || v2.Approvals[0].By != "sam" {
		t.Errorf("v2 approvals %+v", v2.Approvals)
	}
	if v1.ProposedBy != "maria (marketing)" || v2.Threshold != 60 {
		t.Errorf("v1 by %q, v2 threshold %d", v1.ProposedBy, v2.Threshold)
	}

	// v3, newer than v2 and approved by marketing before v2 went live,
	// awaits sign-off from both teams again, as qualification counts it.
	s = dashboard.FoldSignOff([]eventstore.Record{
		rec(1, "", 0, ev(&eventv1.ScoringModelProposed{Model: &eventv1.ScoringModel{Version: 1}})),
		rec(2, "", 0, ev(&eventv1.ScoringModelProposed{Model: &eventv1.ScoringModel{Version: 2}})),
		rec(3, "", 0, ev(&eventv1.ScoringModelProposed{Model: &eventv1.ScoringModel{Version: 3}})),
		rec(4, "", 0, ev(&eventv1.ScoringModelApproved{Version: 3, Approver: mkt})),
		rec(5, "", 0, ev(&eventv1.ScoringModelApproved{Version: 2, Approver: mkt})),
		rec(6, "", 0, ev(&eventv1.ScoringModelApproved{Version: 2, Approver: sales})),
		rec(7, "", 0, ev(&eventv1.ScoringModelActivated{Version: 2})),
	})
	if v3 := s.Versions[0]; v3.State != "proposed" || len(v3.Approvals) != 0 {
		t.Errorf("v3 after v2 went live: %s with approvals %+v, want proposed with none standing", v3.State, v3.Approvals)
	}

	// A version nobody has approved yet lists no approvals, as a list:
	// the page stopped rendering on null.
	s = dashboard.FoldSignOff([]eventstore.Record{
		rec(1, "", 0, ev(&eventv1.ScoringModelProposed{Model: &eventv1.ScoringModel{Version: 1, Threshold: 50}, ProposedBy: mkt})),
	})
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"approvals":[]`) {
		t.Errorf("a version without approvals: %s", b)
	}
}

func TestJourneyLanesAndCycles(t *testing.T) {
	steps := dashboard.Journey([]eventstore.Record{
		rec(3, "LeadCaptured", 1, &eventv1.Event{Payload: &eventv1.Event_LeadCaptured{LeadCaptured: &eventv1.LeadCaptured{
			Attribution: &eventv1.Attribution{Source: "web-form"}}}}),
		rec(7, "LeadQualified", 1, &eventv1.Event{Payload: &eventv1.Event_LeadQualified{LeadQualified: &eventv1.LeadQualified{Score: 80, Threshold: 70}}}),
		rec(9, "LeadRejected", 1, &eventv1.Event{Payload: &eventv1.Event_LeadRejected{LeadRejected: &eventv1.LeadRejected{RepId: "bob",
			Reason: eventv1.RejectReason_REJECT_REASON_NOT_A_FIT}}}),
		rec(12, "LeadRecycled", 1, &eventv1.Event{Payload: &eventv1.Event_LeadRecycled{LeadRecycled: &eventv1.LeadRecycled{}}}),
		rec(15, "LeadQualified", 2, &eventv1.Event{Payload: &eventv1.Event_LeadQualified{LeadQualified: &eventv1.LeadQualified{}},
			Lifecycle: &eventv1.Lifecycle{Cycle: 2, Status: eventv1.LeadStatus_LEAD_STATUS_MQL,
				Owner: &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_QUEUE, Id: "routing"}, Deadline: timestamppb.New(time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC))}}),
		rec(16, "SomethingNew", 2, &eventv1.Event{}),
	})
	want := []struct {
		seq      uint64
		lane     string
		newCycle bool
	}{{3, "intake", false}, {7, "qualification", false}, {9, "handoff", false}, {12, "nurture", false}, {15, "qualification", true}, {16, "other", false}}
	if len(steps) != len(want) {
		t.Fatalf("%d steps", len(steps))
	}
	for i, w := range want {
		if s := steps[i]; s.Seq != w.seq || s.Lane != w.lane || s.NewCycle != w.newCycle {
			t.Errorf("step %d: %+v, want %+v", i, s, w)
		}
	}
	if s := steps[2].Summary; s != "Rejected by bob: not a fit" {
		t.Errorf("summary %q", s)
	}
	// A request that named someone else shows the token's caller too.
	named := dashboard.Journey([]eventstore.Record{rec(1, "LeadReassigned", 1, &eventv1.Event{
		Actor:   &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "alice", Team: eventv1.Team_TEAM_SALES},
		Caller:  &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_INTEGRATION, Id: "crm"},
		Payload: &eventv1.Event_LeadReassigned{LeadReassigned: &eventv1.LeadReassigned{}}})})
	if a := named[0].Actor; a != "alice (sales) via crm" {
		t.Errorf("actor %q, want alice (sales) via crm", a)
	}
	if s := steps[2].Summary; s != "Rejected by bob: not a fit" {
		t.Errorf("summary %q", s)
	}
	if !steps[3].Recycle {
		t.Error("LeadRecycled is not marked as a recycle")
	}
	if s := steps[4]; s.Status != "mql" || s.Owner != "queue routing" || s.Deadline.IsZero() {
		t.Errorf("lifecycle after the second MQL: %+v", s)
	}
}

// A deadline is missed when the next step comes after it, unless that
// step is the one the deadline was set for: nurture's review of an
// enrolment, or its recycle of a new lead nobody engaged, comes at it.
func TestJourneyMarksOnlyLateStepsMissed(t *testing.T) {
	review := time.Date(2026, 3, 2, 9, 5, 0, 0, time.UTC) // before the next step (minute = seq)
	lc := func(st eventv1.LeadStatus) *eventv1.Lifecycle {
		return &eventv1.Lifecycle{Cycle: 1, Status: st, Deadline: timestamppb.New(review)}
	}
	steps := dashboard.Journey([]eventstore.Record{
		rec(3, "NurtureEnrolled", 1, &eventv1.Event{Payload: &eventv1.Event_NurtureEnrolled{NurtureEnrolled: &eventv1.NurtureEnrolled{}},
			Lifecycle: lc(eventv1.LeadStatus_LEAD_STATUS_NURTURING)}),
		rec(6, "NurtureExited", 1, &eventv1.Event{Payload: &eventv1.Event_NurtureExited{NurtureExited: &eventv1.NurtureExited{}},
			Lifecycle: lc(eventv1.LeadStatus_LEAD_STATUS_ASSIGNED)}),
		rec(8, "LeadAccepted", 1, &eventv1.Event{Payload: &eventv1.Event_LeadAccepted{LeadAccepted: &eventv1.LeadAccepted{}}}),
	})
	if steps[0].Missed {
		t.Error("an enrolment whose review came at its date is marked missed")
	}
	if !steps[1].Missed {
		t.Error("an acceptance after the deadline is not marked missed")
	}
	if steps[2].Missed {
		t.Error("the last step is judged by the page's clock, not here")
	}
	// Nurture's own step, days late (it was down): missed.
	recycled := rec(4, "LeadRecycled", 1, &eventv1.Event{Payload: &eventv1.Event_LeadRecycled{LeadRecycled: &eventv1.LeadRecycled{}}})
	recycled.Event.OccurredAt = timestamppb.New(review.Add(72 * time.Hour))
	late := dashboard.Journey([]eventstore.Record{
		rec(3, "LeadScored", 1, &eventv1.Event{Payload: &eventv1.Event_LeadScored{LeadScored: &eventv1.LeadScored{}},
			Lifecycle: lc(eventv1.LeadStatus_LEAD_STATUS_NEW)}),
		recycled,
	})
	if !late[0].Missed {
		t.Error("a recycle three days past the deadline is not marked missed")
	}
	// An unmerge that restores a deadline gone by, recycled at once: on time.
	unmerged := rec(3, "LeadUnmerged", 1, &eventv1.Event{Payload: &eventv1.Event_LeadUnmerged{LeadUnmerged: &eventv1.LeadUnmerged{}},
		Lifecycle: lc(eventv1.LeadStatus_LEAD_STATUS_NEW)})
	unmerged.Event.OccurredAt = timestamppb.New(review.Add(30 * 24 * time.Hour))
	recycled = rec(4, "LeadRecycled", 1, &eventv1.Event{Payload: &eventv1.Event_LeadRecycled{LeadRecycled: &eventv1.LeadRecycled{}}})
	recycled.Event.OccurredAt = timestamppb.New(review.Add(30*24*time.Hour + 5*time.Minute))
	if back := dashboard.Journey([]eventstore.Record{unmerged, recycled}); back[0].Missed {
		t.Error("a recycle minutes after the unmerge that restored a deadline gone by is marked missed")
	}
}

// A burst of commits reaches a page as few notices, the last one carrying
// the highest sequence.
func TestLiveCoalescesABurst(t *testing.T) {
	l := dashboard.NewLive(50 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	ch, stop := dashboard.Subscribe(l)
	defer stop()
	for seq := uint64(1); seq <= 1000; seq++ {
		l.Changed(seq)
	}
	var got []dashboard.Notice
	deadline := time.After(2 * time.Second)
	for len(got) == 0 || got[len(got)-1].Seq != 1000 {
		select {
		case n := <-ch:
			got = append(got, n)
		case <-deadline:
			t.Fatalf("notices %v, never seq 1000", got)
		}
	}
	if len(got) > 5 {
		t.Errorf("%d notices for one burst", len(got))
	}
}
