// Package ports is the projector's inbound side: the gRPC API, which
// turns requests into app calls and app errors into gRPC statuses, and
// the consumer groups that feed the read model (events.go).
package ports

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/services/projector/app"
	"github.com/leadflow/leadflow/services/projector/whatif"
)

// GRPC serves projectorv1.ProjectorService.
type GRPC struct {
	projectorv1.UnimplementedProjectorServiceServer
	app *app.App
	log *slog.Logger
}

var _ projectorv1.ProjectorServiceServer = (*GRPC)(nil)

// NewGRPC returns the gRPC port of a.
func NewGRPC(a *app.App, log *slog.Logger) *GRPC { return &GRPC{app: a, log: log} }

func period(p *projectorv1.Period) app.Period {
	var out app.Period
	if p.GetFrom() != nil {
		out.From = p.GetFrom().AsTime()
	}
	if p.GetTo() != nil {
		out.To = p.GetTo().AsTime()
	}
	return out
}

func periodProto(p app.Period) *projectorv1.Period {
	out := &projectorv1.Period{}
	if !p.From.IsZero() {
		out.From = timestamppb.New(p.From)
	}
	if !p.To.IsZero() {
		out.To = timestamppb.New(p.To)
	}
	return out
}

// SearchLeads lists leads.
func (g *GRPC) SearchLeads(ctx context.Context, r *projectorv1.SearchLeadsRequest) (*projectorv1.SearchLeadsResponse, error) {
	leads, next, err := g.app.SearchLeads(ctx, app.LeadQuery{Statuses: r.GetStatuses(), Segment: r.GetSegment(), Source: r.GetSource(),
		CampaignID: r.GetCampaignId(), AccountID: r.GetAccountId(), RepID: r.GetRepId(), QueueID: r.GetQueueId(), EmailDomain: r.GetEmailDomain(),
		Country: r.GetCountry(), Captured: period(r.GetCaptured()), Overdue: r.GetOverdue(), PageSize: int(r.GetPageSize()),
		PageToken: r.GetPageToken()})
	if err != nil {
		return nil, g.status(ctx, "SearchLeads", err)
	}
	return &projectorv1.SearchLeadsResponse{Leads: leads, NextPageToken: next}, nil
}

// GetQueues reports what the queues before a rep hold now.
func (g *GRPC) GetQueues(ctx context.Context, r *projectorv1.GetQueuesRequest) (*projectorv1.GetQueuesResponse, error) {
	out, err := g.app.Queues(ctx, app.QueueQuery{Segment: r.GetSegment()})
	if err != nil {
		return nil, g.status(ctx, "GetQueues", err)
	}
	return out, nil
}

// GetLead returns one lead.
func (g *GRPC) GetLead(ctx context.Context, r *projectorv1.GetLeadRequest) (*projectorv1.GetLeadResponse, error) {
	out, err := g.app.GetLead(ctx, r.GetLeadId())
	if err != nil {
		return nil, g.status(ctx, "GetLead", err)
	}
	return out, nil
}

// GetFunnel counts the funnel.
func (g *GRPC) GetFunnel(ctx context.Context, r *projectorv1.GetFunnelRequest) (*projectorv1.GetFunnelResponse, error) {
	out, err := g.app.Funnel(ctx, app.FunnelQuery{Period: period(r.GetPeriod()), GroupBy: r.GetGroupBy(), Unit: r.GetUnit(),
		Segment: r.GetSegment(), Source: r.GetSource(), TimeZone: r.GetTimeZone()})
	if err != nil {
		return nil, g.status(ctx, "GetFunnel", err)
	}
	return out, nil
}

// GetCampaignReport reports campaigns from spend to revenue.
func (g *GRPC) GetCampaignReport(ctx context.Context, r *projectorv1.GetCampaignReportRequest) (*projectorv1.GetCampaignReportResponse, error) {
	out, err := g.app.Campaigns(ctx, app.CampaignQuery{Attribution: r.GetAttribution(), Period: period(r.GetPeriod()), Currency: r.GetCurrency()})
	if err != nil {
		return nil, g.status(ctx, "GetCampaignReport", err)
	}
	return out, nil
}

// GetSLACompliance reports SLA compliance both ways.
func (g *GRPC) GetSLACompliance(ctx context.Context, r *projectorv1.GetSLAComplianceRequest) (*projectorv1.GetSLAComplianceResponse, error) {
	out, err := g.app.SLA(ctx, app.SLAQuery{Period: period(r.GetPeriod()), Segment: r.GetSegment(), TimeZone: r.GetTimeZone()})
	if err != nil {
		return nil, g.status(ctx, "GetSLACompliance", err)
	}
	return out, nil
}

// GetPerformance reports sales performance.
func (g *GRPC) GetPerformance(ctx context.Context, r *projectorv1.GetPerformanceRequest) (*projectorv1.GetPerformanceResponse, error) {
	out, err := g.app.Performance(ctx, app.PerformanceQuery{Period: period(r.GetPeriod()), Segment: r.GetSegment(), Currency: r.GetCurrency()})
	if err != nil {
		return nil, g.status(ctx, "GetPerformance", err)
	}
	return out, nil
}

