package adapters

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/maildomain"
	"github.com/leadflow/leadflow/services/projector/app"
	"github.com/leadflow/leadflow/services/projector/lead"
)

// Reader runs f on one snapshot of the active read model
// (project.Projector.Read).
type Reader interface {
	Read(ctx context.Context, f func(tx pgx.Tx) error) error
}

// Queries answers the reports from the read model. Every call reads one
// snapshot, so the figures of one answer are from one moment.
type Queries struct{ db Reader }

var _ app.Queries = (*Queries)(nil)

// NewQueries returns the reports over r.
func NewQueries(r Reader) *Queries { return &Queries{db: r} }

// live leaves out leads absorbed by a merge: they are duplicates of their
// survivor, so figures that count leads (the funnel, campaigns, stage
// conversion and time in stage, accounts, queues) count the person once.
// Figures of work done (hand-offs and breaches, MQL journeys, deals) keep
// it: a merge ends a duplicate, not what sales and marketing did with it
// before, and the survivor does not carry that work.
const live = `l.merged_into = ''`

// workDone is a hand-off h of lead l that counts: of a live lead, or one
// that ended before its lead was merged away (one merged while a rep
// held it, refused since the thirty-sixth session, stays open and counts
// nowhere, as before).
const workDone = `(` + live + ` OR h.ended_at IS NOT NULL)`

// mqlWorked is a journey j of lead l that counts: of a live lead, or one
// that reached sales before its lead was merged away (a duplicate MQL
// merged while it waited for routing is the person's other MQL, counted
// once).
const mqlWorked = `(` + live + ` OR j.assigned_at IS NOT NULL)`

// period is a condition on col for the period in parameters $a and $b
// (NULL: open).
func period(col string, a, b int) string {
	return fmt.Sprintf("($%[2]d::timestamptz IS NULL OR %[1]s >= $%[2]d) AND ($%[3]d::timestamptz IS NULL OR %[1]s < $%[3]d)", col, a, b)
}

