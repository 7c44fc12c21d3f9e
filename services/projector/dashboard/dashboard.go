// Package dashboard is the projector's web dashboard: one page, embedded
// with its styles and script (no CDN, no web font, no call to any other
// host), and the JSON it reads. Every figure comes from the same app
// methods the gRPC API answers with, so the page and the API agree; the
// page links each figure to the leads it counts and each lead to its
// journey, drawn from the stream. Live pushes (Server-Sent Events) tell
// open pages when the projector has committed new events.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/services/projector/app"
)

//go:embed web
var web embed.FS

// Reports is what the page shows: *app.App, the methods behind the gRPC
// API.
type Reports interface {
	SearchLeads(ctx context.Context, q app.LeadQuery) ([]*projectorv1.Lead, string, error)
	GetLead(ctx context.Context, id string) (*projectorv1.GetLeadResponse, error)
	Funnel(ctx context.Context, q app.FunnelQuery) (*projectorv1.GetFunnelResponse, error)
	Campaigns(ctx context.Context, q app.CampaignQuery) (*projectorv1.GetCampaignReportResponse, error)
	SLA(ctx context.Context, q app.SLAQuery) (*projectorv1.GetSLAComplianceResponse, error)
	Queues(ctx context.Context, q app.QueueQuery) (*projectorv1.GetQueuesResponse, error)
	Status(ctx context.Context) (project.Status, error)
	StartWhatIf(ctx context.Context, n uint32, p app.Period) (string, error)
	GetWhatIf(ctx context.Context, id string) (app.WhatIf, error)
}

// History reads the stream (adapters.Stream).
type History interface {
	LeadHistory(ctx context.Context, leadID string) ([]eventstore.Record, error)
	ScoringHistory(ctx context.Context) ([]eventstore.Record, error)
}

// Config is what the dashboard needs.
type Config struct {
	Reports Reports
	Behind  app.Behind
	History History
	// Live, if set, feeds /api/live.
	Live *Live
	// Auth, if set, makes every /api/ call need a token granting what it
	// reads: the page signs in with one (session.go).
	Auth *auth.Verifier
	Log  *slog.Logger
}

// Handler serves the page and its JSON.
type Handler struct {
	cfg Config
	mux *http.ServeMux

	// whatIfs reuses a what-if of the same version and period for a
	// minute, so every open page does not start its own replay.
	mu      sync.Mutex
	whatIfs map[string]whatIfRun
}

type whatIfRun struct {
	id      string
	started time.Time
}

// whatIfReuse is how long a what-if answers for its version and period.
const whatIfReuse = time.Minute

// New returns the dashboard's handler.
func New(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), whatIfs: map[string]whatIfRun{}}
	assets, _ := fs.Sub(web, "web")
	files := http.FileServerFS(assets)
	h.mux.Handle("GET /{$}", files)
	h.mux.Handle("GET /assets/", http.StripPrefix("/assets/", files))
	h.mux.HandleFunc("GET /api/funnel", h.funnel)
	h.mux.HandleFunc("GET /api/campaigns", h.campaigns)
	h.mux.HandleFunc("GET /api/sla", h.sla)
	h.mux.HandleFunc("GET /api/queues", h.queues)
	h.mux.HandleFunc("GET /api/leads", h.leads)
	h.mux.HandleFunc("GET /api/lead/{id}", h.lead)
	h.mux.HandleFunc("GET /api/model", h.model)
	h.mux.HandleFunc("POST /api/whatif", h.startWhatIf)
	h.mux.HandleFunc("GET /api/whatif/{id}", h.whatIf)
	h.mux.HandleFunc("GET /api/status", h.status)
	h.mux.HandleFunc("GET /api/live", h.live)
	h.mux.HandleFunc("/api/session", h.session)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The page loads nothing from anywhere else; say so to the browser.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	h.guard(h.mux).ServeHTTP(w, r)
}

// query is the filters every report request may carry.
type query struct {
	period  app.Period
	segment string
	source  string
}

// parseQuery reads from/to (YYYY-MM-DD, UTC midnight, or RFC 3339),
// segment and source.
func parseQuery(r *http.Request, more ...string) (query, error) {
	var q query
	var err error
	if err := onlyParams(r, append(more, "from", "to", "segment", "source")...); err != nil {
		return q, err
	}
	if q.period.From, err = parseTime(r.FormValue("from"), "from"); err != nil {
		return q, err
	}
	if q.period.To, err = parseTime(r.FormValue("to"), "to"); err != nil {
		return q, err
	}
	q.segment, q.source = r.FormValue("segment"), r.FormValue("source")
	return q, nil
}

