package adapters

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/services/projector/lead"
)

var _ project.FoldingProjection = ReadModel{}

// NewFold implements project.FoldingProjection: a rebuild folds every
// lead in memory with the same lead.Apply as a live batch, and writes
// each table once with COPY.
func (ReadModel) NewFold() project.Fold {
	return &fold{leads: map[string]*lead.Lead{}, refs: map[string]map[string]refRow{}}
}

// fold is the read model of a replay, in memory.
type fold struct {
	leads map[string]*lead.Lead
	// list is the leads first seen first, the order rows are written in:
	// a walk of 1M leads through the map costs a cache miss each.
	list []*lead.Lead
	// refs holds the reference rows by table and key, and refOrder the
	// tables and keys in the order they were first written.
	refs     map[string]map[string]refRow
	refOrder []refKey
}

type refKey struct{ table, key string }

func (f *fold) Add(events []project.Event) error {
	for _, e := range events {
		id := eventstore.LeadID(e.Subject)
		if id == "" {
			f.reference(e)
			continue
		}
		l := f.leads[id]
		if l == nil {
			l = lead.New(id)
			f.leads[id] = l
			f.list = append(f.list, l)
		}
		l.Apply(e.Seq, e.Event)
		// What changed matters not: every row is written at the end.
		l.Clean()
	}
	return nil
}

// reference keeps what a reference event writes, as the upsert of a
// live batch would leave it.
func (f *fold) reference(e project.Event) {
	r, ok := referenceRow(e.Event)
	if !ok {
		return
	}
	t := f.refs[r.table]
	if t == nil {
		t = map[string]refRow{}
		f.refs[r.table] = t
	}
	k := r.key()
	if _, seen := t[k]; seen {
		if !r.firstWins {
			t[k] = r
		}
		return
	}
	t[k] = r
	f.refOrder = append(f.refOrder, refKey{r.table, k})
}

func (f *fold) Loads() []project.Load {
	var loads []project.Load
	byTable := map[string][][]any{}
	cols := map[string][]string{}
	var tables []string
	for _, k := range f.refOrder {
		r := f.refs[k.table][k.key]
		if _, ok := cols[k.table]; !ok {
			cols[k.table] = r.cols
			tables = append(tables, k.table)
		}
		byTable[k.table] = append(byTable[k.table], r.vals)
	}
	for _, t := range tables {
		loads = append(loads, project.Load{Table: t, Columns: cols[t], Rows: pgx.CopyFromRows(byTable[t])})
	}
	// The leads, then their encoded folds (the largest load, in parts
	// that encode and copy side by side), then the child tables.
	for _, part := range f.parts(2) {
		loads = append(loads, project.Load{Table: "leads", Columns: leadColumns, Rows: leadLoad(part)})
	}
	for _, part := range f.parts(4) {
		loads = append(loads, project.Load{Table: "lead_folds", Columns: columns[foldRow](), Rows: foldLoad(part)})
	}
	for _, part := range f.parts(2) {
		loads = append(loads,
			childLoad("stage_visits", part, func(r *rowSet) *[]stageRow { return &r.stages }),
			childLoad("lead_touches", part, func(r *rowSet) *[]touchRow { return &r.touches }))
	}
	return append(loads,
		childLoad("journeys", f.list, func(r *rowSet) *[]journeyRow { return &r.journeys }),
		childLoad("handoffs", f.list, func(r *rowSet) *[]handoffRow { return &r.handoffs }),
		childLoad("opportunities", f.list, func(r *rowSet) *[]opportunityRow { return &r.opps }),
		childLoad("breaches", f.list, func(r *rowSet) *[]breachRow { return &r.breaches }),
	)
}