func bound(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func pbt(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}

func pbz(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// SearchLeads implements app.Queries.
func (q *Queries) SearchLeads(ctx context.Context, s app.LeadQuery) ([]*projectorv1.Lead, string, error) {
	var (
		where = []string{"true"}
		args  []any
	)
	arg := func(v any) int { args = append(args, v); return len(args) }
	eq := func(col, v string) {
		if v != "" {
			where = append(where, fmt.Sprintf("%s = $%d", col, arg(v)))
		}
	}
	if len(s.Statuses) > 0 {
		st := make([]int32, len(s.Statuses))
		for i, x := range s.Statuses {
			st[i] = int32(x)
		}
		where = append(where, fmt.Sprintf("l.status = ANY($%d)", arg(st)))
	}
	eq("l.segment", s.Segment)
	eq("l.source", s.Source)
	eq("l.account_id", s.AccountID)
	eq("l.rep_id", s.RepID)
	if s.QueueID != "" {
		where = append(where, fmt.Sprintf("l.owner_kind = $%d AND l.owner_id = $%d", arg(int32(eventv1.OwnerKind_OWNER_KIND_QUEUE)), arg(s.QueueID)))
	}
	eq("l.email_domain", s.EmailDomain)
	eq("l.country", s.Country)
	if s.CampaignID != "" {
		where = append(where, fmt.Sprintf("EXISTS (SELECT 1 FROM lead_touches t WHERE t.lead_id = l.lead_id AND t.campaign_id = $%d AND t.touches > 0)", arg(s.CampaignID)))
	}
	if !s.Captured.From.IsZero() || !s.Captured.To.IsZero() {
		a, b := arg(bound(s.Captured.From)), arg(bound(s.Captured.To))
		where = append(where, period("l.captured_at", a, b))
	}
	if s.Overdue {
		where = append(where, fmt.Sprintf("l.deadline < $%d AND l.status <> ALL($%d)", arg(s.Now), arg(terminal)))
	}
	if s.After != nil {
		where = append(where, afterCursor(s.After, arg))
	}
	limit := arg(s.PageSize + 1)
	sql := fmt.Sprintf(`SELECT f.state, l.captured_at FROM leads l JOIN lead_folds f ON f.lead_id = l.lead_id WHERE %s ORDER BY %s DESC, l.lead_id DESC LIMIT $%d`, strings.Join(where, " AND "), captureKey, limit)
	var out []*projectorv1.Lead
	next := ""
	err := q.db.Read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		out, next, err = page(rows, s.PageSize)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("search leads: %w", err)
	}
	return out, next, nil
}

// afterCursor is the condition of a page after c, in captureKey's order.
// A cursor on a lead not captured yet is -infinity itself: any time
// would be above every such lead, and the next page would repeat them.
func afterCursor(c *app.Cursor, arg func(any) int) string {
	var at any
	if !c.CapturedAt.IsZero() {
		at = c.CapturedAt
	}
	return fmt.Sprintf("(%s, l.lead_id) < (coalesce($%d::timestamptz, '-infinity'::timestamptz), $%d)", captureKey, arg(at), arg(c.LeadID))
}

// captureKey orders lead lists: newest capture first; leads not captured
// yet (events before the capture were projected first) sort last.
const captureKey = "coalesce(l.captured_at, '-infinity'::timestamptz)"

// page reads a list's rows (a fold and its stored capture time, size+1 of
// them at most) into a page and the token of the next one. The cursor
// takes the capture time as stored: the fold's has nanoseconds, which
// PostgreSQL rounds, so a cursor from it could fall below the next lead
// captured in the same microsecond.
func page(rows pgx.Rows, size int) ([]*projectorv1.Lead, string, error) {
	var captured []*time.Time
	folds, err := scanFolds(rows, func() any { captured = append(captured, nil); return &captured[len(captured)-1] })
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(folds) > size {
		folds = folds[:size]
		var at time.Time // zero: not captured yet (afterCursor)
		if c := captured[size-1]; c != nil {
			at = *c
		}
		next = app.Cursor{CapturedAt: at, LeadID: folds[len(folds)-1].ID}.Token()
	}
	out := make([]*projectorv1.Lead, len(folds))
	for i, l := range folds {
		out[i] = leadProto(l)
	}
	return out, next, nil
}

var terminal = []int32{int32(eventv1.LeadStatus_LEAD_STATUS_WON), int32(eventv1.LeadStatus_LEAD_STATUS_DISQUALIFIED),
	int32(eventv1.LeadStatus_LEAD_STATUS_MERGED), int32(eventv1.LeadStatus_LEAD_STATUS_ERASED)}

func scanFolds(rows pgx.Rows, more ...func() any) ([]*lead.Lead, error) {
	defer rows.Close()
	var out []*lead.Lead
	for rows.Next() {
		var state []byte
		dest := []any{&state}
		for _, m := range more {
			dest = append(dest, m())
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		l := &lead.Lead{}
		if err := json.Unmarshal(state, l); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

func leadProto(l *lead.Lead) *projectorv1.Lead {
	out := &projectorv1.Lead{LeadId: l.ID, Status: l.Status, Deadline: pbz(l.Deadline), Score: int32(l.Score),
		CapturedAt: pbz(l.CapturedAt), Source: l.Source, FirstCampaignId: l.FirstCampaign, LastCampaignId: l.LastCampaign,
		Segment: l.Segment, AccountId: l.AccountID, RepId: l.RepID, Country: l.Country, Industry: l.Industry,
		EmailDomain: l.EmailDomain, Seniority: l.Seniority, Employees: int32(l.Employees), Cycle: int32(l.Cycle),
		Version: l.Version, UpdatedAt: pbz(l.UpdatedAt), MergedInto: l.MergedInto, MqlAt: pbz(l.MQLAt),
		AcceptedAt: pbz(l.AcceptedAt), OpportunityAt: pbz(l.OpportunityAt), WonAt: pbz(l.WonAt), LostAt: pbz(l.LostAt),
		RecycledAt: pbz(l.RecycledAt), DisqualifiedAt: pbz(l.DisqualifiedAt)}
	if l.OwnerKind != eventv1.OwnerKind_OWNER_KIND_UNSPECIFIED || l.OwnerID != "" {
		out.Owner = &eventv1.Owner{Kind: l.OwnerKind, Id: l.OwnerID}
	}
	return out
}

// GetLead implements app.Queries: the lead's fold holds everything.
func (q *Queries) GetLead(ctx context.Context, id string) (*projectorv1.GetLeadResponse, error) {
	var l *lead.Lead
	err := q.db.Read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT state FROM lead_folds WHERE lead_id = $1`, id)
		if err != nil {
			return err
		}
		folds, err := scanFolds(rows)
		if len(folds) == 1 {
			l = folds[0]
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get lead %s: %w", id, err)
	}
	if l == nil {
		return nil, fmt.Errorf("lead %s: %w", id, app.ErrNotFound)
	}
	out := &projectorv1.GetLeadResponse{Lead: leadProto(l)}
	for _, s := range l.Stages {
		out.Stages = append(out.Stages, &projectorv1.StageVisit{Status: s.Status, EnteredAt: pbz(s.Entered), LeftAt: pbz(s.Left)})
	}
	for _, j := range l.Journeys {
		out.Journeys = append(out.Journeys, &projectorv1.Journey{Cycle: int32(j.Cycle), MqlAt: pbz(j.MQLAt), Segment: j.Segment,
			AssignedAt: pbz(j.AssignedAt), AcceptedAt: pbz(j.AcceptedAt), RejectedAt: pbz(j.RejectedAt), RejectReason: j.RejectReason,
			OpportunityAt: pbz(j.OpportunityAt), WonAt: pbz(j.WonAt), LostAt: pbz(j.LostAt), RecycledAt: pbz(j.RecycledAt)})
	}
	for _, h := range l.Handoffs {
		out.Handoffs = append(out.Handoffs, &projectorv1.Handoff{RepId: h.RepID, Segment: h.Segment, AssignedAt: pbz(h.AssignedAt),
			AcceptBy: pbz(h.AcceptBy), AcceptedAt: pbz(h.AcceptedAt), AcceptedWithinSla: h.AcceptedWithinSLA,
			FirstAttemptAt: pbz(h.FirstAttemptAt), FirstAttemptWithinSla: h.FirstAttemptWithinSLA, Attempts: int32(h.Attempts),
			EndedAt: pbz(h.EndedAt), Cycle: int32(h.Cycle)})
	}
	for _, o := range l.Opportunities {
		p := &projectorv1.Opportunity{OpportunityId: o.ID, Amount: &eventv1.Money{Currency: o.Currency, MinorUnits: o.AmountMinor},
			Stage: o.Stage, RepId: o.RepID, CreatedAt: pbz(o.CreatedAt), WonAt: pbz(o.WonAt), LostAt: pbz(o.LostAt), LossReason: o.LossReason}
		if !o.WonAt.IsZero() {
			p.WonAmount = &eventv1.Money{Currency: o.WonCurrency, MinorUnits: o.WonMinor}
		}
		out.Opportunities = append(out.Opportunities, p)
	}
	for _, t := range l.Touches { // in campaign order
		if t.N == 0 {
			continue // taken back by an unmerge
		}
		out.Touches = append(out.Touches, &projectorv1.Touch{CampaignId: t.Campaign, Touches: int32(t.N)})
	}
	for _, b := range l.BreachList {
		out.Breaches = append(out.Breaches, &projectorv1.Breach{Sla: b.SLA, Owner: &eventv1.Owner{Kind: b.OwnerKind, Id: b.OwnerID},
			DueAt: pbz(b.DueAt), BreachedAt: pbz(b.At)})
	}
	return out, nil
}

// Funnel implements app.Queries: leads captured in the period, counted
// once per stage they ever reached.
func (q *Queries) Funnel(ctx context.Context, f app.FunnelQuery) (*projectorv1.GetFunnelResponse, error) {
	key := "''"
	args := []any{bound(f.Period.From), bound(f.Period.To), f.Segment, f.Source}
	switch f.GroupBy {
	case projectorv1.FunnelGroup_FUNNEL_GROUP_PERIOD:
		key = fmt.Sprintf("to_char(date_trunc('%s', l.captured_at AT TIME ZONE $5), 'YYYY-MM-DD')", truncUnit(f.Unit))
		args = append(args, zoneName(f.Zone))
	case projectorv1.FunnelGroup_FUNNEL_GROUP_SEGMENT:
		key = "l.segment"
	case projectorv1.FunnelGroup_FUNNEL_GROUP_SOURCE:
		key = "l.source"
	}
	sql := fmt.Sprintf(`SELECT %s AS key, count(*), count(l.mql_at), count(l.accepted_at), count(l.opportunity_at),
		count(l.won_at), count(l.recycled_at), count(l.disqualified_at)
		FROM leads l WHERE %s AND l.captured_at IS NOT NULL AND %s
		AND ($3 = '' OR l.segment = $3) AND ($4 = '' OR l.source = $4)
		GROUP BY 1 ORDER BY 1`, key, live, period("l.captured_at", 1, 2))
	out := &projectorv1.GetFunnelResponse{Total: &projectorv1.FunnelRow{}}
	err := q.db.Read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r := &projectorv1.FunnelRow{}
			if err := rows.Scan(&r.Key, &r.Captured, &r.Mql, &r.Accepted, &r.Opportunity, &r.Won, &r.Recycled, &r.Disqualified); err != nil {
				return err
			}
			t := out.Total
			t.Captured += r.Captured
			t.Mql += r.Mql
			t.Accepted += r.Accepted
			t.Opportunity += r.Opportunity
			t.Won += r.Won
			t.Recycled += r.Recycled
			t.Disqualified += r.Disqualified
			if f.GroupBy != projectorv1.FunnelGroup_FUNNEL_GROUP_NONE {
				out.Rows = append(out.Rows, funnelRates(r))
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("funnel: %w", err)
	}
	funnelRates(out.Total)
	return out, nil
}

// zoneOf is a query's calendar: its zone, UTC when none was set.
func zoneOf(loc *time.Location) *time.Location {
	if loc == nil {
		return time.UTC
	}
	return loc
}

// zoneName is the zone for PostgreSQL's AT TIME ZONE.
func zoneName(loc *time.Location) string { return zoneOf(loc).String() }

func truncUnit(u projectorv1.PeriodUnit) string {
	switch u {
	case projectorv1.PeriodUnit_PERIOD_UNIT_DAY:
		return "day"
	case projectorv1.PeriodUnit_PERIOD_UNIT_WEEK:
		return "week"
	case projectorv1.PeriodUnit_PERIOD_UNIT_QUARTER:
		return "quarter"
	}
	return "month"
}

func funnelRates(r *projectorv1.FunnelRow) *projectorv1.FunnelRow {
	r.MqlRate = ratio(r.Mql, r.Captured)
	r.AcceptRate = ratio(r.Accepted, r.Mql)
	r.OpportunityRate = ratio(r.Opportunity, r.Accepted)
	r.WinRate = ratio(r.Won, r.Opportunity)
	return r
}

func ratio[T int64 | float64](a, b T) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Currencies implements app.Queries.
func (q *Queries) Currencies(ctx context.Context, c app.CurrencyScope) ([]string, error) {
	var out []string
	err := q.db.Read(ctx, func(tx pgx.Tx) error {
		// As each report selects its money (Campaigns, Performance,
		// Accounts).
		deals := `(($2 AND ` + period("o.created_at", 3, 4) + ` AND ($5 = '' OR o.segment = $5))
			OR (NOT $2 AND ` + live + ` AND l.captured_at IS NOT NULL AND ` + period("l.captured_at", 3, 4) + `))`
		rows, err := tx.Query(ctx, `SELECT currency FROM campaign_costs WHERE $1 AND `+period("coalesce(period_start, recorded_at)", 3, 4)+`
			UNION SELECT o.currency FROM opportunities o JOIN leads l USING (lead_id) WHERE o.currency <> '' AND `+deals+`
			UNION SELECT o.won_currency FROM opportunities o JOIN leads l USING (lead_id) WHERE o.won_currency <> '' AND `+deals+` ORDER BY 1`,
			c.Costs, c.Created, bound(c.Period.From), bound(c.Period.To), c.Segment)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("currencies: %w", err)
	}
	return out, nil
}

// money is, per lead, its opportunities in one currency ($1): pipeline
// (every opportunity), open pipeline and how many are open, won deals and
// revenue. Deals are counted in the currency their amounts are summed
// in, so a cost per won deal divides like by like.
const money = `SELECT lead_id,
	coalesce(sum(amount_minor) FILTER (WHERE currency = $1), 0) AS pipeline,
	coalesce(sum(amount_minor) FILTER (WHERE currency = $1 AND won_at IS NULL AND lost_at IS NULL), 0) AS open_pipeline,
	count(*) FILTER (WHERE currency = $1 AND won_at IS NULL AND lost_at IS NULL) AS open_opps,
	count(*) FILTER (WHERE won_at IS NOT NULL AND won_currency = $1) AS won_deals,
	coalesce(sum(won_minor) FILTER (WHERE won_at IS NOT NULL AND won_currency = $1), 0) AS won
	FROM opportunities GROUP BY lead_id`

// attributedSQL is the campaign report's query for one attribution
// model: per campaign ("" for leads without one), its leads, MQLs,
// accepted leads, opportunities, pipeline, won deals and revenue
// (currency $1), of the leads captured in [$2, $3).
//
// First and last touch give each lead to one campaign: one pass over the
// leads. Linear gives a lead's campaigns touches/touch_count of it; the
// figures are summed in integers per campaign and touch count, and
// divided once per group (numeric), so that the sums are exact and do
// not depend on row order, and the leads are read once.
func attributedSQL(model string) string {
	where := live + ` AND l.captured_at IS NOT NULL AND ` + period("l.captured_at", 2, 3)
	if model != "linear" {
		col := "l.first_campaign"
		if model == "last" {
			col = "l.last_campaign"
		}
		return `WITH money AS (` + money + `)
		SELECT ` + col + `, count(*)::float8, count(*) FILTER (WHERE l.mql_at IS NOT NULL)::float8,
			count(*) FILTER (WHERE l.accepted_at IS NOT NULL)::float8, count(*) FILTER (WHERE l.opportunity_at IS NOT NULL)::float8,
			coalesce(sum(m.pipeline), 0)::float8, coalesce(sum(m.won_deals), 0)::float8, coalesce(sum(m.won), 0)::float8
		FROM leads l LEFT JOIN money m ON m.lead_id = l.lead_id WHERE ` + where + ` GROUP BY 1`
	}
	share := func(col string) string { return `coalesce(sum(` + col + `::numeric / n), 0)::float8` }
	return `WITH money AS (` + money + `), g AS (
		SELECT t.campaign_id, l.touch_count AS n, sum(t.touches) AS leads,
			sum(t.touches) FILTER (WHERE l.mql_at IS NOT NULL) AS mqls,
			sum(t.touches) FILTER (WHERE l.accepted_at IS NOT NULL) AS accepted,
			sum(t.touches) FILTER (WHERE l.opportunity_at IS NOT NULL) AS opps,
			sum(t.touches * m.pipeline) AS pipeline, sum(t.touches * m.won_deals) AS won_deals, sum(t.touches * m.won) AS won
		FROM leads l JOIN lead_touches t ON t.lead_id = l.lead_id AND t.touches > 0 LEFT JOIN money m ON m.lead_id = l.lead_id
		WHERE ` + where + ` GROUP BY 1, 2
		UNION ALL
		SELECT '', 1, count(*), count(*) FILTER (WHERE l.mql_at IS NOT NULL), count(*) FILTER (WHERE l.accepted_at IS NOT NULL),
			count(*) FILTER (WHERE l.opportunity_at IS NOT NULL), sum(m.pipeline), sum(m.won_deals), sum(m.won)
		FROM leads l LEFT JOIN money m ON m.lead_id = l.lead_id WHERE l.touch_count = 0 AND ` + where + `)
	SELECT campaign_id, ` + share("leads") + `, ` + share("mqls") + `, ` + share("accepted") + `, ` + share("opps") + `,
		` + share("pipeline") + `, ` + share("won_deals") + `, ` + share("won") + `
	FROM g GROUP BY 1 HAVING sum(leads) > 0`
}

// otherCurrenciesSQL lists, per campaign ("" for leads without one) under
// one attribution model, the currencies other than $1 of its costs
// recorded for [$2, $3) ('cost'), and of the opportunities ('pipeline')
// and won deals ('won') of its attributed leads captured then.
func otherCurrenciesSQL(model string) string {
	where := live + ` AND l.captured_at IS NOT NULL AND ` + period("l.captured_at", 2, 3)
	with := `WITH m AS (SELECT lead_id, currency AS cur, 'pipeline' AS kind FROM opportunities WHERE currency NOT IN ('', $1)
		UNION SELECT lead_id, won_currency, 'won' FROM opportunities WHERE won_at IS NOT NULL AND won_currency NOT IN ('', $1))
		SELECT DISTINCT campaign_id, currency, 'cost' FROM campaign_costs WHERE currency <> $1 AND ` +
		period("coalesce(period_start, recorded_at)", 2, 3)
	if model != "linear" {
		col := "l.first_campaign"
		if model == "last" {
			col = "l.last_campaign"
		}
		return with + ` UNION SELECT ` + col + `, m.cur, m.kind FROM leads l JOIN m ON m.lead_id = l.lead_id WHERE ` + where
	}
	return with + ` UNION SELECT t.campaign_id, m.cur, m.kind FROM leads l JOIN lead_touches t ON t.lead_id = l.lead_id AND t.touches > 0
		JOIN m ON m.lead_id = l.lead_id WHERE ` + where + `
		UNION SELECT '', m.cur, m.kind FROM leads l JOIN m ON m.lead_id = l.lead_id WHERE l.touch_count = 0 AND ` + where
}

// Campaigns implements app.Queries.
func (q *Queries) Campaigns(ctx context.Context, c app.CampaignQuery) (*projectorv1.GetCampaignReportResponse, error) {
	model := map[projectorv1.AttributionModel]string{
		projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH: "first",
		projectorv1.AttributionModel_ATTRIBUTION_MODEL_LAST_TOUCH:  "last",
		projectorv1.AttributionModel_ATTRIBUTION_MODEL_LINEAR:      "linear",
	}[c.Attribution]
	attributed := attributedSQL(model)
	// A cost line without a period counts when it was recorded: left out
	// of every dated report, its spend would vanish from ROI.
	spend := `SELECT campaign_id, sum(amount_minor)::float8 FROM campaign_costs WHERE currency = $1 AND ` +
		period("coalesce(period_start, recorded_at)", 2, 3) + ` GROUP BY campaign_id`

	out := &projectorv1.GetCampaignReportResponse{Attribution: c.Attribution, Currency: c.Currency}
	rows := map[string]*campaignFigures{}
	get := func(id string) *campaignFigures {
		r := rows[id]
		if r == nil {
			r = &campaignFigures{id: id}
			rows[id] = r
		}
		return r
	}
	err := q.db.Read(ctx, func(tx pgx.Tx) error {
		from, to := bound(c.Period.From), bound(c.Period.To)
		rs, err := tx.Query(ctx, attributed, c.Currency, from, to)
		if err != nil {
			return err
		}
		for rs.Next() {
			var id string
			var f campaignFigures
			if err := rs.Scan(&id, &f.leads, &f.mqls, &f.accepted, &f.opps, &f.pipeline, &f.wonDeals, &f.won); err != nil {
				rs.Close()
				return err
			}
			r := get(id)
			f.id, f.name, f.channel, f.spend = id, r.name, r.channel, r.spend
			*r = f
		}
		if err := rs.Err(); err != nil {
			return err
		}
		rs, err = tx.Query(ctx, spend, c.Currency, from, to)
		if err != nil {
			return err
		}
		for rs.Next() {
			var id string
			var s float64
			if err := rs.Scan(&id, &s); err != nil {
				rs.Close()
				return err
			}
			get(id).spend = s
		}
		if err := rs.Err(); err != nil {
			return err
		}
		rs, err = tx.Query(ctx, otherCurrenciesSQL(model), c.Currency, from, to)
		if err != nil {
			return err
		}
		for rs.Next() {
			var id, cur, kind string
			if err := rs.Scan(&id, &cur, &kind); err != nil {
				rs.Close()
				return err
			}
			r := get(id)
			r.other = append(r.other, cur)
			r.otherCosts = r.otherCosts || kind == "cost"
			r.otherWon = r.otherWon || kind == "won"
		}
		if err := rs.Err(); err != nil {
			return err
		}
		rs, err = tx.Query(ctx, `SELECT campaign_id, name, channel FROM campaigns`)
		if err != nil {
			return err
		}
		for rs.Next() {
			var id, name string
			var ch int32
			if err := rs.Scan(&id, &name, &ch); err != nil {
				rs.Close()
				return err
			}
			r := get(id)
			r.name, r.channel = name, eventv1.Channel(ch)
		}
		return rs.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("campaign report: %w", err)
	}
	list := make([]*campaignFigures, 0, len(rows))
	for id, r := range rows {
		if id == "" {
			out.Unattributed = r.proto(c.Attribution)
			continue
		}
		list = append(list, r)
	}
	// By revenue, not by lead count: the campaigns that look good by
	// volume are not the ones to fund unless they also close.
	slices.SortFunc(list, func(a, b *campaignFigures) int {
		return cmp.Or(cmp.Compare(b.won, a.won), cmp.Compare(b.pipeline, a.pipeline), cmp.Compare(a.id, b.id))
	})
	for _, r := range list {
		out.Campaigns = append(out.Campaigns, r.proto(c.Attribution))
	}
	if out.Unattributed == nil {
		out.Unattributed = (&campaignFigures{}).proto(c.Attribution)
	}
	return out, nil
}

type campaignFigures struct {
	id, name                                          string
	channel                                           eventv1.Channel
	spend, leads, mqls, accepted, opps, pipeline, won float64
	wonDeals                                          float64
	// other are the currencies of its costs, opportunities and won deals
	// besides the report's; otherCosts, otherWon: costs, won deals among
	// them.
	other                []string
	otherCosts, otherWon bool
}

func (f *campaignFigures) proto(m projectorv1.AttributionModel) *projectorv1.CampaignRow {
	fig := func(v float64) *projectorv1.Figure { return &projectorv1.Figure{Value: v, Attribution: m} }
	per := func(a, b float64) *projectorv1.Figure {
		if b == 0 {
			return &projectorv1.Figure{Attribution: m, Undefined: true}
		}
		return fig(a / b)
	}
	slices.Sort(f.other)
	f.other = slices.Compact(f.other)
	r := &projectorv1.CampaignRow{CampaignId: f.id, Name: f.name, Channel: f.channel, Attribution: m,
		Spend: fig(f.spend), Leads: fig(f.leads), Mqls: fig(f.mqls), Accepted: fig(f.accepted), Opportunities: fig(f.opps),
		Pipeline: fig(f.pipeline), WonDeals: fig(f.wonDeals), WonRevenue: fig(f.won),
		CostPerLead: per(f.spend, f.leads), CostPerAccepted: per(f.spend, f.accepted), CostPerWonDeal: per(f.spend, f.wonDeals),
		Roi: per(f.won-f.spend, f.spend), OtherCurrencies: f.other}
	// Like by like only: what another currency holds is not in these.
	mixed := func(figs ...*projectorv1.Figure) {
		for _, x := range figs {
			x.Undefined = true
			if x != r.Spend {
				x.Value = 0
			}
		}
	}
	switch {
	case f.otherCosts:
		mixed(r.Spend, r.CostPerLead, r.CostPerAccepted, r.CostPerWonDeal, r.Roi)
	case f.otherWon:
		mixed(r.CostPerWonDeal, r.Roi)
	}
	return r
}

// SLA implements app.Queries.
func (q *Queries) SLA(ctx context.Context, s app.SLAQuery) (*projectorv1.GetSLAComplianceResponse, error) {
	sales := `SELECT GROUPING(h.rep_id), GROUPING(coalesce(r.team_id, '')), coalesce(h.rep_id, ''), coalesce(r.team_id, ''),
		count(*), count(h.accepted_at), count(*) FILTER (WHERE h.accepted_at IS NOT NULL AND h.accepted_within_sla),
		coalesce(avg(extract(epoch FROM h.accepted_at - h.assigned_at)), 0)::float8 / 3600,
		coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM h.accepted_at - h.assigned_at)), 0)::float8 / 3600,
		count(*) FILTER (WHERE h.accepted_at IS NOT NULL AND h.first_attempt_at IS NOT NULL),
		count(*) FILTER (WHERE h.accepted_at IS NOT NULL AND h.first_attempt_at IS NOT NULL AND h.first_attempt_within_sla),
		coalesce(avg(extract(epoch FROM h.first_attempt_at - h.accepted_at)) FILTER (WHERE h.accepted_at IS NOT NULL), 0)::float8 / 3600,
		coalesce(sum(h.attempts) FILTER (WHERE h.accepted_at IS NOT NULL), 0),
		count(*) FILTER (WHERE ` + acceptDue(4) + `), count(*) FILTER (WHERE ` + contactDue(4) + `)
		FROM handoffs h JOIN leads l ON l.lead_id = h.lead_id LEFT JOIN reps r ON r.rep_id = h.rep_id
		WHERE ` + workDone + ` AND ` + period("h.assigned_at", 1, 2) + ` AND ($3 = '' OR h.segment = $3)
		GROUP BY GROUPING SETS ((h.rep_id, coalesce(r.team_id, '')), (coalesce(r.team_id, '')), ())`
	breaches := `SELECT b.owner_kind, b.owner_id, coalesce(r.team_id, ''), b.sla, count(*)
		FROM breaches b LEFT JOIN reps r ON b.owner_kind = $4 AND r.rep_id = b.owner_id
		WHERE ` + period("b.at", 1, 2) + ` AND ($3 = '' OR b.segment = $3)
		GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 4`
	marketing := `SELECT to_char(date_trunc('month', j.mql_at AT TIME ZONE $5), 'YYYY-MM'), j.segment,
		count(*), count(j.accepted_at), count(j.rejected_at), count(j.opportunity_at), count(*) FILTER (WHERE ` + mqlAcceptDue(4) + `)
		FROM journeys j JOIN leads l ON l.lead_id = j.lead_id
		WHERE ` + mqlWorked + ` AND ` + period("j.mql_at", 1, 2) + ` AND ($3 = '' OR j.segment = $3)
		GROUP BY 1, 2 ORDER BY 1, 2`
	targetsSQL := `SELECT period, segment, min_mqls, min_acceptance_rate_bps, min_mql_to_opportunity_bps
		FROM marketing_targets ORDER BY period, segment`

	out := &projectorv1.GetSLAComplianceResponse{}
	reps := map[string]*projectorv1.SalesSLARow{}
	teams := map[string]*projectorv1.SalesSLARow{}
	var counts []mqlCount
	var targets []*eventv1.MarketingTarget
	err := q.db.Read(ctx, func(tx pgx.Tx) error {
		from, to := bound(s.Period.From), bound(s.Period.To)
		rs, err := tx.Query(ctx, sales, from, to, s.Segment, s.Now)
		if err != nil {
			return err
		}
		for rs.Next() {
			var gRep, gTeam int32
			var attempts int64
			var team *string // NULL where the grouping rolled teams up
			r := &projectorv1.SalesSLARow{}
			if err := rs.Scan(&gRep, &gTeam, &r.Key, &team, &r.Assigned, &r.Accepted, &r.AcceptedWithinSla,
				&r.AvgHoursToAccept, &r.MedianHoursToAccept, &r.Contacted, &r.FirstAttemptWithinSla,
				&r.AvgHoursToFirstAttempt, &attempts, &r.AcceptDue, &r.ContactDue); err != nil {
				rs.Close()
				return err
			}
			if team != nil {
				r.TeamId = *team
			}
			r.AcceptedWithinSlaRate = ratio(r.AcceptedWithinSla, r.AcceptDue)
			r.FirstAttemptWithinSlaRate = ratio(r.FirstAttemptWithinSla, r.ContactDue)
			r.AttemptsPerLead = ratio(attempts, r.Accepted)
			switch {
			case gRep == 0:
				reps[r.Key] = r
			case gTeam == 0:
				r.Key = r.TeamId
				teams[r.Key] = r
			default:
				r.Key, r.TeamId = "", ""
				out.SalesTotal = r
			}
		}
		if err := rs.Err(); err != nil {
			return err
		}
		rs, err = tx.Query(ctx, breaches, from, to, s.Segment, int32(eventv1.OwnerKind_OWNER_KIND_REP))
		if err != nil {
			return err
		}
		owners := map[string]*projectorv1.OwnerBreaches{}
		for rs.Next() {
			var kind, sla int32
			var id, team string
			var n int64
			if err := rs.Scan(&kind, &id, &team, &sla, &n); err != nil {
				rs.Close()
				return err
			}
			ok := fmt.Sprintf("%d/%s", kind, id)
			if owners[ok] == nil {
				owners[ok] = &projectorv1.OwnerBreaches{Owner: &eventv1.Owner{Kind: eventv1.OwnerKind(kind), Id: id}}
				out.BreachesByOwner = append(out.BreachesByOwner, owners[ok])
			}
			owners[ok].Count += n
			if eventv1.OwnerKind(kind) != eventv1.OwnerKind_OWNER_KIND_REP {
				continue
			}
			// A rep with breaches but no hand-off in the period still shows.
			rep := reps[id]
			if rep == nil {
				rep = &projectorv1.SalesSLARow{Key: id, TeamId: team}
				reps[id] = rep
			}
			tm := teams[team]
			if tm == nil {
				tm = &projectorv1.SalesSLARow{Key: team, TeamId: team}
				teams[team] = tm
			}
			if out.SalesTotal == nil {
				out.SalesTotal = &projectorv1.SalesSLARow{}
			}
			for _, r := range []*projectorv1.SalesSLARow{rep, tm, out.SalesTotal} {
				r.Breaches += n
				addSLA(r, eventv1.SLAKind(sla), n)
			}
		}
		if err := rs.Err(); err != nil {
			return err
		}
		rs, err = tx.Query(ctx, targetsSQL)
		if err != nil {
			return err
		}
		for rs.Next() {
			t := &eventv1.MarketingTarget{}
			var acc, opp int32
			if err := rs.Scan(&t.Period, &t.Segment, &t.MinMqls, &acc, &opp); err != nil {
				rs.Close()
				return err
			}
			t.MinAcceptanceRateBps, t.MinMqlToOpportunityBps = uint32(acc), uint32(opp)
			targets = append(targets, t)
		}
		if err := rs.Err(); err != nil {
			return err
		}
		targets = shownTargets(targets, s.Period, s.Segment, s.Now, zoneOf(s.Zone))
		span := marketingSpan(s.Period, targets, zoneOf(s.Zone))
		rs, err = tx.Query(ctx, marketing, bound(span.From), bound(span.To), s.Segment, s.Now, zoneName(s.Zone))
		if err != nil {
			return err
		}
		for rs.Next() {
			var c mqlCount
			if err := rs.Scan(&c.month, &c.segment, &c.mqls, &c.accepted, &c.rejected, &c.opps, &c.acceptDue); err != nil {
				rs.Close()
				return err
			}
			counts = append(counts, c)
		}
		return rs.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sla compliance: %w", err)
	}
	if out.SalesTotal == nil {
		out.SalesTotal = &projectorv1.SalesSLARow{}
	}
	out.Reps = sortedRows(reps)
	out.Teams = sortedRows(teams)
	out.Marketing = marketingRows(counts, targets, s.Segment, s.Period, zoneOf(s.Zone))
	return out, nil
}

func addSLA(r *projectorv1.SalesSLARow, k eventv1.SLAKind, n int64) {
	for _, c := range r.BreachesBySla {
		if c.Sla == k {
			c.Count += n
			return
		}
	}
	r.BreachesBySla = append(r.BreachesBySla, &projectorv1.SLACount{Sla: k, Count: n})
	slices.SortFunc(r.BreachesBySla, func(a, b *projectorv1.SLACount) int { return cmp.Compare(a.Sla, b.Sla) })
}

func sortedRows(m map[string]*projectorv1.SalesSLARow) []*projectorv1.SalesSLARow {
	out := make([]*projectorv1.SalesSLARow, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *projectorv1.SalesSLARow) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

type mqlCount struct {
	month, segment                 string
	mqls, accepted, rejected, opps int64
	acceptDue                      int64
}

// acceptDue is a hand-off h that can be judged on acceptance at $now: it
// was accepted, or the rep still held it, not accepted, when its
// accept_by passed. Without it a hand-off left to breach and escalated
// would never count, and the worst reps would show the best rates.
// LeadsBehind lists the accept_due figure with it.
func acceptDue(now int) string {
	return fmt.Sprintf(`(h.accepted_at IS NOT NULL OR (h.accept_by < $%[1]d AND (h.ended_at IS NULL OR h.ended_at >= h.accept_by)))`, now)
}

// mqlAcceptDue is an MQL journey j that can be judged on acceptance at
// $now, as acceptDue judges a hand-off: sales accepted or rejected it, or
// a rep held it, unaccepted, when a hand-off's accept_by passed.
func mqlAcceptDue(now int) string {
	return fmt.Sprintf(`(j.accepted_at IS NOT NULL OR j.rejected_at IS NOT NULL OR EXISTS (SELECT 1 FROM handoffs h
		WHERE h.lead_id = j.lead_id AND h.cycle = j.cycle AND h.accepted_at IS NULL AND h.accept_by < $%[1]d AND (h.ended_at IS NULL OR h.ended_at >= h.accept_by)))`, now)
}

// contactDue is an accepted hand-off h that can be judged on its first
// attempt at $now: one was made, or the rep still held it, without one,
// when its contact_by passed.
func contactDue(now int) string {
	return fmt.Sprintf(`(h.accepted_at IS NOT NULL AND (h.first_attempt_at IS NOT NULL OR
		(h.contact_by < $%[1]d AND (h.ended_at IS NULL OR h.ended_at >= h.contact_by))))`, now)
}

// overlaps reports whether the whole period a shares time with p, whose
// zero sides are open.
func overlaps(a, p app.Period) bool {
	return (p.To.IsZero() || a.From.Before(p.To)) && (p.From.IsZero() || a.To.After(p.From))
}

// shownTargets are the targets whose rows a marketing report over p (and
// segment, "" for all) shows: of the segment, for a period p overlaps
// that has begun by now. A target of a period still to come has nothing
// to be judged on yet.
func shownTargets(targets []*eventv1.MarketingTarget, p app.Period, segment string, now time.Time, loc *time.Location) []*eventv1.MarketingTarget {
	var out []*eventv1.MarketingTarget
	for _, t := range targets {
		tp, ok := app.RowPeriod(t.GetPeriod(), loc)
		if !ok || (segment != "" && t.GetSegment() != segment) || !overlaps(tp, p) || tp.From.After(now) {
			continue
		}
		out = append(out, t)
	}
	return out
}

// marketingSpan is the MQL times the marketing rows over p count: the
// whole months p overlaps and the whole periods of the targets shown.
// Each row is judged against a target for its whole period, so a row
// cut to p (March of a Q1 target) would miss a target it met.
func marketingSpan(p app.Period, targets []*eventv1.MarketingTarget, loc *time.Location) app.Period {
	month := func(t time.Time) time.Time {
		t = t.In(loc)
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
	}
	span := p
	if !p.From.IsZero() {
		span.From = month(p.From)
	}
	if !p.To.IsZero() {
		if span.To = month(p.To); span.To.Before(p.To) {
			span.To = span.To.AddDate(0, 1, 0)
		}
	}
	for _, t := range targets {
		tp, _ := app.RowPeriod(t.GetPeriod(), loc)
		if !span.From.IsZero() && tp.From.Before(span.From) {
			span.From = tp.From
		}
		if !span.To.IsZero() && tp.To.After(span.To) {
			span.To = tp.To
		}
	}
	return span
}

// marketingRows turns MQL counts per month and segment into marketing's
// SLA rows: every month p overlaps, per segment and for all segments,
// plus a row for each target shown (its month, quarter or year), also
// with no MQLs; each row with the target set for exactly its period and
// segment. Counts add up, so coarser periods are sums of months.
func marketingRows(counts []mqlCount, targets []*eventv1.MarketingTarget, segment string, p app.Period, loc *time.Location) []*projectorv1.MarketingSLARow {
	type key struct{ period, segment string }
	sums := map[key]*projectorv1.MarketingSLARow{}
	row := func(k key) *projectorv1.MarketingSLARow {
		r := sums[k]
		if r == nil {
			r = &projectorv1.MarketingSLARow{Period: k.period, Segment: k.segment}
			sums[k] = r
		}
		return r
	}
	byKey := map[key]*eventv1.MarketingTarget{}
	for _, t := range targets {
		byKey[key{t.GetPeriod(), t.GetSegment()}] = t
		row(key{t.GetPeriod(), t.GetSegment()})
	}
	for _, c := range counts {
		year := c.month[:4]
		quarter := fmt.Sprintf("%s-Q%d", year, (int(c.month[5]-'0')*10+int(c.month[6]-'0')-1)/3+1)
		mp, _ := app.RowPeriod(c.month, loc)
		for _, per := range []string{c.month, quarter, year} {
			for _, s := range slices.Compact([]string{c.segment, ""}) { // a lead with no segment is counted once
				k := key{per, s}
				if byKey[k] == nil && (per != c.month || !overlaps(mp, p)) {
					continue // a month outside p, counted only for a target's row
				}
				r := row(k)
				r.Mqls += c.mqls
				r.Accepted += c.accepted
				r.Rejected += c.rejected
				r.Opportunities += c.opps
				r.AcceptDue += c.acceptDue
			}
		}
	}
	out := make([]*projectorv1.MarketingSLARow, 0, len(sums))
	for k, r := range sums {
		if k.segment == "" && segment != "" {
			continue // a segment filter: "all segments" would be that segment again
		}
		r.AcceptanceRate = ratio(r.Accepted, r.AcceptDue)
		r.MqlToOpportunityRate = ratio(r.Opportunities, r.Mqls)
		if t := byKey[k]; t != nil {
			// A rate of nothing meets no minimum above 0.
			rate := func(n, of int64, bps uint32) bool { return n*10000 >= int64(bps)*of && (of > 0 || bps == 0) }
			r.Target = t
			r.MqlsMet = r.Mqls >= int64(t.GetMinMqls())
			// MQLs none of which is due yet hold nothing against marketing.
			r.AcceptanceMet = rate(r.Accepted, r.AcceptDue, t.GetMinAcceptanceRateBps()) || (r.AcceptDue == 0 && r.Mqls > 0)
			r.OpportunityMet = rate(r.Opportunities, r.Mqls, t.GetMinMqlToOpportunityBps())
		}
		out = append(out, r)
	}
	// In time: each month, then a quarter or year that ends with it, the
	// shorter period first.
	slices.SortFunc(out, func(a, b *projectorv1.MarketingSLARow) int {
		pa, _ := app.RowPeriod(a.Period, loc)
		pb, _ := app.RowPeriod(b.Period, loc)
		return cmp.Or(pa.To.Compare(pb.To), pb.From.Compare(pa.From), cmp.Compare(a.Segment, b.Segment))
	})
	return out
}

// Performance implements app.Queries.
func (q *Queries) Performance(ctx context.Context, p app.PerformanceQuery) (*projectorv1.GetPerformanceResponse, error) {
	deals := `SELECT count(*), count(o.won_at), count(o.lost_at),
		coalesce(avg(o.won_minor) FILTER (WHERE o.won_at IS NOT NULL AND o.won_currency = $4), 0)::float8,
		coalesce(avg(extract(epoch FROM o.won_at - o.created_at)) FILTER (WHERE o.won_at IS NOT NULL), 0)::float8 / 86400
		FROM opportunities o
		WHERE ` + period("o.created_at", 1, 2) + ` AND ($3 = '' OR o.segment = $3) AND o.currency = $4`
	conversion := `SELECT count(*), count(l.mql_at),
		count(*) FILTER (WHERE l.mql_at IS NOT NULL AND l.accepted_at IS NOT NULL), count(l.accepted_at),
		count(*) FILTER (WHERE l.accepted_at IS NOT NULL AND l.opportunity_at IS NOT NULL), count(l.opportunity_at),
		count(*) FILTER (WHERE l.opportunity_at IS NOT NULL AND l.won_at IS NOT NULL)
		FROM leads l WHERE ` + live + ` AND l.captured_at IS NOT NULL AND ` + period("l.captured_at", 1, 2) + ` AND ($3 = '' OR l.segment = $3)`
	stages := `SELECT s.status, count(*),
		avg(extract(epoch FROM s.left_at - s.entered_at))::float8 / 3600,
		percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.left_at - s.entered_at))::float8 / 3600
		FROM stage_visits s JOIN leads l ON l.lead_id = s.lead_id
		WHERE ` + live + ` AND s.left_at IS NOT NULL AND ` + period("s.entered_at", 1, 2) + ` AND ($3 = '' OR l.segment = $3)
			AND s.status <> ` + strconv.Itoa(int(eventv1.LeadStatus_LEAD_STATUS_MERGED)) + ` -- a merge undone is no stage
		GROUP BY s.status ORDER BY s.status`
	out := &projectorv1.GetPerformanceResponse{Currency: p.Currency}
	err := q.db.Read(ctx, func(tx pgx.Tx) error {
		from, to := bound(p.Period.From), bound(p.Period.To)
		if err := tx.QueryRow(ctx, deals, from, to, p.Segment, p.Currency).Scan(&out.Opportunities, &out.Won, &out.Lost,
			&out.AvgWonDeal, &out.AvgSalesCycleDays); err != nil {
			return err
		}
		var captured, mql, mqlAcc, acc, accOpp, opp, oppWon int64
		if err := tx.QueryRow(ctx, conversion, from, to, p.Segment).Scan(&captured, &mql, &mqlAcc, &acc, &accOpp, &opp, &oppWon); err != nil {
			return err
		}
		st := func(s string) eventv1.LeadStatus {
			return eventv1.LeadStatus(eventv1.LeadStatus_value["LEAD_STATUS_"+s])
		}
		for _, c := range []struct {
			from, to         string
			reached, reachTo int64
		}{{"NEW", "MQL", captured, mql}, {"MQL", "ACCEPTED", mql, mqlAcc}, {"ACCEPTED", "OPPORTUNITY", acc, accOpp}, {"OPPORTUNITY", "WON", opp, oppWon}} {
			out.Conversions = append(out.Conversions, &projectorv1.StageConversion{From: st(c.from), To: st(c.to),
				Reached: c.reached, Converted: c.reachTo, Rate: ratio(c.reachTo, c.reached)})
		}
		rs, err := tx.Query(ctx, stages, from, to, p.Segment)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			t := &projectorv1.StageTime{}
			var s int32
			if err := rs.Scan(&s, &t.Stays, &t.AvgHours, &t.MedianHours); err != nil {
				return err
			}
			t.Status = eventv1.LeadStatus(s)
			out.TimeInStage = append(out.TimeInStage, t)
		}
		return rs.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("performance: %w", err)
	}
	out.WinRate = ratio(out.Won, out.Won+out.Lost)
	// A cycle under a day counts as one: a deal won minutes after it was
	// made would read as revenue a day without bound.
	out.Velocity = float64(out.Opportunities) * out.AvgWonDeal * out.WinRate / max(out.AvgSalesCycleDays, 1)
	return out, nil
}

// Accounts implements app.Queries. Leads routing matched to an account
// count for it; the others for their email domain, unless a free mail
// provider's, which stands for no company. An erased lead's deal is not
// open: nobody can close it any more.
func (q *Queries) Accounts(ctx context.Context, a app.AccountQuery) (*projectorv1.GetAccountsResponse, error) {
	open := fmt.Sprintf(" FILTER (WHERE l.status <> %d)", eventv1.LeadStatus_LEAD_STATUS_ERASED)
	sql := `WITH money AS (` + money + `)
		SELECT CASE WHEN l.account_id <> '' THEN l.account_id ELSE l.email_domain END AS key, l.account_id <> '' AS matched,
			coalesce(max(a.name), ''), count(*), coalesce(sum(m.open_opps)` + open + `, 0), coalesce(sum(m.open_pipeline)` + open + `, 0),
			coalesce(sum(m.won_deals), 0), coalesce(sum(m.won), 0) AS won
		FROM leads l LEFT JOIN money m ON m.lead_id = l.lead_id LEFT JOIN accounts a ON a.account_id = l.account_id
		WHERE ` + live + ` AND (l.account_id <> '' OR (l.email_domain <> '' AND l.email_domain <> ALL($5))) AND (` + period("l.captured_at", 2, 3) + `)
		GROUP BY 1, 2 ORDER BY won DESC, 6 DESC, 1 LIMIT $4`
	out := &projectorv1.GetAccountsResponse{Currency: a.Currency}
	err := q.db.Read(ctx, func(tx pgx.Tx) error {
		rs, err := tx.Query(ctx, sql, a.Currency, bound(a.Period.From), bound(a.Period.To), a.Limit, maildomain.FreeMail())
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			r := &projectorv1.AccountRow{}
			if err := rs.Scan(&r.AccountId, &r.Matched, &r.Name, &r.Leads, &r.OpenOpportunities, &r.Pipeline, &r.WonDeals, &r.WonRevenue); err != nil {
				return err
			}
			if !r.Matched {
				r.Name = r.AccountId
			}
			out.Accounts = append(out.Accounts, r)
		}
		return rs.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	return out, nil
}

// queued are the leads a queue before a rep holds: MQLs (waiting for
// routing, or in the fallback queue) and assigned leads in a manager's
// queue. LeadsBehind repeats it for FigureQueue; the partial index
// leads_queued (migration 00004) has the same condition.
const queued = `l.owner_kind = %d AND l.status IN (%d, %d)`

func queuedCond() string {
	return fmt.Sprintf(queued, eventv1.OwnerKind_OWNER_KIND_QUEUE, eventv1.LeadStatus_LEAD_STATUS_MQL, eventv1.LeadStatus_LEAD_STATUS_ASSIGNED)
}

// Queues implements app.Queries.
func (q *Queries) Queues(ctx context.Context, s app.QueueQuery) (*projectorv1.GetQueuesResponse, error) {
	sql := `SELECT l.owner_id, min(l.status), count(*), count(*) FILTER (WHERE l.deadline < $1), min(l.deadline)
		FROM leads l WHERE ` + live + ` AND ` + queuedCond() + ` AND ($2 = '' OR l.segment = $2)
		GROUP BY l.owner_id ORDER BY l.owner_id`
	out := &projectorv1.GetQueuesResponse{}
	err := q.db.Read(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sql, s.Now, s.Segment)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r := &projectorv1.QueueBacklog{}
			var status int32
			var first *time.Time
			if err := rows.Scan(&r.QueueId, &status, &r.Leads, &r.Overdue, &first); err != nil {
				return err
			}
			r.Status = eventv1.LeadStatus(status)
			if first != nil {
				r.FirstDeadline = timestamppb.New(*first)
			}
			out.Queues = append(out.Queues, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("queues: %w", err)
	}
	return out, nil
}
