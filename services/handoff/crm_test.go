package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/handoff/adapters"
	"github.com/leadflow/leadflow/services/handoff/app"
)

var eur = func(cents int64) *eventv1.Money { return &eventv1.Money{Currency: "EUR", MinorUnits: cents} }

// A lead worked from acceptance to a won deal through the CRM commands,
// each checked by the lifecycle and idempotent by request id.
func TestCRMCommandsToWon(t *testing.T) {
	w, s, id, owner := assignedLead(t)
	ctx := ctxT(t)
	c := s.client
	other := "bob"
	if owner == "bob" {
		other = "cat"
	}

	// Refused before acceptance: work it, win it, by someone else.
	_, err := c.LogContactAttempt(ctx, &handoffv1.LogContactAttemptRequest{LeadId: id, RepId: owner, RequestId: "c0",
		Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER})
	wantCode(t, err, codes.FailedPrecondition, "")
	if !strings.Contains(err.Error(), "ASSIGNED") {
		t.Errorf("a refusal names the state: %v", err)
	}
	_, err = c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: other, RequestId: "a0"})
	wantCode(t, err, codes.FailedPrecondition, "")
	if !strings.Contains(err.Error(), "owned by rep "+owner) || !strings.HasPrefix(status.Convert(err).Message(), "AcceptLead refused in ASSIGNED") {
		t.Errorf("accept by a non-owner: %v, want the method as called and the owner", err)
	}

	acc, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "a1"})
	if err != nil || acc.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_ACCEPTED || acc.GetReplayed() {
		t.Fatalf("accept: %v %v", acc, err)
	}
	again, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "a1"})
	if err != nil || !again.GetReplayed() || again.GetLead().GetEventId() != acc.GetLead().GetEventId() || again.GetLead().GetVersion() != acc.GetLead().GetVersion() {
		t.Fatalf("a repeated accept is the first answer: %v %v", again, err)
	}
	_, err = c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "a2"})
	wantCode(t, err, codes.FailedPrecondition, "")
	// Said as it is: accepted already, not "not assigned" (which reads as
	// if the lead was taken away).
	if !strings.Contains(err.Error(), "refused in ACCEPTED") || !strings.Contains(err.Error(), "accepted lead "+id+" already") {
		t.Errorf("a second accept: %v", err)
	}
	la := ofType(w.events(t, id), "LeadAccepted")
	if len(la) != 1 || !la[0].GetLeadAccepted().GetWithinSla() || la[0].GetLeadAccepted().GetContactBy() == nil || la[0].GetIdempotencyKey() != "a1" ||
		la[0].GetActor().GetId() != owner {
		t.Fatalf("accepted: %v", la)
	}

	for i, o := range []eventv1.ContactOutcome{eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER, eventv1.ContactOutcome_CONTACT_OUTCOME_CONNECTED} {
		r, err := c.LogContactAttempt(ctx, &handoffv1.LogContactAttemptRequest{LeadId: id, RepId: owner, RequestId: fmt.Sprint("c", i+1),
			Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: o})
		if err != nil || r.GetLead().GetAttempts() != int32(i+1) {
			t.Fatalf("attempt %d: %v %v", i+1, r, err)
		}
	}
	if r, err := c.LogContactAttempt(ctx, &handoffv1.LogContactAttemptRequest{LeadId: id, RepId: owner, RequestId: "c1",
		Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER}); err != nil || !r.GetReplayed() {
		t.Fatalf("a duplicate CRM callback: %v %v", r, err)
	}
	_, err = c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: id, RepId: owner, RequestId: "c1", Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY})
	wantCode(t, err, codes.InvalidArgument, "request_id")
	// Kept on the event in the clear, after an erasure too.
	_, err = c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: id, RepId: owner, RequestId: "crm:grace@example.com", Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY})
	wantCode(t, err, codes.InvalidArgument, "request_id")

	_, err = c.CloseWon(ctx, &handoffv1.CloseWonRequest{LeadId: id, RepId: owner, RequestId: "w0", Amount: eur(100)})
	wantCode(t, err, codes.FailedPrecondition, "")
	if !strings.Contains(err.Error(), "not an opportunity") {
		t.Errorf("win before convert: %v", err)
	}
	convert := &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "o1", Amount: eur(5_000_000), Stage: "discovery",
		ExpectedClose: timestamppb.New(time.Now().Add(30 * 24 * time.Hour))}
	conv, err := c.ConvertLead(ctx, convert)
	if err != nil || conv.GetOpportunityId() != "opp-o1" || conv.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY {
		t.Fatalf("convert: %v %v", conv, err)
	}
	if r, err := c.MoveOpportunityStage(ctx, &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: "m1", Stage: "proposal", Amount: eur(6_000_000)}); err != nil ||
		r.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY {
		t.Fatalf("move stage: %v %v", r, err)
	}
	won, err := c.CloseWon(ctx, &handoffv1.CloseWonRequest{LeadId: id, RepId: owner, RequestId: "w1", Amount: eur(5_500_000)})
	if err != nil || won.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_WON || won.GetLead().GetOwner() != nil || won.GetLead().GetDeadline() != nil {
		t.Fatalf("won: %v %v", won, err)
	}
	_, err = c.CloseLost(ctx, &handoffv1.CloseLostRequest{LeadId: id, RepId: owner, RequestId: "l1", Reason: "budget"})
	wantCode(t, err, codes.FailedPrecondition, "")
	if !strings.Contains(err.Error(), "WON") {
		t.Errorf("lose a won deal: %v", err)
	}
	// A retry of the conversion, after the win, answers as the first time.
	reconv, err := c.ConvertLead(ctx, convert)
	if err != nil || !reconv.GetReplayed() || reconv.GetOpportunityId() != "opp-o1" || reconv.GetLead().GetVersion() != conv.GetLead().GetVersion() ||
		reconv.GetLead().GetEventId() != conv.GetLead().GetEventId() || reconv.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY {
		t.Fatalf("convert again: %v %v, want the first answer %v", reconv, err, conv)
	}
	_, err = c.CloseLost(ctx, &handoffv1.CloseLostRequest{LeadId: id, RepId: owner, RequestId: "o1", Reason: "budget"})
	wantCode(t, err, codes.InvalidArgument, "request_id")
	if !strings.Contains(err.Error(), "OpportunityCreated") {
		t.Errorf("a conversion's request id reused to lose: %v", err)
	}

	evs := w.events(t, id)
	var types []string
	for _, ev := range evs[3:] {
		types = append(types, ev.GetEventType())
	}
	want := "LeadAssigned LeadAccepted ContactAttempted ContactAttempted OpportunityCreated OpportunityStageChanged DealWon"
	if strings.Join(types, " ") != want {
		t.Errorf("history\n got %s\nwant %s", strings.Join(types, " "), want)
	}
	if dw := last(evs).GetDealWon(); dw.GetOpportunityId() != "opp-o1" || dw.GetAmount().GetMinorUnits() != 5_500_000 || dw.GetRepId() != owner || dw.GetSegment() != "enterprise" {
		t.Errorf("deal won: %v", dw)
	}
}

