package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
)

var salesOps = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "olga.sales-ops", Team: eventv1.Team_TEAM_SALES}

// seedRouting loads the demo routing data through handoff's API, before
// any lead qualifies: two teams working around the clock (so the demo
// routes at any hour), a weighted pool each, an account, territory rules,
// and for enterprise leads a 20-second acceptance SLA, so that the demo
// shows a breach escalating. Setting the same data again changes nothing,
// so a restart writes no routing version.
func seedRouting(ctx context.Context, conns map[string]*grpc.ClientConn) error {
	if conns["handoff"] == nil {
		return nil
	}
	h := handoffv1.NewHandoffServiceClient(conns["handoff"])
	now, err := h.GetRouting(ctx, &handoffv1.GetRoutingRequest{})
	if err != nil {
		return fmt.Errorf("routing data: %w", err)
	}
	known := map[string]bool{}
	for _, t := range now.GetTeams() {
		known[t.GetTeamId()] = true
	}
	managers := []struct{ team, rep string }{{"emea", "maya"}, {"americas", "mark"}}
	calls := []func() error{}
	add := func(f func() error) { calls = append(calls, f) }
	// A rep needs its team, and a manager is a rep: only a team not known
	// yet comes first without its manager; each is put once with it below.
	for _, m := range managers {
		if !known[m.team] {
			add(func() error {
				_, err := h.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: m.team}, ChangedBy: salesOps})
				return err
			})
		}
	}
	for _, r := range [][2]string{{"ana", "emea"}, {"ben", "emea"}, {"maya", "emea"}, {"carla", "americas"}, {"dev", "americas"}, {"mark", "americas"}} {
		add(func() error {
			_, err := h.PutRep(ctx, &handoffv1.PutRepRequest{Rep: &eventv1.Rep{RepId: r[0], TeamId: r[1], Capacity: 25, Active: true}, ChangedBy: salesOps})
			return err
		})
	}
	for _, m := range managers {
		add(func() error {
			_, err := h.PutTeam(ctx, &handoffv1.PutTeamRequest{Team: &eventv1.SalesTeam{TeamId: m.team, ManagerRepId: m.rep}, ChangedBy: salesOps})
			return err
		})
	}
	add(func() error {
		_, err := h.PutPool(ctx, &handoffv1.PutPoolRequest{Pool: &eventv1.Pool{PoolId: "emea", Members: []*eventv1.PoolMember{{RepId: "ana", Weight: 2}, {RepId: "ben", Weight: 1}}}, ChangedBy: salesOps})
		return err
	})
	add(func() error {
		_, err := h.PutPool(ctx, &handoffv1.PutPoolRequest{Pool: &eventv1.Pool{PoolId: "americas", Members: []*eventv1.PoolMember{{RepId: "carla", Weight: 1}, {RepId: "dev", Weight: 1}}}, ChangedBy: salesOps})
		return err
	})
	add(func() error {
		_, err := h.PutAccount(ctx, &handoffv1.PutAccountRequest{Account: &eventv1.Account{AccountId: "orbital", Name: "Orbital Math Inc.",
			Domains: []string{"orbit.example"}, OwnerRepId: "dev"}, ChangedBy: salesOps})
		return err
	})
	add(func() error {
		_, err := h.SetRoutingRules(ctx, &handoffv1.SetRoutingRulesRequest{Rules: &eventv1.RoutingRules{
			Regions: []*eventv1.Region{{RegionId: "europe", Countries: []string{"GB", "IE", "DE", "FR", "NL", "SE", "DK", "FI"}}},
			Rules: []*eventv1.RoutingRule{
				{RuleId: "us-enterprise", Segment: "enterprise", PoolId: "americas", When: &eventv1.RuleCriteria{CountryIn: []string{"US", "CA"}, MinEmployees: 500}},
				{RuleId: "us-mid-market", Segment: "mid-market", PoolId: "americas", When: &eventv1.RuleCriteria{CountryIn: []string{"US", "CA"}}},
				{RuleId: "europe", Segment: "emea", PoolId: "emea", When: &eventv1.RuleCriteria{RegionIn: []string{"europe"}}},
			},
			FallbackQueue: "sales-triage",
		}, ChangedBy: salesOps})
		return err
	})
	add(func() error {
		_, err := h.SetSLAPolicy(ctx, &handoffv1.SetSLAPolicyRequest{Policy: &eventv1.SLAPolicy{Segment: "enterprise",
			AcceptWithin: durationpb.New(20 * time.Second), WarnBefore: durationpb.New(10 * time.Second), FirstContactWithin: durationpb.New(time.Hour),
			MinAttempts: 3, AttemptDays: 5, Escalation: eventv1.SLAEscalation_SLA_ESCALATION_NEXT_REP}, ChangedBy: salesOps})
		return err
	})
	for i, f := range calls {
		if err := f(); err != nil {
			return fmt.Errorf("routing data, step %d: %w", i+1, err)
		}
	}
	return nil
}

