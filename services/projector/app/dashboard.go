package app

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"time"

	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
)

// Figure kinds a BehindQuery can open: the reports whose figures the
// dashboard links to the leads they count.
const (
	FigureFunnel    = "funnel"    // GetFunnel's total
	FigureCampaign  = "campaign"  // a GetCampaignReport row
	FigureSales     = "sales"     // a sales SLA row (rep, team or total)
	FigureBreaches  = "breaches"  // the breaches of a sales SLA row
	FigureMarketing = "marketing" // a marketing SLA row
	FigureQueue     = "queue"     // a GetQueues row, by Key
)

// BehindQuery names one report figure; LeadsBehind lists the leads it
// counts, with the report's own definitions (services/projector/README.md).
type BehindQuery struct {
	Figure string
	// Period and Segment are the report's filters; Source the funnel's.
	Period  Period
	Segment string
	Source  string
	// Measure is the column of the figure: for the funnel and campaigns
	// captured (leads), mql, accepted, opportunity, won, recycled,
	// disqualified; for sales assigned, accepted, accepted_within_sla,
	// accept_due, contacted, first_attempt_within_sla, contact_due; for
	// marketing mql, accepted, rejected, opportunity.
	Measure string
	// Campaign and Attribution pick a campaign row ("" the unattributed);
	// Currency is the report's, whose won deals it counts ("" any).
	Campaign    string
	Attribution projectorv1.AttributionModel
	Currency    string
	// Row picks a sales row: "rep" or "team" by Key ("" the team of
	// reps in no known team); "" is the total. A funnel row broken down
	// by "segment" or "source" is Key ("" the leads with none). A queue
	// row is its Key.
	Row string
	Key string
	// Month picks a marketing row, with Segment ("" is the row of all
	// segments): a month (YYYY-MM), or the quarter or year of a target's
	// row (YYYY-QN, YYYY), in TimeZone's calendar (an IANA name, "" for
	// UTC). Check sets Months to its bounds. A row counts its whole
	// period, so Period does not narrow it.
	Month    string
	TimeZone string
	Months   Period
	// Now is the time a queue's overdue leads, a sales row's due
	// hand-offs and a marketing row's due MQLs are counted at (Check sets
	// it).
	Now time.Time
	// Limit bounds the leads returned (default 100, at most 500); the
	// count is of all of them. PageToken goes on from a page before
	// (Check sets After from it).
	Limit     int
	PageToken string
	After     *Cursor
}

// Behind lists the leads behind a figure (adapters.Queries).
type Behind interface {
	// LeadsBehind returns up to q.Limit leads, newest capture first, how
	// many there are in all, and the token of the next page ("" for none).
	LeadsBehind(ctx context.Context, q BehindQuery) ([]*projectorv1.Lead, int64, string, error)
}

// rowPeriodRE is a marketing row's period, as marketingRows names them.
var rowPeriodRE = regexp.MustCompile(`^(\d{4})(?:-(0[1-9]|1[0-2])|-Q([1-4]))?$`)

// RowPeriod is the bounds of a marketing row's period, a month
// (YYYY-MM), quarter (YYYY-QN) or year (YYYY), in loc's calendar.
func RowPeriod(p string, loc *time.Location) (Period, bool) {
	m := rowPeriodRE.FindStringSubmatch(p)
	if m == nil {
		return Period{}, false
	}
	year, _ := strconv.Atoi(m[1])
	month, months := 1, 12
	switch {
	case m[2] != "":
		month, _ = strconv.Atoi(m[2])
		months = 1
	case m[3] != "":
		q, _ := strconv.Atoi(m[3])
		month, months = 3*q-2, 3
	}
	from := time.Date(year, time.Month(month), 1, 0, 0, 0, 0, loc)
	return Period{From: from, To: from.AddDate(0, months, 0)}, true
}

var measures = map[string][]string{
	FigureFunnel:    {"captured", "mql", "accepted", "opportunity", "won", "recycled", "disqualified"},
	FigureCampaign:  {"captured", "mql", "accepted", "opportunity", "won"},
	FigureSales:     {"assigned", "accepted", "accepted_within_sla", "accept_due", "contacted", "first_attempt_within_sla", "contact_due"},
	FigureBreaches:  {""},
	FigureMarketing: {"mql", "accepted", "rejected", "opportunity", "accept_due"},
	FigureQueue:     {"leads", "overdue"},
}

// Check validates q and fills in its defaults. It returns a
// *ValidationError naming the field at fault.
func (q *BehindQuery) Check() error {
	var v violations
	ms, ok := measures[q.Figure]
	if !ok {
		v.add("figure", "must be funnel, campaign, sales, breaches, marketing or queue")
	}
	if q.Measure == "" && ok {
		q.Measure = ms[0]
	}
	if ok && !slices.Contains(ms, q.Measure) {
		v.add("measure", "is not a figure of %s", q.Figure)
	}
	q.Period.check(&v, "period")
	if q.Figure == FigureCampaign {
		switch q.Attribution {
		case projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH, projectorv1.AttributionModel_ATTRIBUTION_MODEL_LAST_TOUCH,
			projectorv1.AttributionModel_ATTRIBUTION_MODEL_LINEAR:
		default:
			v.add("attribution", "must be first, last or linear")
		}
	}
	switch {
	case q.Figure == FigureFunnel:
		if q.Row != "" && q.Row != "segment" && q.Row != "source" {
			v.add("row", "must be segment, source or empty (the total)")
		}
	case q.Row != "" && q.Row != "rep" && q.Row != "team":
		v.add("row", "must be rep, team or empty (the total)")
	}
	if q.Figure == FigureMarketing {
		var ok bool
		if q.Months, ok = RowPeriod(q.Month, zone(&v, q.TimeZone)); !ok {
			v.add("month", "must be a month, quarter or year: 2026-03, 2026-Q1, 2026")
		}
	}
	if q.Figure == FigureQueue && q.Key == "" {
		v.add("key", "must name the queue")
	}
	for _, f := range []struct{ field, s string }{{"segment", q.Segment}, {"source", q.Source}, {"campaign", q.Campaign}, {"key", q.Key}} {
		checkText(&v, f.field, f.s)
	}
	if q.Currency != "" && !currencyRE.MatchString(q.Currency) {
		v.add("currency", "must be an ISO 4217 code such as EUR")
	}
	if q.Now.IsZero() {
		q.Now = time.Now()
	}
	if after, err := parseToken(q.PageToken); err != nil {
		v.add("page", "is not a token this service gave out")
	} else {
		q.After = after
	}
	switch {
	case q.Limit < 0 || q.Limit > maxPageSize:
		v.add("limit", "must be between 0 and %d", maxPageSize)
	case q.Limit == 0:
		q.Limit = 100
	}
	return v.err()
}
