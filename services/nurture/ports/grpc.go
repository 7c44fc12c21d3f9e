// Package ports is nurture's inbound side: the gRPC API, which turns
// requests into app calls and app errors into gRPC statuses, and the
// handlers for consumed lead events and fired timers (events.go).
package ports

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/nurture/app"
	"github.com/leadflow/leadflow/services/nurture/program"
)

// GRPC serves nurturev1.NurtureService.
type GRPC struct {
	nurturev1.UnimplementedNurtureServiceServer
	app *app.App
	log *slog.Logger
}

var _ nurturev1.NurtureServiceServer = (*GRPC)(nil)

// NewGRPC returns the gRPC port of a.
func NewGRPC(a *app.App, log *slog.Logger) *GRPC { return &GRPC{app: a, log: log} }

// PutProgram defines or changes a program.
func (g *GRPC) PutProgram(ctx context.Context, r *nurturev1.PutProgramRequest) (*nurturev1.PutProgramResponse, error) {
	c, err := g.app.PutProgram(ctx, r.GetProgram(), r.GetChangedBy(), grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "PutProgram", err)
	}
	return &nurturev1.PutProgramResponse{Program: programProto(c.Program), Version: c.Version, Unchanged: c.Unchanged}, nil
}

// RetireProgram stops a program from taking new leads.
func (g *GRPC) RetireProgram(ctx context.Context, r *nurturev1.RetireProgramRequest) (*nurturev1.RetireProgramResponse, error) {
	c, err := g.app.RetireProgram(ctx, r.GetProgramId(), r.GetChangedBy(), grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "RetireProgram", err)
	}
	return &nurturev1.RetireProgramResponse{Program: programProto(c.Program), Version: c.Version, Unchanged: c.Unchanged}, nil
}

// GetProgram returns one program.
func (g *GRPC) GetProgram(ctx context.Context, r *nurturev1.GetProgramRequest) (*nurturev1.GetProgramResponse, error) {
	e, err := g.app.GetProgram(ctx, r.GetProgramId())
	if err != nil {
		return nil, g.status(ctx, "GetProgram", err)
	}
	return &nurturev1.GetProgramResponse{Program: programProto(e)}, nil
}

// ListPrograms returns every program.
func (g *GRPC) ListPrograms(ctx context.Context, r *nurturev1.ListProgramsRequest) (*nurturev1.ListProgramsResponse, error) {
	es, v, err := g.app.ListPrograms(ctx, r.GetIncludeRetired())
	if err != nil {
		return nil, g.status(ctx, "ListPrograms", err)
	}
	out := &nurturev1.ListProgramsResponse{Version: v}
	for _, e := range es {
		out.Programs = append(out.Programs, programProto(e))
	}
	return out, nil
}

// RecycleLead sends a lead back to nurture by hand.
func (g *GRPC) RecycleLead(ctx context.Context, r *nurturev1.RecycleLeadRequest) (*nurturev1.RecycleLeadResponse, error) {
	res, err := g.app.RecycleLead(ctx, app.RecycleLead{LeadID: r.GetLeadId(), Note: r.GetNote(), ProgramID: r.GetProgramId(),
		RequestID: r.GetRequestId(), Actor: r.GetActor()}, grpcserver.Meta(ctx))
	if r.GetRequestId() == "" {
		if st := grpcserver.UnkeyedUnknown(err, "request_id", "the lead may be recycled twice: read where it stands (GetLeadNurture) first"); st != nil {
			return nil, st
		}
	}
	if err != nil {
		return nil, g.status(ctx, "RecycleLead", err)
	}
	return &nurturev1.RecycleLeadResponse{LeadId: res.LeadID, RecycledEventId: res.RecycledEventID, EnrolledEventId: res.EnrolledEventID,
		ProgramId: res.ProgramID, ReviewAt: pbTime(res.ReviewAt), Cycle: res.Cycle, Replayed: res.Replayed}, nil
}

// GetLeadNurture says where a lead stands in nurture.
func (g *GRPC) GetLeadNurture(ctx context.Context, r *nurturev1.GetLeadNurtureRequest) (*nurturev1.GetLeadNurtureResponse, error) {
	n, err := g.app.GetLeadNurture(ctx, r.GetLeadId())
	if err != nil {
		return nil, g.status(ctx, "GetLeadNurture", err)
	}
	lc := lifecycle.ToProto(n.State)
	out := &nurturev1.GetLeadNurtureResponse{LeadId: n.LeadID, Status: lc.GetStatus(), Owner: lc.GetOwner(), Deadline: lc.GetDeadline(),
		Cycle: n.Cycle, ProgramId: n.ProgramID, ReviewAt: pbTime(n.ReviewAt), LastRecycle: n.LastRecycle}
	for _, ev := range n.Steps {
		out.Steps = append(out.Steps, stepProto(ev))
	}
	return out, nil
}

