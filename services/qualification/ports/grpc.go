// Package ports is qualification's inbound side: the gRPC API, which turns
// requests into app calls and app errors into gRPC statuses, and the
// handlers for consumed lead events (events.go).
package ports

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/auth"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/services/qualification/app"
	"github.com/leadflow/leadflow/services/qualification/registry"
)

// GRPC serves qualificationv1.QualificationService.
type GRPC struct {
	qualificationv1.UnimplementedQualificationServiceServer
	app *app.App
	log *slog.Logger
}

var _ qualificationv1.QualificationServiceServer = (*GRPC)(nil)

// NewGRPC returns the gRPC port of a.
func NewGRPC(a *app.App, log *slog.Logger) *GRPC { return &GRPC{app: a, log: log} }

// ProposeModel records a model version for sign-off.
func (g *GRPC) ProposeModel(ctx context.Context, r *qualificationv1.ProposeModelRequest) (*qualificationv1.ProposeModelResponse, error) {
	by, err := auth.Acting(ctx, r.GetProposedBy(), "proposed_by")
	if err != nil {
		return nil, err
	}
	p, err := g.app.ProposeModel(ctx, app.ProposeModel{Model: r.GetModel(), ProposedBy: by, IdempotencyKey: r.GetIdempotencyKey()}, grpcserver.Meta(ctx))
	if r.GetIdempotencyKey() == "" {
		if st := grpcserver.UnkeyedUnknown(err, "idempotency_key", "the model may be proposed twice, as two versions: read the versions (ListModelVersions) first"); st != nil {
			return nil, st
		}
	}
	if err != nil {
		return nil, g.status(ctx, "ProposeModel", err)
	}
	return &qualificationv1.ProposeModelResponse{Version: p.Version, Replayed: p.Replayed}, nil
}

// ApproveModel records one team's sign-off.
func (g *GRPC) ApproveModel(ctx context.Context, r *qualificationv1.ApproveModelRequest) (*qualificationv1.ApproveModelResponse, error) {
	approver, err := auth.Acting(ctx, r.GetApprover(), "approver")
	if err != nil {
		return nil, err
	}
	a, err := g.app.ApproveModel(ctx, r.GetVersion(), approver, grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "ApproveModel", err)
	}
	return &qualificationv1.ApproveModelResponse{Model: versionProto(a.Version), Activated: a.Activated, Replayed: a.Replayed}, nil
}

// GetModel returns one version, by default the active one.
func (g *GRPC) GetModel(ctx context.Context, r *qualificationv1.GetModelRequest) (*qualificationv1.GetModelResponse, error) {
	v, err := g.app.GetModel(ctx, r.GetVersion())
	if err != nil {
		return nil, g.status(ctx, "GetModel", err)
	}
	return &qualificationv1.GetModelResponse{Model: versionProto(v)}, nil
}

// ListModelVersions returns every version.
func (g *GRPC) ListModelVersions(ctx context.Context, _ *qualificationv1.ListModelVersionsRequest) (*qualificationv1.ListModelVersionsResponse, error) {
	vs, active, err := g.app.ListModelVersions(ctx)
	if err != nil {
		return nil, g.status(ctx, "ListModelVersions", err)
	}
	out := &qualificationv1.ListModelVersionsResponse{ActiveVersion: active}
	for _, v := range vs {
		out.Versions = append(out.Versions, versionProto(v))
	}
	return out, nil
}

// DiffModels lists the changes between two versions.
func (g *GRPC) DiffModels(ctx context.Context, r *qualificationv1.DiffModelsRequest) (*qualificationv1.DiffModelsResponse, error) {
	changes, err := g.app.DiffModels(ctx, r.GetFromVersion(), r.GetToVersion())
	if err != nil {
		return nil, g.status(ctx, "DiffModels", err)
	}
	out := &qualificationv1.DiffModelsResponse{}
	for _, c := range changes {
		out.Changes = append(out.Changes, &qualificationv1.ModelChange{Path: c.Path, Kind: changeKind(c.Kind), From: c.From, To: c.To})
	}
	return out, nil
}

// ExplainScore returns a lead's latest score and its reasons.
func (g *GRPC) ExplainScore(ctx context.Context, r *qualificationv1.ExplainScoreRequest) (*qualificationv1.ExplainScoreResponse, error) {
	e, err := g.app.ExplainScore(ctx, r.GetLeadId())
	if err != nil {
		return nil, g.status(ctx, "ExplainScore", err)
	}
	return &qualificationv1.ExplainScoreResponse{LeadId: e.LeadID, Score: e.Score, ScoredAt: pbTime(e.At),
		CauseEventId: e.Cause, Status: eventv1.LeadStatus(e.Status)}, nil
}