// A request id is the caller's for one service: the same id on a form
// intake captured is another request, not a reuse to refuse.
func TestARequestIDAnotherServiceUsedIsStillFree(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	id := uuid.NewString()
	if _, err := w.appendLeadMeta(ctxT(t), id, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{
		SealedPersonal: w.sealed(t, id, &eventv1.Personal{Contact: &eventv1.Contact{Email: "k@example.com"}}), Profile: dach(50)},
		envelope.Meta{Actor: intakeActor, CorrelationID: uuid.NewString(), IdempotencyKey: "k1"}); err != nil {
		t.Fatal(err)
	}
	w.qualify(t, id)
	owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	r, err := s.client.AcceptLead(ctxT(t), &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "k1"})
	if err != nil || r.GetReplayed() || r.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_ACCEPTED {
		t.Fatalf("accept with the form's idempotency key as request id: %v %v, want accepted", r, err)
	}
}

func TestRejectAndLost(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	ctx := ctxT(t)
	c := s.client

	rejected := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, rejected, "LeadAssigned", 1)[0])
	r, err := c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: rejected, RepId: owner, RequestId: "r1",
		Reason: eventv1.RejectReason_REJECT_REASON_EXISTING_CUSTOMER, Note: "already on the enterprise plan"})
	if err != nil || r.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_RECYCLED || r.GetLead().GetOwner().GetId() != "nurture" || r.GetLead().GetDeadline() == nil {
		t.Fatalf("reject: %v %v", r, err)
	}
	lr := last(w.events(t, rejected)).GetLeadRejected()
	if lr.GetReason() != eventv1.RejectReason_REJECT_REASON_EXISTING_CUSTOMER || lr.GetRepId() != owner || lr.GetSegment() != "smb" {
		t.Errorf("rejection: %v", lr)
	}
	w.wantSealed(t, rejected, last(w.events(t, rejected)), lr.GetSealedNote(), "already on the enterprise plan")
	// The note is sealed, each time with a fresh nonce: a repeat is told
	// from another request by opening the first one's.
	repeat := func(note string) error {
		_, err := c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: rejected, RepId: owner, RequestId: "r1",
			Reason: eventv1.RejectReason_REJECT_REASON_EXISTING_CUSTOMER, Note: note})
		return err
	}
	before := len(w.events(t, rejected))
	wantCode(t, repeat("not a customer after all"), codes.InvalidArgument, "request_id")
	wantCode(t, repeat(""), codes.InvalidArgument, "request_id")
	if err := repeat("already on the enterprise plan"); err != nil {
		t.Fatalf("the same rejection again: %v", err)
	}
	if n := len(w.events(t, rejected)); n != before {
		t.Fatalf("repeats wrote %d events", n-before)
	}
	// A rejection from before notes were sealed holds its note in the
	// clear: a repeat is told by that.
	legacy := w.mql(t, dach(50))
	legacyOwner := ownerOf(w.waitFor(t, legacy, "LeadAssigned", 1)[0])
	if _, err := w.appendLeadMeta(ctx, legacy, lifecycle.Command{Name: lifecycle.Reject, Reason: "NOT_READY"},
		&eventv1.LeadRejected{RepId: legacyOwner, Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY, Note: "call in spring"},
		envelope.Meta{Actor: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: legacyOwner}, IdempotencyKey: "old-r"}); err != nil {
		t.Fatal(err)
	}
	again := func(note string) error {
		_, err := c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: legacy, RepId: legacyOwner, RequestId: "old-r",
			Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY, Note: note})
		return err
	}
	if err := again("call in spring"); err != nil {
		t.Fatalf("the same rejection again, first stored in the clear: %v", err)
	}
	wantCode(t, again("call in autumn"), codes.InvalidArgument, "request_id")

	lost := w.mql(t, dach(50))
	owner = ownerOf(w.waitFor(t, lost, "LeadAssigned", 1)[0])
	for _, step := range []func() error{
		func() error {
			_, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: lost, RepId: owner, RequestId: "a"})
			return err
		},
		func() error {
			_, err := c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: lost, RepId: owner, RequestId: "o", Amount: eur(100), Stage: "discovery"})
			return err
		},
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	r2, err := c.CloseLost(ctx, &handoffv1.CloseLostRequest{LeadId: lost, RepId: owner, RequestId: "l", Reason: "chose a competitor"})
	if err != nil || r2.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_LOST || r2.GetLead().GetOwner().GetId() != "nurture" {
		t.Fatalf("lost: %v %v", r2, err)
	}
	dl := last(w.events(t, lost))
	w.wantSealed(t, lost, dl, dl.GetDealLost().GetSealedReason(), "chose a competitor")
	_, err = c.CloseLost(ctx, &handoffv1.CloseLostRequest{LeadId: lost, RepId: owner, RequestId: "l", Reason: "no budget"})
	wantCode(t, err, codes.InvalidArgument, "request_id")
	if _, err := c.CloseLost(ctx, &handoffv1.CloseLostRequest{LeadId: lost, RepId: owner, RequestId: "l", Reason: "chose a competitor"}); err != nil {
		t.Fatalf("the same loss again: %v", err)
	}
	if b, err := c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: lost}); err != nil || b.GetBrief().GetOpportunity().GetLostReason() != "chose a competitor" {
		t.Fatalf("brief of the lost deal: %v %v", b.GetBrief().GetOpportunity(), err)
	}
	// Back through nurture to a second deal: the first deal's id is its
	// own; the reports key a deal by it.
	nurture := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SERVICE, Id: "nurture"}
	w.write(t, lost, lifecycle.Command{Name: lifecycle.Recycle, Reason: "lost"}, &eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_LOST}, nurture)
	w.write(t, lost, lifecycle.Command{Name: lifecycle.Enroll, Owner: lifecycle.Owner{Kind: lifecycle.OwnerProgram, ID: "p"}}, &eventv1.NurtureEnrolled{ProgramId: "p"}, nurture)
	w.qualify(t, lost)
	owner = ownerOf(w.waitFor(t, lost, "LeadAssigned", 2)[1])
	if _, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: lost, RepId: owner, RequestId: "a2"}); err != nil {
		t.Fatal(err)
	}
	before = len(w.events(t, lost))
	_, err = c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: lost, RepId: owner, RequestId: "o2", OpportunityId: "opp-o", Amount: eur(100), Stage: "discovery"})
	wantCode(t, err, codes.InvalidArgument, "opportunity_id")
	if n := len(w.events(t, lost)); n != before {
		t.Fatalf("a refused conversion wrote %d events", n-before)
	}
	if _, err := c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: lost, RepId: owner, RequestId: "o2", OpportunityId: "opp-o2", Amount: eur(100), Stage: "discovery"}); err != nil {
		t.Fatalf("a second deal under a new id: %v", err)
	}

	// Without the key vault a rep's free text cannot be kept: refused, and
	// nothing is written. The reason code alone goes through.
	bare := w.startWith(t, func(c *Config) { c.MasterKey = "" }).client
	id := w.mql(t, dach(50))
	owner = ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	before = len(w.events(t, id))
	_, err = bare.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: id, RepId: owner, RequestId: "n1",
		Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY, Note: "her budget is frozen"})
	if status.Code(err) != codes.FailedPrecondition || !strings.HasPrefix(status.Convert(err).Message(), "note: ") {
		t.Fatalf("a note without the vault: %v, want FAILED_PRECONDITION naming note", err)
	}
	if n := len(w.events(t, id)); n != before {
		t.Fatalf("a refused note wrote %d events", n-before)
	}
	if _, err := bare.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: id, RepId: owner, RequestId: "n2",
		Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY}); err != nil {
		t.Fatalf("a rejection without a note, without the vault: %v", err)
	}
	// A lost deal's reason is required: sending it without is no way out.
	deal := w.mql(t, dach(50))
	owner = ownerOf(w.waitFor(t, deal, "LeadAssigned", 1)[0])
	if _, err := bare.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: deal, RepId: owner, RequestId: "a3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bare.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: deal, RepId: owner, RequestId: "o3", OpportunityId: "opp-bare",
		Amount: eur(100), Stage: "discovery"}); err != nil {
		t.Fatal(err)
	}
	_, err = bare.CloseLost(ctx, &handoffv1.CloseLostRequest{LeadId: deal, RepId: owner, RequestId: "l3", Reason: "went with a rival"})
	if msg := status.Convert(err).Message(); status.Code(err) != codes.FailedPrecondition || !strings.HasPrefix(msg, "reason: ") ||
		strings.Contains(msg, "without it") || !strings.Contains(msg, "required") {
		t.Fatalf("a lost deal's reason without the vault: %v, want FAILED_PRECONDITION saying the reason is required and cannot be kept", err)
	}

	// Keys shredded by an erasure whose LeadErased is not written yet:
	// the note is refused as erased, not an internal error.
	gone := w.mql(t, dach(50))
	owner = ownerOf(w.waitFor(t, gone, "LeadAssigned", 1)[0])
	kid, err := vault.SealedKeyID(w.events(t, gone)[0].GetLeadCaptured().GetSealedPersonal())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.vault.Shred(ctx, gone, kid); err != nil {
		t.Fatal(err)
	}
	_, err = c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: gone, RepId: owner, RequestId: "e1",
		Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY, Note: "call back in May"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "note: the lead's personal data is erased") {
		t.Fatalf("a note on a shredded lead: %v", err)
	}
}