// FindLostLeads runs the no-lost-lead check.
func (g *GRPC) FindLostLeads(ctx context.Context, r *nurturev1.FindLostLeadsRequest) (*nurturev1.FindLostLeadsResponse, error) {
	q := app.LostQuery{Limit: int(r.GetLimit())}
	// Taken as they came, a time out of range or a duration whose parts
	// disagree would judge every lead overdue.
	var bad []grpcserver.FieldViolation
	if t := r.GetAsOf(); t != nil && t.CheckValid() != nil {
		bad = append(bad, grpcserver.FieldViolation{Field: "as_of", Description: "is not a valid time"})
	} else if t != nil {
		q.AsOf = t.AsTime()
	}
	for _, d := range []struct {
		field string
		pb    *durationpb.Duration
		to    *time.Duration
	}{{"overdue_grace", r.GetOverdueGrace(), &q.OverdueGrace}, {"claim_grace", r.GetClaimGrace(), &q.ClaimGrace}} {
		if d.pb != nil && d.pb.CheckValid() != nil {
			bad = append(bad, grpcserver.FieldViolation{Field: d.field, Description: "is not a valid duration"})
		} else if d.pb != nil {
			*d.to = d.pb.AsDuration()
		}
	}
	if c := r.GetAfter(); c != nil {
		switch d := c.GetStuckFor(); {
		case d == nil || d.CheckValid() != nil:
			bad = append(bad, grpcserver.FieldViolation{Field: "after.stuck_for", Description: "must be the stuck_for of the lead listed last"})
		case c.GetLeadId() == "":
			bad = append(bad, grpcserver.FieldViolation{Field: "after.lead_id", Description: "must be the lead_id of the lead listed last"})
		case r.GetAsOf() == nil:
			// Judged now, every lead has been stuck longer since the page
			// before: some would move ahead of the cursor, never listed.
			bad = append(bad, grpcserver.FieldViolation{Field: "as_of", Description: "is required with after: the as_of of the page before"})
		default:
			q.After = &app.LostCursor{StuckFor: d.AsDuration(), LeadID: c.GetLeadId()}
		}
	}
	if len(bad) > 0 {
		return nil, grpcserver.InvalidArgument(bad[0].Field+": "+bad[0].Description, bad...)
	}
	rep, err := g.app.FindLostLeads(ctx, q)
	if err != nil {
		return nil, g.status(ctx, "FindLostLeads", err)
	}
	out := &nurturev1.FindLostLeadsResponse{AsOf: pbTime(rep.AsOf), StreamSeq: rep.StreamSeq, LeadsChecked: uint64(rep.LeadsChecked),
		TotalLost: uint64(rep.TotalLost), Took: durationpb.New(rep.Took)}
	for _, l := range rep.Lost {
		lc := lifecycle.ToProto(l.State)
		out.Lost = append(out.Lost, &nurturev1.LostLead{LeadId: l.LeadID, Reason: lostReasons[l.Reason], Status: lc.GetStatus(),
			Owner: lc.GetOwner(), Deadline: lc.GetDeadline(), LastEventId: l.EventID, LastEventType: l.Type, LastEventAt: pbTime(l.At),
			LastEventSeq: l.Seq, MissingStep: l.MissingStep, StuckFor: durationpb.New(l.StuckFor), Detail: l.Detail})
	}
	for _, p := range rep.Parked {
		out.Parked = append(out.Parked, &nurturev1.ParkedLead{Group: p.Group, LeadId: p.Key, DeadSeq: p.StreamSeq, DeadEventType: p.DeadEventType,
			Error: p.Error, Since: pbTime(p.At), ParkedSeqs: p.Parked, Status: eventv1.LeadStatus(p.Status), StuckFor: durationpb.New(p.StuckFor),
			Owner: lifecycle.ToProto(p.Last.State).GetOwner(), LastEventType: p.Last.Type, LastEventAt: pbTime(p.Last.At), MissingStep: p.MissingStep})
	}
	for _, c := range rep.OrphanClaims {
		out.OrphanClaims = append(out.OrphanClaims, &nurturev1.OrphanClaim{Subject: c.Subject, Kind: c.Kind, LeadId: c.LeadID,
			ClaimedAt: pbTime(c.At), Age: durationpb.New(c.Age)})
	}
	return out, nil
}

var lostReasons = map[app.LostReason]nurturev1.LostReason{
	app.LostUnknownStatus: nurturev1.LostReason_LOST_REASON_UNKNOWN_STATUS,
	app.LostNoOwner:       nurturev1.LostReason_LOST_REASON_NO_OWNER,
	app.LostNoDeadline:    nurturev1.LostReason_LOST_REASON_NO_DEADLINE,
	app.LostDropped:       nurturev1.LostReason_LOST_REASON_DROPPED,
	app.LostStalled:       nurturev1.LostReason_LOST_REASON_STALLED,
	app.LostOverdue:       nurturev1.LostReason_LOST_REASON_OVERDUE,
}