// DisqualifyLead records a person's verdict on a lead.
func (g *GRPC) DisqualifyLead(ctx context.Context, r *qualificationv1.DisqualifyLeadRequest) (*qualificationv1.DisqualifyLeadResponse, error) {
	by, err := auth.Acting(ctx, r.GetDecidedBy(), "decided_by")
	if err != nil {
		return nil, err
	}
	d, err := g.app.DisqualifyLead(ctx, app.DisqualifyLead{LeadID: r.GetLeadId(), Reason: r.GetReason(), NotNow: r.GetNotNow(),
		RequestID: r.GetRequestId(), DecidedBy: by}, grpcserver.Meta(ctx))
	if r.GetRequestId() == "" {
		if st := grpcserver.UnkeyedUnknown(err, "request_id", "it is refused if the first was stored: read the lead's status first"); st != nil {
			return nil, st
		}
	}
	if err != nil {
		return nil, g.status(ctx, "DisqualifyLead", err)
	}
	return &qualificationv1.DisqualifyLeadResponse{LeadId: d.LeadID, Version: d.Version, Status: eventv1.LeadStatus(d.Status),
		EventId: d.EventID, Replayed: d.Replayed}, nil
}

// GetRescoreProgress reports on re-scoring under a version.
func (g *GRPC) GetRescoreProgress(ctx context.Context, r *qualificationv1.GetRescoreProgressRequest) (*qualificationv1.GetRescoreProgressResponse, error) {
	p, err := g.app.RescoreProgress(ctx, r.GetVersion())
	if err != nil {
		return nil, g.status(ctx, "GetRescoreProgress", err)
	}
	return &qualificationv1.GetRescoreProgressResponse{Version: p.Version, State: rescoreStates[p.State], Done: p.Done, Total: p.Total,
		HeldBack: uint32(p.HeldBack)}, nil
}

var rescoreStates = map[app.RescoreState]qualificationv1.RescoreState{
	app.RescorePending:      qualificationv1.RescoreState_RESCORE_STATE_PENDING,
	app.RescoreRunning:      qualificationv1.RescoreState_RESCORE_STATE_RUNNING,
	app.RescoreCompleted:    qualificationv1.RescoreState_RESCORE_STATE_COMPLETED,
	app.RescoreAbandoned:    qualificationv1.RescoreState_RESCORE_STATE_ABANDONED,
	app.RescoreNotActivated: qualificationv1.RescoreState_RESCORE_STATE_NOT_ACTIVATED,
}

func versionProto(v app.VersionView) *qualificationv1.ModelVersion {
	out := &qualificationv1.ModelVersion{Model: scoring.ToProto(v.Model), ProposedBy: v.ProposedBy, ProposedAt: pbTime(v.ProposedAt)}
	switch v.State {
	case registry.Proposed:
		out.State = qualificationv1.ModelState_MODEL_STATE_PROPOSED
	case registry.Active:
		out.State = qualificationv1.ModelState_MODEL_STATE_ACTIVE
	case registry.Superseded, registry.Stale:
		// The schema has no state for a proposal overtaken by a newer
		// activation; it cannot be approved, so it is not PROPOSED.
		out.State = qualificationv1.ModelState_MODEL_STATE_SUPERSEDED
	}
	for _, a := range v.Approvals {
		out.Approvals = append(out.Approvals, &qualificationv1.Approval{Approver: a.Approver, ApprovedAt: pbTime(a.At)})
	}
	if v.Activation != nil {
		out.ActivatedAt = pbTime(v.Activation.At)
	}
	return out
}

func changeKind(k scoring.ChangeKind) qualificationv1.ChangeKind {
	switch k {
	case scoring.Added:
		return qualificationv1.ChangeKind_CHANGE_KIND_ADDED
	case scoring.Removed:
		return qualificationv1.ChangeKind_CHANGE_KIND_REMOVED
	case scoring.Changed:
		return qualificationv1.ChangeKind_CHANGE_KIND_CHANGED
	}
	return qualificationv1.ChangeKind_CHANGE_KIND_UNSPECIFIED
}

// status maps an app error to a gRPC status, handling it once: expected
// refusals are answered as they are, anything else is logged here and
// answered INTERNAL without details.
func (g *GRPC) status(ctx context.Context, method string, err error) error {
	var ve *app.ValidationError
	var refused *registry.RefusedError
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
	}
	return grpcserver.Status(ctx, g.log, method, err)
}

func pbTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
