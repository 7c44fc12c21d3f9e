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

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return res.StatusCode, out
}

func field(v any, keys ...string) any {
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
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
	code, out := post(t, lead+":closeWon", fmt.Sprintf(`{"repId":%q,"requestId":"w0","amount":{"currency":"EUR","minorUnits":"100"}}`, owner))
	if msg, _ := out["message"].(string); code != http.StatusBadRequest || out["code"] != float64(9) || !strings.Contains(msg, "ASSIGNED") {
		t.Fatalf("closing a lead never converted: %d %v", code, out)
	}
	if n := len(w.events(t, id)); n != before {
		t.Fatalf("a refused command wrote: %d events, was %d", n, before)
	}

	code, out = post(t, lead+":accept", fmt.Sprintf(`{"repId":%q,"requestId":"a1"}`, owner))
	if code != http.StatusOK || field(out, "lead", "status") != "LEAD_STATUS_ACCEPTED" || out["replayed"] != false {
		t.Fatalf("accept: %d %v", code, out)
	}
	before = len(w.events(t, id))
	code, out = post(t, lead+":accept", fmt.Sprintf(`{"rep_id":%q,"request_id":"a2"}`, owner))
	if msg, _ := out["message"].(string); code != http.StatusBadRequest || out["code"] != float64(9) || !strings.Contains(msg, "refused in ACCEPTED") {
		t.Fatalf("a second accept: %d %v", code, out)
	}
	if n := len(w.events(t, id)); n != before {
		t.Fatalf("a refused accept wrote: %d events, was %d", n, before)
	}

	// The method's own path works for every method, REST path or not.
	code, out = post(t, base+"/leadflow.handoff.v1.HandoffService/ConvertLead",
		fmt.Sprintf(`{"leadId":%q,"repId":%q,"requestId":"o1","amount":{"currency":"EUR","minorUnits":"5000000"},"stage":"discovery"}`, id, owner))
	if code != http.StatusOK || field(out, "lead", "status") != "LEAD_STATUS_OPPORTUNITY" || out["opportunityId"] != "opp-o1" {
		t.Fatalf("convert: %d %v", code, out)
	}
	code, out = getJSON(t, lead+"/brief")
	if code != http.StatusOK || field(out, "brief", "leadId") != id || field(out, "brief", "status") != "LEAD_STATUS_OPPORTUNITY" {
		t.Fatalf("brief: %d %v", code, out)
	}
	if code, out := getJSON(t, base+"/v1/leads/"+uuid.NewString()+"/brief"); code != http.StatusNotFound || out["code"] != float64(5) {
		t.Fatalf("unknown lead: %d %v", code, out)
	}
	code, out = post(t, lead+":convert", fmt.Sprintf(`{"repId":%q,"requestId":"o2","amount":{"currency":"euro","minorUnits":"1"},"stage":"discovery"}`, owner))
	if details, _ := json.Marshal(out["details"]); code != http.StatusBadRequest || out["code"] != float64(3) || !strings.Contains(string(details), `"field":"amount.currency"`) {
		t.Fatalf("bad currency: %d %v", code, out)
	}
}