// wantSealed checks that ev keeps text only sealed with one of the lead's
// keys.
func (w *world) wantSealed(t *testing.T, leadID string, ev *eventv1.Event, sealed []byte, text string) {
	t.Helper()
	if b, _ := proto.Marshal(ev); bytes.Contains(b, []byte(text)) {
		t.Errorf("%s holds %q in the clear", ev.GetEventType(), text)
	}
	plain, err := w.vault.Open(ctxT(t), leadID, sealed)
	if err != nil || string(plain) != text {
		t.Errorf("%s sealed %q, %v; want %q", ev.GetEventType(), plain, err, text)
	}
}

// Bad input is INVALID_ARGUMENT naming the field and writes nothing; an
// unknown lead is NOT_FOUND; an unknown rep names its field.
func TestCRMBadInput(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 10)
	ctx := ctxT(t)
	c := s.client
	id := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	before := len(w.events(t, id))

	_, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner})
	wantCode(t, err, codes.InvalidArgument, "request_id")
	_, err = c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: "lead.>", RepId: owner, RequestId: "x"})
	wantCode(t, err, codes.InvalidArgument, "lead_id")
	_, err = c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: "zed", RequestId: "x"})
	wantCode(t, err, codes.InvalidArgument, "rep_id")
	_, err = c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: "no-such-lead", RepId: owner, RequestId: "x"})
	wantCode(t, err, codes.InvalidArgument, "lead_id") // a lead id is a UUID
	unknown := uuid.NewString()
	_, err = c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: unknown, RepId: owner, RequestId: "x"})
	wantCode(t, err, codes.NotFound, "")
	if !strings.Contains(status.Convert(err).Message(), unknown) {
		t.Errorf("not found %q does not name the lead", status.Convert(err).Message())
	}
	_, err = c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: id, RepId: owner, RequestId: "x"})
	wantCode(t, err, codes.InvalidArgument, "reason")
	_, err = c.RejectLead(ctx, &handoffv1.RejectLeadRequest{LeadId: id, RepId: owner, RequestId: "x", Reason: 99})
	wantCode(t, err, codes.InvalidArgument, "reason")
	// The values it names are the ones the JSON API takes.
	if d := grpcserver.Violations(err)[0].Description; !strings.Contains(d, "REJECT_REASON_NOT_READY") || strings.Contains(d, "UNSPECIFIED") {
		t.Errorf("reason's hint %q, want the enum's full names", d)
	}
	_, err = c.LogContactAttempt(ctx, &handoffv1.LogContactAttemptRequest{LeadId: id, RepId: owner, RequestId: "x", Outcome: eventv1.ContactOutcome_CONTACT_OUTCOME_CONNECTED})
	wantCode(t, err, codes.InvalidArgument, "channel")
	if d := grpcserver.Violations(err)[0].Description; !strings.Contains(d, "CONTACT_CHANNEL_PHONE, CONTACT_CHANNEL_EMAIL") {
		t.Errorf("channel's hint %q, want the enum's full names", d)
	}
	_, err = c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "x", Stage: "discovery", Amount: &eventv1.Money{Currency: "euro", MinorUnits: 1}})
	wantCode(t, err, codes.InvalidArgument, "amount.currency")
	// Three capitals that no currency has: the deal's later amounts
	// would have to follow the typo.
	_, err = c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "x", Stage: "discovery", Amount: &eventv1.Money{Currency: "XYZ", MinorUnits: 1}})
	wantCode(t, err, codes.InvalidArgument, "amount.currency")
	_, err = c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "x", Amount: eur(1)})
	wantCode(t, err, codes.InvalidArgument, "stage")
	if d := grpcserver.Violations(err)[0].Description; d != "is required" {
		t.Errorf("stage left out: %q, want it called required", d)
	}
	// What the read model could not store, or sum: a NUL in the request id
	// that names the opportunity, an amount past 64-bit sums.
	_, err = c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "x\x00", Stage: "discovery", Amount: eur(1)})
	wantCode(t, err, codes.InvalidArgument, "request_id")
	_, err = c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "x", Stage: "discovery",
		Amount: &eventv1.Money{Currency: "EUR", MinorUnits: 1 << 62}})
	wantCode(t, err, codes.InvalidArgument, "amount.minor_units")
	// A deal worth nothing: a CRM that dropped the amount.
	_, err = c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "x", Stage: "discovery", Amount: &eventv1.Money{Currency: "EUR"}})
	wantCode(t, err, codes.InvalidArgument, "amount.minor_units")
	_, err = c.CloseWon(ctx, &handoffv1.CloseWonRequest{LeadId: id, RepId: owner, RequestId: "x", Amount: &eventv1.Money{Currency: "EUR"}})
	wantCode(t, err, codes.InvalidArgument, "amount.minor_units")
	_, err = c.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: "nul", Name: "A\x00na", TeamId: "emea", Capacity: 5}, ChangedBy: ops})
	wantCode(t, err, codes.InvalidArgument, "rep.name")
	// The close date is the lead's deadline: one centuries ahead would
	// never be overdue.
	_, err = c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "x", Stage: "discovery", Amount: eur(1),
		ExpectedClose: timestamppb.New(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC))})
	wantCode(t, err, codes.InvalidArgument, "expected_close")
	_, err = c.CloseLost(ctx, &handoffv1.CloseLostRequest{LeadId: id, RepId: owner, RequestId: "x"})
	wantCode(t, err, codes.InvalidArgument, "reason")
	_, err = c.ReassignLead(ctx, &handoffv1.ReassignLeadRequest{LeadId: id, ToRepId: "zed", RequestId: "x", Reason: "r", ReassignedBy: ops})
	wantCode(t, err, codes.InvalidArgument, "to_rep_id")
	_, err = c.ReassignLead(ctx, &handoffv1.ReassignLeadRequest{LeadId: id, ToRepId: "ann", RequestId: "x", Reason: "ada@example.com asked for ann", ReassignedBy: ops})
	wantCode(t, err, codes.InvalidArgument, "reason")
	_, err = c.ReassignLead(ctx, &handoffv1.ReassignLeadRequest{LeadId: id, ToRepId: owner, RequestId: "x", Reason: "r", ReassignedBy: ops})
	wantCode(t, err, codes.FailedPrecondition, "")
	if n := len(w.events(t, id)); n != before {
		t.Fatalf("refused requests wrote %d events", n-before)
	}
}

