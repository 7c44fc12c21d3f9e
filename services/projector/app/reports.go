package app

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zones for report calendars, also where the host has none
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
)

// Period is a time range, From inclusive, To exclusive; a zero side is
// open.
type Period struct{ From, To time.Time }

// Contains reports whether t falls in p.
func (p Period) Contains(t time.Time) bool {
	return (p.From.IsZero() || !t.Before(p.From)) && (p.To.IsZero() || t.Before(p.To))
}

func (p Period) check(v *violations, field string) {
	for _, t := range []struct {
		name string
		at   time.Time
	}{{".from", p.From}, {".to", p.To}} {
		if !t.at.IsZero() && !inRange(t.at) {
			v.add(field+t.name, "must be between the years 1 and 9999")
		}
	}
	if !p.From.IsZero() && !p.To.IsZero() && !p.From.Before(p.To) {
		v.add(field+".to", "must be after %s.from", field)
	}
}

// inRange reports whether t is a time the read model can compare with
// (PostgreSQL's timestamps end long before Go's).
func inRange(t time.Time) bool { return t.Year() >= 1 && t.Year() <= 9999 }

// Cursor is where a page of leads ends (newest capture first).
type Cursor struct {
	CapturedAt time.Time
	LeadID     string
}

// Token is the cursor as an opaque page token.
func (c Cursor) Token() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CapturedAt.UnixMicro(), 10) + "|" + c.LeadID))
}

func parseToken(s string) (*Cursor, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	ts, id, ok := strings.Cut(string(b), "|")
	if !ok {
		return nil, errors.New("malformed")
	}
	us, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, err
	}
	at := time.UnixMicro(us).UTC()
	if !inRange(at) || !isLeadID(id) {
		return nil, errors.New("not a page of this list")
	}
	return &Cursor{CapturedAt: at, LeadID: id}, nil
}

// LeadQuery is a lead search; every filter set must hold.
type LeadQuery struct {
	Statuses    []eventv1.LeadStatus
	Segment     string
	Source      string
	CampaignID  string
	AccountID   string
	RepID       string
	QueueID     string // the queue that owns the lead now
	EmailDomain string
	Country     string
	Captured    Period
	Overdue     bool
	// Now is the time Overdue compares deadlines with.
	Now      time.Time
	PageSize int
	After    *Cursor
	// PageToken is After as the caller sent it.
	PageToken string
}

// Page size bounds.
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// SearchLeads returns a page of leads, newest capture first, and the
// token of the next page ("" on the last). It returns a *ValidationError
// for a bad page size, period, filter or token.
func (a *App) SearchLeads(ctx context.Context, q LeadQuery) ([]*projectorv1.Lead, string, error) {
	var v violations
	switch {
	case q.PageSize < 0 || q.PageSize > maxPageSize:
		v.add("page_size", "must be between 0 and %d", maxPageSize)
	case q.PageSize == 0:
		q.PageSize = defaultPageSize
	}
	for i, s := range q.Statuses {
		if _, ok := eventv1.LeadStatus_name[int32(s)]; !ok || s == eventv1.LeadStatus_LEAD_STATUS_UNSPECIFIED {
			v.add(fmt.Sprintf("statuses[%d]", i), "is not a lead status")
		}
	}
	q.Captured.check(&v, "captured")
	// As intake stores them; blank is not "any".
	for _, f := range []struct {
		field string
		s     *string
		norm  func(string) string
	}{{"email_domain", &q.EmailDomain, strings.ToLower}, {"country", &q.Country, strings.ToUpper}} {
		if t := strings.TrimSpace(*f.s); t == "" && *f.s != "" {
			v.add(f.field, "must not be blank")
		} else {
			*f.s = f.norm(t)
		}
	}
	for _, f := range []struct{ field, s string }{{"segment", q.Segment}, {"source", q.Source}, {"campaign_id", q.CampaignID},
		{"account_id", q.AccountID}, {"rep_id", q.RepID}, {"queue_id", q.QueueID}, {"email_domain", q.EmailDomain}, {"country", q.Country}} {
		checkText(&v, f.field, f.s)
	}
	after, err := parseToken(q.PageToken)
	if err != nil {
		v.add("page_token", "is not a token this service gave out")
	}
	if err := v.err(); err != nil {
		return nil, "", err
	}
	q.After = after
	q.Now = a.now()
	return a.queries.SearchLeads(ctx, q)
}

// idRE is a lead id as the stream allows it: one subject token, and text
// PostgreSQL takes (no NUL).
var idRE = regexp.MustCompile(`^[^.*>\s\x00-\x1f\x7f]{1,128}$`)

// isLeadID reports whether s is a lead id. UTF-8 is checked apart: regexp
// reads a byte that is not UTF-8 as U+FFFD, which idRE takes.
func isLeadID(s string) bool { return utf8.ValidString(s) && idRE.MatchString(s) }

