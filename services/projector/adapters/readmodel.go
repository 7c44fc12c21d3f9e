// Package adapters is the projector's outbound side: the read model in
// PostgreSQL (written through pkg/project, queried by the reports) and
// the stream reads of the what-if replay.
package adapters

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/services/projector/lead"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Name is the read model's name: its schemas are leads_1, leads_2, ...
const Name = "leads"

// Rules is the version of the read model's rules (pkg/project's
// Config.Rules): raise it when lead.Apply or the rows it writes change
// meaning, and a projector rebuilds a read model built before by itself.
// 1: a queued lead takes routing's account (2026-12-07), with every fold
// change before it.
const Rules = 1

// Subjects are what the read model reads: every lead event, campaigns,
// and the routing data and marketing targets. Pool round-robin pointers
// (model.routing-pool-*) and the scoring model are left out.
var Subjects = []string{eventstore.LeadSubjects, eventstore.CampaignSubjects,
	eventstore.ModelSubject("routing"), eventstore.ModelSubject("sla-targets")}

// ReadModel is the lead read model as a pkg/project projection.
type ReadModel struct{}

var _ project.Projection = ReadModel{}

// Migrations returns the read model's schema migrations.
func (ReadModel) Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// Apply folds a batch: lead events into each lead's fold (loaded once per
// batch, written once), reference events as they come.
func (ReadModel) Apply(ctx context.Context, tx pgx.Tx, events []project.Event) error {
	var ids []string
	seen := map[string]bool{}
	for _, e := range events {
		if id := eventstore.LeadID(e.Subject); id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	folds, err := loadLeads(ctx, tx, ids)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	for _, e := range events {
		id := eventstore.LeadID(e.Subject)
		if id == "" {
			if err := queueReference(b, e.Event); err != nil {
				return err
			}
			continue
		}
		l := folds[id]
		if l == nil {
			l = lead.New(id)
			folds[id] = l
		}
		l.Apply(e.Seq, e.Event)
	}
	if err := queueLeads(b, ids, folds); err != nil {
		return err
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write read model: %w", err)
	}
	return nil
}

func loadLeads(ctx context.Context, tx pgx.Tx, ids []string) (map[string]*lead.Lead, error) {
	out := make(map[string]*lead.Lead, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, `SELECT lead_id, state FROM lead_folds WHERE lead_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("load leads: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var state []byte
		if err := rows.Scan(&id, &state); err != nil {
			return nil, fmt.Errorf("load leads: %w", err)
		}
		l := &lead.Lead{}
		if err := json.Unmarshal(state, l); err != nil {
			return nil, fmt.Errorf("load lead %s: %w", id, err)
		}
		out[id] = l
	}
	return out, rows.Err()
}

// Row types: one per table, json names = column names, so that a batch
// of rows is one jsonb_populate_recordset upsert. A nil time is NULL.

type leadRow struct {
	LeadID         string     `json:"lead_id"`
	Version        uint64     `json:"version"`
	Status         int32      `json:"status"`
	OwnerKind      int32      `json:"owner_kind"`
	OwnerID        string     `json:"owner_id"`
	Deadline       *time.Time `json:"deadline"`
	Score          int        `json:"score"`
	CapturedAt     *time.Time `json:"captured_at"`
	UpdatedAt      *time.Time `json:"updated_at"`
	Source         string     `json:"source"`
	FirstCampaign  string     `json:"first_campaign"`
	LastCampaign   string     `json:"last_campaign"`
	TouchCount     int        `json:"touch_count"`
	Country        string     `json:"country"`
	Industry       string     `json:"industry"`
	Seniority      int32      `json:"seniority"`
	Employees      int        `json:"employees"`
	EmailDomain    string     `json:"email_domain"`
	Segment        string     `json:"segment"`
	AccountID      string     `json:"account_id"`
	RepID          string     `json:"rep_id"`
	MergedInto     string     `json:"merged_into"`
	Cycle          int        `json:"cycle"`
	MQLAt          *time.Time `json:"mql_at"`
	AssignedAt     *time.Time `json:"assigned_at"`
	AcceptedAt     *time.Time `json:"accepted_at"`
	OpportunityAt  *time.Time `json:"opportunity_at"`
	WonAt          *time.Time `json:"won_at"`
	LostAt         *time.Time `json:"lost_at"`
	RecycledAt     *time.Time `json:"recycled_at"`
	DisqualifiedAt *time.Time `json:"disqualified_at"`
	Attempts       int        `json:"attempts"`
	Breaches       int        `json:"breaches"`
	// State is the fold, stored in lead_folds (see queueLeadRows).
	State []byte `json:"-"`
}

type touchRow struct {
	LeadID     string `json:"lead_id"`
	CampaignID string `json:"campaign_id"`
	Touches    int    `json:"touches"`
}

type stageRow struct {
	LeadID    string     `json:"lead_id"`
	Seq       uint64     `json:"seq"`
	Status    int32      `json:"status"`
	EnteredAt *time.Time `json:"entered_at"`
	LeftAt    *time.Time `json:"left_at"`
}

type journeyRow struct {
	LeadID        string     `json:"lead_id"`
	Cycle         int        `json:"cycle"`
	MQLAt         *time.Time `json:"mql_at"`
	Segment       string     `json:"segment"`
	AssignedAt    *time.Time `json:"assigned_at"`
	AcceptedAt    *time.Time `json:"accepted_at"`
	RejectedAt    *time.Time `json:"rejected_at"`
	RejectReason  int32      `json:"reject_reason"`
	OpportunityAt *time.Time `json:"opportunity_at"`
	WonAt         *time.Time `json:"won_at"`
	LostAt        *time.Time `json:"lost_at"`
	RecycledAt    *time.Time `json:"recycled_at"`
}

type handoffRow struct {
	LeadID                string     `json:"lead_id"`
	Seq                   uint64     `json:"seq"`
	Cycle                 int        `json:"cycle"`
	RepID                 string     `json:"rep_id"`
	Segment               string     `json:"segment"`
	AssignedAt            *time.Time `json:"assigned_at"`
	AcceptBy              *time.Time `json:"accept_by"`
	AcceptedAt            *time.Time `json:"accepted_at"`
	AcceptedWithinSLA     bool       `json:"accepted_within_sla"`
	ContactBy             *time.Time `json:"contact_by"`
	FirstAttemptAt        *time.Time `json:"first_attempt_at"`
	FirstAttemptWithinSLA bool       `json:"first_attempt_within_sla"`
	Attempts              int        `json:"attempts"`
	EndedAt               *time.Time `json:"ended_at"`
}

type opportunityRow struct {
	LeadID        string     `json:"lead_id"`
	OpportunityID string     `json:"opportunity_id"`
	Seq           uint64     `json:"seq"`
	Cycle         int        `json:"cycle"`
	Currency      string     `json:"currency"`
	AmountMinor   int64      `json:"amount_minor"`
	Stage         string     `json:"stage"`
	RepID         string     `json:"rep_id"`
	Segment       string     `json:"segment"`
	CreatedAt     *time.Time `json:"created_at"`
	ExpectedClose *time.Time `json:"expected_close"`
	WonAt         *time.Time `json:"won_at"`
	WonCurrency   string     `json:"won_currency"`
	WonMinor      int64      `json:"won_minor"`
	LostAt        *time.Time `json:"lost_at"`
	LossReason    string     `json:"loss_reason"`
}

type breachRow struct {
	LeadID    string     `json:"lead_id"`
	Seq       uint64     `json:"seq"`
	SLA       int32      `json:"sla"`
	OwnerKind int32      `json:"owner_kind"`
	OwnerID   string     `json:"owner_id"`
	Segment   string     `json:"segment"`
	DueAt     *time.Time `json:"due_at"`
	At        *time.Time `json:"at"`
}

func tpb(t *timestamppb.Timestamp) *time.Time {
	if t == nil || !t.IsValid() {
		return nil
	}
	return tp(t.AsTime())
}

// tp is a time for a row written as JSON, in microseconds as PostgreSQL
// keeps them: cut, as pgx's binary COPY of a rebuild cuts them, where
// PostgreSQL would round the text.
func tp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC().Truncate(time.Microsecond)
	return &u
}

// rowSet is the rows of some leads, table by table.
type rowSet struct {
	leads    []leadRow
	touches  []touchRow
	stages   []stageRow
	journeys []journeyRow
	handoffs []handoffRow
	opps     []opportunityRow
	breaches []breachRow
}

// childRows adds the child rows of lead l to r, of table only (every
// table when ""): every row when all is set, else those that changed
// since the last Clean.
func childRows(r *rowSet, l *lead.Lead, all bool, only string) {
	id := l.ID
	want := func(table string) bool { return only == "" || only == table }
	if want("lead_touches") {
		for _, t := range l.Touches {
			if all || t.Dirty {
				r.touches = append(r.touches, touchRow{LeadID: id, CampaignID: t.Campaign, Touches: t.N})
			}
		}
	}
	if want("stage_visits") {
		for _, s := range l.Stages {
			if all || s.Dirty {
				r.stages = append(r.stages, stageRow{LeadID: id, Seq: s.Seq, Status: int32(s.Status), EnteredAt: tp(s.Entered), LeftAt: tp(s.Left)})
			}
		}
	}
	if want("journeys") {
		for _, j := range l.Journeys {
			if all || j.Dirty {
				r.journeys = append(r.journeys, journeyRow{LeadID: id, Cycle: j.Cycle, MQLAt: tp(j.MQLAt), Segment: j.Segment,
					AssignedAt: tp(j.AssignedAt), AcceptedAt: tp(j.AcceptedAt), RejectedAt: tp(j.RejectedAt), RejectReason: int32(j.RejectReason),
					OpportunityAt: tp(j.OpportunityAt), WonAt: tp(j.WonAt), LostAt: tp(j.LostAt), RecycledAt: tp(j.RecycledAt)})
			}
		}
	}
	if want("handoffs") {
		for _, h := range l.Handoffs {
			if all || h.Dirty {
				r.handoffs = append(r.handoffs, handoffRow{LeadID: id, Seq: h.Seq, Cycle: h.Cycle, RepID: h.RepID, Segment: h.Segment,
					AssignedAt: tp(h.AssignedAt), AcceptBy: tp(h.AcceptBy), AcceptedAt: tp(h.AcceptedAt), AcceptedWithinSLA: h.AcceptedWithinSLA,
					ContactBy: tp(h.ContactBy), FirstAttemptAt: tp(h.FirstAttemptAt), FirstAttemptWithinSLA: h.FirstAttemptWithinSLA,
					Attempts: h.Attempts, EndedAt: tp(h.EndedAt)})
			}
		}
	}
	if want("opportunities") {
		for _, o := range l.Opportunities {
			if all || o.Dirty {
				r.opps = append(r.opps, opportunityRow{LeadID: id, OpportunityID: o.ID, Seq: o.Seq, Cycle: o.Cycle, Currency: o.Currency,
					AmountMinor: o.AmountMinor, Stage: o.Stage, RepID: o.RepID, Segment: o.Segment, CreatedAt: tp(o.CreatedAt),
					ExpectedClose: tp(o.ExpectedClose), WonAt: tp(o.WonAt), WonCurrency: o.WonCurrency, WonMinor: o.WonMinor,
					LostAt: tp(o.LostAt), LossReason: o.LossReason})
			}
		}
	}
	if want("breaches") {
		for _, b := range l.BreachList {
			if all || b.Dirty {
				r.breaches = append(r.breaches, breachRow{LeadID: id, Seq: b.Seq, SLA: int32(b.SLA), OwnerKind: int32(b.OwnerKind),
					OwnerID: b.OwnerID, Segment: b.Segment, DueAt: tp(b.DueAt), At: tp(b.At)})
			}
		}
	}
}

// rowOf is the leads row of l, its fold (state) included.
func rowOf(l *lead.Lead) (leadRow, error) {
	state, err := json.Marshal(l)
	if err != nil {
		return leadRow{}, fmt.Errorf("encode lead %s: %w", l.ID, err)
	}
	return leadRowOf(l, state), nil
}

// leadRowOf is the leads row of l with its encoded fold.
func leadRowOf(l *lead.Lead, state []byte) leadRow {
	return leadRow{LeadID: l.ID, Version: l.Version, Status: int32(l.Status), OwnerKind: int32(l.OwnerKind), OwnerID: l.OwnerID,
		Deadline: tp(l.Deadline), Score: l.Score, CapturedAt: tp(l.CapturedAt), UpdatedAt: tp(l.UpdatedAt), Source: l.Source,
		FirstCampaign: l.FirstCampaign, LastCampaign: l.LastCampaign, TouchCount: l.TouchCount, Country: l.Country,
		Industry: l.Industry, Seniority: int32(l.Seniority), Employees: l.Employees, EmailDomain: l.EmailDomain,
		Segment: l.Segment, AccountID: l.AccountID, RepID: l.RepID, MergedInto: l.MergedInto, Cycle: l.Cycle,
		MQLAt: tp(l.MQLAt), AssignedAt: tp(l.AssignedAt), AcceptedAt: tp(l.AcceptedAt), OpportunityAt: tp(l.OpportunityAt),
		WonAt: tp(l.WonAt), LostAt: tp(l.LostAt), RecycledAt: tp(l.RecycledAt), DisqualifiedAt: tp(l.DisqualifiedAt),
		Attempts: l.Attempts, Breaches: l.Breaches, State: state}
}

// queueLeads queues the rows of every lead folded in the batch: the lead
// itself, and each of its child rows that changed.
func queueLeads(b *pgx.Batch, ids []string, folds map[string]*lead.Lead) error {
	var r rowSet
	for _, id := range ids {
		l := folds[id]
		if l == nil || l.Version == 0 {
			continue
		}
		childRows(&r, l, false, "")
		l.Clean()
		row, err := rowOf(l)
		if err != nil {
			return err
		}
		r.leads = append(r.leads, row)
	}
	if len(r.leads) > 0 {
		if err := queueLeadRows(b, r.leads); err != nil {
			return err
		}
	}
	for _, w := range []struct {
		table string
		key   []string
		rows  any
		n     int
	}{
		{"lead_touches", []string{"lead_id", "campaign_id"}, r.touches, len(r.touches)},
		{"stage_visits", []string{"lead_id", "seq"}, r.stages, len(r.stages)},
		{"journeys", []string{"lead_id", "cycle"}, r.journeys, len(r.journeys)},
		{"handoffs", []string{"lead_id", "seq"}, r.handoffs, len(r.handoffs)},
		{"opportunities", []string{"lead_id", "opportunity_id"}, r.opps, len(r.opps)},
		{"breaches", []string{"lead_id", "seq"}, r.breaches, len(r.breaches)},
	} {
		if w.n == 0 {
			continue
		}
		if err := queueUpsert(b, w.table, w.key, w.rows); err != nil {
			return err
		}
	}
	return nil
}

// queueLeadRows upserts lead rows, each row's columns as JSON, and their
// folds into lead_folds.
func queueLeadRows(b *pgx.Batch, leads []leadRow) error {
	rows := make([]string, len(leads))
	ids := make([]string, len(leads))
	states := make([][]byte, len(leads))
	for i, l := range leads {
		data, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("encode lead %s: %w", l.LeadID, err)
		}
		rows[i], ids[i], states[i] = string(data), l.LeadID, l.State
	}
	b.Queue(leadUpsert, rows)
	b.Queue(`INSERT INTO lead_folds (lead_id, state) SELECT * FROM unnest($1::text[], $2::bytea[])
		ON CONFLICT (lead_id) DO UPDATE SET state = excluded.state`, ids, states)
	return nil
}

var leadUpsert = func() string {
	cols := leadColumns
	var sets, sel []string
	for _, c := range cols {
		sel = append(sel, "r."+c)
		if c != "lead_id" {
			sets = append(sets, c+" = excluded."+c)
		}
	}
	return fmt.Sprintf(`INSERT INTO leads (%s) SELECT %s
		FROM unnest($1::jsonb[]) AS s(row), LATERAL jsonb_populate_record(NULL::leads, s.row) AS r
		ON CONFLICT (lead_id) DO UPDATE SET %s`, strings.Join(cols, ", "), strings.Join(sel, ", "), strings.Join(sets, ", "))
}()

// upsertCache holds the upsert statement of each table.
var upsertCache stmtCache

type stmtCache struct{ m sync.Map }

func (c *stmtCache) load(k string) (string, bool) {
	v, ok := c.m.Load(k)
	if !ok {
		return "", false
	}
	return v.(string), true
}

func (c *stmtCache) store(k, v string) { c.m.Store(k, v) }

// queueUpsert queues one statement writing rows (a slice of row structs)
// into table, replacing rows with the same key.
func queueUpsert(b *pgx.Batch, table string, key []string, rows any) error {
	data, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("encode %s rows: %w", table, err)
	}
	b.Queue(upsertSQL(table, key, reflect.TypeOf(rows).Elem()), data)
	return nil
}

func upsertSQL(table string, key []string, row reflect.Type) string {
	if q, ok := upsertCache.load(table); ok {
		return q
	}
	var cols, sets []string
	for i := range row.NumField() {
		c, _, _ := strings.Cut(row.Field(i).Tag.Get("json"), ",")
		cols = append(cols, c)
		isKey := false
		for _, k := range key {
			isKey = isKey || k == c
		}
		if !isKey {
			sets = append(sets, "excluded."+c)
		}
	}
	var set []string
	for _, s := range sets {
		set = append(set, strings.TrimPrefix(s, "excluded."))
	}
	q := fmt.Sprintf(`INSERT INTO %[1]s (%[2]s) SELECT %[2]s FROM jsonb_populate_recordset(NULL::%[1]s, $1::jsonb)
		ON CONFLICT (%[3]s) DO UPDATE SET (%[4]s) = ROW(%[5]s)`,
		table, strings.Join(cols, ", "), strings.Join(key, ", "), strings.Join(set, ", "), strings.Join(sets, ", "))
	upsertCache.store(table, q)
	return q
}

// refRow is the row a campaign, routing or target event writes: the
// first nKey columns are its key. A later event with the same key
// replaces it, except where firstWins (a repeated cost line counts once).
type refRow struct {
	table     string
	cols      []string
	nKey      int
	vals      []any
	firstWins bool
}

func (r refRow) key() string { return fmt.Sprintf("%q", r.vals[:r.nKey]) }

// referenceRow is what a reference event writes; false when it writes
// nothing.
func referenceRow(ev *eventv1.Event) (refRow, bool) {
	switch p := ev.GetPayload().(type) {
	case *eventv1.Event_CampaignRegistered:
		c := p.CampaignRegistered
		return refRow{table: "campaigns", nKey: 1,
			cols: []string{"campaign_id", "name", "channel", "starts_at", "ends_at", "budget_currency", "budget_minor"},
			vals: []any{c.GetCampaignId(), c.GetName(), int32(c.GetChannel()), tpb(c.GetStartsAt()), tpb(c.GetEndsAt()),
				c.GetBudget().GetCurrency(), c.GetBudget().GetMinorUnits()}}, true
	case *eventv1.Event_CampaignCostRecorded:
		c := p.CampaignCostRecorded
		recorded := ev.GetOccurredAt()
		if recorded == nil {
			recorded = ev.GetRecordedAt()
		}
		return refRow{table: "campaign_costs", nKey: 2, firstWins: true,
			cols: []string{"campaign_id", "cost_id", "currency", "amount_minor", "period_start", "period_end", "recorded_at"},
			vals: []any{c.GetCampaignId(), c.GetCostId(), c.GetAmount().GetCurrency(), c.GetAmount().GetMinorUnits(),
				tpb(c.GetPeriodStart()), tpb(c.GetPeriodEnd()), tpb(recorded)}}, true
	case *eventv1.Event_RoutingChanged:
		switch c := p.RoutingChanged.GetChange().(type) {
		case *eventv1.RoutingChanged_Team:
			return refRow{table: "teams", nKey: 1, cols: []string{"team_id", "name", "manager_rep_id"},
				vals: []any{c.Team.GetTeamId(), c.Team.GetName(), c.Team.GetManagerRepId()}}, true
		case *eventv1.RoutingChanged_Rep:
			return refRow{table: "reps", nKey: 1, cols: []string{"rep_id", "name", "team_id", "active"},
				vals: []any{c.Rep.GetRepId(), c.Rep.GetName(), c.Rep.GetTeamId(), c.Rep.GetActive()}}, true
		case *eventv1.RoutingChanged_Account:
			return refRow{table: "accounts", nKey: 1, cols: []string{"account_id", "name", "owner_rep_id"},
				vals: []any{c.Account.GetAccountId(), c.Account.GetName(), c.Account.GetOwnerRepId()}}, true
		}
	case *eventv1.Event_MarketingTargetSet:
		t := p.MarketingTargetSet.GetTarget()
		return refRow{table: "marketing_targets", nKey: 2,
			cols: []string{"period", "segment", "min_mqls", "min_acceptance_rate_bps", "min_mql_to_opportunity_bps"},
			vals: []any{t.GetPeriod(), t.GetSegment(), t.GetMinMqls(), int32(t.GetMinAcceptanceRateBps()), int32(t.GetMinMqlToOpportunityBps())}}, true
	}
	return refRow{}, false
}

// queueReference queues what a campaign, routing or target event
// changes.
func queueReference(b *pgx.Batch, ev *eventv1.Event) error {
	r, ok := referenceRow(ev)
	if !ok {
		return nil
	}
	params := make([]string, len(r.cols))
	for i := range params {
		params[i] = fmt.Sprintf("$%d", i+1)
	}
	conflict := "DO NOTHING"
	if !r.firstWins {
		sets := make([]string, 0, len(r.cols)-r.nKey)
		for _, c := range r.cols[r.nKey:] {
			sets = append(sets, c+" = excluded."+c)
		}
		conflict = "DO UPDATE SET " + strings.Join(sets, ", ")
	}
	b.Queue(fmt.Sprintf(`INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) %s`, r.table, strings.Join(r.cols, ", "),
		strings.Join(params, ", "), strings.Join(r.cols[:r.nKey], ", "), conflict), r.vals...)
	return nil
}