// An opportunity has the one currency it was converted in: a stage move
// or a win with an amount in another is INVALID_ARGUMENT on
// amount.currency and writes nothing; in its own currency both go
// through, and a retry of the win is its first answer.
func TestCRMOpportunityCurrency(t *testing.T) {
	w, s, id, owner := assignedLead(t)
	ctx := ctxT(t)
	c := s.client
	usd := func(cents int64) *eventv1.Money { return &eventv1.Money{Currency: "USD", MinorUnits: cents} }
	if _, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "a"}); err != nil {
		t.Fatal(err)
	}
	conv, err := c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "r4", Amount: eur(500_000), Stage: "discovery"})
	if err != nil || conv.GetOpportunityId() != "opp-r4" || conv.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY {
		t.Fatalf("convert: %v %v", conv, err)
	}

	version := func() uint64 { return w.lastEvent(t, id).Seq }
	before := version()
	if before != conv.GetLead().GetVersion() {
		t.Fatalf("version %d after the conversion, which answered %d", before, conv.GetLead().GetVersion())
	}
	wantCurrency := func(what string, err error) {
		t.Helper()
		wantCode(t, err, codes.InvalidArgument, "amount.currency")
		if d := grpcserver.Violations(err)[0].Description; !strings.Contains(d, "must be EUR, the currency of opportunity opp-r4") {
			t.Errorf("%s in USD: %q does not name the opportunity's currency", what, d)
		}
		if v := version(); v != before {
			t.Fatalf("%s in USD was refused but moved the lead from version %d to %d", what, before, v)
		}
	}
	_, err = c.MoveOpportunityStage(ctx, &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: "m-usd", Stage: "proposal", Amount: usd(600_000)})
	wantCurrency("a stage move", err)
	_, err = c.MoveOpportunityStage(ctx, &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: "m-usd2", Stage: "discovery", Amount: usd(500_000)})
	wantCurrency("a new amount at the same stage", err)
	_, err = c.CloseWon(ctx, &handoffv1.CloseWonRequest{LeadId: id, RepId: owner, RequestId: "w-usd", Amount: usd(700_000)})
	wantCurrency("a win", err)

	// In the opportunity's currency, or with no amount, as before.
	if r, err := c.MoveOpportunityStage(ctx, &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: "m1", Stage: "proposal"}); err != nil ||
		r.GetLead().GetVersion() <= before {
		t.Fatalf("a stage move without an amount: %v %v", r, err)
	}
	if r, err := c.MoveOpportunityStage(ctx, &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: "m2", Stage: "negotiation", Amount: eur(650_000)}); err != nil ||
		r.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY {
		t.Fatalf("a stage move in EUR: %v %v", r, err)
	}
	// A refused request's id was never used: sent again in EUR, it wins.
	won, err := c.CloseWon(ctx, &handoffv1.CloseWonRequest{LeadId: id, RepId: owner, RequestId: "w-usd", Amount: eur(700_000)})
	if err != nil || won.GetReplayed() || won.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_WON {
		t.Fatalf("won in EUR: %v %v", won, err)
	}
	again, err := c.CloseWon(ctx, &handoffv1.CloseWonRequest{LeadId: id, RepId: owner, RequestId: "w-usd", Amount: eur(700_000)})
	if err != nil || !again.GetReplayed() || again.GetLead().GetVersion() != won.GetLead().GetVersion() || again.GetLead().GetEventId() != won.GetLead().GetEventId() {
		t.Fatalf("a retried win: %v %v, want the first answer %v", again, err, won)
	}
	if v := version(); v != won.GetLead().GetVersion() {
		t.Fatalf("the retry wrote: version %d, the win answered %d", v, won.GetLead().GetVersion())
	}

	evs := w.events(t, id)
	for _, ev := range evs {
		if m := ev.GetOpportunityStageChanged().GetAmount(); m != nil && m.GetCurrency() != "EUR" {
			t.Errorf("stage change in %s: %v", m.GetCurrency(), ev)
		}
	}
	if dw := last(evs).GetDealWon(); !proto.Equal(dw.GetAmount(), eur(700_000)) || dw.GetOpportunityId() != "opp-r4" {
		t.Errorf("deal won: %v", dw)
	}
	if n := len(ofType(evs, "DealWon")); n != 1 {
		t.Errorf("%d DealWon events, want 1", n)
	}
}

