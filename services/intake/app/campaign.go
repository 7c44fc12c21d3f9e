package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/intake/form"
)

// RegisterCampaign is a new campaign.
type RegisterCampaign struct {
	CampaignID string
	Name       string
	Channel    eventv1.Channel
	StartsAt   time.Time
	EndsAt     time.Time
	Budget     *eventv1.Money
	Actor      *eventv1.Actor
}

// RegisterCampaign appends CampaignRegistered. Registering the same
// campaign again is a no-op; another campaign under a taken id is
// ErrAlreadyExists.
//
// Errors: *ValidationError, ErrAlreadyExists.
func (a *App) RegisterCampaign(ctx context.Context, in RegisterCampaign, meta envelope.Meta) (Written, error) {
	var v form.Violations
	form.ID(&v, "campaign_id", in.CampaignID, true)
	if in.Name == "" {
		v.Add("name", "is required")
	}
	form.Text(&v, "name", in.Name, form.MaxCompany, false)
	form.Enum(&v, "channel", int32(in.Channel), form.Defined(eventv1.Channel_name), true)
	form.Planned(&v, "starts_at", in.StartsAt, a.now())
	form.Planned(&v, "ends_at", in.EndsAt, a.now())
	if !in.StartsAt.IsZero() && !in.EndsAt.IsZero() && !in.EndsAt.After(in.StartsAt) {
		v.Add("ends_at", "must be after starts_at")
	}
	form.Money(&v, "budget", in.Budget, false)
	form.Actor(&v, "actor", in.Actor)
	if err := invalid(v); err != nil {
		return Written{}, err
	}
	payload := &eventv1.CampaignRegistered{
		CampaignId: in.CampaignID, Name: in.Name, Channel: in.Channel,
		StartsAt: ts(in.StartsAt), EndsAt: ts(in.EndsAt), Budget: in.Budget,
	}
	meta.Actor = meta.ActorOr(in.Actor)
	return a.appendToCampaign(ctx, in.CampaignID, payload, meta, func(recs []eventstore.Record) (uint64, error) {
		if len(recs) == 0 {
			// Its costs must be in its budget's currency: a typo would
			// stand for good.
			if in.Budget != nil && !envelope.Currency(in.Budget.GetCurrency()) {
				return 0, invalid(form.Violations{{Field: "budget.currency", Description: envelope.CurrencyRule}})
			}
			return 0, nil
		}
		if proto.Equal(recs[0].Event.GetCampaignRegistered(), payload) {
			return recs[0].Seq, nil
		}
		return 0, fmt.Errorf("campaign %s: %w", in.CampaignID, ErrAlreadyExists)
	})
}

// appendToCampaign is the read-decide-append loop of campaign commands:
// load, let done say whether the command already happened (the version it
// was stored at) or is refused, append at the loaded version, and on a
// lost race again.
func (a *App) appendToCampaign(ctx context.Context, campaignID string, payload eventPayload, meta envelope.Meta, done func([]eventstore.Record) (uint64, error)) (Written, error) {
	for attempt := range maxRaces {
		recs, err := a.campaigns.Load(ctx, campaignID)
		if err != nil {
			return Written{}, err
		}
		var version uint64
		if len(recs) > 0 {
			version = recs[len(recs)-1].Seq
		}
		if at, err := done(recs); err != nil || at > 0 {
			return Written{Version: at, Replayed: at > 0}, err
		}
		ev, err := envelope.NewEvent("", payload, meta, a.now())
		if err != nil {
			return Written{}, err
		}
		nv, err := a.campaigns.Append(ctx, campaignID, version, ev)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return Written{}, err
			}
			continue
		}
		if err != nil {
			return Written{}, err
		}
		return Written{Version: nv}, nil
	}
	return Written{}, fmt.Errorf("campaign %s: %w", campaignID, eventstore.ErrConflict)
}

// RecordCampaignCost is spend on a campaign.
type RecordCampaignCost struct {
	CampaignID  string
	CostID      string
	Amount      *eventv1.Money
	PeriodStart time.Time
	PeriodEnd   time.Time
	Actor       *eventv1.Actor
}

// RecordCampaignCost appends CampaignCostRecorded; the cost id makes a
// repeat a no-op that answers the first version. A campaign's spend is in
// one currency, its budget's or else its first cost's: reports are per
// currency, so a cost in another would count against no revenue.
//
// Errors: *ValidationError, ErrNotFound (unknown campaign),
// *KeyReusedError (the cost id with another cost).
func (a *App) RecordCampaignCost(ctx context.Context, in RecordCampaignCost, meta envelope.Meta) (Written, error) {
	var v form.Violations
	form.ID(&v, "campaign_id", in.CampaignID, true)
	form.ID(&v, "cost_id", in.CostID, true)
	form.Money(&v, "amount", in.Amount, true)
	form.Planned(&v, "period_start", in.PeriodStart, a.now())
	form.Planned(&v, "period_end", in.PeriodEnd, a.now())
	switch {
	case in.PeriodStart.IsZero() && !in.PeriodEnd.IsZero():
		// A cost is dated by its period's start, else by when it was
		// recorded: an end alone would date it wherever it came in.
		v.Add("period_start", "is required with period_end")
	case !in.PeriodStart.IsZero() && !in.PeriodEnd.IsZero() && !in.PeriodEnd.After(in.PeriodStart):
		v.Add("period_end", "must be after period_start")
	}
	form.Actor(&v, "actor", in.Actor)
	if err := invalid(v); err != nil {
		return Written{}, err
	}
	payload := &eventv1.CampaignCostRecorded{
		CampaignId: in.CampaignID, CostId: in.CostID, Amount: in.Amount,
		PeriodStart: ts(in.PeriodStart), PeriodEnd: ts(in.PeriodEnd),
	}
	meta.Actor = meta.ActorOr(in.Actor)
	return a.appendToCampaign(ctx, in.CampaignID, payload, meta, func(recs []eventstore.Record) (uint64, error) {
		if len(recs) == 0 {
			return 0, fmt.Errorf("campaign %s: %w", in.CampaignID, ErrNotFound)
		}
		currency := recs[0].Event.GetCampaignRegistered().GetBudget().GetCurrency()
		for _, r := range recs {
			c := r.Event.GetCampaignCostRecorded()
			if c == nil {
				continue
			}
			if c.GetCostId() == in.CostID {
				if proto.Equal(c, payload) {
					return r.Seq, nil
				}
				return 0, &KeyReusedError{Field: "cost_id"}
			}
			currency = cmp.Or(currency, c.GetAmount().GetCurrency())
		}
		switch {
		case currency != "" && in.Amount.GetCurrency() != currency:
			return 0, invalid(form.Violations{{Field: "amount.currency", Description: "must be " + currency + ", the campaign's currency"}})
		case currency == "" && !envelope.Currency(in.Amount.GetCurrency()):
			// The first cost sets the currency of every later one.
			return 0, invalid(form.Violations{{Field: "amount.currency", Description: envelope.CurrencyRule}})
		}
		return 0, nil
	})
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
