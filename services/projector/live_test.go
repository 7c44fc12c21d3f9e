package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// A rebuild's swap tells open pages: every report reads the new schema,
// and no batch need commit after it to say so.
func TestARebuildTellsOpenPages(t *testing.T) {
	w := newWorld(t)
	s, base := w.startDashboard(t)
	w.lead(t, "live1", 0, lifecycle.Command{Name: lifecycle.Capture}, &eventv1.LeadCaptured{SealedContact: []byte("s"),
		Attribution: &eventv1.Attribution{Source: "web-form"}})
	w.projected(t, w.dsn)

	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, base+"api/live", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("live: %v %v", res, err)
	}
	defer res.Body.Close()
	gens := make(chan uint64, 16)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			var n struct{ Gen uint64 }
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && json.Unmarshal([]byte(data), &n) == nil {
				gens <- n.Gen
			}
		}
	}()
	var last uint64
	for quiet := false; !quiet; {
		select {
		case last = <-gens:
		case <-time.After(time.Second):
			quiet = true
		}
	}

	if _, err := s.client.StartRebuild(ctxT(t), &projectorv1.StartRebuildRequest{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := s.client.GetProjectionStatus(ctxT(t), &projectorv1.GetProjectionStatusRequest{})
		if err == nil && st.GetRebuild().GetDone() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rebuild did not finish: %v %v", st, err)
		}
	}
	select {
	case g := <-gens:
		if g <= last {
			t.Fatalf("notice %d after %d", g, last)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notice reached the open page after the rebuild's swap")
	}
}