// Manual assignment from the queue and reassignment refuse a rep who is
// out of office or at capacity.
func TestManualAssignAndCapacity(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 1)
	ctx := ctxT(t)
	c := s.client
	queued := w.mql(t, &eventv1.Profile{Country: "BR"})
	w.waitFor(t, queued, "LeadQueued", 1)
	first := w.mql(t, dach(50))
	owner := ownerOf(w.waitFor(t, first, "LeadAssigned", 1)[0])

	_, err := c.AssignLead(ctx, &handoffv1.AssignLeadRequest{LeadId: queued, RepId: owner, RequestId: "m1", AssignedBy: ops})
	wantCode(t, err, codes.FailedPrecondition, "")
	if !strings.Contains(err.Error(), "at capacity: 1 of 1") {
		t.Errorf("assign to a full rep: %v", err)
	}
	if _, err := c.SetOutOfOffice(ctx, &handoffv1.SetOutOfOfficeRequest{OutOfOffice: &eventv1.OutOfOffice{RepId: "dan", Absences: []*eventv1.Absence{
		{From: timestamppb.New(time.Now().Add(-time.Hour)), Until: timestamppb.New(time.Now().Add(time.Hour))}}}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}
	_, err = c.AssignLead(ctx, &handoffv1.AssignLeadRequest{LeadId: queued, RepId: "dan", RequestId: "m2", AssignedBy: ops})
	wantCode(t, err, codes.FailedPrecondition, "")
	if !strings.Contains(err.Error(), "out of office") {
		t.Errorf("assign to a rep away: %v", err)
	}
	r, err := c.AssignLead(ctx, &handoffv1.AssignLeadRequest{LeadId: queued, RepId: "mia", RequestId: "m3", AssignedBy: ops})
	if err != nil || r.GetLead().GetOwner().GetId() != "mia" || r.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_ASSIGNED {
		t.Fatalf("assign by hand: %v %v", r, err)
	}
	a := last(w.events(t, queued)).GetLeadAssigned()
	if a.GetRule() != "manual" || a.GetDecision().GetCandidates()[0].GetSource() != "manual:olga" || a.GetAcceptBy() == nil {
		t.Errorf("manual assignment: %v", a)
	}
	_, err = c.ReassignLead(ctx, &handoffv1.ReassignLeadRequest{LeadId: queued, ToRepId: owner, RequestId: "m4", Reason: "knows them", ReassignedBy: ops})
	wantCode(t, err, codes.FailedPrecondition, "")
}

