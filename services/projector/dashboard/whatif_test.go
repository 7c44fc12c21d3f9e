package dashboard_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/leadflow/leadflow/services/projector/app"
	"github.com/leadflow/leadflow/services/projector/dashboard"
)

// whatIfReports is a report port whose what-ifs are the ones it started,
// each with the outcome failed says.
type whatIfReports struct {
	dashboard.Reports
	started int
	failed  error
	refuse  error
}

func (r *whatIfReports) StartWhatIf(context.Context, uint32, app.Period) (string, error) {
	if r.refuse != nil {
		return "", r.refuse
	}
	r.started++
	return "w" + string(rune('0'+r.started)), nil
}

func (r *whatIfReports) GetWhatIf(_ context.Context, id string) (app.WhatIf, error) {
	return app.WhatIf{ID: id, Done: r.failed != nil, Err: r.failed}, nil
}

// A what-if asked for again within a minute is the one running, but one
// that failed is run again, not shown again; a refused one answers 400,
// as the HTTP/JSON API answers FAILED_PRECONDITION.
func TestDashboardWhatIfs(t *testing.T) {
	reports := &whatIfReports{}
	h := dashboard.New(dashboard.Config{Reports: reports})
	post := func() int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/api/whatif?version=2&from=2026-03-01&to=2026-04-01", nil)
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	// A form (of another origin on the same site, with the cookie) cannot
	// start one: it cannot send JSON.
	rec := httptest.NewRecorder()
	form := httptest.NewRequest(http.MethodPost, "/api/whatif", strings.NewReader("version=2"))
	form.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if h.ServeHTTP(rec, form); rec.Code != http.StatusUnsupportedMediaType || reports.started != 0 {
		t.Fatalf("a form's what-if: %d, %d started; want 415 and none", rec.Code, reports.started)
	}
	for range 2 {
		if code := post(); code != http.StatusOK {
			t.Fatalf("what-if: %d", code)
		}
	}
	if reports.started != 1 {
		t.Fatalf("%d what-ifs started, want the running one reused", reports.started)
	}
	reports.failed = app.ErrWhatIfAbandoned
	if code := post(); code != http.StatusOK || reports.started != 2 {
		t.Fatalf("after the first failed: %d, %d started; want a second", code, reports.started)
	}
	// The same asked in a JSON body, as a script would: the running one.
	reports.failed = nil
	rec = httptest.NewRecorder()
	body := httptest.NewRequest(http.MethodPost, "/api/whatif", strings.NewReader(`{"version": 2, "from": "2026-03-01", "to": "2026-04-01"}`))
	body.Header.Set("Content-Type", "application/json")
	if h.ServeHTTP(rec, body); rec.Code != http.StatusOK || reports.started != 2 {
		t.Fatalf("a what-if in a JSON body: %d %s, %d started; want the running one", rec.Code, rec.Body, reports.started)
	}
	// A misspelt period in the query would replay over all time: refused.
	rec = httptest.NewRecorder()
	typo := httptest.NewRequest(http.MethodPost, "/api/whatif?version=2&form=2026-03-01", nil)
	typo.Header.Set("Content-Type", "application/json")
	if h.ServeHTTP(rec, typo); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"form"`) {
		t.Fatalf("a what-if with ?form=: %d %s, want 400 naming form", rec.Code, rec.Body)
	}
	// So are a queue list's.
	rec = httptest.NewRecorder()
	if h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/queues?segmnt=smb", nil)); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"segmnt"`) {
		t.Fatalf("queues with ?segmnt=: %d %s, want 400 naming segmnt", rec.Code, rec.Body)
	}
	// No version, or an unknown field: 400 naming it.
	for in, field := range map[string]string{
		`{}`:                      `"version"`,
		`{"proposed_version": 2}`: `"body"`,
		`{"version": "2"}`:        `"field":"version","description":"must be a whole number from 0 to 4294967295, not string"`,
		`{"version": -1}`:         `"field":"version"`,
		`{"fresh": "yes"}`:        `"field":"fresh","description":"must be true or false, not string"`,
		`{"from": 20260301}`:      `"field":"from","description":"must be a JSON string, not number"`,
	} {
		rec = httptest.NewRecorder()
		bad := httptest.NewRequest(http.MethodPost, "/api/whatif", strings.NewReader(in))
		bad.Header.Set("Content-Type", "application/json")
		if h.ServeHTTP(rec, bad); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), field) || strings.Contains(rec.Body.String(), "Go ") {
			t.Fatalf("what-if of %s: %d %s, want 400 naming %s", in, rec.Code, rec.Body, field)
		}
	}
	reports.failed = app.ErrWhatIfAbandoned // not reused
	reports.refuse = &app.RefusedError{Field: "proposed_version", Reason: "activated already"}
	if code := post(); code != http.StatusBadRequest {
		t.Fatalf("a refused what-if: %d, want 400", code)
	}
}

// failingReports answers every what-if read with err.
type failingReports struct {
	dashboard.Reports
	err error
}

func (r failingReports) GetWhatIf(context.Context, string) (app.WhatIf, error) {
	return app.WhatIf{}, r.err
}

// JetStream between leaders, or the projector stopping under a request
// (its context ended), is 503 to try again: not 500, and not a 200 with
// no body, which the page read as an empty report.
func TestDashboardUnavailableIsToTryAgain(t *testing.T) {
	get := func(err error, ctx context.Context) *httptest.ResponseRecorder {
		h := dashboard.New(dashboard.Config{Reports: failingReports{err: err}})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/whatif/w1", nil).WithContext(ctx))
		return rec
	}
	if rec := get(fmt.Errorf("read: %w", nats.ErrNoResponders), context.Background()); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("no responders: %d %q, want 503 with Retry-After", rec.Code, rec.Body.String())
	}
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if rec := get(context.Canceled, stopped); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "try again") {
		t.Errorf("the request's context ended: %d %q, want 503 saying to try again", rec.Code, rec.Body.String())
	}
}
