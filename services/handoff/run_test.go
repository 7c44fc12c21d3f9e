package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/consume"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/handoff/adapters"
	"github.com/leadflow/leadflow/services/handoff/ports"
)

// Qualified leads are routed from the stream: by territory rule to a
// pool rep, by account to the account's owner, and with no fit to the
// fallback queue with a deadline. Every decision records the rule, the
// reps considered and why, and the routing version it used.
func TestRoutingByTerritoryPoolAndAccount(t *testing.T) {
	testRoutingByTerritoryPoolAndAccount(t, newWorld)
}

func testRoutingByTerritoryPoolAndAccount(t *testing.T, newWorld func(testing.TB) *world) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	cfg, err := s.client.GetRouting(ctxT(t), &handoffv1.GetRoutingRequest{})
	if err != nil || cfg.GetVersion() != 12 || len(cfg.GetReps()) != 5 || len(cfg.GetRules().GetRules()) != 3 {
		t.Fatalf("routing data: version %d, %d reps, %v", cfg.GetVersion(), len(cfg.GetReps()), err)
	}

	enterprise := w.mql(t, dach(5000))
	us := w.mql(t, &eventv1.Profile{Country: "US", Industry: "Software", EmailDomain: "startup.example"})
	account := w.mql(t, &eventv1.Profile{Country: "DE", Employees: 50, EmailDomain: "eu.acme.example"})
	byName := w.mql(t, &eventv1.Profile{Country: "DE", Employees: 50, Company: "Acme Inc.", EmailDomain: "gmail.com"})
	nowhere := w.mql(t, &eventv1.Profile{Country: "BR", Industry: "retail"})

	a := w.waitFor(t, enterprise, "LeadAssigned", 1)[0].GetLeadAssigned()
	d := a.GetDecision()
	if a.GetOwner().GetId() != "ann" || a.GetRule() != "dach-enterprise" || a.GetSegment() != "enterprise" || d.GetRoutingVersion() != 12 ||
		d.GetPoolId() != "dach" || d.GetRepId() != "ann" || len(d.GetCandidates()) != 3 || len(d.GetRules()) != 1 || !d.GetRules()[0].GetMatched() {
		t.Errorf("enterprise lead: %v", a)
	}
	for _, c := range d.GetCandidates()[1:] {
		if c.GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_NOT_NEXT || c.GetDetail() == "" {
			t.Errorf("a rep not chosen says why: %v", c)
		}
	}
	if a.GetAcceptBy() == nil || a.GetSla().GetAcceptWithin().AsDuration() != 24*time.Hour {
		t.Errorf("no acceptance deadline from the default SLA: %v", a)
	}
	if st := w.state(t, enterprise); st.Status != lifecycle.StatusAssigned || st.Owner.ID != "ann" || !st.Deadline.Equal(a.GetAcceptBy().AsTime()) {
		t.Errorf("lifecycle after assignment: %+v", st)
	}

	if a := w.waitFor(t, us, "LeadAssigned", 1)[0].GetLeadAssigned(); a.GetOwner().GetId() != "dan" || a.GetRule() != "us-software" {
		t.Errorf("us lead: %v", a)
	}
	for _, id := range []string{account, byName} {
		a := w.waitFor(t, id, "LeadAssigned", 1)[0].GetLeadAssigned()
		if a.GetOwner().GetId() != "dan" || a.GetRule() != "account" || a.GetAccountId() != "acme" || a.GetSegment() != "smb" ||
			a.GetDecision().GetCandidates()[0].GetSource() != "account:acme" {
			t.Errorf("account lead: %v", a)
		}
	}

	q := w.waitFor(t, nowhere, "LeadQueued", 1)[0]
	lq := q.GetLeadQueued()
	if lq.GetQueue() != "sales-fallback" || lq.GetDeadline() == nil || lq.GetRetryAt() == nil || len(lq.GetDecision().GetRules()) != 3 {
		t.Errorf("unrouted lead: %v", lq)
	}
	if st := lifecycle.FromProto(q.GetLifecycle()); st.Status != lifecycle.StatusMQL || st.Owner.IsZero() || st.Deadline.IsZero() {
		t.Errorf("a queued lead has an owner and a deadline: %+v", st)
	}

	// A redelivered qualification, or one seen again, routes nothing more.
	w.settle(t)
	for _, id := range []string{enterprise, us, account, byName} {
		if n := len(ofType(w.events(t, id), "LeadAssigned")); n != 1 {
			t.Errorf("lead %s assigned %d times", id, n)
		}
	}
}

