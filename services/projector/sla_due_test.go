package main

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// The sales SLA rates are of the hand-offs that can be judged: a hand-off
// left to breach and escalated counts against the rep (it used to count
// nowhere, so carl's 2 of 4 showed as 2 of 2, 100%). One taken away
// before its deadline, or whose deadline is still to come, is not judged,
// nor one whose lead left the rep's hands before it (recycled, erased).
// Marketing's acceptance rate is of the MQLs due likewise.
func TestSalesSLARatesCountHandOffsLeftToBreach(t *testing.T) {
	w := newWorld(t)
	s, base := w.startDashboard(t)
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	rep := func(id string) *eventv1.Owner { return &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: id} }
	ts := func(h float64) *timestamppb.Timestamp { return timestamppb.New(w.at(h)) }
	reassign := func(id string, h float64, cause eventv1.ReassignCause, acceptBy float64) {
		w.lead(t, id, h, lifecycle.Command{Name: lifecycle.Reassign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "dana"}},
			&eventv1.LeadReassigned{From: rep("carl"), To: rep("dana"), Cause: cause, AcceptBy: ts(acceptBy), Segment: "mid"})
	}
	later := timestamppb.New(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))
	// Carl's hand-offs, from hour i:
	//	c1  accept by h4: accepted h1 (in time), attempt h2 (contact by h8: in time)
	//	c2  accept by h5: breached and escalated to dana h6 (due, missed)
	//	c3  accept by h6: breached and escalated to dana at h6, the deadline (due, missed)
	//	c4  accept by h20: reassigned to dana by hand at h4 (not due: taken away before)
	//	c5  accept by 2099 (not due yet)
	//	c6  accept by h9: accepted h6 (in time), no attempt by its contact_by h7 (contact due, missed)
	//	c7  accept by h9: accepted h6.5 (in time), recycled by hand h7, before its contact_by h8 (contact not due)
	//	c8  accept by h8: erased h7.5 (not due: gone before)
	for i, id := range []string{"c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"} {
		h := float64(i)
		acceptBy := map[string]*timestamppb.Timestamp{"c1": ts(4), "c2": ts(5), "c3": ts(6), "c4": ts(20), "c5": later, "c6": ts(9),
			"c7": ts(9), "c8": ts(8)}[id]
		w.lead(t, id, h, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"), Attribution: &eventv1.Attribution{Source: "web-form"}})
		w.lead(t, id, h+0.1, cmd(lifecycle.Qualify), &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 70})
		w.lead(t, id, h+0.2, lifecycle.Command{Name: lifecycle.Assign, Owner: lifecycle.Owner{Kind: lifecycle.OwnerRep, ID: "carl"}},
			&eventv1.LeadAssigned{Owner: rep("carl"), Segment: "mid", AcceptBy: acceptBy})
	}
	w.lead(t, "c1", 1, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "carl", Segment: "mid", ContactBy: ts(8)})
	w.lead(t, "c1", 2, cmd(lifecycle.LogContact), &eventv1.ContactAttempted{RepId: "carl", Attempt: 1, Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE})
	for _, id := range []string{"c2", "c3"} {
		w.lead(t, id, 6, cmd(lifecycle.BreachSLA), &eventv1.SLABreached{Sla: eventv1.SLAKind_SLA_KIND_ACCEPT, Owner: rep("carl"), Segment: "mid"})
		reassign(id, 6, eventv1.ReassignCause_REASSIGN_CAUSE_ESCALATION, 10)
	}
	reassign("c4", 4, eventv1.ReassignCause_REASSIGN_CAUSE_MANUAL, 30)
	w.lead(t, "c6", 6, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "carl", Segment: "mid", ContactBy: ts(7)})
	w.lead(t, "c7", 6.5, cmd(lifecycle.Accept), &eventv1.LeadAccepted{RepId: "carl", Segment: "mid", ContactBy: ts(8)})
	w.lead(t, "c7", 7, lifecycle.Command{Name: lifecycle.Recycle, Reason: "manual"},
		&eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_MANUAL, Note: "asked to wait"})
	w.lead(t, "c8", 7.5, cmd(lifecycle.Erase), &eventv1.LeadErased{Reason: "access request"})
	// c9: an MQL still waiting for routing.
	w.lead(t, "c9", 8, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"), Attribution: &eventv1.Attribution{Source: "web-form"}})
	w.lead(t, "c9", 8.1, cmd(lifecycle.Qualify), &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 70})
	w.projected(t, w.dsn)

	r, err := s.client.GetSLACompliance(ctxT(t), &projectorv1.GetSLAComplianceRequest{Period: marchPeriod()})
	if err != nil {
		t.Fatal(err)
	}
	type due struct {
		assigned, accepted, within, acceptDue, contacted, attemptWithin, contactDue int64
		acceptRate, contactRate                                                     float64
	}
	check := func(name string, row *projectorv1.SalesSLARow, want due) {
		t.Helper()
		got := due{row.GetAssigned(), row.GetAccepted(), row.GetAcceptedWithinSla(), row.GetAcceptDue(), row.GetContacted(),
			row.GetFirstAttemptWithinSla(), row.GetContactDue(), row.GetAcceptedWithinSlaRate(), row.GetFirstAttemptWithinSlaRate()}
		if got.assigned != want.assigned || got.accepted != want.accepted || got.within != want.within || got.acceptDue != want.acceptDue ||
			got.contacted != want.contacted || got.attemptWithin != want.attemptWithin || got.contactDue != want.contactDue ||
			!near(got.acceptRate, want.acceptRate) || !near(got.contactRate, want.contactRate) {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	if len(r.GetReps()) != 2 || r.GetReps()[0].GetKey() != "carl" || r.GetReps()[1].GetKey() != "dana" {
		t.Fatalf("reps %v", r.GetReps())
	}
	// carl: 3 accepted in time of 5 due (c1 c2 c3 c6 c7); 1 first attempt
	// in time of 2 due (c1 c6).
	check("carl", r.GetReps()[0], due{assigned: 8, accepted: 3, within: 3, acceptDue: 5, contacted: 1, attemptWithin: 1, contactDue: 2,
		acceptRate: 0.6, contactRate: 0.5})
	// dana: c2 c3 (accept by h10) and c4 (h30), none accepted: 0 of 3.
	check("dana", r.GetReps()[1], due{assigned: 3, acceptDue: 3})
	check("total", r.GetSalesTotal(), due{assigned: 11, accepted: 3, within: 3, acceptDue: 8, contacted: 1, attemptWithin: 1, contactDue: 2,
		acceptRate: 3.0 / 8, contactRate: 0.5})

	// Marketing is judged on the MQLs due the same way: accepted (c1 c6
	// c7) or held unaccepted past a deadline (c2 c3 carl's, c4 dana's);
	// not c5 (due in 2099), c8 (erased before its deadline) nor c9 (not
	// routed yet). It counted all nine: 3 of 9.
	var all *projectorv1.MarketingSLARow
	for _, m := range r.GetMarketing() {
		if m.GetPeriod() == "2026-03" && m.GetSegment() == "" {
			all = m
		}
	}
	if all.GetMqls() != 9 || all.GetAccepted() != 3 || all.GetAcceptDue() != 6 || !near(all.GetAcceptanceRate(), 0.5) {
		t.Errorf("marketing, March: %v, want 3 accepted of 6 due of 9 MQLs", all)
	}

	// Each "due" figure opens the leads it counts.
	for _, c := range []struct {
		figure, measure string
		want            []string
	}{
		{"sales", "accept_due", []string{"c1", "c2", "c3", "c6", "c7"}},
		{"sales", "contact_due", []string{"c1", "c6"}},
		{"marketing", "accept_due", []string{"c1", "c2", "c3", "c4", "c6", "c7"}},
	} {
		measure, want := c.figure+" "+c.measure, c.want
		q := url.Values{"figure": {c.figure}, "measure": {c.measure}, "row": {"rep"}, "key": {"carl"}, "from": {"2026-03-01"}, "to": {"2026-04-01"}}
		if c.figure == "marketing" {
			q = url.Values{"figure": {c.figure}, "measure": {c.measure}, "month": {"2026-03"}}
		}
		code, out := testenv.HTTPJSON(t, "GET", base+"api/leads?"+q.Encode(), "")
		if code != http.StatusOK {
			t.Fatalf("%s: %d %v", measure, code, out)
		}
		var ids []string
		for _, l := range out["leads"].([]any) {
			ids = append(ids, l.(map[string]any)["lead_id"].(string))
		}
		slices.Sort(ids)
		if !slices.Equal(ids, want) {
			t.Errorf("%s: %v, want %v", measure, ids, want)
		}
	}
}
