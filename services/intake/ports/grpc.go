// Package ports is intake's gRPC API: it turns requests into app calls and
// app errors into gRPC statuses, and logs what it cannot explain.
package ports

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/intake/app"
	"github.com/leadflow/leadflow/services/intake/form"
)

// GRPC serves intakev1.IntakeService.
type GRPC struct {
	intakev1.UnimplementedIntakeServiceServer
	app *app.App
	log *slog.Logger
	// Linger replaces ImportLinger.
	Linger time.Duration
}

var _ intakev1.IntakeServiceServer = (*GRPC)(nil)

// NewGRPC returns the gRPC port of a.
func NewGRPC(a *app.App, log *slog.Logger) *GRPC {
	return &GRPC{app: a, log: log, Linger: ImportLinger}
}

// meta is the envelope for a request's events (grpcserver.Meta) with
// the actor the request names (an integration acting for a person), else
// the caller its token names.
func meta(ctx context.Context, actor *eventv1.Actor) envelope.Meta {
	m := grpcserver.Meta(ctx)
	if actor != nil {
		m.Actor = actor
	}
	return m
}

func capture(r *intakev1.CaptureLeadRequest) form.Capture {
	return form.Capture{
		IdempotencyKey: r.GetIdempotencyKey(),
		Contact:        r.GetContact(),
		Profile:        r.GetProfile(),
		Attribution:    r.GetAttribution(),
		ExternalID:     r.GetExternalId(),
		Consents:       r.GetConsents(),
		OccurredAt:     asTime(r.GetOccurredAt()),
		Actor:          r.GetActor(),
	}
}

// CaptureLead captures one lead.
func (g *GRPC) CaptureLead(ctx context.Context, r *intakev1.CaptureLeadRequest) (*intakev1.CaptureLeadResponse, error) {
	res, err := g.app.CaptureLead(ctx, capture(r), meta(ctx, r.GetActor()))
	if err != nil {
		return nil, g.captureStatus(ctx, "CaptureLead", err, r.GetIdempotencyKey() != "" || r.GetExternalId().GetId() != "" && r.GetOccurredAt() != nil)
	}
	return captureResponse(res), nil
}

// captureStatus is status, but a capture without an idempotency key, or
// an external id with its time (whose repeat is the first answer too,
// whatever came since), whose outcome is unknown is not told to send it
// again as if that were safe: sent again, it may be another submission.
func (g *GRPC) captureStatus(ctx context.Context, method string, err error, keyed bool) error {
	if !keyed {
		if st := grpcserver.UnkeyedUnknown(err, "idempotency_key",
			"its submission may be stored twice (its lead is not: it is found by its email or external id)"); st != nil {
			return st
		}
	}
	return g.status(ctx, method, err)
}

func captureResponse(res app.CaptureResult) *intakev1.CaptureLeadResponse {
	return &intakev1.CaptureLeadResponse{LeadId: res.LeadID, Outcome: outcome(res.Outcome), Replayed: res.Replayed, Version: res.Version}
}

func outcome(o app.Outcome) intakev1.CaptureOutcome {
	switch o {
	case app.Created:
		return intakev1.CaptureOutcome_CAPTURE_OUTCOME_CREATED
	case app.Resubmitted:
		return intakev1.CaptureOutcome_CAPTURE_OUTCOME_RESUBMITTED
	}
	return intakev1.CaptureOutcome_CAPTURE_OUTCOME_UNSPECIFIED
}