// GetAccounts rolls leads up to accounts.
func (g *GRPC) GetAccounts(ctx context.Context, r *projectorv1.GetAccountsRequest) (*projectorv1.GetAccountsResponse, error) {
	out, err := g.app.Accounts(ctx, app.AccountQuery{Period: period(r.GetPeriod()), Currency: r.GetCurrency(), Limit: int(r.GetLimit())})
	if err != nil {
		return nil, g.status(ctx, "GetAccounts", err)
	}
	return out, nil
}

// GetProjectionStatus says where the read model stands.
func (g *GRPC) GetProjectionStatus(ctx context.Context, _ *projectorv1.GetProjectionStatusRequest) (*projectorv1.GetProjectionStatusResponse, error) {
	st, err := g.app.Status(ctx)
	if err != nil {
		return nil, g.status(ctx, "GetProjectionStatus", err)
	}
	out := &projectorv1.GetProjectionStatusResponse{ActiveSchema: st.Active, Position: st.Position, Subjects: st.Subjects,
		UnknownEvents: st.Unknown}
	if pr := st.Rebuild; pr != nil {
		out.Rebuild = &projectorv1.RebuildProgress{Schema: pr.Schema, Replaces: pr.Replaces, StartedAt: pbTime(pr.Started),
			Position: pr.Position, End: pr.End, Events: pr.Events, Swapped: pr.Swapped, Done: pr.Done, Error: pr.Err, Running: pr.Running}
	}
	return out, nil
}

// StartRebuild starts a rebuild.
func (g *GRPC) StartRebuild(ctx context.Context, _ *projectorv1.StartRebuildRequest) (*projectorv1.StartRebuildResponse, error) {
	schema, err := g.app.StartRebuild(ctx)
	if err != nil {
		return nil, g.status(ctx, "StartRebuild", err)
	}
	return &projectorv1.StartRebuildResponse{Schema: schema}, nil
}

// StartWhatIf starts a what-if replay.
func (g *GRPC) StartWhatIf(ctx context.Context, r *projectorv1.StartWhatIfRequest) (*projectorv1.StartWhatIfResponse, error) {
	id, err := g.app.StartWhatIf(ctx, r.GetProposedVersion(), period(r.GetPeriod()))
	if err != nil {
		return nil, g.status(ctx, "StartWhatIf", err)
	}
	return &projectorv1.StartWhatIfResponse{WhatIfId: id}, nil
}

// GetWhatIf returns a what-if's progress and result.
func (g *GRPC) GetWhatIf(ctx context.Context, r *projectorv1.GetWhatIfRequest) (*projectorv1.GetWhatIfResponse, error) {
	w, err := g.app.GetWhatIf(ctx, r.GetWhatIfId())
	if err != nil {
		return nil, g.status(ctx, "GetWhatIf", err)
	}
	out := &projectorv1.GetWhatIfResponse{WhatIfId: w.ID, State: projectorv1.WhatIfState_WHAT_IF_STATE_RUNNING,
		ProposedVersion: w.Proposed, ActiveVersion: w.Active, Period: periodProto(w.Period), Read: w.Read, Total: w.Total}
	switch {
	case w.Done && w.Err != nil:
		out.State, out.Error = projectorv1.WhatIfState_WHAT_IF_STATE_FAILED, w.Err.Error()
	case w.Done:
		out.State = projectorv1.WhatIfState_WHAT_IF_STATE_DONE
		for _, row := range w.Result.Campaigns {
			out.Campaigns = append(out.Campaigns, whatIfRow(row))
		}
		out.TotalRow = whatIfRow(w.Result.Total)
	}
	return out, nil
}

func whatIfRow(r whatif.Row) *projectorv1.WhatIfRow {
	return &projectorv1.WhatIfRow{CampaignId: r.Campaign, Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH,
		Leads: r.Leads, MqlsActive: r.MQLsActive, MqlsProposed: r.MQLsProposed, MqlsGained: r.Gained, MqlsLost: r.Lost,
		Won: r.Won, WonQualified: r.WonQualified, WonMissed: r.WonMissed, Rejected: r.Rejected, RejectedKeptOut: r.RejectedKeptOut}
}

// status maps an app error to a gRPC status, handling it once.
func (g *GRPC) status(ctx context.Context, method string, err error) error {
	var ve *app.ValidationError
	var refused *app.RefusedError
	switch {
	case errors.As(err, &ve):
		fields := make([]grpcserver.FieldViolation, len(ve.Violations))
		for i, v := range ve.Violations {
			fields[i] = grpcserver.FieldViolation{Field: v.Field, Description: v.Description}
		}
		return grpcserver.InvalidArgument(ve.Error(), fields...)
	case errors.As(err, &refused):
		return status.Error(codes.FailedPrecondition, refused.Error())
	case errors.Is(err, app.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, app.ErrBusy):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, app.ErrTooManyWhatIfs):
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	return grpcserver.Status(ctx, g.log, method, err)
}

func pbTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
