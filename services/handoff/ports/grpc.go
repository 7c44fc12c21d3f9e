// Package ports is the handoff service's inbound side: the gRPC API,
// which turns requests into app calls and app errors into gRPC statuses,
// and the handlers for consumed lead events and fired timers (events.go).
package ports

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/auth"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/app"
)

// GRPC serves handoffv1.HandoffService.
type GRPC struct {
	handoffv1.UnimplementedHandoffServiceServer
	app *app.App
	log *slog.Logger
}

var _ handoffv1.HandoffServiceServer = (*GRPC)(nil)

// NewGRPC returns the gRPC port of a.
func NewGRPC(a *app.App, log *slog.Logger) *GRPC { return &GRPC{app: a, log: log} }

func (g *GRPC) change(ctx context.Context, method, field string, ch *eventv1.RoutingChanged, by *eventv1.Actor, expected uint32) (app.Changed, error) {
	c, err := g.app.ChangeRouting(ctx, app.ChangeRouting{Field: field, Change: ch, By: by, ExpectedVersion: expected}, grpcserver.Meta(ctx))
	if err != nil {
		return c, g.status(ctx, method, err)
	}
	return c, nil
}

// PutTeam creates or replaces a team.
func (g *GRPC) PutTeam(ctx context.Context, r *handoffv1.PutTeamRequest) (*handoffv1.PutTeamResponse, error) {
	c, err := g.change(ctx, "PutTeam", "team", &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Team{Team: r.GetTeam()}}, r.GetChangedBy(), r.GetExpectedVersion())
	if err != nil {
		return nil, err
	}
	return &handoffv1.PutTeamResponse{Version: c.Version, Unchanged: c.Unchanged}, nil
}

// PutRep creates or replaces a rep.
func (g *GRPC) PutRep(ctx context.Context, r *handoffv1.PutRepRequest) (*handoffv1.PutRepResponse, error) {
	c, err := g.change(ctx, "PutRep", "rep", &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Rep{Rep: r.GetRep()}}, r.GetChangedBy(), r.GetExpectedVersion())
	if err != nil {
		return nil, err
	}
	// A proto3 bool left out is false: say so, as a rep created without
	// active: true gets no leads.
	return &handoffv1.PutRepResponse{Version: c.Version, Unchanged: c.Unchanged, Inactive: !r.GetRep().GetActive()}, nil
}

// SetOutOfOffice replaces a rep's out-of-office periods.
func (g *GRPC) SetOutOfOffice(ctx context.Context, r *handoffv1.SetOutOfOfficeRequest) (*handoffv1.SetOutOfOfficeResponse, error) {
	c, err := g.change(ctx, "SetOutOfOffice", "out_of_office", &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_OutOfOffice{OutOfOffice: r.GetOutOfOffice()}},
		r.GetChangedBy(), r.GetExpectedVersion())
	if err != nil {
		return nil, err
	}
	return &handoffv1.SetOutOfOfficeResponse{Version: c.Version, Unchanged: c.Unchanged}, nil
}

// PutPool creates or replaces a pool.
func (g *GRPC) PutPool(ctx context.Context, r *handoffv1.PutPoolRequest) (*handoffv1.PutPoolResponse, error) {
	c, err := g.change(ctx, "PutPool", "pool", &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Pool{Pool: r.GetPool()}}, r.GetChangedBy(), r.GetExpectedVersion())
	if err != nil {
		return nil, err
	}
	return &handoffv1.PutPoolResponse{Version: c.Version, Unchanged: c.Unchanged}, nil
}

// PutAccount creates or replaces an account.
func (g *GRPC) PutAccount(ctx context.Context, r *handoffv1.PutAccountRequest) (*handoffv1.PutAccountResponse, error) {
	c, err := g.change(ctx, "PutAccount", "account", &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Account{Account: r.GetAccount()}},
		r.GetChangedBy(), r.GetExpectedVersion())
	if err != nil {
		return nil, err
	}
	return &handoffv1.PutAccountResponse{Version: c.Version, Unchanged: c.Unchanged}, nil
}

