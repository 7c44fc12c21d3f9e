package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/qualification/adapters"
	"github.com/leadflow/leadflow/services/qualification/app"
	"github.com/leadflow/leadflow/services/qualification/ports"
)

// A person disqualifies what no rule caught: a spam lead ends, a lead not
// ready now goes to nurture. A retry answers the first verdict and writes
// nothing; a second verdict is refused naming the status; bad input is
// refused naming the field and writes nothing. The live scorer, whose fold
// of the lead predates the verdict, scores the lead's next activity on
// the state the verdict left.
func TestDisqualifyByHand(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	// The activation's re-score writes to the stream when it completes:
	// done before this test counts messages.
	rescored(t, s.client, activate(t, s.client, scoring.Default()))
	mia := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "mia", Team: eventv1.Team_TEAM_MARKETING}
	spam, later := uuid.NewString(), uuid.NewString()
	for _, l := range []string{spam, later} {
		w.capture(t, l, &eventv1.Profile{Country: "DE", EmailDomain: "mail.example"})
	}
	w.settle(t)
	if st := last(w.events(t, later)).GetLifecycle().GetStatus(); st != eventv1.LeadStatus_LEAD_STATUS_NEW {
		t.Fatalf("scored into %s, want NEW below the threshold", st)
	}

	req := &qualificationv1.DisqualifyLeadRequest{LeadId: spam, Reason: "spam: a test submission", DecidedBy: mia, RequestId: "d-1"}
	d, err := s.client.DisqualifyLead(ctxT(t), req)
	if err != nil || d.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_DISQUALIFIED || d.GetReplayed() {
		t.Fatalf("disqualify: %v %v", d, err)
	}
	ev := last(w.events(t, spam))
	ld := ev.GetLeadDisqualified()
	if ev.GetEventId() != d.GetEventId() || ld.GetReason() != req.Reason || ld.GetRuleId() != "" || ld.GetDecidedBy().GetId() != "mia" ||
		ev.GetActor().GetId() != "mia" || ev.GetIdempotencyKey() != "d-1" || ev.GetLifecycle().GetOwner() != nil {
		t.Fatalf("the verdict: %v", ev)
	}
	// The verdict's record, sent after it, answers a retry in two reads.
	eventually(t, 5*time.Second, func() bool {
		typ, rec, found, err := w.store.Keyed(ctxT(t), "qualification", eventstore.LeadSubject(spam), "d-1")
		return err == nil && found && typ == "LeadDisqualified" && rec.Event.GetEventId() == d.GetEventId() && rec.Seq == d.GetVersion()
	}, "the verdict's record")
	before := w.streamMsgs(t)
	again, err := s.client.DisqualifyLead(ctxT(t), req)
	if err != nil || !again.GetReplayed() || again.GetEventId() != d.GetEventId() || again.GetVersion() != d.GetVersion() {
		t.Fatalf("retry: %v %v", again, err)
	}
	_, err = s.client.DisqualifyLead(ctxT(t), &qualificationv1.DisqualifyLeadRequest{LeadId: spam, Reason: "again", DecidedBy: mia})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "DisqualifyLead refused in DISQUALIFIED") {
		t.Fatalf("a second verdict: %v", err)
	}
	for _, c := range []struct {
		name  string
		req   *qualificationv1.DisqualifyLeadRequest
		code  codes.Code
		field string
	}{
		{"no reason", &qualificationv1.DisqualifyLeadRequest{LeadId: later, Reason: " ", DecidedBy: mia}, codes.InvalidArgument, "reason"},
		{"a reason past 500 characters", &qualificationv1.DisqualifyLeadRequest{LeadId: later, Reason: strings.Repeat("断", 501), DecidedBy: mia}, codes.InvalidArgument, "reason"},
		{"a reason with a control character", &qualificationv1.DisqualifyLeadRequest{LeadId: later, Reason: "spam\x1b[2J", DecidedBy: mia}, codes.InvalidArgument, "reason"},
		{"a reason naming the person", &qualificationv1.DisqualifyLeadRequest{LeadId: later, Reason: "complaint from ada@example.com", DecidedBy: mia}, codes.InvalidArgument, "reason"},
		{"nobody decides", &qualificationv1.DisqualifyLeadRequest{LeadId: later, Reason: "r"}, codes.InvalidArgument, "decided_by"},
		{"a malformed lead id", &qualificationv1.DisqualifyLeadRequest{LeadId: "lead.>", Reason: "r", DecidedBy: mia}, codes.InvalidArgument, "lead_id"},
		{"an unknown lead", &qualificationv1.DisqualifyLeadRequest{LeadId: uuid.NewString(), Reason: "r", DecidedBy: mia}, codes.NotFound, "not found"},
		// The request id of the verdict, with another one: not a retry.
		{"its request id, not now", &qualificationv1.DisqualifyLeadRequest{LeadId: spam, Reason: req.Reason, NotNow: true, DecidedBy: mia, RequestId: "d-1"}, codes.InvalidArgument, "request_id"},
		// Blank, it would be no id: a retry would be a second verdict.
		{"a blank request id", &qualificationv1.DisqualifyLeadRequest{LeadId: later, Reason: "r", DecidedBy: mia, RequestId: "  "}, codes.InvalidArgument, "request_id"},
		{"a request id naming the person", &qualificationv1.DisqualifyLeadRequest{LeadId: later, Reason: "r", DecidedBy: mia, RequestId: "crm:grace@example.com"}, codes.InvalidArgument, "request_id"},
	} {
		_, err := s.client.DisqualifyLead(ctxT(t), c.req)
		assertField(t, err, c.code, c.field)
	}
	if after := w.streamMsgs(t); after != before {
		t.Fatalf("a retry or a refusal wrote %d messages", after-before)
	}

	// 500 characters, not bytes: a reason in Japanese of 400 is taken.
	d, err = s.client.DisqualifyLead(ctxT(t), &qualificationv1.DisqualifyLeadRequest{LeadId: later, Reason: strings.Repeat("予", 400), NotNow: true, DecidedBy: mia})
	if err != nil || d.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_RECYCLED {
		t.Fatalf("not now: %v %v", d, err)
	}
	if o := last(w.events(t, later)).GetLifecycle().GetOwner(); o.GetId() != "nurture" {
		t.Fatalf("not now leaves the lead with %v, want the nurture queue", o)
	}
	w.activity(t, later, eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST)
	w.settle(t)
	evs := w.events(t, later)
	sc := ofType(evs, "LeadScored")
	if n := len(sc); n != 2 || sc[1].GetLifecycle().GetStatus() != eventv1.LeadStatus_LEAD_STATUS_RECYCLED || len(ofType(evs, "LeadQualified")) != 0 {
		t.Fatalf("scored after the verdict: %d scores, last %v", n, sc[n-1].GetLifecycle())
	}
}

