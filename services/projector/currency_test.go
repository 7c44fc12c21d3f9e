package main

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
)

// A report left to pick its currency looks only at the money it shows: a
// campaign cost in USD makes the campaign report ask which currency, but
// not the performance or account reports, whose deals are all in EUR
// (they used to refuse too).
func TestReportsPickTheCurrencyOfTheirOwnMoney(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	w.fixture(t)
	w.other(t, eventstore.CampaignSubject("events"), -44, &eventv1.CampaignCostRecorded{CampaignId: "events", CostId: "usd-1",
		Amount: &eventv1.Money{Currency: "USD", MinorUnits: 30000}})
	w.projected(t, w.dsn)
	ctx := ctxT(t)

	_, err := s.client.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "EUR, USD") {
		t.Fatalf("campaign report without a currency: %v", err)
	}
	usd, err := s.client.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH, Currency: "USD"})
	if err != nil || usd.GetCurrency() != "USD" {
		t.Fatalf("campaign report in USD: %v %v", usd, err)
	}
	perf, err := s.client.GetPerformance(ctx, &projectorv1.GetPerformanceRequest{})
	if err != nil || perf.GetCurrency() != "EUR" {
		t.Fatalf("performance without a currency: %v %v", perf, err)
	}
	accounts, err := s.client.GetAccounts(ctx, &projectorv1.GetAccountsRequest{})
	if err != nil || accounts.GetCurrency() != "EUR" {
		t.Fatalf("accounts without a currency: %v %v", accounts, err)
	}
}
