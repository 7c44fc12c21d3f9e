package main

import (
	"cmp"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// A merge keeps the survivor with its rep, so the rep's capacity still
// counts it; an unmerge that gives the absorbed lead back to its rep
// counts it again. dan (pool us) holds one lead at most.
func TestMergeKeepsTheRepsCapacity(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 1)
	us := &eventv1.Profile{Country: "US", Industry: "software"}
	danIsFull := func(why string) {
		t.Helper()
		w.settle(t)
		queued := w.mql(t, &eventv1.Profile{Country: "BR"})
		w.waitFor(t, queued, "LeadQueued", 1)
		_, err := s.client.AssignLead(ctxT(t), &handoffv1.AssignLeadRequest{LeadId: queued, RepId: "dan", RequestId: "by-hand", AssignedBy: ops})
		wantCode(t, err, codes.FailedPrecondition, "")
		if !strings.Contains(err.Error(), "at capacity: 1 of 1") {
			t.Fatalf("%s: dan should be full: %v", why, err)
		}
	}

	survivor := w.mql(t, us)
	if owner := ownerOf(w.waitFor(t, survivor, "LeadAssigned", 1)[0]); owner != "dan" {
		t.Fatalf("assigned to %s, want dan", owner)
	}
	absorbed := uuid.NewString()
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: us, Attribution: &eventv1.Attribution{Source: "web-form"}}, intakeActor)
	w.merge(t, survivor, absorbed)
	danIsFull("the survivor was merged into")

	// dan's lead merged into another: released; unmerged: dan's again.
	other := uuid.NewString()
	w.write(t, other, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: us, Attribution: &eventv1.Attribution{Source: "web-form"}}, intakeActor)
	before := w.state(t, survivor)
	w.merge(t, other, survivor)
	w.settle(t)
	w.write(t, survivor, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: before.Status, Owner: before.Owner, Due: before.Deadline},
		&eventv1.LeadUnmerged{SurvivorLeadId: other, AbsorbedLeadId: survivor, Reason: "two people"}, intakeActor)
	if st := w.state(t, survivor); st.Status != lifecycle.StatusAssigned || st.Owner.ID != "dan" {
		t.Fatalf("unmerged lead: %v", st)
	}
	danIsFull("dan's lead was unmerged back to him")
}

// merge writes what intake's MergeLeads does: the survivor records the
// merge as it stands, the absorbed lead becomes MERGED.
func (w *world) merge(t *testing.T, survivor, absorbed string) {
	t.Helper()
	w.mergeCarrying(t, survivor, absorbed, nil)
}

