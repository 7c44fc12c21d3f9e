package main

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/adapters"
	"github.com/leadflow/leadflow/services/handoff/app"
)

// countingLeads counts the lead loads a command makes; legacy stores a
// keyed command's events without their record, as handoff did before
// records and as a crash between the two leaves them.
type countingLeads struct {
	*adapters.Leads
	loads  atomic.Int32
	legacy bool
}

func (c *countingLeads) Load(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	c.loads.Add(1)
	return c.Leads.Load(ctx, leadID)
}

func (c *countingLeads) AppendKeyed(ctx context.Context, leadID string, expected uint64, requestID, eventType string, events ...*eventv1.Event) (uint64, error) {
	if c.legacy {
		return c.Leads.Append(ctx, leadID, expected, events...)
	}
	return c.Leads.AppendKeyed(ctx, leadID, expected, requestID, eventType, events...)
}

// app is handoff's use cases over leads, beside the running service.
func (w *world) app(t testing.TB, leads app.Leads, opts ...app.Option) *app.App {
	t.Helper()
	return w.appOn(t, leads, adapters.NewStore(w.store, w.nats.JS), opts...)
}

// appOn is app with the routing, pool and target subjects read through
// store.
func (w *world) appOn(t testing.TB, leads app.Leads, store app.Store, opts ...app.Option) *app.App {
	t.Helper()
	loads, err := adapters.NewLoads(ctxT(t), w.nats.JS, "HANDOFF_LOAD", 1)
	if err != nil {
		t.Fatal(err)
	}
	return app.New(leads, store, loads, adapters.NewTimers(w.nats.JS, time.Hour), opts...)
}

// counted waits for the lead consumer to settle, then returns handoff's
// use cases over leads that count their loads.
func (w *world) counted(t testing.TB) (*countingLeads, *app.App) {
	t.Helper()
	w.settle(t)
	leads := &countingLeads{Leads: adapters.NewLeads(w.store)}
	return leads, w.app(t, leads)
}

