package main

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// A cost line without a period start counts in the period it was
// recorded in (it used to count in no dated report at all), live and
// replayed alike.
func TestCostLineWithoutPeriodCountsWhenRecorded(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	w.fixture(t)
	eur := func(cents int64) *eventv1.Money { return &eventv1.Money{Currency: "EUR", MinorUnits: cents} }
	// €700 recorded on March 2nd, €200 on February 27th (h-60).
	w.other(t, eventstore.CampaignSubject("events"), 5, &eventv1.CampaignCostRecorded{CampaignId: "events", CostId: "booth", Amount: eur(70000)})
	w.other(t, eventstore.CampaignSubject("events"), -60, &eventv1.CampaignCostRecorded{CampaignId: "events", CostId: "flyers", Amount: eur(20000)})
	w.projected(t, w.dsn)
	fresh := w.replay(t, testenv.Postgres(t))

	first := projectorv1.AttributionModel_ATTRIBUTION_MODEL_FIRST_TOUCH
	feb := &projectorv1.Period{From: timestamppb.New(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)), To: timestamppb.New(march.from)}
	for _, c := range []struct {
		name string
		p    *projectorv1.Period
		want row
	}{
		// March: l5 and l6 (won €3,000), €700: ROI (3,000 − 700) / 700.
		{"March", marchPeriod(), row{spend: 70000, leads: 2, mqls: 2, accepted: 2, opps: 2, pipeline: 800000, wonDeals: 1, won: 300000,
			cpl: 35000, cpa: 35000, cpw: 70000, roi: 230000.0 / 70000}},
		// February: no lead of events, €200.
		{"February", feb, row{spend: 20000, cplUndef: true, cpaUndef: true, cpwUndef: true, roi: -1}},
		{"all time", nil, row{spend: 90000, leads: 2, mqls: 2, accepted: 2, opps: 2, pipeline: 800000, wonDeals: 1, won: 300000,
			cpl: 45000, cpa: 45000, cpw: 90000, roi: 210000.0 / 90000}},
	} {
		var live *projectorv1.CampaignRow
		for _, cl := range []projectorv1.ProjectorServiceClient{s.client, fresh.client} {
			r, err := cl.GetCampaignReport(ctxT(t), &projectorv1.GetCampaignReportRequest{Period: c.p, Attribution: first, Currency: "EUR"})
			if err != nil {
				t.Fatal(err)
			}
			var events *projectorv1.CampaignRow
			for _, x := range r.GetCampaigns() {
				if x.GetCampaignId() == "events" {
					events = x
				}
			}
			if events == nil {
				t.Fatalf("%s: no row for events: %v", c.name, r)
			}
			if live == nil {
				live = events
				t.Run(c.name, func(t *testing.T) { checkCampaign(t, events, first, c.want) })
			} else if !proto.Equal(live, events) {
				t.Errorf("%s: replayed %v, live %v", c.name, events, live)
			}
		}
	}
}