// RedriveLeads puts leads back on track.
func (g *GRPC) RedriveLeads(ctx context.Context, r *nurturev1.RedriveLeadsRequest) (*nurturev1.RedriveLeadsResponse, error) {
	res, err := g.app.RedriveLeads(ctx, r.GetLeadIds(), grpcserver.Meta(ctx))
	if err != nil {
		return nil, g.status(ctx, "RedriveLeads", err)
	}
	out := &nurturev1.RedriveLeadsResponse{}
	for _, x := range res {
		r := &nurturev1.Redriven{LeadId: x.LeadID, Action: redriveActions[x.Action], Groups: x.Groups, EventTypes: x.EventTypes}
		if x.Err != nil {
			st := status.Convert(g.status(ctx, "RedriveLeads", x.Err))
			r.Error = st.Code().String() + ": " + st.Message()
		}
		out.Leads = append(out.Leads, r)
	}
	return out, nil
}

var redriveActions = map[app.RedriveAction]nurturev1.RedriveAction{
	app.RedriveNone:               nurturev1.RedriveAction_REDRIVE_ACTION_NONE,
	app.RedriveRedriven:           nurturev1.RedriveAction_REDRIVE_ACTION_REDRIVEN,
	app.RedriveWritten:            nurturev1.RedriveAction_REDRIVE_ACTION_WRITTEN,
	app.RedriveNotFound:           nurturev1.RedriveAction_REDRIVE_ACTION_NOT_FOUND,
	app.RedriveRedrivenAndWritten: nurturev1.RedriveAction_REDRIVE_ACTION_REDRIVEN_AND_WRITTEN,
	app.RedriveFailed:             nurturev1.RedriveAction_REDRIVE_ACTION_FAILED,
	app.RedrivePending:            nurturev1.RedriveAction_REDRIVE_ACTION_PENDING,
}

func programProto(e program.Entry) *nurturev1.Program {
	out := &nurturev1.Program{Program: e.Program, Source: nurturev1.ProgramSource_PROGRAM_SOURCE_DEFINED, ChangedAt: pbTime(e.ChangedAt), ChangedBy: e.ChangedBy}
	if e.BuiltIn {
		out.Source = nurturev1.ProgramSource_PROGRAM_SOURCE_BUILT_IN
	}
	return out
}

func stepProto(ev *eventv1.Event) *nurturev1.NurtureStep {
	s := &nurturev1.NurtureStep{EventId: ev.GetEventId(), EventType: ev.GetEventType(), At: ev.GetRecordedAt(), CausationId: ev.GetCausationId()}
	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_LeadRecycled:
		s.Cycle, s.ProgramId = p.LeadRecycled.GetCycle(), p.LeadRecycled.GetProgramId()
		s.Summary = "recycled: " + p.LeadRecycled.GetNote()
	case *eventv1.Event_NurtureEnrolled:
		s.Cycle, s.ProgramId = p.NurtureEnrolled.GetCycle(), p.NurtureEnrolled.GetProgramId()
		s.Summary = "enrolled in " + p.NurtureEnrolled.GetProgramId() + ", review " + p.NurtureEnrolled.GetReviewAt().AsTime().UTC().Format(time.RFC3339) +
			" (" + p.NurtureEnrolled.GetWhy() + ")"
	case *eventv1.Event_LeadReengaged:
		s.Cycle, s.ProgramId = p.LeadReengaged.GetCycle(), p.LeadReengaged.GetProgramId()
		s.Summary = "re-engaged by " + p.LeadReengaged.GetTriggerEventType()
		if t := p.LeadReengaged.GetActivityType(); t != eventv1.ActivityType_ACTIVITY_TYPE_UNSPECIFIED {
			s.Summary += " " + t.String()
		}
	case *eventv1.Event_NurtureExited:
		s.Cycle, s.ProgramId = p.NurtureExited.GetCycle(), p.NurtureExited.GetProgramId()
		s.Summary = "exited: " + p.NurtureExited.GetReason() + "; next " + p.NurtureExited.GetNextProgramId()
	}
	return s
}

// status maps an app error to a gRPC status, handling it once: expected
// refusals are answered as they are, anything else is logged here and
// answered INTERNAL without details.
func (g *GRPC) status(ctx context.Context, method string, err error) error {
	var (
		ve      *app.ValidationError
		refused *app.RefusedError
		poison  *app.PoisonError
	)
	switch {
	case errors.As(err, &ve):
		fields := make([]grpcserver.FieldViolation, len(ve.Violations))
		for i, v := range ve.Violations {
			fields[i] = grpcserver.FieldViolation{Field: v.Field, Description: v.Description}
		}
		return grpcserver.InvalidArgument(ve.Error(), fields...)
	case errors.As(err, &refused):
		return status.Error(codes.FailedPrecondition, refused.Error())
	case errors.As(err, &poison):
		return status.Error(codes.FailedPrecondition, poison.Error())
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
