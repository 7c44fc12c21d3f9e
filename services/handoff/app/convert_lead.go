package app

import (
	"context"
	"slices"
	"time"

	"golang.org/x/text/unicode/norm"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/handoff/routing"
)

// maxCloseYears bounds how far ahead a deal may be expected to close.
const maxCloseYears = 5

// ConvertLead turns an accepted lead into an opportunity.
type ConvertLead struct {
	LeadID, RepID, RequestID string
	// OpportunityID defaults to "opp-" and the request id.
	OpportunityID string
	Amount        *eventv1.Money
	Stage         string
	ExpectedClose *timestamppb.Timestamp
}

// ConvertLead appends OpportunityCreated; the lead's deadline becomes
// the expected close (else the lifecycle's close interval).
//
// Errors: see command; amount and stage are required; an opportunity id
// the lead's earlier deal had is refused (*ValidationError).
func (a *App) ConvertLead(ctx context.Context, in ConvertLead, meta envelope.Meta) (Result, error) {
	var v violations
	checkLeadID(&v, in.LeadID)
	checkRepID(&v, "rep_id", in.RepID)
	checkRequestID(&v, in.RequestID)
	checkMoney(&v, "amount", in.Amount, true)
	in.Stage = norm.NFC.String(in.Stage)
	checkStage(&v, "stage", in.Stage)
	checkTime(&v, "expected_close", in.ExpectedClose)
	if in.OpportunityID != "" && !routing.ValidID(in.OpportunityID) {
		v.add("opportunity_id", "must be 1-64 letters, digits, '-' or '_'")
	}
	if err := v.err(); err != nil {
		return Result{}, err
	}
	if in.OpportunityID == "" {
		in.OpportunityID = "opp-" + in.RequestID
	}
	meta = repMeta(meta, in.RepID, in.RequestID)
	same := func(ev *eventv1.Event) bool {
		o := ev.GetOpportunityCreated()
		return o.GetRepId() == in.RepID && o.GetOpportunityId() == in.OpportunityID && o.GetStage() == in.Stage &&
			proto.Equal(o.GetAmount(), in.Amount) && proto.Equal(o.GetExpectedClose(), in.ExpectedClose)
	}
	return a.command(ctx, in.LeadID, in.RequestID, string(lifecycle.KindOpportunityCreated), sameIf(same), []repRef{{field: "rep_id", id: in.RepID}},
		func(l *lead, _ *routing.Config, now time.Time) ([]*eventv1.Event, error) {
			// Judged against the clock here, once the request id is known
			// new: a retry of a conversion made before its expected close
			// answers as the first did.
			cmd := lifecycle.Command{Name: lifecycle.Convert}
			// The deal's every later amount must be in this currency: a
			// typo would stand for good.
			if !envelope.Currency(in.Amount.GetCurrency()) {
				return nil, invalid("amount.currency", envelope.CurrencyRule)
			}
			if in.ExpectedClose != nil {
				switch cmd.Due = in.ExpectedClose.AsTime(); {
				case !cmd.Due.After(now):
					return nil, invalid("expected_close", "must be in the future")
				case cmd.Due.After(now.AddDate(maxCloseYears, 0, 0)):
					// It is the lead's deadline: one in year 9999 would never be
					// overdue, and the no-lost-lead check would never see it.
					return nil, invalid("expected_close", "must be within %d years", maxCloseYears)
				}
			}
			if err := requireOwner(l, in.RepID, "Convert"); err != nil {
				return nil, err
			}
			ev, _, err := a.leadEvent(l.id, l.state, cmd, a.policy, &eventv1.OpportunityCreated{
				OpportunityId: in.OpportunityID, Amount: in.Amount, ExpectedClose: in.ExpectedClose, Stage: in.Stage, RepId: in.RepID, Segment: l.segment,
			}, meta, now)
			if err != nil {
				return nil, err
			}
			if slices.Contains(l.deals, in.OpportunityID) {
				// Reports key a deal by its lead and id: a second deal under
				// the same id would overwrite the first's outcome.
				return nil, invalid("opportunity_id", "%s names a deal this lead had before; a new deal needs a new id", in.OpportunityID)
			}
			return []*eventv1.Event{ev}, nil
		})
}

