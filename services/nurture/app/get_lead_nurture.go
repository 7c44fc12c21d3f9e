package app

import (
	"context"
	"fmt"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// LeadNurture is where a lead stands in nurture.
type LeadNurture struct {
	LeadID string
	State  lifecycle.State
	Cycle  uint32
	// ProgramID and ReviewAt are set while the lead is NURTURING in a
	// program nurture enrolled it in.
	ProgramID   string
	ReviewAt    time.Time
	LastRecycle *eventv1.LeadRecycled
	// Steps are nurture's events of the lead, oldest first.
	Steps []*eventv1.Event
}

// GetLeadNurture reads a lead's nurture view from its events.
//
// Errors: *ValidationError (lead_id), ErrNotFound.
func (a *App) GetLeadNurture(ctx context.Context, leadID string) (LeadNurture, error) {
	var v violations
	checkLeadID(&v, "lead_id", leadID)
	if err := v.err(); err != nil {
		return LeadNurture{}, err
	}
	l, err := a.load(ctx, leadID)
	if err != nil {
		return LeadNurture{}, err
	}
	if l.version == 0 {
		return LeadNurture{}, fmt.Errorf("lead %s: %w", leadID, ErrNotFound)
	}
	out := LeadNurture{LeadID: leadID, State: l.state, Cycle: l.cycle(), LastRecycle: l.recycled.ev.GetLeadRecycled()}
	if e := l.enrolled.ev.GetNurtureEnrolled(); e != nil && l.state.Status == lifecycle.StatusNurturing {
		out.ProgramID, out.ReviewAt = e.GetProgramId(), e.GetReviewAt().AsTime()
	}
	for _, s := range l.steps {
		out.Steps = append(out.Steps, s.ev)
	}
	return out, nil
}