// parts splits the leads into n runs of about the same length.
func (f *fold) parts(n int) [][]*lead.Lead {
	out := make([][]*lead.Lead, 0, n)
	for i := range n {
		if p := f.list[len(f.list)*i/n : len(f.list)*(i+1)/n]; len(p) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// leadLoad is the leads rows of leads.
func leadLoad(leads []*lead.Lead) pgx.CopyFromSource {
	return &leadSource[leadRow]{leads: leads, rowsOf: func(l *lead.Lead, rows []leadRow) ([]leadRow, error) {
		return append(rows, leadRowOf(l, nil)), nil
	}}
}

// foldRow is a lead_folds row: a lead's fold, encoded.
type foldRow struct {
	LeadID string `json:"lead_id"`
	State  []byte `json:"state"`
}

func (r foldRow) values(dst []any) []any { return append(dst[:0], r.LeadID, r.State) }

// foldLoad is the lead_folds rows of leads, each fold encoded as JSON
// into one buffer: pgx encodes a row before it asks for the next.
func foldLoad(leads []*lead.Lead) pgx.CopyFromSource {
	var state bytes.Buffer
	enc := json.NewEncoder(&state)
	return &leadSource[foldRow]{leads: leads, rowsOf: func(l *lead.Lead, rows []foldRow) ([]foldRow, error) {
		state.Reset()
		if err := enc.Encode(l); err != nil {
			return rows, fmt.Errorf("encode lead %s: %w", l.ID, err)
		}
		return append(rows, foldRow{LeadID: l.ID, State: bytes.TrimSuffix(state.Bytes(), []byte("\n"))}), nil
	}}
}

// childLoad is the load of one child table: every row of leads.
func childLoad[R valuer](table string, leads []*lead.Lead, pick func(*rowSet) *[]R) project.Load {
	return project.Load{Table: table, Columns: columns[R](), Rows: &leadSource[R]{leads: leads, rowsOf: func(l *lead.Lead, rows []R) ([]R, error) {
		var rs rowSet
		*pick(&rs) = rows
		childRows(&rs, l, true, table)
		return *pick(&rs), nil
	}}}
}

// leadSource is a COPY source of one table's rows, lead by lead. A lead's
// rows go in one reused slice and each row's values in one reused []any,
// since pgx encodes a row before it asks for the next: a fold of 1M leads
// is most of the heap, and every allocation here makes the collector scan
// it again sooner.
type leadSource[R valuer] struct {
	leads  []*lead.Lead
	rowsOf func(l *lead.Lead, rows []R) ([]R, error)
	rows   []R
	i, j   int
	vals   []any
	err    error
}

func (s *leadSource[R]) Next() bool {
	for s.j >= len(s.rows) {
		if s.i == len(s.leads) {
			return false
		}
		if s.rows, s.err = s.rowsOf(s.leads[s.i], s.rows[:0]); s.err != nil {
			return false
		}
		s.i, s.j = s.i+1, 0
	}
	s.vals = s.rows[s.j].values(s.vals)
	s.j++
	return true
}

func (s *leadSource[R]) Values() ([]any, error) { return s.vals, nil }

func (s *leadSource[R]) Err() error { return s.err }

// valuer is a row that gives its columns' values in its fields' order,
// into dst.
type valuer interface{ values(dst []any) []any }

// columns are a row type's columns: its fields' json names, but for
// fields tagged json:"-" (kept elsewhere).
func columns[R any]() []string {
	t := reflect.TypeFor[R]()
	var out []string
	for i := range t.NumField() {
		if c, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); c != "-" {
			out = append(out, c)
		}
	}
	return out
}

// leadColumns are the leads table's columns (its fold is in lead_folds).
var leadColumns = columns[leadRow]()

func (r leadRow) values(dst []any) []any {
	return append(dst[:0], r.LeadID, int64(r.Version), r.Status, r.OwnerKind, r.OwnerID, r.Deadline, int32(r.Score), r.CapturedAt, r.UpdatedAt,
		r.Source, r.FirstCampaign, r.LastCampaign, int32(r.TouchCount), r.Country, r.Industry, r.Seniority, int32(r.Employees),
		r.EmailDomain, r.Segment, r.AccountID, r.RepID, r.MergedInto, int32(r.Cycle), r.MQLAt, r.AssignedAt, r.AcceptedAt,
		r.OpportunityAt, r.WonAt, r.LostAt, r.RecycledAt, r.DisqualifiedAt, int32(r.Attempts), int32(r.Breaches))
}

func (r touchRow) values(dst []any) []any {
	return append(dst[:0], r.LeadID, r.CampaignID, int32(r.Touches))
}

func (r stageRow) values(dst []any) []any {
	return append(dst[:0], r.LeadID, int64(r.Seq), r.Status, r.EnteredAt, r.LeftAt)
}

func (r journeyRow) values(dst []any) []any {
	return append(dst[:0], r.LeadID, int32(r.Cycle), r.MQLAt, r.Segment, r.AssignedAt, r.AcceptedAt, r.RejectedAt, r.RejectReason,
		r.OpportunityAt, r.WonAt, r.LostAt, r.RecycledAt)
}

func (r handoffRow) values(dst []any) []any {
	return append(dst[:0], r.LeadID, int64(r.Seq), int32(r.Cycle), r.RepID, r.Segment, r.AssignedAt, r.AcceptBy, r.AcceptedAt,
		r.AcceptedWithinSLA, r.ContactBy, r.FirstAttemptAt, r.FirstAttemptWithinSLA, int32(r.Attempts), r.EndedAt)
}

func (r opportunityRow) values(dst []any) []any {
	return append(dst[:0], r.LeadID, r.OpportunityID, int64(r.Seq), int32(r.Cycle), r.Currency, r.AmountMinor, r.Stage, r.RepID, r.Segment,
		r.CreatedAt, r.ExpectedClose, r.WonAt, r.WonCurrency, r.WonMinor, r.LostAt, r.LossReason)
}

func (r breachRow) values(dst []any) []any {
	return append(dst[:0], r.LeadID, int64(r.Seq), r.SLA, r.OwnerKind, r.OwnerID, r.Segment, r.DueAt, r.At)
}