// ImportLeads reads rows in chunks of up to app.ImportChunk (see
// receiveImport) and answers one result per row, in order, as soon as
// its chunk is stored. One goroutine
// receives and decides each chunk while this one writes the chunk before
// it and answers it; chunks are written one after the other, so that a
// person's rows in two chunks are stored in row order.
func (g *GRPC) ImportLeads(stream intakev1.IntakeService_ImportLeadsServer) error {
	ctx := stream.Context()
	batches := make(chan *app.ImportBatch)
	received := make(chan error, 1)
	go func() {
		defer close(batches)
		received <- g.receiveImport(ctx, stream, batches)
	}()
	for b := range batches {
		// The first row whose outcome is not its own (a write's outcome
		// unknown, a store error) ends the import, but only once the
		// chunk's other rows, written, are answered: a client sending again
		// what got no answer must not send those twice.
		var failed []app.ImportResult
		for _, res := range b.Write(ctx) {
			out := &intakev1.ImportLeadsResponse{Row: res.Row}
			var (
				ve *app.ValidationError
				ke *app.KeyReusedError
			)
			switch {
			case errors.As(res.Err, &ve):
				for _, v := range ve.Violations {
					out.Errors = append(out.Errors, &intakev1.FieldError{Field: v.Field, Description: v.Description})
				}
			case errors.As(res.Err, &ke):
				// The row's own fault, like a bad field: the rows after it go on.
				out.Errors = []*intakev1.FieldError{{Field: ke.Field, Description: ke.Error()}}
			case errors.Is(res.Err, app.ErrHeldBack):
				// Not written, so neither answered nor named: sent again.
				continue
			case res.Err != nil:
				failed = append(failed, res)
				continue
			default:
				c := captureResponse(res.Result)
				out.LeadId, out.Outcome, out.Replayed, out.Version = c.GetLeadId(), c.GetOutcome(), c.GetReplayed(), c.GetVersion()
			}
			if err := stream.Send(out); err != nil {
				return err
			}
		}
		if len(failed) > 0 {
			rows := make([]string, len(failed))
			for i, f := range failed {
				rows[i] = strconv.FormatInt(f.Row, 10)
			}
			// The status warns of a second submission when any failed
			// row without a key may be stored.
			worst := failed[0]
			if i := slices.IndexFunc(failed, func(f app.ImportResult) bool {
				return !f.Keyed && errors.Is(f.Err, eventstore.ErrUnknownOutcome)
			}); i >= 0 {
				worst = failed[i]
			}
			p := status.Convert(g.captureStatus(ctx, "ImportLeads", worst.Err, worst.Keyed)).Proto()
			p.Message = fmt.Sprintf("row %s: %s; the import ends here: of the rows not answered, only these may have been stored",
				strings.Join(rows, ", "), p.GetMessage())
			return status.ErrorProto(p)
		}
	}
	return <-received
}

// ImportLinger is how long a partial chunk waits for its next row before
// it is written, and ten times it how long its first row waits at most: a
// stream that sends rows slowly, or steadily but sparsely, is answered
// as it goes, while a bulk one fills its chunks.
const ImportLinger = 50 * time.Millisecond