// onlyParams refuses a query parameter no filter of the route has: a
// misspelt ?form= would otherwise answer over all time. (The report
// routes share the page's filters, from, to, segment and source, which
// some of them do not apply.)
func onlyParams(r *http.Request, known ...string) error {
	for k := range r.URL.Query() {
		if !slices.Contains(known, k) {
			slices.Sort(known)
			return &app.ValidationError{Violations: []app.Violation{{Field: k, Description: "is not a parameter of " + r.URL.Path + " (" + strings.Join(known, ", ") + ")"}}}
		}
	}
	return nil
}

func parseTime(s, field string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, &app.ValidationError{Violations: []app.Violation{{Field: field, Description: "must be YYYY-MM-DD or RFC 3339"}}}
	}
	return t, nil
}

var attributions = map[string]projectorv1.AttributionModel{
	"first":  projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH,
	"last":   projectorv1.AttributionModel_ATTRIBUTION_MODEL_LAST_TOUCH,
	"linear": projectorv1.AttributionModel_ATTRIBUTION_MODEL_LINEAR,
}

// attribution reads the page's word (first, last, linear) or the API's
// enum name (ATTRIBUTION_MODEL_LINEAR), as a script copies it from the
// HTTP/JSON API.
func attribution(s string) projectorv1.AttributionModel {
	if s == "" {
		s = "first"
	}
	if m, ok := attributions[strings.ToLower(s)]; ok {
		return m
	}
	return projectorv1.AttributionModel(projectorv1.AttributionModel_value[strings.ToUpper(s)]) // unknown: UNSPECIFIED, which app refuses naming the field
}

var groups = map[string]projectorv1.FunnelGroup{
	"": projectorv1.FunnelGroup_FUNNEL_GROUP_NONE, "source": projectorv1.FunnelGroup_FUNNEL_GROUP_SOURCE,
	"segment": projectorv1.FunnelGroup_FUNNEL_GROUP_SEGMENT, "period": projectorv1.FunnelGroup_FUNNEL_GROUP_PERIOD,
}

func (h *Handler) funnel(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "group")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	g, ok := groups[strings.ToLower(r.FormValue("group"))]
	if v, named := projectorv1.FunnelGroup_value[strings.ToUpper(r.FormValue("group"))]; !ok && named {
		g, ok = projectorv1.FunnelGroup(v), true // the API's name
	}
	if !ok {
		h.fail(w, r, &app.ValidationError{Violations: []app.Violation{{Field: "group", Description: "must be source, segment or period (or none), not " + strconv.Quote(r.FormValue("group"))}}})
		return
	}
	out, err := h.cfg.Reports.Funnel(r.Context(), app.FunnelQuery{Period: q.period, GroupBy: g, Segment: q.segment, Source: q.source})
	h.reply(w, r, out, err)
}

func (h *Handler) campaigns(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "attribution", "currency")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	model := attribution(r.FormValue("attribution"))
	if model == projectorv1.AttributionModel_ATTRIBUTION_MODEL_UNSPECIFIED {
		// Refused here, in this API's words, not the gRPC enum's.
		h.fail(w, r, &app.ValidationError{Violations: []app.Violation{{Field: "attribution", Description: "must be first, last or linear"}}})
		return
	}
	out, err := h.cfg.Reports.Campaigns(r.Context(), app.CampaignQuery{Attribution: model,
		Period: q.period, Currency: strings.ToUpper(r.FormValue("currency"))})
	h.reply(w, r, out, err)
}

func (h *Handler) sla(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.cfg.Reports.SLA(r.Context(), app.SLAQuery{Period: q.period, Segment: q.segment})
	h.reply(w, r, out, err)
}

// queues is GetQueues: what the queues before a rep hold now.
func (h *Handler) queues(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r, "segment"); err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.cfg.Reports.Queues(r.Context(), app.QueueQuery{Segment: r.FormValue("segment")})
	h.reply(w, r, out, err)
}

