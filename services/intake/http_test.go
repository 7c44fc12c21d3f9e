package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// startHTTP is start with the HTTP/JSON API on a free port too; it
// returns the API's base URL.
func startHTTP(t *testing.T) (*env, string) {
	t.Helper()
	n := testenv.StartNATS(t)
	web := make(chan net.Addr, 1)
	cfg := Config{Addr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", NATSURL: n.Server.URL(), Stream: "LEADFLOW", Replicas: 1,
		MasterKey: hexKey(t), BlindKey: hexKey(t), Grace: time.Second, httpReady: func(a net.Addr) { web <- a }}
	e := startWith(t, n, cfg)
	select {
	case a := <-web:
		if a == nil {
			t.Fatal("no HTTP address")
		}
		return e, "http://" + a.String()
	case <-time.After(10 * time.Second):
		t.Fatal("HTTP API did not start")
	}
	return nil, ""
}

const captureJSON = `{"idempotencyKey":"form-7","contact":{"email":"Grace@Example.com","firstName":"Grace","lastName":"Hopper"},
	"profile":{"company":"Navy","title":"Rear Admiral","seniority":"SENIORITY_VP","employees":5000,"country":"us"},
	"attribution":{"source":"web-form","utmSource":"newsletter"}}`

// A marketing platform captures a lead with curl and JSON and reads it
// back, by the REST path and by the method's own path; the correlation
// id it sends is in the event written.
func TestHTTPCaptureAndReadBack(t *testing.T) {
	e, base := startHTTP(t)
	code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", captureJSON, "X-Correlation-Id", "crm-sync-42")
	id, _ := out["leadId"].(string)
	if code != http.StatusOK || id == "" || out["outcome"] != "CAPTURE_OUTCOME_CREATED" || out["replayed"] != false {
		t.Fatalf("capture: %d %v", code, out)
	}
	// The same key again is the first answer, written once.
	if code, again := testenv.HTTPJSON(t, "POST", base+"/v1/leads", captureJSON); code != http.StatusOK || again["leadId"] != id || again["replayed"] != true {
		t.Fatalf("repeat: %d %v", code, again)
	}

	code, rest := testenv.HTTPJSON(t, "GET", base+"/v1/leads/"+id, "")
	if code != http.StatusOK || testenv.JSONField(rest, "lead", "leadId") != id || testenv.JSONField(rest, "lead", "contact", "email") != "grace@example.com" ||
		testenv.JSONField(rest, "lead", "lifecycle", "status") != "LEAD_STATUS_NEW" || testenv.JSONField(rest, "lead", "profile", "country") != "US" {
		t.Fatalf("GET /v1/leads/%s: %d %v", id, code, rest)
	}
	// The method's own path, with the proto field name in the body.
	code, unbound := testenv.HTTPJSON(t, "POST", base+"/leadflow.intake.v1.IntakeService/GetLead", fmt.Sprintf(`{"lead_id":%q}`, id))
	if code != http.StatusOK || fmt.Sprint(unbound) != fmt.Sprint(rest) {
		t.Fatalf("unbound GetLead: %d %v, want %v", code, unbound, rest)
	}

	recs, err := eventstore.New(e.nats.JS, "LEADFLOW").Load(ctxT(t), eventstore.LeadSubject(id))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Event.GetEventType() != "LeadCaptured" || recs[0].Event.GetCorrelationId() != "crm-sync-42" {
		t.Fatalf("events: %v", recs)
	}
}

// A bad request over HTTP is 400 with the gRPC status in the body, naming
// the field, and writes nothing; so is a body that is not the request.
func TestHTTPBadRequestNamesTheFieldAndWritesNothing(t *testing.T) {
	e, base := startHTTP(t)
	before := e.counts(t)
	code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", `{"contact":{"email":"not an email"},"attribution":{"source":"web-form"}}`)
	if code != http.StatusBadRequest || out["code"] != float64(3) {
		t.Fatalf("invalid email: %d %v", code, out)
	}
	details, _ := json.Marshal(out["details"])
	if !strings.Contains(string(details), `"field":"contact.email"`) || !strings.Contains(string(details), "google.rpc.BadRequest") {
		t.Fatalf("details do not name contact.email: %s", details)
	}
	for _, body := range []string{`{"contact":{"email":"ok@example.com"},"idempotencyKy":"k"}`, `{"contact":{"email":"ok@example.com"}`} {
		if code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", body); code != http.StatusBadRequest || out["code"] != float64(3) {
			t.Fatalf("%s: %d %v", body, code, out)
		}
	}
	if code, out := testenv.HTTPJSON(t, "GET", base+"/v1/leads/00000000-0000-0000-0000-000000000000", ""); code != http.StatusNotFound || out["code"] != float64(5) {
		t.Fatalf("unknown lead: %d %v", code, out)
	}
	e.assertCounts(t, before)
}

// ImportLeads over HTTP: newline-delimited JSON rows in, one result per
// row out, a refused row naming its field.
func TestHTTPImportNewlineDelimited(t *testing.T) {
	_, base := startHTTP(t)
	var body strings.Builder
	for i := 1; i <= 300; i++ {
		email := fmt.Sprintf("row%d@example.com", i)
		if i == 150 {
			email = ""
		}
		fmt.Fprintf(&body, `{"row":%d,"lead":{"contact":{"email":%q},"attribution":{"source":"import"}}}`+"\n", i, email)
	}
	code, lines := testenv.HTTPLines(t, "POST", base+"/v1/leads:import", body.String())
	if code != http.StatusOK || len(lines) != 300 {
		t.Fatalf("status %d, %d results, want 300", code, len(lines))
	}
	for i, line := range lines {
		row, r := i+1, line["result"]
		if testenv.JSONField(r, "row") != fmt.Sprint(row) {
			t.Fatalf("result %d: %v", row, line)
		}
		errs, _ := testenv.JSONField(r, "errors").([]any)
		if refused := row == 150; refused != (len(errs) > 0) || refused && testenv.JSONField(errs[0], "field") != "contact.email" ||
			!refused && testenv.JSONField(r, "leadId") == "" {
			t.Fatalf("result %d: %v", row, r)
		}
	}

	// A row that does not decode ends the import there with an error line
	// naming it; the rows before it are stored, the rows after it are not.
	body.Reset()
	for i := 1; i <= 5; i++ {
		field := map[bool]string{true: "emial", false: "email"}[i == 4]
		fmt.Fprintf(&body, `{"row":%d,"lead":{"contact":{%q:"late%d@example.com"},"attribution":{"source":"import"}}}`+"\n", i, field, i)
	}
	_, lines = testenv.HTTPLines(t, "POST", base+"/v1/leads:import", body.String())
	if len(lines) != 4 || testenv.JSONField(lines[2], "result", "leadId") == "" ||
		!strings.Contains(fmt.Sprint(testenv.JSONField(lines[3], "error", "message")), "value 4") {
		t.Fatalf("want 3 results and an error naming value 4: %v", lines)
	}
	for i, want := range map[int]string{3: "CAPTURE_OUTCOME_RESUBMITTED", 5: "CAPTURE_OUTCOME_CREATED"} {
		code, out := testenv.HTTPJSON(t, "POST", base+"/v1/leads", fmt.Sprintf(`{"contact":{"email":"late%d@example.com"},"attribution":{"source":"web"}}`, i))
		if code != http.StatusOK || out["outcome"] != want {
			t.Fatalf("row %d captured again: %d %v, want %s", i, code, out, want)
		}
	}
}