// Reps accept at once. A lead reassigned from dan to ann, accepted by
// both at the same moment (dan's CRM has not caught up): exactly one
// acceptance, ann's, and dan is told who owns the lead. And with
// acceptances racing a reassignment and each other: every acceptance
// stored was by the lead's owner at that point, one per ownership.
func TestAcceptRace(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 100)
	c := s.client
	const leads = 10
	mk := func() []string {
		ids := make([]string, leads)
		for i := range ids {
			ids[i] = w.mql(t, &eventv1.Profile{Country: "US", Industry: "software"}) // all to dan
		}
		for _, id := range ids {
			w.waitFor(t, id, "LeadAssigned", 1)
		}
		return ids
	}

	stale := mk()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := map[string][]string{}
	accept := func(id, rep, req string) {
		r, err := c.AcceptLead(ctxT(t), &handoffv1.AcceptLeadRequest{LeadId: id, RepId: rep, RequestId: req})
		switch {
		case err == nil && !r.GetReplayed():
			mu.Lock()
			wins[id] = append(wins[id], rep)
			mu.Unlock()
		case err != nil && status.Code(err) != codes.FailedPrecondition:
			t.Errorf("%s accepts: %v", rep, err)
		}
	}
	for _, id := range stale {
		if _, err := c.ReassignLead(ctxT(t), &handoffv1.ReassignLeadRequest{LeadId: id, ToRepId: "ann", RequestId: "to-ann", Reason: "German speaker", ReassignedBy: ops}); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { accept(id, "dan", "dan-accepts") })
		wg.Go(func() { accept(id, "ann", "ann-accepts") })
	}
	wg.Wait()
	for _, id := range stale {
		acc := ofType(w.events(t, id), "LeadAccepted")
		if len(acc) != 1 || acc[0].GetLeadAccepted().GetRepId() != "ann" || len(wins[id]) != 1 || wins[id][0] != "ann" {
			t.Fatalf("lead %s: acceptances %v, winners %v", id, acc, wins[id])
		}
	}
	_, err := c.AcceptLead(ctxT(t), &handoffv1.AcceptLeadRequest{LeadId: stale[0], RepId: "dan", RequestId: "dan-again"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "owned by rep ann") {
		t.Errorf("accept after reassignment: %v", err)
	}

	racing := mk()
	clear(wins)
	for _, id := range racing {
		wg.Go(func() { accept(id, "dan", "dan-1") })
		wg.Go(func() { accept(id, "dan", "dan-2") })
		wg.Go(func() {
			_, err := c.ReassignLead(ctxT(t), &handoffv1.ReassignLeadRequest{LeadId: id, ToRepId: "ann", RequestId: "to-ann", Reason: "German speaker", ReassignedBy: ops})
			if err != nil && status.Code(err) != codes.FailedPrecondition {
				t.Errorf("reassign: %v", err)
			}
			accept(id, "ann", "ann-1")
		})
	}
	wg.Wait()
	for _, id := range racing {
		evs := w.events(t, id)
		accepted, owners := 0, 0
		for i, ev := range evs {
			switch ev.GetEventType() {
			case "LeadAssigned", "LeadReassigned":
				owners++
			case "LeadAccepted":
				accepted++
				if by, owner := ev.GetLeadAccepted().GetRepId(), ownerOf(evs[i-1]); by != owner || evs[i-1].GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_ASSIGNED {
					t.Fatalf("lead %s: accepted by %s while %s owned it in %s", id, by, owner, evs[i-1].GetLifecycle().GetStatus())
				}
			}
		}
		if accepted > owners || accepted != len(wins[id]) || accepted == 0 {
			t.Fatalf("lead %s: %d acceptances for %d ownerships, %d reported", id, accepted, owners, len(wins[id]))
		}
	}
}

// A rep leaves with an open deal: ops hands it to another rep, who takes
// it as it is (still an opportunity, due to close when it was, holding
// no capacity, so even a full rep can take it) and alone works and
// closes it from then on.
func TestOpenDealOfADepartedRepIsHandedOn(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 1)
	ctx := ctxT(t)
	c := s.client
	deal := w.mql(t, dach(5000))
	leaver := ownerOf(w.waitFor(t, deal, "LeadAssigned", 1)[0])
	other := w.mql(t, dach(5000))
	heir := ownerOf(w.waitFor(t, other, "LeadAssigned", 1)[0]) // full now: capacity 1
	if _, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: deal, RepId: leaver, RequestId: "a1"}); err != nil {
		t.Fatal(err)
	}
	conv, err := c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: deal, RepId: leaver, RequestId: "o1", Amount: eur(100_00), Stage: "discovery",
		ExpectedClose: timestamppb.New(time.Now().Add(30 * 24 * time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: leaver, TeamId: "emea", Capacity: 1}, ChangedBy: ops}); err != nil {
		t.Fatal(err)
	}

	r, err := c.ReassignLead(ctx, &handoffv1.ReassignLeadRequest{LeadId: deal, ToRepId: heir, RequestId: "re1", Reason: "rep left", ReassignedBy: ops})
	if err != nil {
		t.Fatalf("hand on the departed rep's deal: %v", err)
	}
	if l := r.GetLead(); l.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY || l.GetOwner().GetId() != heir ||
		!l.GetDeadline().AsTime().Equal(conv.GetLead().GetDeadline().AsTime()) {
		t.Errorf("handed on: %v, want an opportunity of %s due %v", l, heir, conv.GetLead().GetDeadline().AsTime())
	}
	if re := last(w.events(t, deal)).GetLeadReassigned(); re.GetAcceptBy() != nil || re.GetFrom().GetId() != leaver {
		t.Errorf("a deal handed on starts no acceptance step: %v", re)
	}
	_, err = c.MoveOpportunityStage(ctx, &handoffv1.MoveOpportunityStageRequest{LeadId: deal, RepId: leaver, RequestId: "m0", Stage: "proposal"})
	wantCode(t, err, codes.FailedPrecondition, "")
	if !strings.Contains(err.Error(), "owned by rep "+heir) {
		t.Errorf("the leaver moves the deal: %v", err)
	}
	_, err = c.ReassignLead(ctx, &handoffv1.ReassignLeadRequest{LeadId: deal, ToRepId: heir, RequestId: "re2", Reason: "again", ReassignedBy: ops})
	wantCode(t, err, codes.FailedPrecondition, "")
	if _, err := c.MoveOpportunityStage(ctx, &handoffv1.MoveOpportunityStageRequest{LeadId: deal, RepId: heir, RequestId: "m1", Stage: "proposal"}); err != nil {
		t.Fatalf("the heir moves the deal: %v", err)
	}
	won, err := c.CloseWon(ctx, &handoffv1.CloseWonRequest{LeadId: deal, RepId: heir, RequestId: "w1", Amount: eur(120_00)})
	if err != nil || won.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_WON {
		t.Fatalf("the heir wins the deal: %v %v", won, err)
	}
	if dw := last(w.events(t, deal)).GetDealWon(); dw.GetRepId() != heir || dw.GetOpportunityId() != "opp-o1" {
		t.Errorf("deal won: %v", dw)
	}
}

