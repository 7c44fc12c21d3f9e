package main

import (
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// Report calendars follow the zone the caller names: a lead captured and
// qualified at 23:30 UTC on 31 March is April's in Berlin (01:30 CEST),
// in the funnel's months and in marketing's, whose target for April is
// Berlin's April too. Without a zone, UTC; a name that is no zone, or
// not an Area/Location one, is refused.
func TestReportCalendarsFollowTheCallersTimeZone(t *testing.T) {
	w := newWorld(t)
	s, _ := w.startDashboard(t)
	at := time.Date(2026, 3, 31, 23, 30, 0, 0, time.UTC)
	cmd := func(n lifecycle.CommandName) lifecycle.Command { return lifecycle.Command{Name: n} }
	w.leadAt(t, "tz1", at, cmd(lifecycle.Capture), &eventv1.LeadCaptured{SealedContact: []byte("s"), Attribution: &eventv1.Attribution{Source: "web-form"}})
	w.leadAt(t, "tz1", at.Add(time.Minute), cmd(lifecycle.Qualify), &eventv1.LeadQualified{ModelId: "scoring", ModelVersion: 1, Score: 80, Threshold: 70})
	w.other(t, eventstore.ModelSubject("sla-targets"), -1, &eventv1.MarketingTargetSet{Target: &eventv1.MarketingTarget{Period: "2026-04", MinMqls: 1}})
	w.projected(t, w.dsn)

	type row struct {
		period string
		mqls   int64
		met    bool
	}
	for zone, want := range map[string]struct {
		day       string
		marketing []row
	}{
		"":                    {"2026-03-01", []row{{"2026-03", 1, false}, {"2026-04", 0, false}}},
		"UTC":                 {"2026-03-01", []row{{"2026-03", 1, false}, {"2026-04", 0, false}}},
		"America/Los_Angeles": {"2026-03-01", []row{{"2026-03", 1, false}, {"2026-04", 0, false}}},
		"Europe/Berlin":       {"2026-04-01", []row{{"2026-04", 1, true}}},
	} {
		f, err := s.client.GetFunnel(ctxT(t), &projectorv1.GetFunnelRequest{GroupBy: projectorv1.FunnelGroup_FUNNEL_GROUP_PERIOD, TimeZone: zone})
		if err != nil {
			t.Fatal(err)
		}
		if len(f.GetRows()) != 1 || f.GetRows()[0].GetKey() != want.day || f.GetRows()[0].GetMql() != 1 {
			t.Errorf("funnel in %q: %v, want one MQL in the month of %s", zone, f.GetRows(), want.day)
		}
		sla, err := s.client.GetSLACompliance(ctxT(t), &projectorv1.GetSLAComplianceRequest{TimeZone: zone})
		if err != nil {
			t.Fatal(err)
		}
		var got []row
		for _, m := range sla.GetMarketing() {
			got = append(got, row{m.GetPeriod(), m.GetMqls(), m.GetMqlsMet()})
		}
		if len(got) != len(want.marketing) || (len(got) > 0 && got[0] != want.marketing[0]) || got[len(got)-1] != want.marketing[len(want.marketing)-1] {
			t.Errorf("marketing in %q: %v, want %v", zone, got, want.marketing)
		}
	}
	// CET: PostgreSQL reads it as a fixed offset, Go as Central European
	// time with summer time; Europe/Berlin names that. right/…: PostgreSQL
	// counts leap seconds, Go does not.
	for _, zone := range []string{"Mars/Olympus_Mons", "Local", "CET", "Japan", "right/Europe/Berlin", "posix/Europe/Berlin"} {
		_, err := s.client.GetFunnel(ctxT(t), &projectorv1.GetFunnelRequest{TimeZone: zone})
		if status.Code(err) != codes.InvalidArgument || !violates(err, "time_zone") {
			t.Errorf("funnel in %q: %v, want INVALID_ARGUMENT naming time_zone", zone, err)
		}
		_, err = s.client.GetSLACompliance(ctxT(t), &projectorv1.GetSLAComplianceRequest{TimeZone: zone})
		if status.Code(err) != codes.InvalidArgument || !violates(err, "time_zone") {
			t.Errorf("SLA in %q: %v, want INVALID_ARGUMENT naming time_zone", zone, err)
		}
	}
}

// violates reports whether err's field violations name field.
func violates(err error, field string) bool {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return true
				}
			}
		}
	}
	return false
}
