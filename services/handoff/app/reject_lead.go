package app

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// RejectLead is a rep turning down a lead the rep owns.
type RejectLead struct {
	LeadID, RepID, RequestID string
	Reason                   eventv1.RejectReason
	Note                     string
}

const maxNote = 500

// sealText seals a rep's free text for the lead (nil for none) with the
// key of its last submission, so that erasing the lead shreds it.
// required: the request cannot go without the text (its error says so).
func (a *App) sealText(ctx context.Context, l *lead, field, text string, required bool) ([]byte, error) {
	switch {
	case strings.TrimSpace(text) == "":
		return nil, nil
	case a.personal == nil:
		return nil, &CannotSealError{Field: field, Why: "this handoff runs without the key vault (-master-key)", Required: required}
	case len(l.sealWith) == 0:
		return nil, &CannotSealError{Field: field, Why: "the lead has no data key", Required: required}
	}
	sealed, err := a.personal.Seal(ctx, l.id, l.sealWith, text)
	if errors.Is(err, ErrErased) { // erased since the lead was read
		return nil, &CannotSealError{Field: field, Why: err.Error(), Required: required}
	}
	return sealed, err
}

// sameText tells whether a first request's free text, sealed (nil for
// none) or, in events from before notes were sealed, clear, is text: a
// request id sent again with other words is another request. Without the
// key vault, or once the lead is erased, sealed words cannot be read back
// and a repeat gets the first answer.
func (a *App) sameText(ctx context.Context, leadID string, sealed []byte, clear, text string) (bool, error) {
	if len(sealed) == 0 {
		return strings.TrimSpace(clear) == strings.TrimSpace(text), nil
	}
	if a.personal == nil {
		return true, nil
	}
	first, err := a.personal.Text(ctx, leadID, "", sealed)
	if err != nil {
		return false, err
	}
	return first == "" || first == text, nil // "": erased
}

// RejectLead appends LeadRejected with the reason code: the lead goes
// back to nurture (RECYCLED, owned by the nurture queue).
//
// Errors: see command; reason must be a known code.
func (a *App) RejectLead(ctx context.Context, in RejectLead, meta envelope.Meta) (Result, error) {
	var v violations
	checkLeadID(&v, in.LeadID)
	checkRepID(&v, "rep_id", in.RepID)
	checkRequestID(&v, in.RequestID)
	v.knownEnum("reason", in.Reason)
	checkText(&v, "note", in.Note, maxNote, false)
	if err := v.err(); err != nil {
		return Result{}, err
	}
	meta = repMeta(meta, in.RepID, in.RequestID)
	reason := strings.TrimPrefix(in.Reason.String(), "REJECT_REASON_")
	same := func(ctx context.Context, ev *eventv1.Event) (bool, error) {
		r := ev.GetLeadRejected()
		if r.GetRepId() != in.RepID || r.GetReason() != in.Reason {
			return false, nil
		}
		return a.sameText(ctx, in.LeadID, r.GetSealedNote(), r.GetNote(), in.Note)
	}
	return a.command(ctx, in.LeadID, in.RequestID, string(lifecycle.KindRejected), same, []repRef{{field: "rep_id", id: in.RepID}},
		func(l *lead, _ *routing.Config, now time.Time) ([]*eventv1.Event, error) {
			if err := requireOwner(l, in.RepID, "Reject"); err != nil {
				return nil, err
			}
			rejected := &eventv1.LeadRejected{RepId: in.RepID, Reason: in.Reason, Segment: l.segment}
			ev, _, err := a.leadEvent(l.id, l.state, lifecycle.Command{Name: lifecycle.Reject, Reason: reason}, a.policy, rejected, meta, now)
			if err != nil {
				return nil, err
			}
			// Sealed once the lifecycle allows the step: a refusal names the
			// lead's state, not the key the note would need.
			if rejected.SealedNote, err = a.sealText(ctx, l, "note", in.Note, false); err != nil {
				return nil, err
			}
			return []*eventv1.Event{ev}, nil
		})
}