// checkText refuses filter text PostgreSQL cannot compare with (a NUL, or
// bytes that are not UTF-8: SQLSTATE 22021), and the other control
// characters no segment, source or id holds: refused, not an Internal.
func checkText(v *violations, field, s string) {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		v.add(field, "must be UTF-8 text without control characters")
	}
}

// GetLead returns one lead in full. It returns a *ValidationError for a
// malformed id and ErrNotFound for an unknown lead.
func (a *App) GetLead(ctx context.Context, id string) (*projectorv1.GetLeadResponse, error) {
	if !isLeadID(id) {
		return nil, &ValidationError{Violations: []Violation{{Field: "lead_id", Description: "must be a lead id (no '.', '*', '>', spaces or control characters)"}}}
	}
	if u, err := uuid.Parse(id); err == nil && u.String() != id {
		// An upper-case or braced UUID names no lead: say so, as intake
		// and handoff do, rather than that the lead does not exist.
		return nil, &ValidationError{Violations: []Violation{{Field: "lead_id", Description: envelope.LeadIDRule}}}
	}
	return a.queries.GetLead(ctx, id)
}

// FunnelQuery is a funnel: leads captured in Period, grouped.
type FunnelQuery struct {
	Period  Period
	GroupBy projectorv1.FunnelGroup
	Unit    projectorv1.PeriodUnit
	Segment string
	Source  string
	// TimeZone names the calendar of PERIOD rows (IANA, "" for UTC);
	// Funnel sets Zone from it.
	TimeZone string
	Zone     *time.Location
}

// Funnel counts leads by the stages they reached. It returns a
// *ValidationError for a bad period, segment or source, or an unknown
// grouping.
func (a *App) Funnel(ctx context.Context, q FunnelQuery) (*projectorv1.GetFunnelResponse, error) {
	var v violations
	q.Period.check(&v, "period")
	q.Zone = zone(&v, q.TimeZone)
	if q.GroupBy == projectorv1.FunnelGroup_FUNNEL_GROUP_UNSPECIFIED {
		q.GroupBy = projectorv1.FunnelGroup_FUNNEL_GROUP_NONE
	}
	if _, ok := projectorv1.FunnelGroup_name[int32(q.GroupBy)]; !ok {
		v.add("group_by", "is not a funnel grouping")
	}
	if q.Unit == projectorv1.PeriodUnit_PERIOD_UNIT_UNSPECIFIED {
		q.Unit = projectorv1.PeriodUnit_PERIOD_UNIT_MONTH
	}
	if _, ok := projectorv1.PeriodUnit_name[int32(q.Unit)]; !ok {
		v.add("unit", "is not a period unit")
	}
	checkText(&v, "segment", q.Segment)
	checkText(&v, "source", q.Source)
	if err := v.err(); err != nil {
		return nil, err
	}
	return a.queries.Funnel(ctx, q)
}

// CampaignQuery is a closed-loop campaign report.
type CampaignQuery struct {
	Attribution projectorv1.AttributionModel
	Period      Period
	Currency    string
}

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// Campaigns reports every campaign from spend to revenue under one
// attribution model. It returns a *ValidationError when the model is
// missing, or the currency is malformed or must be named because the
// data holds several.
func (a *App) Campaigns(ctx context.Context, q CampaignQuery) (*projectorv1.GetCampaignReportResponse, error) {
	var v violations
	switch q.Attribution {
	case projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH, projectorv1.AttributionModel_ATTRIBUTION_MODEL_LAST_TOUCH,
		projectorv1.AttributionModel_ATTRIBUTION_MODEL_LINEAR:
	default:
		v.add("attribution", "must be ATTRIBUTION_MODEL_FIRST_TOUCH, ATTRIBUTION_MODEL_LAST_TOUCH or ATTRIBUTION_MODEL_LINEAR")
	}
	q.Period.check(&v, "period")
	if err := v.err(); err != nil {
		return nil, err
	}
	cur, err := a.currency(ctx, q.Currency, CurrencyScope{Period: q.Period, Costs: true})
	if err != nil {
		return nil, err
	}
	q.Currency = cur
	return a.queries.Campaigns(ctx, q)
}

// CurrencyScope is the money a report shows: a report that names no
// currency is in the one currency of that money, if there is one.
type CurrencyScope struct {
	Period Period
	// Costs: the cost lines counted for the period (campaign report).
	Costs bool
	// Created: the deals created in the period, in Segment if one is
	// named, merged leads' too (performance); else the deals of the leads
	// captured in the period and not merged away.
	Created bool
	Segment string
}