// SetRoutingRules replaces the rule set.
func (g *GRPC) SetRoutingRules(ctx context.Context, r *handoffv1.SetRoutingRulesRequest) (*handoffv1.SetRoutingRulesResponse, error) {
	c, err := g.change(ctx, "SetRoutingRules", "rules", &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_Rules{Rules: r.GetRules()}},
		r.GetChangedBy(), r.GetExpectedVersion())
	if err != nil {
		return nil, err
	}
	return &handoffv1.SetRoutingRulesResponse{Version: c.Version, Unchanged: c.Unchanged}, nil
}

// SetSLAPolicy creates or replaces a segment's SLA.
func (g *GRPC) SetSLAPolicy(ctx context.Context, r *handoffv1.SetSLAPolicyRequest) (*handoffv1.SetSLAPolicyResponse, error) {
	c, err := g.change(ctx, "SetSLAPolicy", "policy", &eventv1.RoutingChanged{Change: &eventv1.RoutingChanged_SlaPolicy{SlaPolicy: r.GetPolicy()}},
		r.GetChangedBy(), r.GetExpectedVersion())
	if err != nil {
		return nil, err
	}
	return &handoffv1.SetSLAPolicyResponse{Version: c.Version, Unchanged: c.Unchanged}, nil
}

// GetRouting returns the routing data.
func (g *GRPC) GetRouting(ctx context.Context, _ *handoffv1.GetRoutingRequest) (*handoffv1.GetRoutingResponse, error) {
	cfg, err := g.app.Routing(ctx)
	if err != nil {
		return nil, g.status(ctx, "GetRouting", err)
	}
	out := &handoffv1.GetRoutingResponse{Version: cfg.Version, Rules: cfg.Rules}
	for _, k := range app.SortedKeys(cfg.Teams) {
		out.Teams = append(out.Teams, cfg.Teams[k])
	}
	for _, k := range app.SortedKeys(cfg.Reps) {
		out.Reps = append(out.Reps, cfg.Reps[k])
	}
	for _, k := range app.SortedKeys(cfg.Absences) {
		out.OutOfOffice = append(out.OutOfOffice, &eventv1.OutOfOffice{RepId: k, Absences: cfg.Absences[k]})
	}
	for _, k := range app.SortedKeys(cfg.Pools) {
		out.Pools = append(out.Pools, cfg.Pools[k])
	}
	for _, k := range app.SortedKeys(cfg.Accounts) {
		out.Accounts = append(out.Accounts, cfg.Accounts[k])
	}
	for _, k := range app.SortedKeys(cfg.SLAs) {
		out.SlaPolicies = append(out.SlaPolicies, cfg.SLAs[k])
	}
	return out, nil
}

func leadProto(r app.Result) *handoffv1.LeadHandoff {
	return &handoffv1.LeadHandoff{LeadId: r.LeadID, Status: eventv1.LeadStatus(r.State.Status), Owner: ownerProto(r.State.Owner),
		Deadline: pbTime(r.State.Deadline), Attempts: int32(r.State.Attempts), Version: r.Version, EventId: r.EventID}
}

// AssignLead gives a queued MQL to a rep.
func (g *GRPC) AssignLead(ctx context.Context, r *handoffv1.AssignLeadRequest) (*handoffv1.AssignLeadResponse, error) {
	res, err := g.app.AssignLead(ctx, app.AssignLead{LeadID: r.GetLeadId(), RepID: r.GetRepId(), RequestID: r.GetRequestId(), By: r.GetAssignedBy()}, grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "AssignLead", err)
	}
	return &handoffv1.AssignLeadResponse{Lead: leadProto(res), Replayed: res.Replayed}, nil
}