// showHandoff works the demo's MQLs through handoff: each routed (by
// territory and pool, or to its account's owner); Ada accepted, contacted
// and won; Barbara rejected; Katherine, an enterprise lead, not accepted
// in time, so the breach escalates her to the pool's next rep. Every
// command carries a request id, so a second run replays them. A lead that
// cannot be worked is a warning: the stack runs on without it.
func showHandoff(ctx context.Context, conns map[string]*grpc.ClientConn, as asCaller, ids []string, out io.Writer) error {
	if conns["handoff"] == nil {
		return nil
	}
	h := handoffv1.NewHandoffServiceClient(conns["handoff"])
	brief := func(id string) (*handoffv1.HandoffBrief, error) {
		b, err := h.GetHandoffBrief(ctx, &handoffv1.GetHandoffBriefRequest{LeadId: id})
		return b.GetBrief(), err
	}
	fmt.Fprintln(out, "\nRouted by handoff (decision, owner):")
	briefs := map[string]*handoffv1.HandoffBrief{}
	for i, id := range ids {
		var b *handoffv1.HandoffBrief
		deadline := time.Now().Add(10 * time.Second)
		for {
			var err error
			if b, err = brief(id); err != nil {
				return err
			}
			if b.GetJourney() == 0 || len(b.GetOwners()) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if b.GetJourney() == 0 {
			continue // not an MQL
		}
		if len(b.GetOwners()) == 0 {
			fmt.Fprintf(out, "  %-26s not routed yet (queued?)\n", demoLeads[i].email)
			continue
		}
		briefs[id] = b
		// The decision that gave the lead its current owner: a later run
		// may show a later journey's.
		journey := ""
		if b.GetJourney() > 1 {
			journey = fmt.Sprintf(", journey %d", b.GetJourney())
		}
		fmt.Fprintf(out, "  %-26s %s (routing v%d, segment %s%s)\n", demoLeads[i].email, b.GetRouting().GetSummary(), b.GetRouting().GetRoutingVersion(), b.GetSegment(), journey)
	}
	byEmail := func(email string) string {
		for i, d := range demoLeads {
			if d.email == email {
				return ids[i]
			}
		}
		return ""
	}
	warn := func(email string, err error) {
		fmt.Fprintf(out, "  %-26s warning: %v; the stack runs on without it\n", email, err)
	}
	ada, barbara, katherine := byEmail("ada@analytical.example"), byEmail("barbara@clu.example"), byEmail("katherine@orbit.example")
	if b := briefs[ada]; b != nil {
		rep := actingRep(b)
		var rctx context.Context
		steps := []func() error{
			func() (err error) {
				rctx, err = asRep(ctx, as, rep)
				return err
			},
			func() error {
				_, err := h.AcceptLead(rctx, &handoffv1.AcceptLeadRequest{LeadId: ada, RepId: rep, RequestId: "demo-accept"})
				return err
			},
			func() error {
				_, err := h.LogContactAttempt(rctx, &handoffv1.LogContactAttemptRequest{LeadId: ada, RepId: rep, RequestId: "demo-call-1",
					Channel: eventv1.ContactChannel_CONTACT_CHANNEL_PHONE, Outcome: eventv1.ContactOutcome_CONTACT_OUTCOME_MEETING_BOOKED})
				return err
			},
			func() error {
				_, err := h.ConvertLead(rctx, &handoffv1.ConvertLeadRequest{LeadId: ada, RepId: rep, RequestId: "demo-convert",
					Amount: &eventv1.Money{Currency: demoCurrency, MinorUnits: 4_800_000}, Stage: "discovery"})
				return err
			},
			func() error {
				_, err := h.MoveOpportunityStage(rctx, &handoffv1.MoveOpportunityStageRequest{LeadId: ada, RepId: rep, RequestId: "demo-stage", Stage: "negotiation"})
				return err
			},
			func() error {
				_, err := h.CloseWon(rctx, &handoffv1.CloseWonRequest{LeadId: ada, RepId: rep, RequestId: "demo-won", Amount: &eventv1.Money{Currency: demoCurrency, MinorUnits: 4_500_000}})
				return err
			},
		}
		err := notRep(b, rep)
		for _, s := range steps {
			if err == nil {
				err = s()
			}
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			warn("ada@analytical.example", fmt.Errorf("work the lead: %w", err))
		default:
			fmt.Fprintf(out, "  %-26s accepted by %s, meeting booked, opportunity, negotiation, won %s 45,000\n", "ada@analytical.example", rep, demoCurrency)
		}
	}
	if b := briefs[barbara]; b != nil {
		rep := actingRep(b)
		if r := b.GetRejections(); len(r) > 0 {
			rep = r[0].GetRepId() // rejected before: the same rep replays it
		}
		err := notRep(b, rep)
		var rctx context.Context
		if err == nil {
			rctx, err = asRep(ctx, as, rep)
		}
		if err == nil {
			_, err = h.RejectLead(rctx, &handoffv1.RejectLeadRequest{LeadId: barbara, RepId: rep, RequestId: "demo-reject",
				Reason: eventv1.RejectReason_REJECT_REASON_NOT_READY, Note: "budget frozen until Q3"})
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			warn("barbara@clu.example", fmt.Errorf("reject the lead: %w", err))
		default:
			fmt.Fprintf(out, "  %-26s rejected by %s (NOT_READY): back to nurture\n", "barbara@clu.example", rep)
			if err := showNurture(ctx, conns, barbara, "barbara@clu.example", out); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				warn("barbara@clu.example", err)
			}
		}
	}
	if b := briefs[katherine]; b != nil {
		// An earlier run waited for the breach already: tell what happened.
		if len(b.GetOwners()) > 1 {
			fmt.Fprintf(out, "  %-26s enterprise SLA: accept within 20s; nobody did:\n", "katherine@orbit.example")
		} else {
			fmt.Fprintf(out, "  %-26s enterprise SLA: accept within 20s; nobody does. Waiting for the breach...\n", "katherine@orbit.example")
			for deadline := time.Now().Add(45 * time.Second); len(b.GetOwners()) < 2; {
				if time.Now().After(deadline) {
					fmt.Fprintf(out, "  %-26s no escalation yet\n", "")
					return nil
				}
				time.Sleep(250 * time.Millisecond)
				var err error
				if b, err = brief(katherine); err != nil {
					return err
				}
			}
		}
		for _, l := range slaStory(b) {
			fmt.Fprintf(out, "  %-26s %s\n", "", l)
		}
		// Left so on purpose: an operator trying leadctl meets it.
		fmt.Fprintf(out, "  %-26s left unaccepted on purpose: it ends overdue in the manager's queue, where `leadctl lost` lists it (exit 3)\n", "")
		fmt.Fprintf(out, "  %-26s until someone takes it: go run ./services/leadctl reassign %s --to <rep> --reason <why>\n", "", katherine)
	}
	return nil
}