// Intake seals the company name. With the vault's keys, routing opens it
// to match the lead's account, and keeps the name out of the decision.
func TestAccountBySealedCompanyName(t *testing.T) { testAccountBySealedCompanyName(t, newWorld) }

// Mid-rotation of the master key, handoff runs with the new one and reads
// keys that intake still wrapped with the old one (-read-master-keys).
func TestAccountBySealedCompanyNameMidRotation(t *testing.T) {
	testAccountBySealedCompanyName(t, newWorld, func(c *Config) {
		c.MasterKey, c.ReadMasterKeys = strings.Repeat("ef", 32), c.MasterKey
	})
}

func testAccountBySealedCompanyName(t *testing.T, newWorld func(testing.TB) *world, edits ...func(*Config)) {
	w := newWorld(t)
	master, blind := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	ctx := ctxT(t)
	mk, _ := hex.DecodeString(master)
	bk, _ := hex.DecodeString(blind)
	// The vault is intake's to make: handoff only reads it.
	v, err := vault.New(ctx, w.nats.JS, vault.Config{MasterKey: mk, BlindKey: bk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	s := w.startWith(t, func(c *Config) {
		c.MasterKey = master // no blind key: handoff blinds nothing
		for _, edit := range edits {
			edit(c)
		}
	})
	routingSetup(t, s.client, 10)
	// Keys as intake takes them now (two slots of one block: the second
	// read finds the block kept), and one of a lead's own, as stored
	// before key blocks.
	newKey := func(id string, own bool) *vault.Key {
		if !own {
			k, err := v.Take(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
		k, err := v.NewKey(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Save(ctx, k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	for i, own := range []bool{false, false, true} {
		id := uuid.NewString()
		plain, _ := proto.Marshal(&eventv1.Personal{Company: "ACME Inc.", Title: "CTO"})
		key := newKey(id, own)
		sealed, err := key.Seal(plain)
		if err != nil {
			t.Fatal(err)
		}
		w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{SealedPersonal: sealed,
			Profile: &eventv1.Profile{Country: "DE", Employees: 50, EmailDomain: "gmail.com"}}, intakeActor)
		// Captured again with the email only: that submission seals no
		// company, and the one before still names it.
		plain, _ = proto.Marshal(&eventv1.Personal{Contact: &eventv1.Contact{Email: "cto@gmail.com"}})
		again, err := key.Seal(plain)
		if err != nil {
			t.Fatal(err)
		}
		w.write(t, id, lifecycle.Command{Name: lifecycle.Resubmit}, &eventv1.LeadResubmitted{SealedPersonal: again,
			Profile: &eventv1.Profile{EmailDomain: "gmail.com"}}, intakeActor)
		w.qualify(t, id)
		ev := w.waitFor(t, id, "LeadAssigned", 1)[0]
		a := ev.GetLeadAssigned()
		if a.GetOwner().GetId() != "dan" || a.GetAccountId() != "acme" || a.GetDecision().GetAccountMatch() != "company name" {
			t.Fatalf("sealed company, lead %d: %v", i, a)
		}
		if b, _ := proto.Marshal(ev); bytes.Contains(bytes.ToLower(b), []byte("acme inc")) {
			t.Error("the company name is in the event in the clear")
		}
		if i > 0 {
			continue
		}
		// The rep's brief opens what intake sealed, until the lead is
		// erased.
		detail, err := key.Seal([]byte("asked about SSO for 40 seats"))
		if err != nil {
			t.Fatal(err)
		}
		w.write(t, id, lifecycle.Command{Name: lifecycle.RecordActivity}, &eventv1.ActivityRecorded{ActivityId: uuid.NewString(),
			Type: eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST, SealedDetail: detail}, intakeActor)
		brief := func() *handoffv1.HandoffBrief {
			r, err := s.client.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: id})
			if err != nil {
				t.Fatal(err)
			}
			return r.GetBrief()
		}
		b := brief()
		if b.GetProfile().GetCompany() != "ACME Inc." || b.GetProfile().GetTitle() != "CTO" || b.GetProfile().GetCountry() != "DE" ||
			len(b.GetActivities()) != 1 || b.GetActivities()[0].GetDetail() != "asked about SSO for 40 seats" {
			t.Fatalf("brief of a sealed lead: %v %v", b.GetProfile(), b.GetActivities())
		}
		var keyIDs []string
		for _, sealed := range [][]byte{sealed, detail} {
			kid, err := vault.SealedKeyID(sealed)
			if err != nil {
				t.Fatal(err)
			}
			keyIDs = append(keyIDs, kid)
		}
		if err := v.Shred(ctx, id, keyIDs...); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			b = brief()
			if b.GetProfile().GetCompany() == "" && b.GetProfile().GetTitle() == "" && b.GetActivities()[0].GetDetail() == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the brief of a shredded lead: %v %v", b.GetProfile(), b.GetActivities())
			}
		}
		if b.GetProfile().GetCountry() != "DE" {
			t.Errorf("the clear profile went with the keys: %v", b.GetProfile())
		}
	}

	// Assigned by hand from the queue while its account's owner is away:
	// the account, matched by the sealed company name, still counts.
	if _, err := s.client.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "dan", TeamId: "us", Capacity: 10}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	plain, _ := proto.Marshal(&eventv1.Personal{Company: "ACME Inc.", Title: "CTO"})
	sealed, err := newKey(id, false).Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{SealedPersonal: sealed,
		Profile: &eventv1.Profile{Country: "BR", EmailDomain: "gmail.com"}}, intakeActor)
	w.qualify(t, id)
	w.waitFor(t, id, "LeadQueued", 1)
	if _, err := s.client.AssignLead(ctx, &handoffv1.AssignLeadRequest{LeadId: id, RepId: "bob", RequestId: "by-hand", AssignedBy: ops}); err != nil {
		t.Fatal(err)
	}
	if a := w.waitFor(t, id, "LeadAssigned", 1)[0].GetLeadAssigned(); a.GetOwner().GetId() != "bob" || a.GetAccountId() != "acme" {
		t.Errorf("assigned by hand: owner %s, account %q, want bob and acme", a.GetOwner().GetId(), a.GetAccountId())
	}
}