// ReassignLead moves a lead to another rep.
func (g *GRPC) ReassignLead(ctx context.Context, r *handoffv1.ReassignLeadRequest) (*handoffv1.ReassignLeadResponse, error) {
	res, err := g.app.ReassignLead(ctx, app.ReassignLead{LeadID: r.GetLeadId(), ToRepID: r.GetToRepId(), RequestID: r.GetRequestId(),
		Reason: r.GetReason(), By: r.GetReassignedBy()}, grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "ReassignLead", err)
	}
	return &handoffv1.ReassignLeadResponse{Lead: leadProto(res), Replayed: res.Replayed}, nil
}

// AcceptLead is the owner taking the lead.
func (g *GRPC) AcceptLead(ctx context.Context, r *handoffv1.AcceptLeadRequest) (*handoffv1.AcceptLeadResponse, error) {
	rep, err := auth.ActingAs(ctx, r.GetRepId(), "rep_id")
	if err != nil {
		return nil, err
	}
	res, err := g.app.AcceptLead(ctx, app.AcceptLead{LeadID: r.GetLeadId(), RepID: rep, RequestID: r.GetRequestId()}, grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "AcceptLead", err)
	}
	return &handoffv1.AcceptLeadResponse{Lead: leadProto(res), Replayed: res.Replayed}, nil
}

// RejectLead is the owner turning the lead down.
func (g *GRPC) RejectLead(ctx context.Context, r *handoffv1.RejectLeadRequest) (*handoffv1.RejectLeadResponse, error) {
	rep, err := auth.ActingAs(ctx, r.GetRepId(), "rep_id")
	if err != nil {
		return nil, err
	}
	res, err := g.app.RejectLead(ctx, app.RejectLead{LeadID: r.GetLeadId(), RepID: rep, RequestID: r.GetRequestId(),
		Reason: r.GetReason(), Note: r.GetNote()}, grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "RejectLead", err)
	}
	return &handoffv1.RejectLeadResponse{Lead: leadProto(res), Replayed: res.Replayed}, nil
}

// LogContactAttempt records an attempt to reach the lead.
func (g *GRPC) LogContactAttempt(ctx context.Context, r *handoffv1.LogContactAttemptRequest) (*handoffv1.LogContactAttemptResponse, error) {
	rep, err := auth.ActingAs(ctx, r.GetRepId(), "rep_id")
	if err != nil {
		return nil, err
	}
	res, err := g.app.LogContactAttempt(ctx, app.LogContact{LeadID: r.GetLeadId(), RepID: rep, RequestID: r.GetRequestId(),
		Channel: r.GetChannel(), Outcome: r.GetOutcome()}, grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "LogContactAttempt", err)
	}
	return &handoffv1.LogContactAttemptResponse{Lead: leadProto(res), Replayed: res.Replayed}, nil
}

// ConvertLead turns the lead into an opportunity.
func (g *GRPC) ConvertLead(ctx context.Context, r *handoffv1.ConvertLeadRequest) (*handoffv1.ConvertLeadResponse, error) {
	rep, err := auth.ActingAs(ctx, r.GetRepId(), "rep_id")
	if err != nil {
		return nil, err
	}
	res, err := g.app.ConvertLead(ctx, app.ConvertLead{LeadID: r.GetLeadId(), RepID: rep, RequestID: r.GetRequestId(),
		OpportunityID: r.GetOpportunityId(), Amount: r.GetAmount(), Stage: r.GetStage(), ExpectedClose: r.GetExpectedClose()}, grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "ConvertLead", err)
	}
	return &handoffv1.ConvertLeadResponse{Lead: leadProto(res), Replayed: res.Replayed,
		OpportunityId: res.OpportunityID}, nil
}

