package main

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/scoring"
)

// The score and its verdict are two appends. A writer that died between
// them left a LeadScored that says QUALIFY and no LeadQualified; the
// redelivered trigger must write exactly the missing verdict, caused by
// that score, and score nothing again.
func TestRedeliveryFinishesAVerdictCutOffByACrash(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	version := activateFirst(t, s.client, scoring.Default())
	s.stop() // the durable stays where it is: it has seen nothing of the lead

	lead := uuid.NewString()
	trigger := w.capture(t, lead, vpProfile("analytical.example"))
	// What the crashed writer got to store: the score, not the verdict.
	ctx := ctxT(t)
	recs, err := w.store.Load(ctx, eventstore.LeadSubject(lead))
	if err != nil {
		t.Fatal(err)
	}
	state := lifecycle.FromProto(recs[0].Event.GetLifecycle())
	state.Score = 80
	score, err := envelope.NewEvent(lead, &eventv1.LeadScored{ModelId: scoring.ID, ModelVersion: version, Total: 80, Threshold: 70,
		Verdict: eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY}, envelope.Meta{CausationID: trigger.GetEventId()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	score.Lifecycle = lifecycle.ToProto(state)
	if _, err := w.store.Append(ctx, eventstore.LeadSubject(lead), recs[0].Seq, score); err != nil {
		t.Fatal(err)
	}

	w.start(t)
	w.settle(t)
	evs := w.events(t, lead)
	scores, quals := ofType(evs, "LeadScored"), ofType(evs, "LeadQualified")
	if len(scores) != 1 || len(quals) != 1 {
		t.Fatalf("%d scores and %d qualifications, want the crashed writer's score and one qualification", len(scores), len(quals))
	}
	if quals[0].GetCausationId() != score.GetEventId() {
		t.Fatalf("qualification caused by %s, want the score %s", quals[0].GetCausationId(), score.GetEventId())
	}
	if st := last(evs).GetLifecycle().GetStatus(); st != eventv1.LeadStatus_LEAD_STATUS_MQL {
		t.Fatalf("status %s, want MQL", st)
	}
}