// A stage move that changed nothing, retried after a later move (its
// answer was lost): the same answer, and the opportunity stays where the
// later move put it. The id sent with another stage is refused; a new
// id moves the stage back as asked.
func TestNoOpStageMoveRetriedAfterALaterMove(t *testing.T) {
	w, s, id, owner := assignedLead(t)
	ctx := ctxT(t)
	c := s.client
	if _, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "a1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "o1", Amount: eur(100_00), Stage: "discovery"}); err != nil {
		t.Fatal(err)
	}
	move := func(req, stage string) (*handoffv1.MoveOpportunityStageResponse, error) {
		return c.MoveOpportunityStage(ctx, &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: req, Stage: stage})
	}
	stages := func() (out []string) {
		for _, ev := range ofType(w.events(t, id), "OpportunityStageChanged") {
			out = append(out, ev.GetOpportunityStageChanged().GetToStage())
		}
		return out
	}
	first, err := move("m1", "discovery") // where it is: nothing to do
	if err != nil || first.GetReplayed() {
		t.Fatalf("a move to the stage it is in: %v %v", first, err)
	}
	if _, err := move("m2", "proposal"); err != nil {
		t.Fatal(err)
	}
	again, err := move("m1", "discovery")
	if err != nil || !again.GetReplayed() || again.GetLead().GetVersion() != first.GetLead().GetVersion() {
		t.Fatalf("m1 retried: %v %v, want the first answer %v", again, err, first)
	}
	if got := stages(); !slices.Equal(got, []string{"proposal"}) {
		t.Errorf("stage changes after the retry: %v, want [proposal]", got)
	}
	_, err = move("m1", "negotiation")
	wantCode(t, err, codes.InvalidArgument, "request_id")
	if _, err := move("m3", "discovery"); err != nil {
		t.Fatal(err)
	}
	if got := stages(); !slices.Equal(got, []string{"proposal", "discovery"}) {
		t.Errorf("a new id moving back: %v, want [proposal discovery]", got)
	}
}

// A CRM's own stage names go through as they are ("Proposal/Price
// Quote", "Id. Decision Makers", another language's); control
// characters, a leading punctuation mark, a trailing space or an address
// do not, and write nothing.
func TestCRMStageNames(t *testing.T) {
	w, s, id, owner := assignedLead(t)
	ctx := ctxT(t)
	c := s.client
	if _, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "a1"}); err != nil {
		t.Fatal(err)
	}
	before := len(w.events(t, id))
	for _, bad := range []string{"bad\x00stage", "-lead", "proposal ", "ada@example.com", strings.Repeat("s", 65), "\u3164", "Pro\u034fposal", "Proposal\ufe0f"} {
		_, err := c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "o-bad", Amount: eur(100_00), Stage: bad})
		wantCode(t, err, codes.InvalidArgument, "stage")
	}
	if n := len(w.events(t, id)); n != before {
		t.Fatalf("refused stages wrote %d events", n-before)
	}
	if _, err := c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "o1", Amount: eur(100_00), Stage: "Id. Decision Makers"}); err != nil {
		t.Fatal(err)
	}
	for i, stage := range []string{"Proposal/Price Quote", "Étude de besoins", "Propuesta (enviada)"} {
		if _, err := c.MoveOpportunityStage(ctx, &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: fmt.Sprintf("m%d", i), Stage: stage}); err != nil {
			t.Fatalf("move to %q: %v", stage, err)
		}
	}
	var got []string
	for _, ev := range ofType(w.events(t, id), "OpportunityStageChanged") {
		got = append(got, ev.GetOpportunityStageChanged().GetToStage())
	}
	if want := []string{"Proposal/Price Quote", "Étude de besoins", "Propuesta (enviada)"}; !slices.Equal(got, want) {
		t.Errorf("stage changes %q, want %q", got, want)
	}
	// A name spelt in decomposed form is stored composed, and is the
	// stage it is in when spelt either way: a move there writes nothing.
	for _, req := range []string{"m-nfd", "m-nfd-again"} {
		if _, err := c.MoveOpportunityStage(ctx, &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: req, Stage: "E\u0301tude de besoins"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.MoveOpportunityStage(ctx, &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: "m-nfc", Stage: "Étude de besoins"}); err != nil {
		t.Fatal(err)
	}
	evs := ofType(w.events(t, id), "OpportunityStageChanged")
	if last := evs[len(evs)-1].GetOpportunityStageChanged(); len(evs) != 4 || last.GetToStage() != "Étude de besoins" {
		t.Errorf("a move to the decomposed spelling: %d stage changes, the last to %q; want 4, to %q as composed", len(evs), last.GetToStage(), "Étude de besoins")
	}
}