// slaStory tells b's SLA entries, a line per breach with the warnings
// before it and where the breach took the lead: the k-th escalating
// breach wrote the k-th "escalated" ownership. A hand-on that was no
// breach's (an operator's reassignment, say) is told where it came, so a
// later breach's owners follow from the lines before it.
func slaStory(b *handoffv1.HandoffBrief) []string {
	var escalated []string
	var handedOn []*handoffv1.Ownership
	for i, o := range b.GetOwners() {
		switch {
		case o.GetHow() == "escalated":
			escalated = append(escalated, o.GetOwner().GetId())
		case i > 0:
			handedOn = append(handedOn, o)
		}
	}
	var lines, warned []string
	handOnsBefore := func(at time.Time) {
		for len(handedOn) > 0 && (at.IsZero() || handedOn[0].GetFrom().AsTime().Before(at)) {
			lines = append(lines, fmt.Sprintf("%s: owner %s", handedOn[0].GetHow(), handedOn[0].GetOwner().GetId()))
			handedOn = handedOn[1:]
		}
	}
	for _, e := range b.GetSla() {
		if e.GetAt() != nil {
			handOnsBefore(e.GetAt().AsTime())
		}
		kind := strings.TrimPrefix(e.GetSla().String(), "SLA_KIND_")
		if !e.GetBreached() {
			warned = append(warned, kind+" warned")
			continue
		}
		l := strings.Join(append(warned, kind+" breached"), ", ")
		warned = nil
		from := e.GetOwner().GetId()
		esc := e.GetEscalation()
		if esc == eventv1.SLAEscalation_SLA_ESCALATION_NONE || len(escalated) == 0 {
			// A queue's breach is only recorded: nobody to escalate to.
			lines = append(lines, fmt.Sprintf("%s, not escalated: it stays with %s", l, from))
			continue
		}
		lines = append(lines, fmt.Sprintf("%s → %s; owners %s → %s", l, strings.TrimPrefix(esc.String(), "SLA_ESCALATION_"), from, escalated[0]))
		escalated = escalated[1:]
	}
	handOnsBefore(time.Time{})
	if len(warned) > 0 {
		lines = append(lines, fmt.Sprintf("%s; owner %s", strings.Join(warned, ", "), b.GetOwner().GetId()))
	}
	return lines
}

