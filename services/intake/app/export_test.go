package app

import (
	"context"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/services/intake/form"
)

// CaptureAsOlderIntake is CaptureLead as an intake before 2026-12-06 ran
// it: a capture keyed by its external id alone keeps its record per
// content.
func (a *App) CaptureAsOlderIntake(ctx context.Context, in form.Capture, meta envelope.Meta) (CaptureResult, error) {
	lead, v := form.CheckCapture(in, a.now())
	if err := invalid(v); err != nil {
		return CaptureResult{}, err
	}
	key, err := a.captureKey(lead)
	if err != nil {
		return CaptureResult{}, err
	}
	if key.legacy != "" {
		key.token, key.latest, key.legacy = key.legacy, false, ""
	}
	return a.captureWith(ctx, key, lead, a.identity(lead), meta, nil)
}
