package main

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/adapters"
	"github.com/leadflow/leadflow/services/handoff/app"
)

// racingLeads has another writer get to a lead just before the first
// append: the command (or timer) loses the race.
type racingLeads struct {
	*adapters.Leads
	race func()
	once sync.Once
}

func (r *racingLeads) AppendKeyed(ctx context.Context, leadID string, expected uint64, requestID, eventType string, events ...*eventv1.Event) (uint64, error) {
	r.once.Do(r.race)
	return r.Leads.AppendKeyed(ctx, leadID, expected, requestID, eventType, events...)
}

func (r *racingLeads) Append(ctx context.Context, leadID string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	r.once.Do(r.race)
	return r.Leads.Append(ctx, leadID, expected, events...)
}

// An AssignLead or ReassignLead that loses its race and is then refused
// gives back the reservation it made for its rep; it once left it until
// pruned. A reservation the winner holds for the same rep and lead
// stays.
func TestCommandRefusedAfterALostRaceGivesBackItsReservation(t *testing.T) {
	w := newWorld(t)
	w.mqlUnrouted(t) // routing data; no service routes the leads below
	other := w.app(t, adapters.NewLeads(w.store))
	assign := func(a *app.App, id, rep string) error {
		_, err := a.AssignLead(ctxT(t), app.AssignLead{LeadID: id, RepID: rep, RequestID: uuid.NewString(), By: ops}, envelope.Meta{})
		return err
	}
	reassign := func(a *app.App, id, rep string) error {
		_, err := a.ReassignLead(ctxT(t), app.ReassignLead{LeadID: id, ToRepID: rep, RequestID: uuid.NewString(), Reason: "cover", By: ops}, envelope.Meta{})
		return err
	}
	for _, tc := range []struct {
		name string
		// assigned: the lead is assigned to ann first; then cmd sends it
		// to rep while winner writes first.
		assigned bool
		cmd      func(*app.App, string, string) error
		rep      string
		winner   func(id string) error
		holders  []string // the reps holding the lead's reservation at the end
	}{
		{name: "assign, another rep won", cmd: assign, rep: "ann",
			winner: func(id string) error { return assign(other, id, "bob") }, holders: []string{"bob"}},
		{name: "assign, the same rep won", cmd: assign, rep: "ann",
			winner: func(id string) error { return assign(other, id, "ann") }, holders: []string{"ann"}},
		{name: "reassign, the owner rejected it", assigned: true, cmd: reassign, rep: "cat",
			winner: func(id string) error {
				_, err := other.RejectLead(ctxT(t), app.RejectLead{LeadID: id, RepID: "ann", RequestID: uuid.NewString(), Reason: eventv1.RejectReason_REJECT_REASON_NOT_A_FIT}, envelope.Meta{})
				return err
			}, holders: []string{"ann"}}, // the lead consumer (not running here) releases ann's
		{name: "reassign, the same rep won", assigned: true, cmd: reassign, rep: "cat",
			winner: func(id string) error { return reassign(other, id, "cat") }, holders: []string{"ann", "cat"}}, // ann's: as above
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := w.mql(t, dach(50))
			if tc.assigned {
				if err := assign(other, id, "ann"); err != nil {
					t.Fatal(err)
				}
			}
			leads := &racingLeads{Leads: adapters.NewLeads(w.store), race: func() {
				if err := tc.winner(id); err != nil {
					t.Errorf("the winner: %v", err)
				}
			}}
			if err := tc.cmd(w.app(t, leads), id, tc.rep); !errors.Is(err, lifecycle.ErrRefused) {
				t.Fatalf("after the lost race: %v, want refused", err)
			}
			wantReserved(t, w, id, tc.holders...)
		})
	}
}

// A lead consumer behind a lead that left its rep and came back gives
// the rep's reservation back only if the lead is not the rep's again: it
// once deleted the one the return made, and the rep's capacity never
// counted the lead again. ann has the lead, then bob, then ann, all
// while no consumer runs; the consumer then reads the backlog in order.
func TestReleaseBehindTheLeadsReturnKeepsItsReservation(t *testing.T) {
	w := newWorld(t)
	id := w.mqlUnrouted(t)
	a := w.app(t, adapters.NewLeads(w.store))
	if _, err := a.AssignLead(ctxT(t), app.AssignLead{LeadID: id, RepID: "ann", RequestID: uuid.NewString(), By: ops}, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	for _, rep := range []string{"bob", "ann"} {
		if _, err := a.ReassignLead(ctxT(t), app.ReassignLead{LeadID: id, ToRepID: rep, RequestID: uuid.NewString(), Reason: "cover", By: ops}, envelope.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	wantReserved(t, w, id, "ann", "bob") // nothing released yet

	w.start(t)
	w.settle(t)
	if st := w.state(t, id); st.Status != lifecycle.StatusAssigned || st.Owner.ID != "ann" {
		t.Fatalf("after the backlog: %+v, want ASSIGNED to ann", st)
	}
	wantReserved(t, w, id, "ann")
}

// A reassignment whose first try reserved its rep for an accepted lead,
// and lost its race to the conversion, hands the deal on in its retry:
// a deal holds no capacity, so that reservation is given back, where it
// once counted the deal against the rep for good.
func TestAReassignmentThatFindsADealGivesBackItsReservation(t *testing.T) {
	w := newWorld(t)
	w.mqlUnrouted(t)
	other := w.app(t, adapters.NewLeads(w.store))
	id := w.mql(t, dach(50))
	if _, err := other.AssignLead(ctxT(t), app.AssignLead{LeadID: id, RepID: "ann", RequestID: uuid.NewString(), By: ops}, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.AcceptLead(ctxT(t), app.AcceptLead{LeadID: id, RepID: "ann", RequestID: uuid.NewString()}, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	leads := &racingLeads{Leads: adapters.NewLeads(w.store), race: func() {
		if _, err := other.ConvertLead(ctxT(t), app.ConvertLead{LeadID: id, RepID: "ann", RequestID: uuid.NewString(),
			Amount: eur(1000_00), Stage: "discovery"}, envelope.Meta{}); err != nil {
			t.Errorf("the conversion: %v", err)
		}
	}}
	if _, err := w.app(t, leads).ReassignLead(ctxT(t), app.ReassignLead{LeadID: id, ToRepID: "cat", RequestID: uuid.NewString(), Reason: "ann left", By: ops}, envelope.Meta{}); err != nil {
		t.Fatalf("the reassignment after the conversion: %v", err)
	}
	if st := w.state(t, id); st.Status != lifecycle.StatusOpportunity || st.Owner.ID != "cat" {
		t.Fatalf("after the reassignment: %+v, want cat's opportunity", st)
	}
	wantReserved(t, w, id, "ann") // the lead consumer (not running here) releases ann's
}
