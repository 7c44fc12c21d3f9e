package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/testenv"
)

// startHTTP is start with the HTTP/JSON API on a free port too; it
// returns the API's base URL.
func (w *world) startHTTP(t *testing.T) (*service, string) {
	t.Helper()
	web := make(chan net.Addr, 1)
	s := w.startWith(t, func(c *Config) {
		c.HTTPAddr = "127.0.0.1:0"
		c.httpReady = func(a net.Addr) { web <- a }
	})
	select {
	case a := <-web:
		return s, "http://" + a.String()
	case <-time.After(10 * time.Second):
		t.Fatal("HTTP API did not start")
	}
	return nil, ""
}

// The CRM's commands over HTTP keep their gRPC meaning: a transition the
// lifecycle refuses is FAILED_PRECONDITION (HTTP 400, code 9) naming the
// lead's state and writes nothing; an unknown lead is 404.
func TestHTTPCRMCommands(t *testing.T) {
	w := newWorld(t)
	s, base := w.startHTTP(t)
	routingSetup(t, s.client, 10)
	id := w.mql(t, dach(5000))
	owner := ownerOf(w.waitFor(t, id, "LeadAssigned", 1)[0])
	w.settle(t)
	lead := base + "/v1/leads/" + id

	before := len(w.events(t, id))
	code, out := testenv.HTTPJSON(t, "POST", lead+":closeWon", fmt.Sprintf(`{"repId":%q,"requestId":"w0","amount":{"currency":"EUR","minorUnits":"100"}}`, owner))
	if msg, _ := out["message"].(string); code != http.StatusBadRequest || out["code"] != float64(9) || !strings.Contains(msg, "ASSIGNED") {
		t.Fatalf("closing a lead never converted: %d %v", code, out)
	}
	if n := len(w.events(t, id)); n != before {
		t.Fatalf("a refused command wrote: %d events, was %d", n, before)
	}

	code, out = testenv.HTTPJSON(t, "POST", lead+":accept", fmt.Sprintf(`{"repId":%q,"requestId":"a1"}`, owner))
	if code != http.StatusOK || testenv.JSONField(out, "lead", "status") != "LEAD_STATUS_ACCEPTED" || out["replayed"] != false {
		t.Fatalf("accept: %d %v", code, out)
	}
	before = len(w.events(t, id))
	code, out = testenv.HTTPJSON(t, "POST", lead+":accept", fmt.Sprintf(`{"rep_id":%q,"request_id":"a2"}`, owner))
	if msg, _ := out["message"].(string); code != http.StatusBadRequest || out["code"] != float64(9) || !strings.Contains(msg, "refused in ACCEPTED") {
		t.Fatalf("a second accept: %d %v", code, out)
	}
	if n := len(w.events(t, id)); n != before {
		t.Fatalf("a refused accept wrote: %d events, was %d", n, before)
	}

	// The method's own path works for every method, REST path or not.
	code, out = testenv.HTTPJSON(t, "POST", base+"/leadflow.handoff.v1.HandoffService/ConvertLead",
		fmt.Sprintf(`{"leadId":%q,"repId":%q,"requestId":"o1","amount":{"currency":"EUR","minorUnits":"5000000"},"stage":"discovery"}`, id, owner))
	if code != http.StatusOK || testenv.JSONField(out, "lead", "status") != "LEAD_STATUS_OPPORTUNITY" || out["opportunityId"] != "opp-o1" {
		t.Fatalf("convert: %d %v", code, out)
	}
	code, out = testenv.HTTPJSON(t, "GET", lead+"/brief", "")
	if code != http.StatusOK || testenv.JSONField(out, "brief", "leadId") != id || testenv.JSONField(out, "brief", "status") != "LEAD_STATUS_OPPORTUNITY" {
		t.Fatalf("brief: %d %v", code, out)
	}
	if code, out := testenv.HTTPJSON(t, "GET", base+"/v1/leads/"+uuid.NewString()+"/brief", ""); code != http.StatusNotFound || out["code"] != float64(5) {
		t.Fatalf("unknown lead: %d %v", code, out)
	}
	code, out = testenv.HTTPJSON(t, "POST", lead+":convert", fmt.Sprintf(`{"repId":%q,"requestId":"o2","amount":{"currency":"euro","minorUnits":"1"},"stage":"discovery"}`, owner))
	if details, _ := json.Marshal(out["details"]); code != http.StatusBadRequest || out["code"] != float64(3) || !strings.Contains(string(details), `"field":"amount.currency"`) {
		t.Fatalf("bad currency: %d %v", code, out)
	}
}
