package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	"github.com/leadflow/leadflow/services/nurture/adapters"
	"github.com/leadflow/leadflow/services/nurture/app"
)

// A replica whose program list is a moment old judges a lead enrolled in
// a program defined since by that program's rules, not the default's:
// an email click, which re-engages under the default program but not
// under the lead's, must not bring the lead back.
func TestAReplicaBehindOnProgramsJudgesByTheLeadsProgram(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	l := uuid.NewString()
	w.accepted(t, l, "smb", 30)

	log := slog.New(slog.DiscardHandler)
	js := w.nats.JS
	b := app.New(adapters.NewLeads(w.store), adapters.NewPrograms(w.store), adapters.NewTimers(js, time.Hour),
		adapters.NewIndex(js, stream, log), adapters.NewGroups(js, stream, consume.DefaultDeadLetterStream), app.WithLogger(log))
	ctx := ctxT(t)
	if _, err := b.Reconcile(ctx, l, envelope.Meta{}); err != nil { // reads the programs as they are now
		t.Fatal(err)
	}

	put(t, s.client, &eventv1.NurtureProgram{ProgramId: "demos-only", Name: "Demos only", Duration: days(30),
		ExitRules: &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{demo}}})
	if _, err := s.client.RecycleLead(ctx, &nurturev1.RecycleLeadRequest{LeadId: l, Note: "not yet", ProgramId: "demos-only", Actor: marketer}); err != nil {
		t.Fatal(err)
	}
	w.activity(t, l, eventv1.ActivityType_ACTIVITY_TYPE_EMAIL_CLICK)
	if _, err := b.Reconcile(ctx, l, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if re := ofType(w.events(t, l), "LeadReengaged"); len(re) != 0 {
		t.Fatalf("re-engaged by an email click its program does not count: %v", re)
	}
}