// fact writes payload on a lead as intake writes a fact (the survivor's
// side of a merge or an unmerge): its lifecycle as it is.
func (w *world) fact(t *testing.T, leadID string, payload proto.Message) {
	t.Helper()
	ev, err := envelope.NewEvent(leadID, payload, envelope.Meta{Actor: intakeActor, CorrelationID: uuid.NewString()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	head := w.lastEvent(t, leadID)
	ev.Lifecycle = head.Event.GetLifecycle()
	if _, err := w.store.Append(ctxT(t), eventstore.LeadSubject(leadID), head.Seq, ev); err != nil {
		t.Fatal(err)
	}
}

// An unmerge gives the absorbed lead back where its merge left it, and
// handoff takes it up again: an assigned lead whose accept deadline passed
// while it was merged breaches and escalates; an MQL merged before it was
// routed is routed.
func TestUnmergedLeadIsTakenUpAgain(t *testing.T) {
	w := newWorld(t)
	w.keepFired = true // countFired
	s := w.start(t)
	routingSetup(t, s.client, 10)
	slaPolicy(t, s.client, 2*time.Second, time.Hour, time.Second, eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP)
	unmerge := func(survivor, absorbed string, before lifecycle.State) {
		t.Helper()
		w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Unmerge, Reason: "two people", Status: before.Status, Owner: before.Owner, Due: before.Deadline},
			&eventv1.LeadUnmerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "two people"}, intakeActor)
	}
	captured := func() string {
		id := uuid.NewString()
		w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: dach(10), Attribution: &eventv1.Attribution{Source: "web-form"}}, intakeActor)
		return id
	}

	assigned := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, assigned, "LeadAssigned", 1)[0])
	before := w.state(t, assigned)
	survivor := captured()
	w.merge(t, survivor, assigned)
	// The accept warning and deadline fire while the lead is merged.
	eventually(t, 15*time.Second, func() bool { return countFired(t, w, assigned) >= 2 }, "the accept timers did not fire")
	settleTimers(t, w)
	if evs := w.events(t, assigned); len(ofType(evs, "SLAWarned"))+len(ofType(evs, "SLABreached")) != 0 {
		t.Fatalf("a merged lead's timers acted: %v", evs[len(evs)-1])
	}
	unmerge(survivor, assigned, before)
	breach := w.waitFor(t, assigned, "SLABreached", 1)[0].GetSlaBreached()
	if breach.GetOwner().GetId() != owner || breach.GetEscalation() != eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP {
		t.Errorf("breach after the unmerge: %v", breach)
	}
	to := w.waitFor(t, assigned, "LeadReassigned", 1)[0].GetLeadReassigned().GetTo().GetId()
	if to == owner || to == "" {
		t.Errorf("escalated from %s to %q", owner, to)
	}
	brief, err := s.client.GetHandoffBrief(ctxT(t), &handoffv1.GetHandoffBriefRequest{LeadId: assigned})
	if err != nil {
		t.Fatal(err)
	}
	var owners []string
	for _, o := range brief.GetBrief().GetOwners() {
		owners = append(owners, fmt.Sprintf("%s %s-%s open=%t", o.GetOwner().GetId(), o.GetHow(), o.GetEnded(), o.GetUntil() == nil))
	}
	if want := fmt.Sprintf("[%s routed-merged open=false %s unmerged-escalated open=false %s escalated- open=true]", owner, owner, to); fmt.Sprint(owners) != want {
		t.Errorf("brief's owners %v, want %s", owners, want)
	}

	// Qualified and merged before handoff saw it: routing owes it nothing
	// until the unmerge.
	s.stop()
	mql := captured()
	w.qualify(t, mql)
	before = w.state(t, mql)
	survivor = captured()
	w.merge(t, survivor, mql)
	s = w.start(t)
	w.settle(t)
	if n := len(ofType(w.events(t, mql), "LeadAssigned")); n != 0 {
		t.Fatalf("a merged MQL was assigned %d times", n)
	}
	unmerge(survivor, mql, before)
	a := w.waitFor(t, mql, "LeadAssigned", 1)[0]
	if st := w.state(t, mql); st.Status != lifecycle.StatusAssigned || st.Owner.ID != ownerOf(a) {
		t.Errorf("after the unmerge: %+v", st)
	}
	w.settle(t)
	time.Sleep(500 * time.Millisecond)
	if n := len(ofType(w.events(t, mql), "LeadAssigned")); n != 1 {
		t.Errorf("%d assignments after the unmerge, want 1", n)
	}

	// Queued when it was merged: routed afresh on the unmerge, so its
	// retries start over.
	queued := w.mql(t, &eventv1.Profile{Country: "BR"})
	w.waitFor(t, queued, "LeadQueued", 1)
	before = w.state(t, queued)
	survivor = captured()
	w.merge(t, survivor, queued)
	unmerge(survivor, queued, before)
	un := last(ofType(w.events(t, queued), "LeadUnmerged"))
	if q := w.waitFor(t, queued, "LeadQueued", 2)[1]; q.GetCausationId() != un.GetEventId() {
		t.Errorf("queued again, caused by %s, want the unmerge %s", q.GetCausationId(), un.GetEventId())
	}
}

// A survivor qualified on both leads' facts is routed on the profile
// that qualified it: the absorbed lead's (DACH, 300 people) where its own
// (a free-mail address) says nothing, not the fallback queue; the brief
// shows that profile.
func TestAMergedLeadIsRoutedOnTheMergedProfile(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	survivor, absorbed := uuid.NewString(), uuid.NewString()
	for id, p := range map[string]*eventv1.Profile{survivor: {EmailDomain: "gmail.com"}, absorbed: dach(300)} {
		w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{
			SealedPersonal: w.sealed(t, id, &eventv1.Personal{Contact: &eventv1.Contact{Email: "li@" + cmp.Or(p.GetEmailDomain(), "globex.example")}}),
			Profile:        p, Attribution: &eventv1.Attribution{Source: "web-form"}}, intakeActor)
	}
	w.mergeCarrying(t, survivor, absorbed, dach(300))
	w.qualify(t, survivor)
	a := w.waitFor(t, survivor, "LeadAssigned", 1)[0].GetLeadAssigned()
	if a.GetRule() != "dach-smb" || a.GetSegment() != "smb" {
		t.Fatalf("routed by %q to segment %q, want dach-smb: the merged profile", a.GetRule(), a.GetSegment())
	}
	r, err := s.client.GetHandoffBrief(ctxT(t), &handoffv1.GetHandoffBriefRequest{LeadId: survivor})
	if err != nil {
		t.Fatal(err)
	}
	if p := r.GetBrief().GetProfile(); p.GetCountry() != "DE" || p.GetEmployees() != 300 || p.GetEmailDomain() != "gmail.com" {
		t.Errorf("the brief's profile %v, want the absorbed lead's under the survivor's own", p)
	}
}

// A survivor whose own address is a free mail provider's goes to the
// owner of the account the absorbed lead's company address matches, as
// that lead would have: the merge does not take the person from them.
func TestAMergedLeadKeepsTheAbsorbedLeadsAccount(t *testing.T) {
	company := dach(300)
	company.EmailDomain = "acme.example"
	routedToAcme(t, company, &eventv1.Personal{Contact: &eventv1.Contact{Email: "li@acme.example"}})
}

