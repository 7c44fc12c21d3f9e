package app

import (
	"context"
	"fmt"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// Explanation is a lead's latest score and why.
type Explanation struct {
	LeadID string
	// Score holds fit, engagement, total, threshold, the reasons and the
	// model version.
	Score *eventv1.LeadScored
	// At is the time the score was computed for.
	At time.Time
	// Cause is the event scored for: a lead event, or an activation.
	Cause  string
	Status lifecycle.Status
}

// ExplainScore returns a lead's latest LeadScored, read from its events.
//
// Errors: *ValidationError, ErrNotFound (unknown lead, or never scored).
func (a *App) ExplainScore(ctx context.Context, leadID string) (Explanation, error) {
	var v violations
	checkLeadID(&v, "lead_id", leadID)
	if err := v.err(); err != nil {
		return Explanation{}, err
	}
	recs, err := a.leads.Load(ctx, leadID)
	if err != nil {
		return Explanation{}, err
	}
	l := foldLead(leadID, recs, 0)
	if !l.hasScore {
		return Explanation{}, fmt.Errorf("score of lead %s: %w", leadID, ErrNotFound)
	}
	ev, err := l.lastScore.event()
	if err != nil {
		return Explanation{}, err
	}
	return Explanation{LeadID: leadID, Score: ev.GetLeadScored(), At: ev.GetOccurredAt().AsTime(),
		Cause: ev.GetCausationId(), Status: l.state.Status}, nil
}