// leads lists the leads behind a figure (figure=...), or searches them.
func (h *Handler) leads(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "limit", "figure", "measure", "campaign", "attribution", "currency", "row", "key", "month", "page", "rep", "overdue", "status")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	limit, overdue, statuses, err := leadFilters(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if fig := r.FormValue("figure"); fig != "" {
		b := app.BehindQuery{Figure: fig, Period: q.period, Segment: q.segment, Source: q.source, Measure: r.FormValue("measure"),
			Campaign: r.FormValue("campaign"), Attribution: attribution(r.FormValue("attribution")), Currency: strings.ToUpper(r.FormValue("currency")), Row: r.FormValue("row"),
			Key: r.FormValue("key"), Month: r.FormValue("month"), Limit: limit, PageToken: r.FormValue("page")}
		if err := b.Check(); err != nil {
			h.fail(w, r, err)
			return
		}
		leads, total, next, err := h.cfg.Behind.LeadsBehind(r.Context(), b)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		h.leadList(w, r, leads, total, next)
		return
	}
	lq := app.LeadQuery{Segment: q.segment, Source: q.source, CampaignID: r.FormValue("campaign"), RepID: r.FormValue("rep"),
		Captured: q.period, Overdue: overdue, PageSize: limit, PageToken: r.FormValue("page"), Statuses: statuses}
	leads, next, err := h.cfg.Reports.SearchLeads(r.Context(), lq)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.leadList(w, r, leads, -1, next)
}

// leadFilters reads a lead list's limit, overdue and status: a value
// that is none of theirs is refused, not read as "no filter" (which
// answered every lead).
func leadFilters(r *http.Request) (limit int, overdue bool, statuses []eventv1.LeadStatus, err error) {
	var v []app.Violation
	if s := r.FormValue("limit"); s != "" {
		if n, err := strconv.Atoi(s); err != nil || n < 0 {
			v = append(v, app.Violation{Field: "limit", Description: "must be a whole number of leads, not " + strconv.Quote(s)})
		} else {
			limit = n
		}
	}
	if s := r.FormValue("overdue"); s != "" {
		if b, err := strconv.ParseBool(s); err != nil {
			v = append(v, app.Violation{Field: "overdue", Description: "must be true or false, not " + strconv.Quote(s)})
		} else {
			overdue = b
		}
	}
	for _, s := range r.Form["status"] {
		// The page's word (mql) or the API's name (LEAD_STATUS_MQL), which
		// the lead list's own answers carry.
		name := strings.ToUpper(s)
		if !strings.HasPrefix(name, "LEAD_STATUS_") {
			name = "LEAD_STATUS_" + name
		}
		st, ok := eventv1.LeadStatus_value[name]
		if !ok || st == 0 {
			v = append(v, app.Violation{Field: "status", Description: "must be a lead status such as new, mql or accepted, not " + strconv.Quote(s)})
			continue
		}
		statuses = append(statuses, eventv1.LeadStatus(st))
	}
	if len(v) > 0 {
		return 0, false, nil, &app.ValidationError{Violations: v}
	}
	return limit, overdue, statuses, nil
}

func (h *Handler) leadList(w http.ResponseWriter, r *http.Request, leads []*projectorv1.Lead, total int64, next string) {
	list := make([]json.RawMessage, len(leads))
	for i, l := range leads {
		b, err := pj.Marshal(l)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		list[i] = b
	}
	h.json(w, map[string]any{"leads": list, "total": total, "next_page": next})
}