// A lead the rules send to a pool, assigned by hand from the queue (the
// pool full), keeps that pool: an escalation from its rep goes to the
// pool's next rep, as from one routing chose.
func TestAssignedByHandKeepsItsPool(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	routingSetup(t, s.client, 1)
	for range 3 { // ann, bob and cat full
		w.waitFor(t, w.mql(t, dach(50)), "LeadAssigned", 1)
	}
	queued := w.mql(t, dach(50))
	w.waitFor(t, queued, "LeadQueued", 1)
	if _, err := s.client.AssignLead(ctxT(t), &handoffv1.AssignLeadRequest{LeadId: queued, RepId: "mia", RequestId: "by-hand", AssignedBy: ops}); err != nil {
		t.Fatal(err)
	}
	a := last(w.events(t, queued)).GetLeadAssigned()
	if a.GetRule() != "manual" || a.GetDecision().GetPoolId() != "dach" {
		t.Fatalf("assigned by hand: rule %q, pool %q; want manual, pool dach", a.GetRule(), a.GetDecision().GetPoolId())
	}
}

// A slipped deal's close date moves (it could not: the lead stayed
// overdue until closed): the lead's deadline, the event and the brief say
// the new day; a retry answers as the first did, and a day in the past,
// or the same day again, is refused or writes nothing.
func TestExpectedCloseMoves(t *testing.T) {
	w, s, id, owner := assignedLead(t)
	ctx := ctxT(t)
	c := s.client
	if _, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "a1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "o1", Amount: eur(100_00), Stage: "discovery",
		ExpectedClose: timestamppb.New(time.Now().Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	later := timestamppb.New(time.Now().Add(45 * 24 * time.Hour).Truncate(time.Second))
	move := &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: "m1", ExpectedClose: later}
	r, err := c.MoveOpportunityStage(ctx, move)
	if err != nil || !r.GetLead().GetDeadline().AsTime().Equal(later.AsTime()) {
		t.Fatalf("move the close: %v %v, want the deadline %v", r, err, later.AsTime())
	}
	ev := last(w.events(t, id))
	if m := ev.GetOpportunityStageChanged(); m.GetToStage() != "discovery" || !m.GetExpectedClose().AsTime().Equal(later.AsTime()) ||
		!ev.GetLifecycle().GetDeadline().AsTime().Equal(later.AsTime()) {
		t.Fatalf("stage change %v stamped %v, want the stage kept and the new close", m, ev.GetLifecycle())
	}
	if again, err := c.MoveOpportunityStage(ctx, move); err != nil || !again.GetReplayed() || again.GetLead().GetEventId() != r.GetLead().GetEventId() {
		t.Fatalf("a retry: %v %v", again, err)
	}
	n := len(w.events(t, id))
	past := &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: "m2", ExpectedClose: timestamppb.New(time.Now().Add(-time.Hour))}
	_, err = c.MoveOpportunityStage(ctx, past)
	wantCode(t, err, codes.InvalidArgument, "expected_close")
	same := &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: "m3", Stage: "discovery", ExpectedClose: later}
	if _, err := c.MoveOpportunityStage(ctx, same); err != nil {
		t.Fatal(err)
	}
	if got := len(w.events(t, id)); got != n {
		t.Fatalf("a refused or unchanged move wrote %d events", got-n)
	}
	b, err := c.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: id})
	if err != nil || !b.GetBrief().GetOpportunity().GetExpectedClose().AsTime().Equal(later.AsTime()) {
		t.Fatalf("brief: %v %v, want the close %v", b.GetBrief().GetOpportunity(), err, later.AsTime())
	}
	// The unchanged move sent again after that day answers as the first
	// time (it was refused: the day, judged again, had passed).
	after := w.app(t, adapters.NewLeads(w.store), app.WithClock(func() time.Time { return later.AsTime().Add(time.Hour) }))
	if _, err := after.MoveOpportunityStage(ctx, app.MoveStage{LeadID: id, RepID: owner, RequestID: "m3", Stage: "discovery", ExpectedClose: later},
		envelope.Meta{}); err != nil {
		t.Fatalf("the unchanged move again after its day: %v", err)
	}
}

// A deal converted in a code ISO 4217 has since withdrawn (HRK, stored by
// an earlier version, which took any three capitals) goes on in it: its
// stage moves and its win take that currency. A new conversion takes
// only a current code.
func TestCRMADealInAWithdrawnCurrencyGoesOn(t *testing.T) {
	w, s, id, owner := assignedLead(t)
	ctx := ctxT(t)
	c := s.client
	hrk := &eventv1.Money{Currency: "HRK", MinorUnits: 500_000}
	if _, err := c.AcceptLead(ctx, &handoffv1.AcceptLeadRequest{LeadId: id, RepId: owner, RequestId: "a"}); err != nil {
		t.Fatal(err)
	}
	_, err := c.ConvertLead(ctx, &handoffv1.ConvertLeadRequest{LeadId: id, RepId: owner, RequestId: "c-hrk", Amount: hrk, Stage: "discovery"})
	wantCode(t, err, codes.InvalidArgument, "amount.currency")
	w.write(t, id, lifecycle.Command{Name: lifecycle.Convert}, &eventv1.OpportunityCreated{OpportunityId: "opp-old", RepId: owner, Amount: hrk, Stage: "discovery"},
		&eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: owner, Team: eventv1.Team_TEAM_SALES})
	if _, err := c.MoveOpportunityStage(ctx, &handoffv1.MoveOpportunityStageRequest{LeadId: id, RepId: owner, RequestId: "m", Stage: "proposal",
		Amount: &eventv1.Money{Currency: "HRK", MinorUnits: 600_000}}); err != nil {
		t.Fatalf("a stage move in the deal's HRK: %v", err)
	}
	won, err := c.CloseWon(ctx, &handoffv1.CloseWonRequest{LeadId: id, RepId: owner, RequestId: "w", Amount: &eventv1.Money{Currency: "HRK", MinorUnits: 700_000}})
	if err != nil || won.GetLead().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_WON {
		t.Fatalf("a win in the deal's HRK: %v %v", won, err)
	}
}