// A lead back from nurture is routed by the company its latest form
// names, not by the one routing opened for its first journey and the
// cached fold kept: ACME's owner had it; Globex, a DACH company, goes to
// the DACH pool.
func TestALaterFormsCompanyRoutesTheNextJourney(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	ctx := ctxT(t)
	id := uuid.NewString()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{SealedPersonal: w.sealed(t, id, &eventv1.Personal{Company: "ACME GmbH"}),
		Profile: &eventv1.Profile{Country: "DE", Employees: 50, EmailDomain: "gmail.com"}}, intakeActor)
	w.qualify(t, id)
	if a := w.waitFor(t, id, "LeadAssigned", 1)[0].GetLeadAssigned(); a.GetOwner().GetId() != "dan" || a.GetAccountId() != "acme" {
		t.Fatalf("first journey: owner %s, account %q, want dan and acme", a.GetOwner().GetId(), a.GetAccountId())
	}
	if _, err := s.client.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: id, RepId: "dan", RequestId: "r1", Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY}); err != nil {
		t.Fatal(err)
	}
	w.write(t, id, lifecycle.Command{Name: lifecycle.Enroll, Owner: lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "drip"}}, &eventv1.NurtureEnrolled{ProgramId: "drip"}, intakeActor)
	w.write(t, id, lifecycle.Command{Name: lifecycle.Resubmit}, &eventv1.LeadResubmitted{SealedPersonal: w.sealed(t, id, &eventv1.Personal{Company: "Globex Corp"}),
		Profile: &eventv1.Profile{EmailDomain: "gmail.com"}}, intakeActor)
	w.qualify(t, id)
	a := w.waitFor(t, id, "LeadAssigned", 2)[1].GetLeadAssigned()
	if a.GetAccountId() != "" || !slices.Contains([]string{"ann", "bob", "cat"}, a.GetOwner().GetId()) {
		t.Fatalf("second journey: owner %s, account %q, want the DACH pool and no account", a.GetOwner().GetId(), a.GetAccountId())
	}
}