// So does one whose absorbed lead named the account's company on its
// form (sealed with that lead's key) from an address no account has.
func TestAMergedLeadKeepsTheAccountItsCompanyNames(t *testing.T) {
	company := dach(300)
	company.EmailDomain, company.Company = "li-consulting.example", ""
	routedToAcme(t, company, &eventv1.Personal{Contact: &eventv1.Contact{Email: "li@li-consulting.example"}, Company: "Acme GmbH."})
}

// And one whose company a lead merged into its merged lead named.
func TestAMergedLeadKeepsTheAccountANestedMergeNames(t *testing.T) {
	company := dach(300)
	company.EmailDomain, company.Company = "li-consulting.example", ""
	routedToAcme(t, company, &eventv1.Personal{Contact: &eventv1.Contact{Email: "li@li-consulting.example"}, Company: "Acme GmbH."}, true)
}

// routedToAcme merges a lead captured with profile and personal into a
// free-mail survivor (nested: by way of another free-mail lead merged
// into it), qualifies the survivor and wants it routed to the account
// acme's owner.
func routedToAcme(t *testing.T, profile *eventv1.Profile, personal *eventv1.Personal, nested ...bool) {
	t.Helper()
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	survivor, absorbed := w.freeMailLead(t), uuid.NewString()
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{
		SealedPersonal: w.sealed(t, absorbed, personal), Profile: profile, Attribution: &eventv1.Attribution{Source: "web-form"}}, intakeActor)
	if len(nested) > 0 && nested[0] {
		between := w.freeMailLead(t)
		w.mergeCarrying(t, between, absorbed, profile)
		absorbed, profile = between, envelope.MergeProfile(&eventv1.Profile{EmailDomain: "gmail.com"}, profile)
	}
	w.mergeCarrying(t, survivor, absorbed, profile)
	w.qualify(t, survivor)
	a := w.waitFor(t, survivor, "LeadAssigned", 1)[0].GetLeadAssigned()
	if a.GetRule() != "account" || a.GetOwner().GetId() != "dan" || a.GetDecision().GetAccountId() != "acme" {
		t.Fatalf("routed by %q to %s, account %q; want the account acme's owner dan", a.GetRule(), a.GetOwner().GetId(), a.GetDecision().GetAccountId())
	}
}

// A survivor's person is the absorbed lead's too: a rep who rejected the
// absorbed lead is passed over for the survivor as for a lead of their
// own (README: a rep who rejected the lead, in any journey).
func TestAMergedLeadIsNotRoutedToTheAbsorbedLeadsRejecter(t *testing.T) {
	w, s, absorbed, first := assignedLead(t)
	if _, err := s.client.RejectLead(ctxT(t), &handoffv1.RejectLeadRequest{LeadId: absorbed, RepId: first, RequestId: "r1", Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY}); err != nil {
		t.Fatal(err)
	}
	w.recycled(t, absorbed, last(w.events(t, absorbed)))
	survivor := w.freeMailLead(t)
	w.mergeCarrying(t, survivor, absorbed, dach(5000))
	w.qualify(t, survivor)
	a := w.waitFor(t, survivor, "LeadAssigned", 1)[0].GetLeadAssigned()
	if a.GetOwner().GetId() == first {
		t.Fatalf("the survivor went to %s, who rejected the lead merged into it: %s", first, a.GetDecision().GetSummary())
	}
	for _, cd := range a.GetDecision().GetCandidates() {
		if cd.GetRepId() == first && cd.GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_PRIOR_OWNER {
			t.Errorf("%s recorded as %v %q, want passed over for the rejection", first, cd.GetOutcome(), cd.GetDetail())
		}
	}
}

// freeMailLead captures a lead whose address is a free mail provider's.
func (w *world) freeMailLead(t *testing.T) string {
	t.Helper()
	id := uuid.NewString()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{
		SealedPersonal: w.sealed(t, id, &eventv1.Personal{Contact: &eventv1.Contact{Email: "li@gmail.com"}}),
		Profile:        &eventv1.Profile{EmailDomain: "gmail.com"}, Attribution: &eventv1.Attribution{Source: "web-form"}}, intakeActor)
	return id
}

// mergeCarrying is merge with the survivor's LeadMerged carrying the
// absorbed lead's profile p, as intake writes it since 2026-12-06.
func (w *world) mergeCarrying(t *testing.T, survivor, absorbed string, p *eventv1.Profile) {
	t.Helper()
	payload := &eventv1.LeadMerged{SurvivorLeadId: survivor, AbsorbedLeadId: absorbed, Reason: "one person"}
	carried := proto.CloneOf(payload)
	carried.AbsorbedProfile = p
	w.fact(t, survivor, carried)
	w.write(t, absorbed, lifecycle.Command{Name: lifecycle.Merge, Reason: survivor}, payload, intakeActor)
}
