package app_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/services/intake/app"
)

// A merge candidate cut short after its first lead's event, repeated by
// the capture's retry after the server's duplicates window: the missing
// event is written, the one already stored is not written again.
func TestCandidateCutShortIsCompletedPastTheDuplicatesWindow(t *testing.T) {
	const window = 200 * time.Millisecond
	var cut atomic.Bool
	f := newFixtureWith(t, eventstore.StreamConfig{Duplicates: window}, func(f *fixture, p app.CrashPoint, _ string) {
		if p == app.AfterFirstCandidate && cut.CompareAndSwap(false, true) {
			f.leads.crashNext.Store(true) // the other lead's event fails, once
		}
	})
	ctx, meta := ctxT(t), envelope.Meta{CorrelationID: "c"}
	byEmail := captured(t, f.app, "held@cand.example")
	ext := capture("ext@cand.example", "")
	ext.ExternalID = &eventv1.ExternalId{System: "crm", Id: "c-1"}
	r, err := f.app.CaptureLead(ctx, ext, meta)
	if err != nil {
		t.Fatal(err)
	}
	byExt := r.LeadID

	both := capture("held@cand.example", "both-1")
	both.ExternalID = ext.ExternalID
	if _, err := f.app.CaptureLead(ctx, both, meta); err != nil {
		t.Fatal(err)
	}
	if got := candidates(t, f, byEmail); len(got) != 0 {
		t.Fatalf("before the retry the email's lead records %v, want none (cut short)", got)
	}
	time.Sleep(2 * window)
	again, err := f.app.CaptureLead(ctx, both, meta)
	if err != nil || !again.Replayed {
		t.Fatalf("retry: %+v, %v, want the first answer replayed", again, err)
	}
	for _, c := range [][2]string{{byExt, byEmail}, {byEmail, byExt}} {
		if got := candidates(t, f, c[0]); len(got) != 1 || got[0] != c[1] {
			t.Errorf("lead %s records merge candidates %v, want [%s]", c[0], got, c[1])
		}
	}
}

// candidates are the other leads a lead's MergeCandidateFound events name.
func candidates(t *testing.T, f *fixture, leadID string) []string {
	t.Helper()
	recs, err := f.store.Load(ctxT(t), eventstore.LeadSubject(leadID))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		if m := r.Event.GetMergeCandidateFound(); m != nil {
			out = append(out, m.GetOtherLeadId())
		}
	}
	return out
}