// The round robin follows the weights and survives a restart of the
// service: the pointer is the pool's last turn in the stream, not memory.
// A rep at capacity is skipped and the decision says so; with every rep
// full a lead queues, and a rejection frees a slot that the queued lead's
// retry takes.
func TestPoolFairnessCapacityAndRestart(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 5)
	got := map[string]int{}
	var order, all []string
	route := func(n int) {
		for range n {
			id := w.mql(t, dach(50))
			a := w.waitFor(t, id, "LeadAssigned", 1)[0].GetLeadAssigned()
			got[a.GetOwner().GetId()]++
			order = append(order, a.GetOwner().GetId())
			all = append(all, id)
		}
	}
	route(4)
	s.stop()
	s = w.start(t)
	route(4)
	if got["ann"] != 4 || got["bob"] != 2 || got["cat"] != 2 {
		t.Fatalf("8 leads over weights 2/1/1 across a restart: %v (order %v)", got, order)
	}

	// Capacity 5 each: ann fills up first and is skipped, saying why.
	route(7)
	if got["ann"] != 5 || got["bob"] != 5 || got["cat"] != 5 {
		t.Fatalf("15 leads, 3 reps of capacity 5: %v", got)
	}
	full := false
	for _, id := range all[8:] {
		for _, c := range w.waitFor(t, id, "LeadAssigned", 1)[0].GetLeadAssigned().GetDecision().GetCandidates() {
			full = full || (c.GetRepId() == "ann" && c.GetOutcome() == eventv1.CandidateOutcome_CANDIDATE_OUTCOME_AT_CAPACITY && c.GetDetail() == "5 of 5 open leads")
		}
	}
	if !full {
		t.Error("ann was never reported at capacity")
	}
	waiting := w.mql(t, dach(50))
	q := w.waitFor(t, waiting, "LeadQueued", 1)[0].GetLeadQueued()
	for _, c := range q.GetDecision().GetCandidates() {
		if c.GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_AT_CAPACITY {
			t.Errorf("everyone full, but %v", c)
		}
	}
	var bobs string
	for _, id := range all {
		if ownerOf(last(w.events(t, id))) == "bob" {
			bobs = id
			break
		}
	}
	if _, err := s.client.RejectLead(ctxT(t), &handoffv1.RejectLeadRequest{LeadId: bobs, RepId: "bob", RequestId: "r1",
		Reason: eventv1.RejectReason_REJECT_REASON_NOT_A_FIT}); err != nil {
		t.Fatal(err)
	}
	if a := w.waitFor(t, waiting, "LeadAssigned", 1)[0]; ownerOf(a) != "bob" {
		t.Errorf("the slot bob's rejection freed went to %s", ownerOf(a))
	}
}

