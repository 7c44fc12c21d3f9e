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

	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	"github.com/leadflow/leadflow/pkg/testenv"
)

// Nurture over HTTP: the programs by their REST path as the gRPC API
// answers them; a recycle without its note is 400 naming the field and
// writes nothing; an unknown lead is 404.
func TestHTTPProgramsAndRecycle(t *testing.T) {
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
	want, err := s.client.ListPrograms(ctxT(t), &nurturev1.ListProgramsRequest{IncludeRetired: true})
	if err != nil || len(want.GetPrograms()) == 0 {
		t.Fatalf("programs: %v %v", want, err)
	}
	code, body := testenv.HTTP(t, "GET", base+"/v1/programs?includeRetired=true", "")
	var got nurturev1.ListProgramsResponse
	if err := protojson.Unmarshal([]byte(body), &got); err != nil || code != http.StatusOK || !proto.Equal(&got, want) {
		t.Fatalf("GET /v1/programs: %d %s, want %v (%v)", code, body, want, err)
	}

	id := uuid.NewString()
	w.capture(t, id)
	before := len(w.events(t, id))
	code, body = testenv.HTTP(t, "POST", base+"/v1/leads/"+id+":recycle", `{"requestId":"r1","actor":{"kind":"ACTOR_KIND_USER","id":"mia"}}`)
	if code != http.StatusBadRequest || !strings.Contains(body, `"field":"note"`) {
		t.Fatalf("recycle without a note: %d %s", code, body)
	}
	if n := len(w.events(t, id)); n != before {
		t.Fatalf("a refused recycle wrote: %d events, was %d", n, before)
	}
	code, body = testenv.HTTP(t, "GET", base+"/v1/leads/"+uuid.NewString()+"/nurture", "")
	var st struct{ Code int }
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusNotFound || st.Code != 5 {
		t.Fatalf("an unknown lead: %d %s", code, body)
	}
}
