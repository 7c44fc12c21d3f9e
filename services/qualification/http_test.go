package main

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/scoring"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// The scoring model over HTTP: a proposal in JSON, read back by its REST
// path as the gRPC API answers it; a refused proposal is 400 naming the
// field and records nothing; an unknown lead's score is 404; a lead is
// disqualified by its REST path.
func TestHTTPModelAndScore(t *testing.T) {
	w := newWorld(t)
	web := make(chan net.Addr, 1)
	s := w.start(t, func(c *Config) {
		c.HTTPAddr = "127.0.0.1:0"
		c.httpReady = func(a net.Addr) { web <- a }
	})
	var base string
	select {
	case a := <-web:
		base = "http://" + a.String()
	case <-time.After(10 * time.Second):
		t.Fatal("HTTP API did not start")
	}
	model, err := protojson.Marshal(scoring.ToProto(scoring.Default()))
	if err != nil {
		t.Fatal(err)
	}
	who, err := protojson.Marshal(marketing)
	if err != nil {
		t.Fatal(err)
	}

	code, body := testenv.HTTP(t, "POST", base+"/v1/models", `{"model":`+string(model)+`}`)
	if !strings.Contains(body, `"field":"proposed_by"`) || code != http.StatusBadRequest {
		t.Fatalf("proposal without proposer: %d %s", code, body)
	}
	code, body = testenv.HTTP(t, "GET", base+"/v1/models", "")
	var list qualificationv1.ListModelVersionsResponse
	if err := protojson.Unmarshal([]byte(body), &list); err != nil || code != http.StatusOK || len(list.GetVersions()) != 0 {
		t.Fatalf("a refused proposal was recorded: %d %s (%v)", code, body, err)
	}
	code, body = testenv.HTTP(t, "POST", base+"/v1/models", `{"model":`+string(model)+`,"proposedBy":`+string(who)+`}`)
	var proposed qualificationv1.ProposeModelResponse
	if err := protojson.Unmarshal([]byte(body), &proposed); err != nil || code != http.StatusOK || proposed.GetVersion() != 1 {
		t.Fatalf("propose: %d %s (%v)", code, body, err)
	}
	want, err := s.client.GetModel(ctxT(t), &qualificationv1.GetModelRequest{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	code, body = testenv.HTTP(t, "GET", base+"/v1/models/1", "")
	var got qualificationv1.GetModelResponse
	if err := protojson.Unmarshal([]byte(body), &got); err != nil || code != http.StatusOK || !proto.Equal(&got, want) {
		t.Fatalf("GET /v1/models/1: %d %s, want %v (%v)", code, body, want, err)
	}
	// A path value that does not parse names its parameter.
	code, body = testenv.HTTP(t, "GET", base+"/v1/models/abc", "")
	if code != http.StatusBadRequest || !strings.Contains(body, `"field":"version"`) {
		t.Fatalf("GET /v1/models/abc: %d %s, want a violation for version", code, body)
	}
	code, body = testenv.HTTP(t, "GET", base+"/v1/leads/"+uuid.NewString()+"/score", "")
	var st struct{ Code int }
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusNotFound || st.Code != 5 {
		t.Fatalf("an unknown lead's score: %d %s", code, body)
	}
	lead := uuid.NewString()
	w.capture(t, lead, &eventv1.Profile{Country: "DE"})
	code, body = testenv.HTTP(t, "POST", base+"/v1/leads/"+lead+":disqualify", `{"reason":"spam","decidedBy":`+string(who)+`}`)
	var d qualificationv1.DisqualifyLeadResponse
	if err := protojson.Unmarshal([]byte(body), &d); err != nil || code != http.StatusOK || d.GetStatus() != eventv1.LeadStatus_LEAD_STATUS_DISQUALIFIED {
		t.Fatalf("POST /v1/leads/{id}:disqualify: %d %s (%v)", code, body, err)
	}
}