// A lead nobody can take waits in the fallback queue; routing tries
// again, and assigns it once a rep is back.
func TestQueuedLeadIsRoutedWhenARepReturns(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	ctx := ctxT(t)
	away := []*eventv1.Absence{{From: timestamppb.New(time.Now().Add(-time.Hour)), Until: timestamppb.New(time.Now().Add(time.Hour))}}
	for _, r := range []string{"ann", "bob", "cat"} {
		if _, err := s.client.SetOutOfOffice(ctx, &handoffv1.SetOutOfOfficeRequest{OutOfOffice: &eventv1.OutOfOffice{RepId: r, Absences: away}, ChangedBy: ops}); err != nil {
			t.Fatal(err)
		}
	}
	id := w.mql(t, dach(50))
	q := w.waitFor(t, id, "LeadQueued", 1)[0].GetLeadQueued()
	for _, c := range q.GetDecision().GetCandidates() {
		if c.GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_OUT_OF_OFFICE {
			t.Errorf("candidate %v", c)
		}
	}
	if _, err := s.client.SetOutOfOffice(ctx, &handoffv1.SetOutOfOfficeRequest{OutOfOffice: &eventv1.OutOfOffice{RepId: "cat"}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	a := w.waitFor(t, id, "LeadAssigned", 1)[0]
	if ownerOf(a) != "cat" || a.GetCausationId() == "" {
		t.Fatalf("after cat's return: %v", a)
	}
	if n := len(ofType(w.events(t, id), "SLABreached")); n != 0 {
		t.Errorf("%d route breaches before the route deadline", n)
	}
}

// A running service routes each lead with every routing change stored
// before it, though it cached the data for the lead before: each change
// here lands just before the next lead's qualification.
func TestRoutesWithChangesStoredBeforeTheLead(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	ctx := ctxT(t)
	for i, rep := range []string{"bob", "cat", "ann", "bob", "cat"} {
		r, err := s.client.PutPool(ctx, &handoffv1.PutPoolRequest{Pool: &eventv1.Pool{PoolId: "dach", Members: []*eventv1.PoolMember{{RepId: rep, Weight: 1}}}, ChangedBy: ops})
		if err != nil {
			t.Fatal(err)
		}
		id := w.mql(t, dach(50))
		a := w.waitFor(t, id, "LeadAssigned", 1)[0]
		if v := a.GetLeadAssigned().GetDecision().GetRoutingVersion(); ownerOf(a) != rep || v != r.GetVersion() {
			t.Errorf("lead %d: assigned to %s under routing version %d, want %s under %d", i, ownerOf(a), v, rep, r.GetVersion())
		}
	}
}

// A queued lead past its route deadline breaches the ROUTE SLA once,
// while routing keeps trying (without writing to the lead) until a rep
// can take it.
func TestQueuedLeadBreachesRouteDeadlineOnce(t *testing.T) {
	w := newWorld(t)
	w.keepFired = true // countFired
	s := w.start(t)
	routingSetup(t, s.client, 10)
	ctx := ctxT(t)
	if _, err := s.client.PutPool(ctx, &handoffv1.PutPoolRequest{Pool: &eventv1.Pool{PoolId: "dach", Members: []*eventv1.PoolMember{{RepId: "cat", Weight: 1}}}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "cat", TeamId: "emea", Capacity: 10}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: dach(50)}, intakeActor)
	w.qualifyWithin(t, id, 2*time.Second)
	qe := w.waitFor(t, id, "LeadQueued", 1)[0]
	q := qe.GetLeadQueued()
	if q.GetDecision().GetCandidates()[0].GetOutcome() != eventv1.CandidateOutcome_CANDIDATE_OUTCOME_INACTIVE {
		t.Errorf("queued: %v", q)
	}
	// The queue owns the lead, an MQL still due by its route deadline.
	qualified := w.waitFor(t, id, "LeadQualified", 1)[0].GetLifecycle()
	if st := qe.GetLifecycle(); q.GetQueue() == "" || st.GetOwner().GetKind() != eventv1.OwnerKind_OWNER_KIND_QUEUE || st.GetOwner().GetId() != q.GetQueue() ||
		st.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_MQL || !st.GetDeadline().AsTime().Equal(qualified.GetDeadline().AsTime()) {
		t.Errorf("queued in %q, stamped %v; qualified %v", q.GetQueue(), st, qualified)
	}
	b := w.waitFor(t, id, "SLABreached", 1)[0].GetSlaBreached()
	if b.GetSla() != eventv1.SLAKind_SLA_KIND_ROUTE || b.GetEscalation() != eventv1.SLAEscalation_SLA_ESCALATION_REQUEUE || b.GetOwner().GetId() != q.GetQueue() {
		t.Errorf("route breach: %v", b)
	}
	// Retries after the breach, handled before the lead is read.
	atBreach := countFired(t, w, id)
	eventually(t, 15*time.Second, func() bool { return countFired(t, w, id) >= atBreach+2 }, "no retry fired after the breach")
	settleTimers(t, w)
	if evs := w.events(t, id); len(ofType(evs, "SLABreached")) != 1 || len(ofType(evs, "LeadQueued")) != 1 || last(evs).GetEventType() != "SLABreached" {
		t.Fatalf("retries wrote to the lead: %d breaches, %d queued", len(ofType(evs, "SLABreached")), len(ofType(evs, "LeadQueued")))
	}
	if _, err := s.client.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "cat", TeamId: "emea", Capacity: 10, Active: true}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	if a := w.waitFor(t, id, "LeadAssigned", 1)[0]; ownerOf(a) != "cat" {
		t.Errorf("assigned to %s", ownerOf(a))
	}
}