// MoveOpportunityStage moves the opportunity's stage.
func (g *GRPC) MoveOpportunityStage(ctx context.Context, r *handoffv1.MoveOpportunityStageRequest) (*handoffv1.MoveOpportunityStageResponse, error) {
	rep, err := auth.ActingAs(ctx, r.GetRepId(), "rep_id")
	if err != nil {
		return nil, err
	}
	res, err := g.app.MoveOpportunityStage(ctx, app.MoveStage{LeadID: r.GetLeadId(), RepID: rep, RequestID: r.GetRequestId(),
		Stage: r.GetStage(), Amount: r.GetAmount(), ExpectedClose: r.GetExpectedClose()}, grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "MoveOpportunityStage", err)
	}
	return &handoffv1.MoveOpportunityStageResponse{Lead: leadProto(res), Replayed: res.Replayed}, nil
}

// CloseWon closes the deal won.
func (g *GRPC) CloseWon(ctx context.Context, r *handoffv1.CloseWonRequest) (*handoffv1.CloseWonResponse, error) {
	rep, err := auth.ActingAs(ctx, r.GetRepId(), "rep_id")
	if err != nil {
		return nil, err
	}
	res, err := g.app.CloseWon(ctx, app.CloseWon{LeadID: r.GetLeadId(), RepID: rep, RequestID: r.GetRequestId(), Amount: r.GetAmount()}, grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "CloseWon", err)
	}
	return &handoffv1.CloseWonResponse{Lead: leadProto(res), Replayed: res.Replayed}, nil
}

// CloseLost closes the deal lost.
func (g *GRPC) CloseLost(ctx context.Context, r *handoffv1.CloseLostRequest) (*handoffv1.CloseLostResponse, error) {
	rep, err := auth.ActingAs(ctx, r.GetRepId(), "rep_id")
	if err != nil {
		return nil, err
	}
	res, err := g.app.CloseLost(ctx, app.CloseLost{LeadID: r.GetLeadId(), RepID: rep, RequestID: r.GetRequestId(), Reason: r.GetReason()}, grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "CloseLost", err)
	}
	return &handoffv1.CloseLostResponse{Lead: leadProto(res), Replayed: res.Replayed}, nil
}

// GetHandoffBrief returns the lead's story.
func (g *GRPC) GetHandoffBrief(ctx context.Context, r *handoffv1.GetHandoffBriefRequest) (*handoffv1.GetHandoffBriefResponse, error) {
	b, err := g.app.HandoffBrief(ctx, r.GetLeadId())
	if err != nil {
		return nil, g.status(ctx, "GetHandoffBrief", err)
	}
	out := &handoffv1.HandoffBrief{
		LeadId: b.LeadID, Status: eventv1.LeadStatus(b.State.Status), Owner: ownerProto(b.State.Owner), Deadline: pbTime(b.State.Deadline),
		Profile: b.Profile, ActivityCount: int32(b.ActivityCount), Score: b.Score, QualifiedAt: pbTime(b.QualifiedAt), Journey: int32(b.Journey),
		Consents: b.Consents, Routing: b.Routing, Segment: b.Segment, Version: b.Version,
		FirstTouch: &handoffv1.FirstTouch{At: pbTime(b.FirstTouch.At), Attribution: b.FirstTouch.Attribution, Campaign: b.FirstTouch.Campaign,
			LeadId: b.FirstTouch.LeadID},
	}
	for _, x := range b.Activities {
		out.Activities = append(out.Activities, &handoffv1.ActivityEntry{At: pbTime(x.At), Type: x.Type, CampaignId: x.CampaignID, Detail: x.Detail, LeadId: x.LeadID})
	}
	for _, x := range b.Owners {
		o := &handoffv1.Ownership{Owner: ownerProto(x.Owner), From: pbTime(x.From), Until: pbTime(x.To),
			How: x.How, Ended: x.Ended, Journey: int32(x.Journey), LeadId: x.LeadID, AcceptedAt: pbTime(x.AcceptedAt)}
		for _, c := range x.Contacts {
			o.Contacts = append(o.Contacts, &handoffv1.ContactEntry{At: pbTime(c.At), Channel: c.Channel, Outcome: c.Outcome})
		}
		out.Owners = append(out.Owners, o)
	}
	for _, x := range b.Rejections {
		out.Rejections = append(out.Rejections, &handoffv1.Rejection{At: pbTime(x.At), RepId: x.RepID, Reason: x.Reason, Note: x.Note, LeadId: x.LeadID})
	}
	for _, x := range b.Recycles {
		out.Recycles = append(out.Recycles, &handoffv1.Recycle{At: pbTime(x.At), Cause: x.Cause, Detail: x.Detail, LeadId: x.LeadID})
	}
	for _, x := range b.SLA {
		out.Sla = append(out.Sla, &handoffv1.SLAEntry{At: pbTime(x.At), Sla: x.Kind, Breached: x.Breached, Owner: x.Owner, DueAt: pbTime(x.Due), Escalation: x.Escalation,
			Journey: int32(x.Journey)})
	}
	if o := b.Opportunity; o != nil {
		out.Opportunity = &handoffv1.Opportunity{OpportunityId: o.ID, Stage: o.Stage, Amount: o.Amount, ExpectedClose: pbTime(o.ExpectedClose),
			Outcome: o.Outcome, LostReason: o.LostReason, Journey: int32(o.Journey)}
	}
	return &handoffv1.GetHandoffBriefResponse{Brief: out}, nil
}