// stored counts the messages of every stream (buckets included).
func (w *world) stored(t testing.TB) uint64 {
	t.Helper()
	var n uint64
	l := w.nats.JS.ListStreams(ctxT(t))
	for info := range l.Info() {
		n += info.State.Msgs
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// A repeated request id is answered from its record: the lead is not
// read, nothing is written anywhere, and the answer is the first one. A
// request id without a record is still found, in the lead's events; and
// one used for another command is refused.
func TestRepeatedCommandIsAnsweredFromItsRecord(t *testing.T) {
	w, _, id, owner := assignedLead(t)
	leads, a := w.counted(t)
	ctx := ctxT(t)

	first, err := a.AcceptLead(ctx, app.AcceptLead{LeadID: id, RepID: owner, RequestID: "accept-1"}, envelope.Meta{})
	if err != nil || first.Replayed {
		t.Fatalf("accept: %+v %v", first, err)
	}
	// Worked on since: the answer is still the first one.
	if _, err := a.LogContactAttempt(ctx, app.LogContact{LeadID: id, RepID: owner, RequestID: "call-1",
		Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER}, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	// Records are sent without waiting: count once both are stored.
	eventually(t, 5*time.Second, func() bool {
		_, _, found, err := leads.Keyed(ctx, id, "call-1")
		return err == nil && found
	}, "the contact attempt's record was not stored")
	before := w.stored(t)
	leads.loads.Store(0)
	again, err := a.AcceptLead(ctx, app.AcceptLead{LeadID: id, RepID: owner, RequestID: "accept-1"}, envelope.Meta{})
	if err != nil || !again.Replayed || again.EventID != first.EventID || again.Version != first.Version || again.State != first.State {
		t.Fatalf("the repeat: %+v %v, want the first answer %+v", again, err, first)
	}
	if n := leads.loads.Load(); n != 0 {
		t.Errorf("the repeat read the lead %d times", n)
	}
	if after := w.stored(t); after != before {
		t.Errorf("the repeat stored %d messages", after-before)
	}
	_, err = a.RejectLead(ctx, app.RejectLead{LeadID: id, RepID: owner, RequestID: "accept-1", Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY}, envelope.Meta{})
	var invalid *app.ValidationError
	if !errors.As(err, &invalid) || invalid.Violations[0].Field != "request_id" {
		t.Errorf("a request id of an accept sent with a rejection: %v", err)
	}

	// Stored without a record: found in the events.
	leads.legacy = true
	old, err := a.LogContactAttempt(ctx, app.LogContact{LeadID: id, RepID: owner, RequestID: "call-2",
		Channel: eventv1.ContactChannel_CONTACT_CHANNEL_EMAIL, Outcome: eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER}, envelope.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	leads.legacy = false
	before = w.stored(t)
	again, err = a.LogContactAttempt(ctx, app.LogContact{LeadID: id, RepID: owner, RequestID: "call-2",
		Channel: eventv1.ContactChannel_CONTACT_CHANNEL_EMAIL, Outcome: eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER}, envelope.Meta{})
	if err != nil || !again.Replayed || again.EventID != old.EventID {
		t.Fatalf("a repeat of a request stored without a record: %+v %v, want %+v", again, err, old)
	}
	if after := w.stored(t); after != before {
		t.Errorf("the repeat stored %d messages", after-before)
	}
}

// A request id sent again with other content is refused, whether the
// first answer comes from the id's record or, without one, from the
// lead's events: answering the first answer would drop what the caller
// asked now. Nothing is written.
func TestRequestIDWithOtherContentIsRefused(t *testing.T) {
	w, _, id, owner := assignedLead(t)
	leads, a := w.counted(t)
	ctx := ctxT(t)
	if _, err := a.AcceptLead(ctx, app.AcceptLead{LeadID: id, RepID: owner, RequestID: "accept-1"}, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	call := func(key string, outcome eventv1.ContactOutcome) (app.Result, error) {
		return a.LogContactAttempt(ctx, app.LogContact{LeadID: id, RepID: owner, RequestID: key,
			Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: outcome}, envelope.Meta{})
	}
	refused := func(key string) {
		t.Helper()
		before := w.stored(t)
		_, err := call(key, eventv1.ContactOutcome_CONTACT_OUTCOME_CONNECTED)
		var invalid *app.ValidationError
		if !errors.As(err, &invalid) || invalid.Violations[0].Field != "request_id" || !strings.Contains(err.Error(), "said otherwise") {
			t.Fatalf("%s sent again with another outcome: %v", key, err)
		}
		if after := w.stored(t); after != before {
			t.Errorf("the refusal stored %d messages", after-before)
		}
	}

	if _, err := call("call-1", eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool {
		_, _, found, err := leads.Keyed(ctx, id, "call-1")
		return err == nil && found
	}, "the contact attempt's record was not stored")
	refused("call-1")

	leads.legacy = true // no record: the first answer is in the events
	if _, err := call("call-2", eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER); err != nil {
		t.Fatal(err)
	}
	leads.legacy = false
	refused("call-2")

	if r, err := call("call-2", eventv1.ContactOutcome_CONTACT_OUTCOME_NO_ANSWER); err != nil || !r.Replayed {
		t.Fatalf("a true repeat: %+v %v", r, err)
	}
	if n := len(ofType(w.events(t, id), "ContactAttempted")); n != 2 {
		t.Fatalf("%d contact attempts stored, want 2", n)
	}
}

// A conversion retried after its expected close has passed (its answer
// was lost) gets the first answer, not a refusal of the date: the clock
// judges a request only when it is new. Checks that do not depend on the
// lead come before its state; those that do (a deal id used before, a
// note to seal) come after the lifecycle, so a refusal names the state.
func TestConversionRetriedAfterItsExpectedClose(t *testing.T) {
	w, s, id, owner := assignedLead(t)
	w.settle(t)
	a := w.app(t, adapters.NewLeads(w.store))
	ctx := ctxT(t)
	if _, err := a.AcceptLead(ctx, app.AcceptLead{LeadID: id, RepID: owner, RequestID: "accept-1"}, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	convert := app.ConvertLead{LeadID: id, RepID: owner, RequestID: "conv-1", OpportunityID: "crm-9", Amount: eur(100_000), Stage: "discovery",
		ExpectedClose: timestamppb.New(time.Now().Add(time.Minute))}
	first, err := a.ConvertLead(ctx, convert, envelope.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	later := w.app(t, adapters.NewLeads(w.store), app.WithClock(func() time.Time { return time.Now().Add(time.Hour) }))
	again, err := later.ConvertLead(ctx, convert, envelope.Meta{})
	if err != nil || !again.Replayed || again.EventID != first.EventID || again.OpportunityID != "crm-9" {
		t.Fatalf("the retry an hour later: %+v %v, want the first answer %+v", again, err, first)
	}
	// A new request for the same deal: the lead is an opportunity already.
	convert.RequestID = "conv-2"
	_, err = a.ConvertLead(ctx, convert, envelope.Meta{})
	if !errors.Is(err, lifecycle.ErrRefused) || !strings.Contains(err.Error(), "OPPORTUNITY") {
		t.Fatalf("a second conversion naming the same deal: %v, want refused in OPPORTUNITY", err)
	}
	if _, err := s.client.CloseLost(ctx, &handoffv1.CloseLostRequest{LeadId: id, RepId: owner, RequestId: "lost-1", Reason: "budget cut"}); err != nil {
		t.Fatal(err)
	}
	// Closed: a second loss is refused by its state, whatever its reason
	// would need to be sealed (this app has no key vault).
	_, err = a.CloseLost(ctx, app.CloseLost{LeadID: id, RepID: owner, RequestID: "lost-2", Reason: "again"}, envelope.Meta{})
	if !errors.Is(err, lifecycle.ErrRefused) || !strings.Contains(err.Error(), "LOST") {
		t.Fatalf("a loss of a lost deal: %v, want refused in LOST", err)
	}
	_, err = a.RejectLead(ctx, app.RejectLead{LeadID: id, RepID: owner, RequestID: "reject-1", Reason: eventv1.RejectReason_REJECT_REASON_NOT_A_FIT, Note: "no"}, envelope.Meta{})
	if !errors.Is(err, lifecycle.ErrRefused) || !strings.Contains(err.Error(), "LOST") {
		t.Fatalf("a rejection of a lost deal's lead: %v, want refused in LOST", err)
	}
}
