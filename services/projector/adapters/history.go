package adapters

import (
	"context"
	"fmt"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// LeadHistory returns every event of one lead from the stream, in order
// (direct-get batches on its subject; an unknown lead has none), also
// one a bypassing write stepped over (LoadEvery). The dashboard draws a
// lead's journey from it.
func (s *Stream) LeadHistory(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	recs, err := s.store.LoadEvery(ctx, eventstore.LeadSubject(leadID))
	if err != nil {
		return nil, fmt.Errorf("lead %s history: %w", leadID, err)
	}
	return recs, nil
}

// ScoringHistory returns the events of model.scoring in order: every
// proposal, approval, activation and re-score.
func (s *Stream) ScoringHistory(ctx context.Context) ([]eventstore.Record, error) {
	recs, err := s.store.LoadEvery(ctx, eventstore.ModelSubject("scoring"))
	if err != nil {
		return nil, fmt.Errorf("scoring model history: %w", err)
	}
	return recs, nil
}