// A verdict stored before records (its request id only on the event) is
// still the answer to a retry, found in the lead's events.
func TestDisqualifyRetryOfAVerdictWithoutRecord(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	id := uuid.NewString()
	w.capture(t, id, &eventv1.Profile{Country: "DE", EmailDomain: "mail.example"})
	w.settle(t)
	ctx := ctxT(t)
	subj := eventstore.LeadSubject(id)
	recs, err := w.store.Load(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	prev := recs[len(recs)-1]
	mia := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "mia", Team: eventv1.Team_TEAM_MARKETING}
	ev, _, err := lifecycle.NewEvent(id, lifecycle.FromProto(prev.Event.GetLifecycle()), lifecycle.Command{Name: lifecycle.Disqualify, Reason: "spam"},
		lifecycle.DefaultPolicy(), &eventv1.LeadDisqualified{Reason: "spam", DecidedBy: mia},
		envelope.Meta{Actor: mia, IdempotencyKey: "old-1", CorrelationID: uuid.NewString()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, err := w.store.Append(ctx, subj, prev.Seq, ev)
	if err != nil {
		t.Fatal(err)
	}
	before := w.streamMsgs(t)
	again, err := s.client.DisqualifyLead(ctx, &qualificationv1.DisqualifyLeadRequest{LeadId: id, Reason: "spam", DecidedBy: mia, RequestId: "old-1"})
	if err != nil || !again.GetReplayed() || again.GetEventId() != ev.GetEventId() || again.GetVersion() != v {
		t.Fatalf("retry: %v %v, want event %s at %d", again, err, ev.GetEventId(), v)
	}
	_, err = s.client.DisqualifyLead(ctx, &qualificationv1.DisqualifyLeadRequest{LeadId: id, Reason: "a competitor", DecidedBy: mia, RequestId: "old-1"})
	assertField(t, err, codes.InvalidArgument, "request_id")
	if after := w.streamMsgs(t); after != before {
		t.Fatalf("the retry or the refusal wrote %d messages", after-before)
	}
}

// "Not now" by hand for a nurtured lead is refused naming NURTURING: the
// lead is in nurture already, and it would only recycle it and restart
// its program. A final verdict on it still ends it.
func TestNotNowByHandIsRefusedForANurturedLead(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	rescored(t, s.client, activate(t, s.client, webinarModel(50)))
	lead := uuid.NewString()
	w.nurture(t, lead)
	w.settle(t)
	before := w.streamMsgs(t)
	_, err := s.client.DisqualifyLead(ctxT(t), &qualificationv1.DisqualifyLeadRequest{LeadId: lead, Reason: "budget frozen", NotNow: true, DecidedBy: marketing})
	assertField(t, err, codes.FailedPrecondition, "NURTURING")
	if after := w.streamMsgs(t); after != before {
		t.Fatalf("the refusal wrote %d messages", after-before)
	}
	d, err := s.client.DisqualifyLead(ctxT(t), &qualificationv1.DisqualifyLeadRequest{LeadId: lead, Reason: "a competitor", DecidedBy: marketing})
	if err != nil || d.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_DISQUALIFIED {
		t.Fatalf("a final verdict on the nurtured lead: %v %v", d, err)
	}
}

// Request ids are each service's own: a verdict by hand whose id is the
// key of the lead's capture (intake's) is a new request, not a reuse.
func TestDisqualifyKeyOfAnotherServiceIsAnotherRequest(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	id := uuid.NewString()
	ctx := ctxT(t)
	capture, _, err := lifecycle.NewEvent(id, lifecycle.State{}, lifecycle.Command{Name: lifecycle.Capture}, lifecycle.DefaultPolicy(),
		&eventv1.LeadCaptured{Profile: &eventv1.Profile{Country: "DE"}}, envelope.Meta{IdempotencyKey: "form-7", CorrelationID: uuid.NewString()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.Append(ctx, eventstore.LeadSubject(id), 0, capture); err != nil {
		t.Fatal(err)
	}
	mia := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "mia", Team: eventv1.Team_TEAM_MARKETING}
	d, err := s.client.DisqualifyLead(ctx, &qualificationv1.DisqualifyLeadRequest{LeadId: id, Reason: "spam", DecidedBy: mia, RequestId: "form-7"})
	if err != nil || d.GetReplayed() || d.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_DISQUALIFIED {
		t.Fatalf("a verdict under the capture's key: %v %v", d, err)
	}
}

// lostAnswer stores the next append and loses its answer.
type lostAnswer struct {
	app.Leads
	armed atomic.Bool
}

func (l *lostAnswer) lose(err error) error {
	if err == nil && l.armed.CompareAndSwap(true, false) {
		return fmt.Errorf("%w: the answer was lost", eventstore.ErrUnknownOutcome)
	}
	return err
}

func (l *lostAnswer) Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	v, err := l.Leads.Append(ctx, leadID, expected, events...)
	return v, l.lose(err)
}

func (l *lostAnswer) AppendKeyed(ctx context.Context, leadID string, expected uint64, requestID, eventType string, events ...*eventv1.Event) (uint64, error) {
	v, err := l.Leads.AppendKeyed(ctx, leadID, expected, requestID, eventType, events...)
	return v, l.lose(err)
}

// A verdict whose outcome is unknown is UNAVAILABLE; only one with a
// request id is told that sending it again is safe: without one, a second
// is refused as the lead's status if the first was stored.
func TestAVerdictOfUnknownOutcomeSaysWhetherToSendItAgain(t *testing.T) {
	w := newWorld(t)
	w.start(t).stop() // its streams
	lost := &lostAnswer{Leads: adapters.NewLeads(w.store)}
	log := slog.New(slog.DiscardHandler)
	port := ports.NewGRPC(app.New(lost, adapters.NewModels(w.store, w.nats.JS), adapters.NewScans(w.nats.JS, stream), app.WithLogger(log)), log)
	mia := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "mia", Team: eventv1.Team_TEAM_MARKETING}
	for _, id := range []string{"", "d-9"} {
		l := uuid.NewString()
		w.capture(t, l, &eventv1.Profile{Country: "DE", EmailDomain: "mail.example"})
		lost.armed.Store(true)
		_, err := port.DisqualifyLead(ctxT(t), &qualificationv1.DisqualifyLeadRequest{LeadId: l, Reason: "spam", DecidedBy: mia, RequestId: id})
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || strings.Contains(st.Message(), "request_id") != (id == "") {
			t.Errorf("request id %q: %v, want UNAVAILABLE, naming the missing request_id only without one", id, err)
		}
		if lost.armed.Load() || len(ofType(w.events(t, l), "LeadDisqualified")) != 1 {
			t.Fatalf("request id %q: the verdict was not stored", id)
		}
	}
}

// lostModels stores the next model event and loses its answer.
type lostModels struct {
	app.Models
	armed atomic.Bool
}

func (l *lostModels) Append(ctx context.Context, expected uint64, events ...*eventv1.Event) (uint64, error) {
	v, err := l.Models.Append(ctx, expected, events...)
	if err == nil && l.armed.CompareAndSwap(true, false) {
		return 0, fmt.Errorf("%w: the answer was lost", eventstore.ErrUnknownOutcome)
	}
	return v, err
}

// A proposal whose outcome is unknown is told to be sent again only with
// its idempotency key: without one, a second is another version.
func TestAProposalOfUnknownOutcomeSaysWhetherToSendItAgain(t *testing.T) {
	w := newWorld(t)
	w.start(t).stop() // its streams
	models := &lostModels{Models: adapters.NewModels(w.store, w.nats.JS)}
	log := slog.New(slog.DiscardHandler)
	port := ports.NewGRPC(app.New(adapters.NewLeads(w.store), models, adapters.NewScans(w.nats.JS, stream), app.WithLogger(log)), log)
	for _, key := range []string{"", "proposal-9"} {
		models.armed.Store(true)
		_, err := port.ProposeModel(ctxT(t), &qualificationv1.ProposeModelRequest{Model: scoring.ToProto(webinarModel(50)), ProposedBy: marketing, IdempotencyKey: key})
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || strings.Contains(st.Message(), "idempotency_key") != (key == "") {
			t.Errorf("key %q: %v, want UNAVAILABLE, naming the missing idempotency_key only without one", key, err)
		}
		if models.armed.Load() {
			t.Fatalf("key %q: the proposal was not stored", key)
		}
	}
}