// MoveStage moves an opportunity to another CRM stage, or its expected
// close to another day.
type MoveStage struct {
	LeadID, RepID, RequestID string
	Stage                    string
	Amount                   *eventv1.Money
	ExpectedClose            *timestamppb.Timestamp
}

// MoveOpportunityStage appends OpportunityStageChanged. It is not a
// lifecycle transition, but it is refused like one outside OPPORTUNITY;
// a new expected close is stamped as the lead's deadline. A move to the
// stage the opportunity is in, with no new amount or close, writes
// nothing.
//
// Errors: see command; an amount must be in the currency the opportunity
// was converted in (else *ValidationError on amount.currency); an
// expected close in the future, within maxCloseYears.
func (a *App) MoveOpportunityStage(ctx context.Context, in MoveStage, meta envelope.Meta) (Result, error) {
	var v violations
	checkLeadID(&v, in.LeadID)
	checkRepID(&v, "rep_id", in.RepID)
	checkRequestID(&v, in.RequestID)
	in.Stage = norm.NFC.String(in.Stage)
	if in.Stage != "" || in.ExpectedClose == nil { // empty with a new close: the stage stays
		checkStage(&v, "stage", in.Stage)
	}
	checkMoney(&v, "amount", in.Amount, false)
	checkTime(&v, "expected_close", in.ExpectedClose)
	if err := v.err(); err != nil {
		return Result{}, err
	}
	meta = repMeta(meta, in.RepID, in.RequestID)
	same := func(ev *eventv1.Event) bool {
		o := ev.GetOpportunityStageChanged()
		return o.GetRepId() == in.RepID && (o.GetToStage() == in.Stage || in.Stage == "") && proto.Equal(o.GetAmount(), in.Amount) &&
			proto.Equal(o.GetExpectedClose(), in.ExpectedClose)
	}
	return a.command(ctx, in.LeadID, in.RequestID, "OpportunityStageChanged", sameIf(same), []repRef{{field: "rep_id", id: in.RepID}},
		func(l *lead, _ *routing.Config, now time.Time) ([]*eventv1.Event, error) {
			if err := requireOwner(l, in.RepID, "MoveStage"); err != nil {
				return nil, err
			}
			state, stage := l.state, in.Stage
			if stage == "" {
				stage = l.opportunity.stage
			}
			// Judged here, as at conversion, once the request id is known
			// new; the close it has already is no change (retried after
			// that day, such a move answers as the first did).
			if in.ExpectedClose != nil && state.Status == lifecycle.StatusOpportunity && !in.ExpectedClose.AsTime().Equal(state.Deadline) {
				switch state.Deadline = in.ExpectedClose.AsTime(); {
				case !state.Deadline.After(now):
					return nil, invalid("expected_close", "must be in the future")
				case state.Deadline.After(now.AddDate(maxCloseYears, 0, 0)):
					return nil, invalid("expected_close", "must be within %d years", maxCloseYears)
				}
			}
			ev, err := noteEvent(l.id, state, "MoveStage", []lifecycle.Status{lifecycle.StatusOpportunity}, &eventv1.OpportunityStageChanged{
				OpportunityId: l.opportunity.id, FromStage: l.opportunity.stage, ToStage: stage, Amount: in.Amount, RepId: in.RepID,
				ExpectedClose: in.ExpectedClose,
			}, meta, now)
			if err != nil {
				return nil, err
			}
			if err := checkCurrency(l, in.Amount); err != nil {
				return nil, err
			}
			if stage == l.opportunity.stage && (in.Amount == nil || proto.Equal(in.Amount, l.opportunity.amount)) &&
				state.Deadline.Equal(l.state.Deadline) {
				return nil, errUnchanged
			}
			return []*eventv1.Event{ev}, nil
		})
}

// checkCurrency refuses an amount in another currency than the one the
// lead's opportunity was converted in: the opportunity's pipeline and
// its revenue are counted in that one currency. Called once the
// lifecycle has accepted the command, so the lead is an opportunity.
func checkCurrency(l *lead, m *eventv1.Money) error {
	if want := l.opportunity.currency; m != nil && want != "" && m.GetCurrency() != want {
		return invalid("amount.currency", "must be %s, the currency of opportunity %s", want, l.opportunity.id)
	}
	return nil
}
