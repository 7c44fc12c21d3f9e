package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// The queries over HTTP answer what the gRPC API answers: lead search and
// detail, the funnel and the campaign report, by their REST paths with
// query parameters; errors keep their gRPC meaning.
func TestHTTPQueriesAnswerAsGRPC(t *testing.T) {
	w := newWorld(t)
	w.fixture(t)
	web := make(chan net.Addr, 1)
	s := w.launch(t, Config{Addr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NATSURL: w.nats.Server.URL(), Stream: stream, Replicas: 1,
		Postgres: w.dsn, Workers: 64, AckWait: 2 * time.Second, Grace: time.Second, httpReady: func(a net.Addr) { web <- a }})
	var base string
	select {
	case a := <-web:
		base = "http://" + a.String()
	case <-time.After(10 * time.Second):
		t.Fatal("HTTP API did not start")
	}
	w.projected(t, w.dsn)
	ctx := ctxT(t)
	p := marchPeriod()
	period := func(prefix string) string {
		return prefix + ".from=" + url.QueryEscape(p.GetFrom().AsTime().Format(time.RFC3339)) + "&" + prefix + ".to=" + url.QueryEscape(p.GetTo().AsTime().Format(time.RFC3339))
	}

	search, err := s.client.SearchLeads(ctx, &projectorv1.SearchLeadsRequest{Captured: p, PageSize: 500})
	if err != nil || len(search.GetLeads()) == 0 {
		t.Fatalf("search: %v %v", search, err)
	}
	sameAs(t, base+"/v1/leads?pageSize=500&"+period("captured"), search)
	detail, err := s.client.GetLead(ctx, &projectorv1.GetLeadRequest{LeadId: "l1"})
	if err != nil {
		t.Fatal(err)
	}
	sameAs(t, base+"/v1/leads/l1", detail)
	funnel, err := s.client.GetFunnel(ctx, &projectorv1.GetFunnelRequest{Period: p, GroupBy: projectorv1.FunnelGroup_FUNNEL_GROUP_SOURCE})
	if err != nil {
		t.Fatal(err)
	}
	sameAs(t, base+"/v1/reports/funnel?groupBy=FUNNEL_GROUP_SOURCE&"+period("period"), funnel)
	report, err := s.client.GetCampaignReport(ctx, &projectorv1.GetCampaignReportRequest{Period: p, Attribution: projectorv1.AttributionModel_ATTRIBUTION_MODEL_LINEAR})
	if err != nil || len(report.GetCampaigns()) == 0 {
		t.Fatalf("report: %v %v", report, err)
	}
	sameAs(t, base+"/v1/reports/campaigns?attribution=ATTRIBUTION_MODEL_LINEAR&"+period("period"), report)

	code, out := testenv.HTTPJSON(t, "GET", base+"/v1/leads/nobody", "")
	if code != http.StatusNotFound || out["code"] != float64(5) {
		t.Fatalf("unknown lead: %d %v", code, out)
	}
	// A lead id in a form no lead has (upper case) is refused as intake
	// and handoff refuse it, not reported missing.
	code, out = testenv.HTTPJSON(t, "GET", base+"/v1/leads/0199AAAA-0000-7000-8000-000000000000", "")
	if details, _ := json.Marshal(out["details"]); code != http.StatusBadRequest || !strings.Contains(string(details), `"field":"lead_id"`) {
		t.Fatalf("an upper-case lead id: %d %v", code, out)
	}
	code, out = testenv.HTTPJSON(t, "GET", base+"/v1/reports/campaigns?"+period("period"), "")
	if details, _ := json.Marshal(out["details"]); code != http.StatusBadRequest || out["code"] != float64(3) || !strings.Contains(string(details), `"field":"attribution"`) ||
		!strings.Contains(string(details), "ATTRIBUTION_MODEL_FIRST_TOUCH") {
		t.Fatalf("no attribution: %d %v, want the values HTTP takes", code, out)
	}
	// A value the gateway cannot parse names its field too.
	code, out = testenv.HTTPJSON(t, "GET", base+"/v1/reports/campaigns?attribution=LINEAR&"+period("period"), "")
	if details, _ := json.Marshal(out["details"]); code != http.StatusBadRequest || !strings.Contains(string(details), `"field":"attribution"`) {
		t.Fatalf("attribution=LINEAR: %d %v", code, out)
	}
	// So does one in a nested or repeated parameter, by its whole name.
	// It says, in the API's words, what the parameter takes.
	for query, want := range map[string]string{
		"period.from=yesterday": "period.from: must be an RFC 3339 time",
		"statuses=BOGUS":        "statuses: must be one of LEAD_STATUS_NEW,",
		"pageSize=abc":          "pageSize: must be a whole number",
		"period=2026-12":        "period: is set by its fields in the query: period.from, period.to",
		"segment=a&segment=b":   "segment: is given more than once; it takes one value",
		"period.from=2026-01-01T00:00:00Z&period.from=2026-02-01T00:00:00Z": "period.from: is given more than once",
		"segment=%FF": "segment: is not valid UTF-8",
	} {
		field, desc, _ := strings.Cut(want, ": ")
		path := "/v1/reports/funnel?"
		if !strings.HasPrefix(field, "period") {
			path = "/v1/leads?"
		}
		// The message names the parameter; its violation's description
		// does not again.
		code, out = testenv.HTTPJSON(t, "GET", base+path+query, "")
		msg, _ := out["message"].(string)
		if details, _ := json.Marshal(out["details"]); code != http.StatusBadRequest || !strings.Contains(string(details), `"field":"`+field+`"`) ||
			!strings.Contains(string(details), `"description":"`+desc) || !strings.Contains(msg, want) || strings.Contains(string(details), "strconv") {
			t.Fatalf("?%s: %d %v, want a violation for %s saying %q", query, code, out, field, want)
		}
	}
	// A misspelt filter is refused, not dropped: dropped, the search would
	// answer every lead.
	for query, field := range map[string]string{"status=LEAD_STATUS_WON": "status", period("captured") + "&captured.form=x": "captured.form"} {
		code, out = testenv.HTTPJSON(t, "GET", base+"/v1/leads?"+query, "")
		if details, _ := json.Marshal(out["details"]); code != http.StatusBadRequest || out["code"] != float64(3) || !strings.Contains(string(details), `"field":"`+field+`"`) ||
			!strings.Contains(string(details), `"description":"unknown field`) {
			t.Fatalf("?%s: %d %v", query, code, out)
		}
	}
}

// sameAs fails unless GET url answers 200 with want in JSON.
func sameAs(t *testing.T, url string, want proto.Message) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, body)
	}
	got := want.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal(body, got); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("GET %s:\n%v\nwant (gRPC)\n%v", url, got, want)
	}
}