// lead is one lead: its read-model row (absent while not projected yet)
// and its journey from the stream.
func (h *Handler) lead(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	detail, err := h.cfg.Reports.GetLead(r.Context(), id)
	if err != nil && !errors.Is(err, app.ErrNotFound) {
		h.fail(w, r, err)
		return
	}
	recs, err := h.cfg.History.LeadHistory(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if detail == nil && len(recs) == 0 {
		h.fail(w, r, fmt.Errorf("lead %s: %w", id, app.ErrNotFound))
		return
	}
	var raw json.RawMessage = []byte("null")
	if detail != nil {
		if raw, err = pj.Marshal(detail); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	h.json(w, map[string]any{"detail": raw, "journey": Journey(recs)})
}

func (h *Handler) model(w http.ResponseWriter, r *http.Request) {
	recs, err := h.cfg.History.ScoringHistory(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.json(w, FoldSignOff(recs))
}

// whatIfBody takes a what-if's JSON body, {"version": 2, "from":
// "2026-03-01", "to": "2026-04-01", "fresh": true}, where the query
// names none of them (the page sends the query and an empty body).
func whatIfBody(r *http.Request) error {
	var body struct {
		Version *uint32 `json:"version"`
		From    string  `json:"from"`
		To      string  `json:"to"`
		Fresh   bool    `json:"fresh"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		return bodyError(err, "must be a JSON object of version, from, to and fresh")
	}
	if err := r.ParseForm(); err != nil {
		return &app.ValidationError{Violations: []app.Violation{{Field: "query", Description: err.Error()}}}
	}
	set := func(k, v string) {
		if v != "" && r.Form.Get(k) == "" {
			r.Form.Set(k, v)
		}
	}
	if body.Version != nil {
		set("version", strconv.FormatUint(uint64(*body.Version), 10))
	}
	set("from", body.From)
	set("to", body.To)
	if body.Fresh {
		set("fresh", "true")
	}
	return nil
}

// bodyError names the field a JSON body got wrong in the API's words,
// not the decoder's (which names Go types: "uint32", "struct field").
func bodyError(err error, want string) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		kind := "a JSON " + te.Type.Kind().String()
		switch te.Type.Kind() {
		case reflect.Bool:
			kind = "true or false"
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			kind = fmt.Sprintf("a whole number from 0 to %d", uint64(1)<<(te.Type.Bits())-1)
		}
		return &app.ValidationError{Violations: []app.Violation{{Field: te.Field, Description: "must be " + kind + ", not " + te.Value}}}
	}
	return &app.ValidationError{Violations: []app.Violation{{Field: "body", Description: want + ": " + strings.TrimPrefix(err.Error(), "json: ")}}}
}

// pageFields names the fields of a report's or a search's request as the
// page's query does (from, to, limit, page, ...), not as the API's
// (period.from, captured.to, page_size, ...).
func pageFields(vs []app.Violation) []app.Violation {
	out := make([]app.Violation, len(vs))
	for i, v := range vs {
		for _, prefix := range []string{"period.", "captured."} {
			if f, ok := strings.CutPrefix(v.Field, prefix); ok {
				v.Field, v.Description = f, strings.ReplaceAll(v.Description, prefix, "")
			}
		}
		if name, _, _ := strings.Cut(v.Field, "["); pageNames[name] != "" {
			v.Field = pageNames[name]
		}
		out[i] = v
	}
	return out
}

// pageNames are the page's query names of the lead search's fields.
var pageNames = map[string]string{"page_size": "limit", "page_token": "page", "statuses": "status", "campaign_id": "campaign", "rep_id": "rep"}

// startWhatIf starts a what-if of version over the period, or answers
// with a recent one of the same version and period.
func (h *Handler) startWhatIf(w http.ResponseWriter, r *http.Request) {
	// It starts a replay on the cookie alone: a form of another origin on
	// the same site (SameSite lets it) cannot send JSON without CORS.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		h.deny(w, http.StatusUnsupportedMediaType, "want Content-Type application/json")
		return
	}
	if err := whatIfBody(r); err != nil {
		h.fail(w, r, err)
		return
	}
	q, err := parseQuery(r, "version", "fresh")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	n, err := strconv.ParseUint(r.FormValue("version"), 10, 32)
	if err != nil || n == 0 {
		h.fail(w, r, &app.ValidationError{Violations: []app.Violation{{Field: "version", Description: "must be a proposed version's number"}}})
		return
	}
	key := fmt.Sprintf("%d|%s|%s", n, q.period.From, q.period.To)
	fresh := r.FormValue("fresh") == "true"
	h.mu.Lock()
	run, ok := h.whatIfs[key]
	h.mu.Unlock()
	if ok && !fresh && time.Since(run.started) < whatIfReuse {
		// One that failed (its replica stopped, its replay broke) is run
		// again, not shown again.
		if job, err := h.cfg.Reports.GetWhatIf(r.Context(), run.id); err == nil && job.Err == nil {
			h.json(w, map[string]any{"id": run.id, "started": run.started})
			return
		}
	}
	id, err := h.cfg.Reports.StartWhatIf(r.Context(), uint32(n), q.period)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	run = whatIfRun{id: id, started: time.Now().UTC()}
	h.mu.Lock()
	for k, v := range h.whatIfs {
		if time.Since(v.started) > whatIfReuse {
			delete(h.whatIfs, k)
		}
	}
	h.whatIfs[key] = run
	h.mu.Unlock()
	h.json(w, map[string]any{"id": run.id, "started": run.started})
}

// WhatIfRow is one row of a what-if, as GetWhatIf's WhatIfRow.
type WhatIfRow struct {
	Campaign        string `json:"campaign_id"`
	Leads           int64  `json:"leads"`
	MQLsActive      int64  `json:"mqls_active"`
	MQLsProposed    int64  `json:"mqls_proposed"`
	Gained          int64  `json:"mqls_gained"`
	Lost            int64  `json:"mqls_lost"`
	Won             int64  `json:"won"`
	WonQualified    int64  `json:"won_qualified"`
	WonMissed       int64  `json:"won_missed"`
	Rejected        int64  `json:"rejected"`
	RejectedKeptOut int64  `json:"rejected_kept_out"`
}

func (h *Handler) whatIf(w http.ResponseWriter, r *http.Request) {
	wi, err := h.cfg.Reports.GetWhatIf(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	state := "running"
	errText := ""
	switch {
	case wi.Done && wi.Err != nil:
		state, errText = "failed", wi.Err.Error()
	case wi.Done:
		state = "done"
	}
	rows := []WhatIfRow{}
	for _, c := range wi.Result.Campaigns {
		rows = append(rows, WhatIfRow(c))
	}
	h.json(w, map[string]any{"id": wi.ID, "state": state, "error": errText, "proposed": wi.Proposed, "active": wi.Active,
		"read": wi.Read, "total": wi.Total, "campaigns": rows, "total_row": WhatIfRow(wi.Result.Total)})
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	st, err := h.cfg.Reports.Status(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.json(w, map[string]any{"schema": st.Active, "position": st.Position, "unknown_events": st.Unknown})
}

// keepAlive is how often an idle live stream sends a comment, so proxies
// and the browser keep it open.
const keepAlive = 15 * time.Second

// live streams notices as Server-Sent Events until the client leaves or
// the server shuts down (the request context ends with both).
func (h *Handler) live(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Live == nil {
		http.Error(w, "live updates are off", http.StatusNotFound)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	ch, now, cancel := h.cfg.Live.subscribe()
	defer cancel()
	send := func(n Notice) error {
		b, _ := json.Marshal(n)
		if _, err := fmt.Fprintf(w, "event: change\ndata: %s\n\n", b); err != nil {
			return err
		}
		return rc.Flush()
	}
	// retry: the browser reconnects after a second if the stream drops.
	if _, err := fmt.Fprint(w, "retry: 1000\n\n"); err != nil {
		return
	}
	if err := send(now); err != nil {
		return
	}
	t := time.NewTicker(keepAlive)
	defer t.Stop()
	// The stream ends when its token expires or is revoked; the browser's
	// reconnect then meets the sign-in check.
	p, signedIn := auth.FromContext(r.Context())
	recheck := time.NewTicker(liveRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case n := <-ch:
			if send(n) != nil {
				return
			}
		case <-t.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-recheck.C:
			if signedIn && h.cfg.Auth != nil && h.cfg.Auth.StillValid(p) != nil {
				return
			}
		}
	}
}

// liveRecheck is how often a live stream checks its token again.
const liveRecheck = time.Second

var pj = protojson.MarshalOptions{EmitUnpopulated: true, UseProtoNames: true}

func (h *Handler) reply(w http.ResponseWriter, r *http.Request, m proto.Message, err error) {
	if err != nil {
		h.fail(w, r, err)
		return
	}
	b, err := pj.Marshal(m)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

func (h *Handler) json(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// fail answers an error as the gRPC port maps it over HTTP/JSON: a
// refused field is 400 with the violations, a refusal
// (FAILED_PRECONDITION) 400 too, an unknown id 404, JetStream not taking
// requests or the request's end (the projector stopping: a page that
// went away reads nothing) 503 to try again, else 500, logged once here.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ve *app.ValidationError
	var refused *app.RefusedError
	code := http.StatusInternalServerError
	body := map[string]any{"error": err.Error()}
	switch {
	case errors.As(err, &ve):
		code = http.StatusBadRequest
		named := &app.ValidationError{Violations: pageFields(ve.Violations)}
		body["error"], body["violations"] = named.Error(), named.Violations
	case errors.As(err, &refused):
		code = http.StatusBadRequest
	case errors.Is(err, app.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, app.ErrTooManyWhatIfs):
		code = http.StatusTooManyRequests
	case r.Context().Err() != nil, eventstore.Unavailable(err):
		// Written, or the server would answer 200 with no body.
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
		body["error"] = "unavailable for now: try again"
	default:
		h.cfg.Log.Error("dashboard", "path", r.URL.Path, "err", err)
		body["error"] = "internal error (logged by the projector)"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
