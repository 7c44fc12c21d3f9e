package adapters

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/services/projector/app"
)

var _ app.Behind = (*Queries)(nil)

// LeadsBehind implements app.Behind. Each figure's conditions repeat the
// ones of the report that counts it (queries.go), so a list opened from a
// figure holds exactly the leads that figure counts.
func (q *Queries) LeadsBehind(ctx context.Context, b app.BehindQuery) ([]*projectorv1.Lead, int64, string, error) {
	var args []any
	arg := func(v any) int { args = append(args, v); return len(args) }
	var where []string
	if b.Figure != app.FigureSales && b.Figure != app.FigureBreaches && b.Figure != app.FigureMarketing {
		where = append(where, live) // the work figures count merged leads' work too
	}
	in := func(col string) {
		if !b.Period.From.IsZero() || !b.Period.To.IsZero() {
			where = append(where, period(col, arg(bound(b.Period.From)), arg(bound(b.Period.To))))
		}
	}
	eq := func(col, v string) {
		if v != "" {
			where = append(where, fmt.Sprintf("%s = $%d", col, arg(v)))
		}
	}
	// exists adds a condition on the lead's rows of a child table (from
	// names it as alias, with any join).
	exists := func(from, alias string, conds []string) {
		where = append(where, fmt.Sprintf("EXISTS (SELECT 1 FROM %s WHERE %s.lead_id = l.lead_id AND %s)",
			from, alias, strings.Join(conds, " AND ")))
	}
	stage := map[string]string{"mql": "l.mql_at", "accepted": "l.accepted_at", "opportunity": "l.opportunity_at",
		"won": "l.won_at", "recycled": "l.recycled_at", "disqualified": "l.disqualified_at"}

	switch b.Figure {
	case app.FigureFunnel:
		where = append(where, "l.captured_at IS NOT NULL")
		in("l.captured_at")
		eq("l.segment", b.Segment)
		eq("l.source", b.Source)
		if b.Row == "segment" || b.Row == "source" { // a row of the funnel by it, "" its leads with none
			where = append(where, fmt.Sprintf("l.%s = $%d", b.Row, arg(b.Key)))
		}
		if c := stage[b.Measure]; c != "" {
			where = append(where, c+" IS NOT NULL")
		}
	case app.FigureCampaign:
		where = append(where, "l.captured_at IS NOT NULL")
		in("l.captured_at")
		switch b.Attribution {
		case projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH:
			where = append(where, fmt.Sprintf("l.first_campaign = $%d", arg(b.Campaign)))
		case projectorv1.AttributionModel_ATTRIBUTION_MODEL_LAST_TOUCH:
			where = append(where, fmt.Sprintf("l.last_campaign = $%d", arg(b.Campaign)))
		default: // linear: every lead the campaign has a share of
			if b.Campaign == "" {
				where = append(where, "l.touch_count = 0")
			} else {
				where = append(where, fmt.Sprintf("EXISTS (SELECT 1 FROM lead_touches t WHERE t.lead_id = l.lead_id AND t.campaign_id = $%d AND t.touches > 0)", arg(b.Campaign)))
			}
		}
		switch b.Measure {
		case "won": // won deals and revenue count the opportunities won in the report's currency
			where = append(where, fmt.Sprintf("EXISTS (SELECT 1 FROM opportunities o WHERE o.lead_id = l.lead_id AND o.won_at IS NOT NULL AND ($%d = '' OR o.won_currency = $%[1]d))", arg(b.Currency)))
		case "captured":
		default:
			where = append(where, stage[b.Measure]+" IS NOT NULL")
		}
	case app.FigureSales:
		conds := []string{"true"}
		if !b.Period.From.IsZero() || !b.Period.To.IsZero() {
			conds = append(conds, period("h.assigned_at", arg(bound(b.Period.From)), arg(bound(b.Period.To))))
		}
		if b.Segment != "" {
			conds = append(conds, fmt.Sprintf("h.segment = $%d", arg(b.Segment)))
		}
		conds = append(conds, rowCond("h.rep_id", b, arg)...)
		switch b.Measure {
		case "accept_due":
			conds = append(conds, acceptDue(arg(b.Now)))
		case "contact_due":
			conds = append(conds, contactDue(arg(b.Now)))
		default:
			conds = append(conds, map[string]string{
				"assigned":                 "true",
				"accepted":                 "h.accepted_at IS NOT NULL",
				"accepted_within_sla":      "h.accepted_at IS NOT NULL AND h.accepted_within_sla",
				"contacted":                "h.accepted_at IS NOT NULL AND h.first_attempt_at IS NOT NULL",
				"first_attempt_within_sla": "h.accepted_at IS NOT NULL AND h.first_attempt_at IS NOT NULL AND h.first_attempt_within_sla",
			}[b.Measure])
		}
		exists("handoffs h LEFT JOIN reps r ON r.rep_id = h.rep_id", "h", append(conds, workDone))
	case app.FigureBreaches:
		// Rows are reps and teams: breaches of reps only, as the report.
		conds := []string{fmt.Sprintf("b.owner_kind = $%d", arg(int32(eventv1.OwnerKind_OWNER_KIND_REP)))}
		if !b.Period.From.IsZero() || !b.Period.To.IsZero() {
			conds = append(conds, period("b.at", arg(bound(b.Period.From)), arg(bound(b.Period.To))))
		}
		if b.Segment != "" {
			conds = append(conds, fmt.Sprintf("b.segment = $%d", arg(b.Segment)))
		}
		conds = append(conds, rowCond("b.owner_id", b, arg)...)
		exists("breaches b LEFT JOIN reps r ON r.rep_id = b.owner_id", "b", conds)
	case app.FigureMarketing:
		// A row counts its whole period (marketingRows): the report's
		// period picks rows, it does not cut them.
		conds := []string{period("j.mql_at", arg(b.Months.From), arg(b.Months.To))}
		if b.Segment != "" { // else the row of all segments
			conds = append(conds, fmt.Sprintf("j.segment = $%d", arg(b.Segment)))
		}
		measure := map[string]string{"mql": "true", "accepted": "j.accepted_at IS NOT NULL",
			"rejected": "j.rejected_at IS NOT NULL", "opportunity": "j.opportunity_at IS NOT NULL"}[b.Measure]
		if b.Measure == "accept_due" {
			measure = mqlAcceptDue(arg(b.Now))
		}
		conds = append(conds, mqlWorked, measure)
		exists("journeys j", "j", conds)
	case app.FigureQueue:
		where = append(where, queuedCond())
		eq("l.owner_id", b.Key)
		eq("l.segment", b.Segment)
		if b.Measure == "overdue" {
			where = append(where, fmt.Sprintf("l.deadline < $%d", arg(b.Now)))
		}
	default:
		return nil, 0, "", fmt.Errorf("leads behind: unknown figure %q", b.Figure)
	}

	cond := strings.Join(where, " AND ")
	count := fmt.Sprintf(`SELECT count(*) FROM leads l WHERE %s`, cond)
	countArgs := slices.Clone(args)
	if b.After != nil {
		cond += " AND " + afterCursor(b.After, arg)
	}
	list := fmt.Sprintf(`SELECT f.state, l.captured_at FROM leads l JOIN lead_folds f ON f.lead_id = l.lead_id WHERE %s ORDER BY %s DESC, l.lead_id DESC LIMIT $%d`,
		cond, captureKey, arg(b.Limit+1))
	var out []*projectorv1.Lead
	var n int64
	var next string
	err := q.db.Read(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, count, countArgs...).Scan(&n); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, list, args...)
		if err != nil {
			return err
		}
		out, next, err = page(rows, b.Limit)
		return err
	})
	if err != nil {
		return nil, 0, "", fmt.Errorf("leads behind %s: %w", b.Figure, err)
	}
	return out, n, next, nil
}

// rowCond picks a sales row: a rep, a team (through reps, "" for reps in
// no known team), or the total (no condition).
func rowCond(repCol string, b app.BehindQuery, arg func(any) int) []string {
	switch b.Row {
	case "rep":
		return []string{fmt.Sprintf("%s = $%d", repCol, arg(b.Key))}
	case "team":
		return []string{fmt.Sprintf("coalesce(r.team_id, '') = $%d", arg(b.Key))}
	}
	return nil
}
