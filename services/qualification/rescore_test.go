package main

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/consume"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
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
	activate(t, s.client, scoring.Default())
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
			if err := child.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = child.Wait()
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