// currency checks a requested currency, or picks the one the money of
// the report (s) is in.
func (a *App) currency(ctx context.Context, c string, s CurrencyScope) (string, error) {
	if c != "" {
		if !currencyRE.MatchString(c) {
			return "", &ValidationError{Violations: []Violation{{Field: "currency", Description: "must be an ISO 4217 code such as EUR"}}}
		}
		return c, nil
	}
	all, err := a.queries.Currencies(ctx, s)
	if err != nil {
		return "", err
	}
	switch len(all) {
	case 0:
		return "", nil
	case 1:
		return all[0], nil
	}
	return "", &ValidationError{Violations: []Violation{{Field: "currency",
		Description: "the data holds " + strings.Join(slices.Sorted(slices.Values(all)), ", ") + ": name one"}}}
}

// SLAQuery is an SLA compliance report.
type SLAQuery struct {
	Period  Period
	Segment string
	// TimeZone names the calendar of marketing's rows (IANA, "" for
	// UTC); SLA sets Zone from it.
	TimeZone string
	Zone     *time.Location
	// Now is the time deadlines are judged at: a hand-off whose deadline
	// has not passed yet is not due, and a target period not begun has no
	// row.
	Now time.Time
}

// SLA reports SLA compliance both ways. It returns a *ValidationError for
// a bad period or segment.
func (a *App) SLA(ctx context.Context, q SLAQuery) (*projectorv1.GetSLAComplianceResponse, error) {
	var v violations
	q.Period.check(&v, "period")
	checkText(&v, "segment", q.Segment)
	q.Zone = zone(&v, q.TimeZone)
	if err := v.err(); err != nil {
		return nil, err
	}
	q.Now = a.now()
	return a.queries.SLA(ctx, q)
}

// PerformanceQuery is a sales performance report.
type PerformanceQuery struct {
	Period   Period
	Segment  string
	Currency string
}

// Performance reports win rate, velocity, conversion and time in stage.
// It returns a *ValidationError for a bad period, segment or currency.
func (a *App) Performance(ctx context.Context, q PerformanceQuery) (*projectorv1.GetPerformanceResponse, error) {
	var v violations
	q.Period.check(&v, "period")
	checkText(&v, "segment", q.Segment)
	if err := v.err(); err != nil {
		return nil, err
	}
	cur, err := a.currency(ctx, q.Currency, CurrencyScope{Period: q.Period, Created: true, Segment: q.Segment}) // win rates and deal sizes
	if err != nil {
		return nil, err
	}
	q.Currency = cur
	return a.queries.Performance(ctx, q)
}

// AccountQuery is a lead-to-account rollup.
type AccountQuery struct {
	Period   Period
	Currency string
	Limit    int
}

// Accounts rolls leads up to accounts. It returns a *ValidationError for
// a bad period, currency or limit.
func (a *App) Accounts(ctx context.Context, q AccountQuery) (*projectorv1.GetAccountsResponse, error) {
	var v violations
	q.Period.check(&v, "period")
	switch {
	case q.Limit < 0 || q.Limit > 10_000:
		v.add("limit", "must be between 0 and 10000")
	case q.Limit == 0:
		q.Limit = 100
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	cur, err := a.currency(ctx, q.Currency, CurrencyScope{Period: q.Period})
	if err != nil {
		return nil, err
	}
	q.Currency = cur
	return a.queries.Accounts(ctx, q)
}

// QueueQuery asks what the queues before a rep hold now.
type QueueQuery struct {
	Segment string
	// Now is the time deadlines are compared with.
	Now time.Time
}

// Queues reports, per queue that holds MQLs or assigned leads, how many
// and how many are overdue. It returns a *ValidationError for a bad
// segment.
func (a *App) Queues(ctx context.Context, q QueueQuery) (*projectorv1.GetQueuesResponse, error) {
	var v violations
	checkText(&v, "segment", q.Segment)
	if err := v.err(); err != nil {
		return nil, err
	}
	q.Now = a.now()
	return a.queries.Queues(ctx, q)
}

// zone is the location an IANA time zone name names ("" is UTC), or UTC
// with a violation of time_zone. Only Area/Location names and UTC:
// PostgreSQL reads a name such as CET as its abbreviation first, a fixed
// offset where the zone keeps summer time, so the read model's buckets
// would differ from ours; "Local" is the server's zone, no calendar a
// caller chose.
func zone(v *violations, name string) *time.Location {
	if name == "" || name == "UTC" {
		return time.UTC
	}
	loc, err := time.LoadLocation(name)
	// right/…: Go skips its leap seconds, PostgreSQL counts them (27 s
	// off), so the two would cut months apart; posix/… is the plain name.
	area, _, _ := strings.Cut(name, "/")
	if err != nil || !strings.Contains(name, "/") || len(name) > 64 || area == "right" || area == "posix" {
		v.add("time_zone", "must be an IANA time zone named Area/Location, such as Europe/Berlin, or UTC")
		return time.UTC
	}
	return loc
}