// A lead routed after its route deadline passed (handoff was down then,
// or behind) records the breach before its assignment, in one commit:
// the miss happened, whoever routes it. It showed an on-time hand-off.
func TestLateRoutingRecordsTheRouteBreach(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	id := uuid.NewString()
	w.write(t, id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{Profile: dach(50)}, intakeActor)
	w.qualifyWithin(t, id, time.Nanosecond) // due before handoff reads it
	a := w.waitFor(t, id, "LeadAssigned", 1)[0]
	evs := w.events(t, id)
	b := ofType(evs, "SLABreached")
	qualified := ofType(evs, "LeadQualified")[0].GetLifecycle().GetDeadline().AsTime()
	if len(b) != 1 || b[0].GetSlaBreached().GetSla() != eventv1.SLAKind_SLA_KIND_ROUTE || !b[0].GetSlaBreached().GetDueAt().AsTime().Equal(qualified) ||
		evs[len(evs)-2] != b[0] || ownerOf(a) == "" {
		t.Fatalf("a late routing: breaches %v, then %v; want the route breach due %v right before the assignment", b, a, qualified)
	}
	// A lead routed in time records none.
	ok := w.mql(t, dach(50))
	w.waitFor(t, ok, "LeadAssigned", 1)
	if n := len(ofType(w.events(t, ok), "SLABreached")); n != 0 {
		t.Errorf("%d breaches of a lead routed in time", n)
	}
}

// Routing data is changed through the API, each change a new version;
// bad input is INVALID_ARGUMENT naming the field and changes nothing.
func TestRoutingDataValidation(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	ctx := ctxT(t)
	_, err := s.client.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "eve", TeamId: "apac", Capacity: 5, Active: true}, ChangedBy: ops})
	wantCode(t, err, codes.InvalidArgument, "rep.team_id")
	_, err = s.client.PutPool(ctx, &handoffv1.PutPoolRequest{Pool: &eventv1.Pool{PoolId: "x", Members: []*eventv1.PoolMember{{RepId: "zed", Weight: 1}}}, ChangedBy: ops})
	wantCode(t, err, codes.InvalidArgument, "pool.members[0].rep_id")
	_, err = s.client.PutAccount(ctx, &handoffv1.PutAccountRequest{Account: &eventv1.Account{AccountId: "acme2", Name: "Acme Ltd", OwnerRepId: "ann"}, ChangedBy: ops})
	wantCode(t, err, codes.InvalidArgument, "account.name")
	_, err = s.client.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: "apac", Hours: &eventv1.WorkingHours{TimeZone: "Asia/Nowhere",
		Days: []*eventv1.WorkingDay{{Day: eventv1.Weekday_WEEKDAY_MONDAY, Start: "09:00", End: "17:00"}}}}, ChangedBy: ops})
	wantCode(t, err, codes.InvalidArgument, "team.hours.time_zone")
	_, err = s.client.SetSLAPolicy(ctx, &handoffv1.SetSLAPolicyRequest{Policy: &eventv1.SLAPolicy{Segment: "smb"}, ChangedBy: ops})
	wantCode(t, err, codes.InvalidArgument, "policy.accept_within")
	_, err = s.client.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "eve", TeamId: "emea", Capacity: 5, Active: true}})
	wantCode(t, err, codes.InvalidArgument, "changed_by")
	_, err = s.client.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "eve", TeamId: "emea", Capacity: 5, Active: true}, ChangedBy: ops, ExpectedVersion: 3})
	wantCode(t, err, codes.Aborted, "")

	r, err := s.client.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "eve", TeamId: "emea", Capacity: 5, Active: true}, ChangedBy: ops, ExpectedVersion: 12})
	if err != nil || r.GetVersion() != 13 || r.GetUnchanged() {
		t.Fatalf("put rep: %v %v", r, err)
	}
	r, err = s.client.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "eve", TeamId: "emea", Capacity: 5, Active: true}, ChangedBy: ops})
	if err != nil || r.GetVersion() != 13 || !r.GetUnchanged() {
		t.Fatalf("the same rep again: %v %v", r, err)
	}
	// A retry of the conditional change, its answer lost: not stale.
	r, err = s.client.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "eve", TeamId: "emea", Capacity: 5, Active: true}, ChangedBy: ops, ExpectedVersion: 12})
	if err != nil || r.GetVersion() != 13 || !r.GetUnchanged() {
		t.Fatalf("the conditional change again: %v %v", r, err)
	}
	recs, err := w.store.Load(ctx, "model.routing")
	if err != nil || len(recs) != 13 {
		t.Fatalf("%d routing changes stored, want 13 (%v)", len(recs), err)
	}
	if ch := last(eventsOf(recs)).GetRoutingChanged(); ch.GetVersion() != 13 || ch.GetChangedBy().GetId() != "olga" || ch.GetRep().GetRepId() != "eve" {
		t.Errorf("last change: %v", ch)
	}
}

