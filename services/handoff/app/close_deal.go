package app

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// CloseWon closes an opportunity won.
type CloseWon struct {
	LeadID, RepID, RequestID string
	Amount                   *eventv1.Money
}

// CloseWon appends DealWon with the amount won: the lead is WON, a
// terminal state.
//
// Errors: see command; amount is required, in the currency the
// opportunity was converted in (else *ValidationError on
// amount.currency).
func (a *App) CloseWon(ctx context.Context, in CloseWon, meta envelope.Meta) (Result, error) {
	var v violations
	checkLeadID(&v, in.LeadID)
	checkRepID(&v, "rep_id", in.RepID)
	checkRequestID(&v, in.RequestID)
	checkMoney(&v, "amount", in.Amount, true)
	if err := v.err(); err != nil {
		return Result{}, err
	}
	meta = repMeta(meta, in.RepID, in.RequestID)
	same := func(ev *eventv1.Event) bool {
		return ev.GetDealWon().GetRepId() == in.RepID && proto.Equal(ev.GetDealWon().GetAmount(), in.Amount)
	}
	return a.command(ctx, in.LeadID, in.RequestID, string(lifecycle.KindDealWon), sameIf(same), []repRef{{field: "rep_id", id: in.RepID}},
		func(l *lead, _ *routing.Config, now time.Time) ([]*eventv1.Event, error) {
			if err := requireOwner(l, in.RepID, "Win"); err != nil {
				return nil, err
			}
			ev, _, err := a.leadEvent(l.id, l.state, lifecycle.Command{Name: lifecycle.Win}, a.policy,
				&eventv1.DealWon{OpportunityId: l.opportunity.id, Amount: in.Amount, RepId: in.RepID, Segment: l.segment}, meta, now)
			if err != nil {
				return nil, err
			}
			if err := checkCurrency(l, in.Amount); err != nil {
				return nil, err
			}
			return []*eventv1.Event{ev}, nil
		})
}

// CloseLost closes an opportunity lost.
type CloseLost struct {
	LeadID, RepID, RequestID string
	Reason                   string
}

// CloseLost appends DealLost with the reason: the lead is LOST and goes
// to the nurture queue.
//
// Errors: see command; reason is required.
func (a *App) CloseLost(ctx context.Context, in CloseLost, meta envelope.Meta) (Result, error) {
	var v violations
	checkLeadID(&v, in.LeadID)
	checkRepID(&v, "rep_id", in.RepID)
	checkRequestID(&v, in.RequestID)
	checkText(&v, "reason", in.Reason, maxNote, true)
	if err := v.err(); err != nil {
		return Result{}, err
	}
	meta = repMeta(meta, in.RepID, in.RequestID)
	same := func(ctx context.Context, ev *eventv1.Event) (bool, error) {
		if ev.GetDealLost().GetRepId() != in.RepID {
			return false, nil
		}
		return a.sameText(ctx, in.LeadID, ev.GetDealLost().GetSealedReason(), ev.GetDealLost().GetReason(), in.Reason)
	}
	return a.command(ctx, in.LeadID, in.RequestID, string(lifecycle.KindDealLost), same, []repRef{{field: "rep_id", id: in.RepID}},
		func(l *lead, _ *routing.Config, now time.Time) ([]*eventv1.Event, error) {
			if err := requireOwner(l, in.RepID, "Lose"); err != nil {
				return nil, err
			}
			lost := &eventv1.DealLost{OpportunityId: l.opportunity.id, RepId: in.RepID, Segment: l.segment}
			ev, _, err := a.leadEvent(l.id, l.state, lifecycle.Command{Name: lifecycle.Lose, Reason: in.Reason}, a.policy, lost, meta, now)
			if err != nil {
				return nil, err
			}
			// Sealed once the lifecycle allows the step, as a rejection's note.
			if lost.SealedReason, err = a.sealText(ctx, l, "reason", in.Reason, true); err != nil {
				return nil, err
			}
			return []*eventv1.Event{ev}, nil
		})
}
