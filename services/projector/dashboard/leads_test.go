package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/services/projector/app"
	"github.com/leadflow/leadflow/services/projector/dashboard"
)

// searchReports keeps the lead query it was asked, and refuses a funnel
// as the app refuses a period that ends before it starts.
type searchReports struct {
	dashboard.Reports
	asked     *app.LeadQuery
	funnel    *app.FunnelQuery
	campaigns *app.CampaignQuery
}

func (r *searchReports) SearchLeads(_ context.Context, q app.LeadQuery) ([]*projectorv1.Lead, string, error) {
	r.asked = &q
	return nil, "", nil
}

func (r *searchReports) Funnel(_ context.Context, q app.FunnelQuery) (*projectorv1.GetFunnelResponse, error) {
	if q.Period.From.Equal(q.Period.To) && !q.Period.From.IsZero() {
		return nil, &app.ValidationError{Violations: []app.Violation{{Field: "period.to", Description: "must be after period.from"}}}
	}
	r.funnel = &q
	return &projectorv1.GetFunnelResponse{}, nil
}

func (r *searchReports) Campaigns(_ context.Context, q app.CampaignQuery) (*projectorv1.GetCampaignReportResponse, error) {
	r.campaigns = &q
	return &projectorv1.GetCampaignReportResponse{}, nil
}

// A lead list's filters are read or refused: a value that is none of
// theirs used to answer every lead. A period's fields are named as the
// page's query names them.
func TestDashboardLeadFiltersAreReadOrRefused(t *testing.T) {
	reports := &searchReports{}
	h := dashboard.New(dashboard.Config{Reports: reports})
	get := func(query string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/"+query, nil))
		return rec
	}
	if rec := get("leads?overdue=1&limit=5&status=mql&status=ACCEPTED"); rec.Code != http.StatusOK || reports.asked == nil ||
		!reports.asked.Overdue || reports.asked.PageSize != 5 ||
		len(reports.asked.Statuses) != 2 || reports.asked.Statuses[0] != eventv1.LeadStatus_LEAD_STATUS_MQL || reports.asked.Statuses[1] != eventv1.LeadStatus_LEAD_STATUS_ACCEPTED {
		t.Fatalf("leads?overdue=1&limit=5&status=mql&status=ACCEPTED: %d %s, asked %+v", rec.Code, rec.Body, reports.asked)
	}
	// The API's names, as its own answers spell them, are read too.
	if rec := get("leads?status=LEAD_STATUS_NEW"); rec.Code != http.StatusOK || len(reports.asked.Statuses) != 1 || reports.asked.Statuses[0] != eventv1.LeadStatus_LEAD_STATUS_NEW {
		t.Fatalf("leads?status=LEAD_STATUS_NEW: %d %s", rec.Code, rec.Body)
	}
	if rec := get("campaigns?attribution=ATTRIBUTION_MODEL_LINEAR"); rec.Code != http.StatusOK || reports.campaigns == nil ||
		reports.campaigns.Attribution != projectorv1.AttributionModel_ATTRIBUTION_MODEL_LINEAR {
		t.Fatalf("campaigns?attribution=ATTRIBUTION_MODEL_LINEAR: %d %s", rec.Code, rec.Body)
	}
	if rec := get("funnel?group=FUNNEL_GROUP_SEGMENT"); rec.Code != http.StatusOK || reports.funnel == nil || reports.funnel.GroupBy != projectorv1.FunnelGroup_FUNNEL_GROUP_SEGMENT {
		t.Fatalf("funnel?group=FUNNEL_GROUP_SEGMENT: %d %s", rec.Code, rec.Body)
	}
	for query, field := range map[string]string{
		"funnel?group=bogus":                   `"field":"group"`,
		"leads?overdue=yes":                    `"field":"overdue"`,
		"leads?limit=abc":                      `"field":"limit"`,
		"leads?limit=-1":                       `"field":"limit"`,
		"leads?status=bogus":                   `"field":"status"`,
		"leads?from=yesterday":                 `"field":"from"`,
		"funnel?from=2026-12-07&to=2026-12-07": `"field":"to","description":"must be after from"`,
	} {
		reports.asked = nil
		if rec := get(query); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), field) || strings.Contains(rec.Body.String(), "period.") || reports.asked != nil {
			t.Errorf("%s: %d %s, asked %v; want 400 naming %s, and nothing asked", query, rec.Code, rec.Body, reports.asked, field)
		}
	}
}