// Rep.active is a plain bool: a rep put without it is stored inactive
// and takes no leads, and the answer says so.
func TestRepPutWithoutActiveIsSaidInactive(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	ctx := ctxT(t)
	if _, err := s.client.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: "emea"}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rep          *eventv1.Rep
		wantInactive bool
	}{
		{&eventv1.Rep{RepId: "eve", TeamId: "emea", Capacity: 5}, true}, // active left out
		{&eventv1.Rep{RepId: "eve", TeamId: "emea", Capacity: 5, Active: true}, false},
		{&eventv1.Rep{RepId: "eve", TeamId: "emea", Capacity: 5, Active: true}, false}, // unchanged
	} {
		r, err := s.client.PutRep(ctx, &handoffv1.PutRepRequest{Rep: tc.rep, ChangedBy: ops})
		if err != nil || r.GetInactive() != tc.wantInactive {
			t.Errorf("put %v: %v %v, want inactive %v", tc.rep, r, err, tc.wantInactive)
		}
	}
}

// Two replicas share the lead partitions. Every lead is routed once, and
// the pool's turns stay exact across them: the pointer is appended with
// optimistic concurrency, so a replica that lost a race decides again.
func TestTwoReplicasShareRouting(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	w.start(t)
	routingSetup(t, s.client, 100)
	// Sharing, not a hand-over: both members joined, and each has renewed
	// (every second) since and given up the partitions the other takes.
	// A lead routed in the middle of a hand-over may be delivered to both.
	eventually(t, 10*time.Second, func() bool {
		m, err := consume.Members(ctxT(t), w.nats.JS, consume.DefaultMembersBucket, ports.Group)
		return err == nil && m == 2
	}, "the second replica did not join")
	time.Sleep(3 * time.Second)
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = w.mql(t, dach(50))
	}
	got := map[string]int{}
	for _, id := range ids {
		got[ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])]++
	}
	w.settle(t)
	for _, id := range ids {
		if k := len(ofType(w.events(t, id), "LeadAssigned")); k != 1 {
			t.Fatalf("lead %s assigned %d times", id, k)
		}
	}
	if got["ann"] != 20 || got["bob"] != 10 || got["cat"] != 10 {
		t.Errorf("40 leads over weights 2/1/1 by two replicas: %v", got)
	}
	recs, err := w.store.Load(ctxT(t), adapters.PoolSubject("dach"))
	if err != nil {
		t.Fatal(err)
	}
	// A replica's waiting decisions take their turns in one append: the
	// last turn carries the ones before it.
	// Turns follow each other on the pool's virtual clock, within an
	// append as across appends; only the last turn of one carries the
	// passes (the pointer after all of them).
	leads := map[string]int{}
	var clock uint64
	for _, e := range eventsOf(recs) {
		turn := e.GetPoolTurnTaken()
		for i, tt := range append(turn.GetBefore(), turn) {
			leads[tt.GetLeadId()]++
			if tt.GetClock() < clock {
				t.Errorf("turn for %s at clock %d, after one at %d", tt.GetLeadId(), tt.GetClock(), clock)
			}
			clock = tt.GetClock()
			if last := i == len(turn.GetBefore()); last != (len(tt.GetPasses()) > 0) {
				t.Errorf("turn %d of an append of %d: %d passes", i+1, len(turn.GetBefore())+1, len(tt.GetPasses()))
			}
		}
	}
	for _, id := range ids {
		if leads[id] != 1 {
			t.Errorf("lead %s took %d pool turns, want 1", id, leads[id])
		}
	}
	if len(leads) != n {
		t.Errorf("%d leads took pool turns, want %d", len(leads), n)
	}
}

// A fired timers' TTL the server would refuse on every schedule stops
// the service at start, naming the flag.
func TestAShortTimerTTLIsRefusedAtStart(t *testing.T) {
	err := run(context.Background(), Config{NATSURL: "nats://127.0.0.1:1", TimerTTL: 500 * time.Millisecond}, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "-timer-ttl") {
		t.Fatalf("run with -timer-ttl 500ms: %v, want it refused, named", err)
	}
}