// SetMarketingTarget records a marketing target.
func (g *GRPC) SetMarketingTarget(ctx context.Context, r *handoffv1.SetMarketingTargetRequest) (*handoffv1.SetMarketingTargetResponse, error) {
	unchanged, err := g.app.SetMarketingTarget(ctx, r.GetTarget(), r.GetSetBy(), grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "SetMarketingTarget", err)
	}
	return &handoffv1.SetMarketingTargetResponse{Unchanged: unchanged}, nil
}

// ListMarketingTargets returns the marketing targets.
func (g *GRPC) ListMarketingTargets(ctx context.Context, _ *handoffv1.ListMarketingTargetsRequest) (*handoffv1.ListMarketingTargetsResponse, error) {
	ts, err := g.app.MarketingTargets(ctx)
	if err != nil {
		return nil, g.status(ctx, "ListMarketingTargets", err)
	}
	return &handoffv1.ListMarketingTargetsResponse{Targets: ts}, nil
}

// status maps an app error to a gRPC status, handling it once: expected
// refusals are answered as they are, anything else is logged here and
// answered INTERNAL without details.
func (g *GRPC) status(ctx context.Context, method string, err error) error {
	var (
		ve    *app.ValidationError
		owner *app.NotOwnerError
		full  *app.AtCapacityError
		away  *app.UnavailableError
		stale *app.StaleVersionError
		seal  *app.CannotSealError
	)
	switch {
	case errors.As(err, &ve):
		fields := make([]grpcserver.FieldViolation, len(ve.Violations))
		for i, v := range ve.Violations {
			fields[i] = grpcserver.FieldViolation{Field: v.Field, Description: v.Description}
		}
		return grpcserver.InvalidArgument(ve.Error(), fields...)
	case errors.Is(err, app.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.As(err, &owner):
		// Named as the caller sent it (AcceptLead), as lifecycle refusals are.
		named := *owner
		named.Command = method
		return status.Error(codes.FailedPrecondition, strings.Replace(err.Error(), owner.Error(), named.Error(), 1))
	case errors.As(err, &full), errors.As(err, &away), errors.As(err, &seal):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.As(err, &stale):
		return status.Error(codes.Aborted, err.Error())
	}
	return grpcserver.Status(ctx, g.log, method, err)
}

func ownerProto(o lifecycle.Owner) *eventv1.Owner {
	if o.IsZero() {
		return nil
	}
	return &eventv1.Owner{Kind: eventv1.OwnerKind(o.Kind), Id: o.ID}
}

func pbTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