// actingRep is the rep to work a lead as: whoever owns it now, not whoever
// got it first (an SLA breach or a reassignment may have moved it on since
// an earlier run); for a finished lead, which nobody owns, its last owner,
// so that a second run replays the same commands. "": a queue holds it.
func actingRep(b *handoffv1.HandoffBrief) string {
	o := b.GetOwner()
	if o == nil && len(b.GetOwners()) > 0 {
		o = b.GetOwners()[len(b.GetOwners())-1].GetOwner()
	}
	if o.GetKind() != eventv1.OwnerKind_OWNER_KIND_REP {
		return ""
	}
	return o.GetId()
}

// notRep explains why a lead without a rep to act as cannot be worked.
func notRep(b *handoffv1.HandoffBrief, rep string) error {
	if rep != "" {
		return nil
	}
	return fmt.Errorf("no rep owns it (%s, owner %s)", strings.TrimPrefix(b.GetStatus().String(), "LEAD_STATUS_"), b.GetOwner().GetId())
}

// asRep is ctx with the rep's own token: a person's token acts as that
// person (auth.ActingAs), so each rep works their leads as themselves.
func asRep(ctx context.Context, as asCaller, rep string) (context.Context, error) {
	return as(ctx, &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: rep, Team: eventv1.Team_TEAM_SALES}, "sales:write")
}