// receiveImport reads an import's rows and hands each chunk on, decided
// (app.PrepareImport), until the client ends the stream: a full chunk, a
// partial one once no row came for Linger or its first row waited ten
// times that, and at the end or a refused row (a token revoked
// mid-stream) what was taken, so its rows are written and answered
// before the stream ends.
func (g *GRPC) receiveImport(ctx context.Context, stream intakev1.IntakeService_ImportLeadsServer, batches chan<- *app.ImportBatch) error {
	m := meta(ctx, nil)
	rows := make([]app.ImportRow, 0, app.ImportChunk)
	var last *app.ImportBatch // the chunk before, perhaps still being written
	hand := func() error {
		if len(rows) == 0 {
			return nil
		}
		b := g.app.PrepareImport(ctx, rows, m, last)
		select {
		case batches <- b:
			rows, last = make([]app.ImportRow, 0, app.ImportChunk), b
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	type received struct {
		r   *intakev1.ImportLeadsRequest
		err error
	}
	in := make(chan received)
	go func() {
		for {
			r, err := stream.Recv()
			select {
			case in <- received{r, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	linger := time.NewTimer(g.Linger)
	defer linger.Stop()
	var first time.Time // the partial chunk's first row's arrival
	for {
		select {
		case <-linger.C:
			if err := hand(); err != nil {
				return err
			}
			continue
		case <-ctx.Done():
			return ctx.Err()
		case x := <-in:
			switch {
			case errors.Is(x.err, io.EOF):
				return hand()
			case x.err != nil && ctx.Err() != nil:
				return x.err // the stream is over: nobody to answer
			case x.err != nil:
				if err := hand(); err != nil {
					return errors.Join(x.err, err)
				}
				return x.err
			}
			rows = append(rows, app.ImportRow{Row: x.r.GetRow(), Capture: capture(x.r.GetLead())})
			if len(rows) == app.ImportChunk {
				if err := hand(); err != nil {
					return err
				}
				continue
			}
			if len(rows) == 1 {
				first = time.Now()
			}
			linger.Reset(max(0, min(g.Linger, time.Until(first.Add(10*g.Linger)))))
		}
	}
}

// RecordActivity records an engagement signal.
func (g *GRPC) RecordActivity(ctx context.Context, r *intakev1.RecordActivityRequest) (*intakev1.RecordActivityResponse, error) {
	w, err := g.app.RecordActivity(ctx, app.RecordActivity{
		LeadID: r.GetLeadId(), ActivityID: r.GetActivityId(), Type: r.GetType(), CampaignID: r.GetCampaignId(),
		Detail: r.GetDetail(), OccurredAt: asTime(r.GetOccurredAt()), Actor: r.GetActor(),
	}, meta(ctx, r.GetActor()))
	if err != nil {
		return nil, g.status(ctx, "RecordActivity", err)
	}
	return &intakev1.RecordActivityResponse{Version: w.Version, Replayed: w.Replayed, LeadId: w.LeadID}, nil
}

// RegisterCampaign registers a campaign.
func (g *GRPC) RegisterCampaign(ctx context.Context, r *intakev1.RegisterCampaignRequest) (*intakev1.RegisterCampaignResponse, error) {
	w, err := g.app.RegisterCampaign(ctx, app.RegisterCampaign{
		CampaignID: r.GetCampaignId(), Name: r.GetName(), Channel: r.GetChannel(),
		StartsAt: asTime(r.GetStartsAt()), EndsAt: asTime(r.GetEndsAt()), Budget: r.GetBudget(), Actor: r.GetActor(),
	}, meta(ctx, r.GetActor()))
	if err != nil {
		return nil, g.status(ctx, "RegisterCampaign", err)
	}
	return &intakev1.RegisterCampaignResponse{CampaignId: r.GetCampaignId(), Replayed: w.Replayed}, nil
}

// RecordCampaignCost records spend.
func (g *GRPC) RecordCampaignCost(ctx context.Context, r *intakev1.RecordCampaignCostRequest) (*intakev1.RecordCampaignCostResponse, error) {
	w, err := g.app.RecordCampaignCost(ctx, app.RecordCampaignCost{
		CampaignID: r.GetCampaignId(), CostID: r.GetCostId(), Amount: r.GetAmount(),
		PeriodStart: asTime(r.GetPeriodStart()), PeriodEnd: asTime(r.GetPeriodEnd()), Actor: r.GetActor(),
	}, meta(ctx, r.GetActor()))
	if err != nil {
		return nil, g.status(ctx, "RecordCampaignCost", err)
	}
	return &intakev1.RecordCampaignCostResponse{Version: w.Version, Replayed: w.Replayed}, nil
}

// SetConsent records a consent change.
func (g *GRPC) SetConsent(ctx context.Context, r *intakev1.SetConsentRequest) (*intakev1.SetConsentResponse, error) {
	w, err := g.app.SetConsent(ctx, app.SetConsent{
		LeadID: r.GetLeadId(), Consent: r.GetConsent(), Source: r.GetSource(),
		IdempotencyKey: r.GetIdempotencyKey(), Actor: r.GetActor(),
	}, meta(ctx, r.GetActor()))
	if err != nil {
		return nil, g.status(ctx, "SetConsent", err)
	}
	return &intakev1.SetConsentResponse{Version: w.Version, Replayed: w.Replayed, LeadId: w.LeadID}, nil
}

// GetLead returns a lead's current state.
func (g *GRPC) GetLead(ctx context.Context, r *intakev1.GetLeadRequest) (*intakev1.GetLeadResponse, error) {
	v, err := g.app.GetLead(ctx, r.GetLeadId())
	if err != nil {
		return nil, g.status(ctx, "GetLead", err)
	}
	return &intakev1.GetLeadResponse{Lead: leadOf(v)}, nil
}

func leadOf(v app.LeadView) *intakev1.Lead {
	return &intakev1.Lead{
		LeadId: v.LeadID, Lifecycle: lifecycle.ToProto(v.State), Contact: v.Contact, Profile: v.Profile,
		Attribution: v.Attribution, Consents: v.Consents, CapturedAt: pbTime(v.CapturedAt), UpdatedAt: pbTime(v.UpdatedAt),
		Version: v.Version, Submissions: int32(v.Submissions), Activities: int32(v.Activities), Erased: v.Erased,
		MergedInto: v.MergedInto, AbsorbedLeadIds: v.Absorbed,
	}
}

// GetLeadTimeline returns a lead's events from the stream.
func (g *GRPC) GetLeadTimeline(ctx context.Context, r *intakev1.GetLeadTimelineRequest) (*intakev1.GetLeadTimelineResponse, error) {
	entries, err := g.app.GetLeadTimeline(ctx, r.GetLeadId())
	if err != nil {
		return nil, g.status(ctx, "GetLeadTimeline", err)
	}
	out := &intakev1.GetLeadTimelineResponse{LeadId: r.GetLeadId()}
	for _, e := range entries {
		out.Entries = append(out.Entries, &intakev1.TimelineEntry{Sequence: e.Record.Seq, Event: e.Record.Event, Summary: e.Summary})
	}
	return out, nil
}

// EraseLead erases a lead's personal data.
func (g *GRPC) EraseLead(ctx context.Context, r *intakev1.EraseLeadRequest) (*intakev1.EraseLeadResponse, error) {
	w, err := g.app.EraseLead(ctx, app.EraseLead{LeadID: r.GetLeadId(), Reason: r.GetReason(), Actor: r.GetActor()}, meta(ctx, r.GetActor()))
	if err != nil {
		return nil, g.status(ctx, "EraseLead", err)
	}
	return &intakev1.EraseLeadResponse{Version: w.Version, Replayed: w.Replayed}, nil
}

// ExportLead returns everything held about a lead, decrypted.
func (g *GRPC) ExportLead(ctx context.Context, r *intakev1.ExportLeadRequest) (*intakev1.ExportLeadResponse, error) {
	x, err := g.app.ExportLead(ctx, r.GetLeadId())
	if err != nil {
		return nil, g.status(ctx, "ExportLead", err)
	}
	return exportOf(x), nil
}

func exportOf(x app.Export) *intakev1.ExportLeadResponse {
	out := &intakev1.ExportLeadResponse{Lead: leadOf(x.View)}
	for _, s := range x.Submissions {
		out.Submissions = append(out.Submissions, &intakev1.ExportedSubmission{Sequence: s.Seq, OccurredAt: pbTime(s.OccurredAt), EventType: s.EventType,
			Personal: s.Personal, Profile: s.Profile, Attribution: s.Attribution, Consents: s.Consents, StoredOn: s.StoredOn})
	}
	for _, a := range x.Activities {
		out.Activities = append(out.Activities, &intakev1.ExportedActivity{Sequence: a.Seq, OccurredAt: pbTime(a.OccurredAt), ActivityId: a.ActivityID,
			Type: a.Type, CampaignId: a.CampaignID, Detail: a.Detail, StoredOn: a.StoredOn})
	}
	for _, e := range x.Events {
		out.Events = append(out.Events, &intakev1.TimelineEntry{Sequence: e.Record.Seq, Event: e.Record.Event, Summary: e.Summary})
	}
	for _, n := range x.Notes {
		out.Notes = append(out.Notes, &intakev1.ExportedNote{Sequence: n.Seq, OccurredAt: pbTime(n.OccurredAt), EventType: n.EventType,
			Field: n.Field, Actor: n.Actor, Text: n.Text})
	}
	for _, ab := range x.Absorbed {
		out.Absorbed = append(out.Absorbed, exportOf(ab))
	}
	for _, c := range x.ConsentChanges {
		out.ConsentChanges = append(out.ConsentChanges, &intakev1.ExportedConsentChange{Sequence: c.Seq, OccurredAt: pbTime(c.OccurredAt),
			Consent: c.Consent, Source: c.Source, StoredOn: c.StoredOn})
	}
	return out
}

// MergeLeads merges the absorbed lead into the survivor.
func (g *GRPC) MergeLeads(ctx context.Context, r *intakev1.MergeLeadsRequest) (*intakev1.MergeLeadsResponse, error) {
	m, err := g.app.MergeLeads(ctx, app.MergeLeads{Survivor: r.GetSurvivorLeadId(), Absorbed: r.GetAbsorbedLeadId(), Reason: r.GetReason(), Actor: r.GetActor()}, meta(ctx, r.GetActor()))
	if err != nil {
		return nil, g.status(ctx, "MergeLeads", err)
	}
	return &intakev1.MergeLeadsResponse{SurvivorVersion: m.Survivor, AbsorbedVersion: m.Absorbed, Replayed: m.Replayed}, nil
}

// UnmergeLeads undoes a merge.
func (g *GRPC) UnmergeLeads(ctx context.Context, r *intakev1.UnmergeLeadsRequest) (*intakev1.UnmergeLeadsResponse, error) {
	m, err := g.app.UnmergeLeads(ctx, app.MergeLeads{Survivor: r.GetSurvivorLeadId(), Absorbed: r.GetAbsorbedLeadId(), Reason: r.GetReason(), Actor: r.GetActor()}, meta(ctx, r.GetActor()))
	if err != nil {
		return nil, g.status(ctx, "UnmergeLeads", err)
	}
	return &intakev1.UnmergeLeadsResponse{SurvivorVersion: m.Survivor, AbsorbedVersion: m.Absorbed, Replayed: m.Replayed}, nil
}

// status maps an app error to a gRPC status, handling it once: intake's
// own errors here, the shared ones (and logging) in grpcserver.Status.
func (g *GRPC) status(ctx context.Context, method string, err error) error {
	var (
		ve *app.ValidationError
		ke *app.KeyReusedError
	)
	switch {
	case errors.As(err, &ve):
		fields := make([]grpcserver.FieldViolation, len(ve.Violations))
		for i, v := range ve.Violations {
			fields[i] = grpcserver.FieldViolation{Field: v.Field, Description: v.Description}
		}
		return grpcserver.InvalidArgument(ve.Error(), fields...)
	case errors.As(err, &ke):
		// As handoff, qualification and nurture refuse a reused request id.
		return grpcserver.InvalidArgument(ke.Error(), grpcserver.FieldViolation{Field: ke.Field, Description: ke.Error()})
	case errors.Is(err, app.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, app.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, err.Error())
	}
	return grpcserver.Status(ctx, g.log, method, err)
}

func asTime(t *timestamppb.Timestamp) (out time.Time) {
	if t == nil {
		return out
	}
	return t.AsTime()
}

func pbTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// FindLead looks a person's lead up by an identity, writing nothing.
func (g *GRPC) FindLead(ctx context.Context, r *intakev1.FindLeadRequest) (*intakev1.FindLeadResponse, error) {
	f, err := g.app.FindLead(ctx, r.GetEmail(), r.GetExternalId())
	if err != nil {
		return nil, g.status(ctx, "FindLead", err)
	}
	return &intakev1.FindLeadResponse{LeadId: f.LeadID, SurvivorLeadId: f.Survivor, MatchedBy: f.MatchedBy}, nil
}
