package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	"github.com/leadflow/leadflow/services/nurture/adapters"
	"github.com/leadflow/leadflow/services/nurture/app"
	"github.com/leadflow/leadflow/services/nurture/program"
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

// A replica whose program list is a moment old judges an activity by the
// program as it was when the activity was stored: an edit stored before
// it, which the replica has not read yet, counts.
func TestAReplicaBehindOnProgramsJudgesByTheEditBeforeTheActivity(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	webinars := &eventv1.NurtureProgram{ProgramId: "webinars", Name: "Webinars", Duration: days(30),
		ExitRules: &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{webinar, demo}}}
	put(t, s.client, webinars)
	l := uuid.NewString()
	w.accepted(t, l, "smb", 30)
	ctx := ctxT(t)
	if _, err := s.client.RecycleLead(ctx, &nurturev1.RecycleLeadRequest{LeadId: l, Note: "not yet", ProgramId: "webinars", Actor: marketer}); err != nil {
		t.Fatal(err)
	}
	w.nurtured(t, l)
	w.settle(t, group)

	log := slog.New(slog.DiscardHandler)
	js := w.nats.JS
	stopped := time.Now()
	b := app.New(adapters.NewLeads(w.store), adapters.NewPrograms(w.store), adapters.NewTimers(js, time.Hour),
		adapters.NewIndex(js, stream, log), adapters.NewGroups(js, stream, consume.DefaultDeadLetterStream),
		app.WithLogger(log), app.WithClock(func() time.Time { return stopped })) // its list never ages
	if _, err := b.Reconcile(ctx, l, envelope.Meta{}); err != nil { // reads the programs as they are now
		t.Fatal(err)
	}
	demosOnly := proto.CloneOf(webinars)
	demosOnly.ExitRules.ReengageOn = []eventv1.ActivityType{demo}
	put(t, s.client, demosOnly)
	w.activity(t, l, webinar)
	if _, err := b.Reconcile(ctx, l, envelope.Meta{}); err != nil {
		t.Fatal(err)
	}
	if re := ofType(w.events(t, l), "LeadReengaged"); len(re) != 0 {
		t.Fatalf("re-engaged by a webinar the program stopped counting before it came: %v", re)
	}
}

// slowLeads reads every lead late, as a server under load does.
type slowLeads struct {
	*adapters.Leads
	delay time.Duration
}

func (s *slowLeads) Load(ctx context.Context, leadID string) ([]eventstore.Record, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(s.delay):
	}
	return s.Leads.Load(ctx, leadID)
}

// A re-drive of more leads than its call has time for answers the leads
// it got to before the deadline, rather than losing all it did to a
// timeout; the caller asks again for the rest.
func TestRedriveAnswersWhatItDidBeforeItsDeadline(t *testing.T) {
	w := newWorld(t)
	w.start(t) // provisions what the app reads
	log := slog.New(slog.DiscardHandler)
	js := w.nats.JS
	a := app.New(&slowLeads{Leads: adapters.NewLeads(w.store), delay: 100 * time.Millisecond}, adapters.NewPrograms(w.store),
		adapters.NewTimers(js, time.Hour), adapters.NewIndex(js, stream, log), adapters.NewGroups(js, stream, consume.DefaultDeadLetterStream),
		app.WithLogger(log))
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	got, err := a.RedriveLeads(ctx, ids, envelope.Meta{})
	if err != nil || len(got) == 0 || len(got) >= len(ids) {
		t.Fatalf("re-drive of 40 slow leads in 2s: %d answered, %v; want some answered and no error", len(got), err)
	}
	for i, r := range got {
		if r.LeadID != ids[i] || r.Action != app.RedriveNotFound {
			t.Fatalf("answer %d: %+v, want %s not found (in the order asked)", i, r, ids[i])
		}
	}
}

// A lead recycled by hand while its rejection's recycle is still owed
// (nurture behind or passed over it) takes the rejection's cause, and so
// the program that cause leads to: bad data goes to data repair, not the
// default program an email click would send back to sales. A second call
// with the same request id answers the first.
func TestARecycleByHandOfARejectedLeadKeepsTheRejectionsCause(t *testing.T) {
	w := newWorld(t)
	log := slog.New(slog.DiscardHandler)
	js := w.nats.JS
	b := app.New(adapters.NewLeads(w.store), adapters.NewPrograms(w.store), adapters.NewTimers(js, time.Hour),
		adapters.NewIndex(js, stream, log), adapters.NewGroups(js, stream, consume.DefaultDeadLetterStream), app.WithLogger(log))
	l := uuid.NewString()
	w.accepted(t, l, "smb", 30)
	w.reject(t, l, eventv1.RejectReason_REJECT_REASON_BAD_DATA, "smb")
	in := app.RecycleLead{LeadID: l, Note: "nurture missed it", RequestID: "by-hand", Actor: marketer}
	res, err := b.RecycleLead(ctxT(t), in, envelope.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	rec := ofType(w.events(t, l), "LeadRecycled")
	if len(rec) != 1 || res.ProgramID != program.DataRepair {
		t.Fatalf("a lead rejected as bad data, recycled by hand: %d recycles, program %q, want one, %s", len(rec), res.ProgramID, program.DataRepair)
	}
	rejected := ofType(w.events(t, l), "LeadRejected")
	if r := rec[0].GetLeadRecycled(); r.GetCause() != eventv1.RecycleCause_RECYCLE_CAUSE_REJECTED ||
		r.GetRejectReason() != eventv1.RejectReason_REJECT_REASON_BAD_DATA || r.GetNote() != in.Note || rec[0].GetActor().GetId() != marketer.GetId() ||
		len(rejected) != 1 || rec[0].GetCausationId() != rejected[0].GetEventId() {
		t.Fatalf("the recycle by hand: %v, want the rejection's cause and it as its causation", rec[0])
	}
	again, err := b.RecycleLead(ctxT(t), in, envelope.Meta{})
	if err != nil || !again.Replayed || again.RecycledEventID != res.RecycledEventID {
		t.Fatalf("the same request again: %+v %v, want the first answer", again, err)
	}
}
