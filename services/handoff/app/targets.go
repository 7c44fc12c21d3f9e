package app

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// Marketing's side of the SLA is data too: per period and segment, how
// many MQLs marketing commits to and how good they are (acceptance rate,
// MQL-to-opportunity rate). The read side compares them with the events
// handoff writes: LeadAssigned and LeadQueued (MQLs, by segment),
// LeadAccepted and LeadRejected (acceptance, with reason codes),
// OpportunityCreated, DealWon and DealLost (conversion and revenue), all
// carrying the lead's segment; and sales' side from the SLA events
// (LeadAccepted.within_sla, ContactAttempted.within_sla, SLABreached).

var periodRE = regexp.MustCompile(`^[0-9]{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$`)

// SetMarketingTarget records a target, replacing the one for the same
// period and segment; the same target again writes nothing.
//
// Errors: *ValidationError, eventstore.ErrConflict after repeated races.
func (a *App) SetMarketingTarget(ctx context.Context, t *eventv1.MarketingTarget, by *eventv1.Actor, meta envelope.Meta) (bool, error) {
	var v violations
	by = meta.ActorOr(by)
	checkActor(&v, "set_by", by)
	switch {
	case t == nil:
		v.add("target", "is required")
	default:
		if !periodRE.MatchString(t.GetPeriod()) {
			v.add("target.period", "must be a year, quarter or month: 2026, 2026-Q1, 2026-03")
		}
		if s := t.GetSegment(); s != "" && !routing.ValidID(s) {
			v.add("target.segment", "must be empty (every segment) or a segment id")
		}
		if t.GetMinMqls() < 0 {
			v.add("target.min_mqls", "must not be negative")
		}
		if t.GetMinAcceptanceRateBps() > 10000 {
			v.add("target.min_acceptance_rate_bps", "must be at most 10000 (100%%)")
		}
		if t.GetMinMqlToOpportunityBps() > 10000 {
			v.add("target.min_mql_to_opportunity_bps", "must be at most 10000 (100%%)")
		}
	}
	if s := t.GetSegment(); len(v) == 0 && s != "" {
		c, err := a.Routing(ctx)
		if err != nil {
			return false, err
		}
		for _, x := range c.CheckSegment("target.segment", s, true) {
			v.add(x.Field, "%s", x.Description)
		}
	}
	if err := v.err(); err != nil {
		return false, err
	}
	meta.Actor = by
	for attempt := range maxRaces {
		targets, seq, err := a.targets(ctx)
		if err != nil {
			return false, err
		}
		if old, ok := targets[targetKey(t)]; ok && proto.Equal(old, t) {
			return true, nil
		}
		ev, err := envelope.NewEvent("", &eventv1.MarketingTargetSet{Target: t, SetBy: by}, meta, a.now())
		if err != nil {
			return false, err
		}
		_, err = a.store.Targets().Append(ctx, seq, ev)
		if errors.Is(err, eventstore.ErrConflict) {
			if err := eventstore.AfterConflict(ctx, attempt); err != nil {
				return false, err
			}
			continue
		}
		return false, err
	}
	return false, fmt.Errorf("set marketing target: %w after %d races", eventstore.ErrConflict, maxRaces)
}

// MarketingTargets returns every target in force, by period then segment.
func (a *App) MarketingTargets(ctx context.Context) ([]*eventv1.MarketingTarget, error) {
	targets, _, err := a.targets(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*eventv1.MarketingTarget, 0, len(targets))
	for _, k := range SortedKeys(targets) {
		out = append(out, targets[k])
	}
	return out, nil
}

func targetKey(t *eventv1.MarketingTarget) string { return t.GetPeriod() + "/" + t.GetSegment() }

func (a *App) targets(ctx context.Context) (map[string]*eventv1.MarketingTarget, uint64, error) {
	recs, err := a.store.Targets().LoadAfter(ctx, 0)
	if err != nil {
		return nil, 0, err
	}
	out := map[string]*eventv1.MarketingTarget{}
	var seq uint64
	for _, r := range recs {
		seq = r.Seq
		if t := r.Event.GetMarketingTargetSet().GetTarget(); t != nil {
			out[targetKey(t)] = t
		}
	}
	return out, seq, nil
}
