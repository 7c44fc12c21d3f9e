package main

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/testenv"
	"github.com/leadflow/leadflow/services/nurture/adapters"
	"github.com/leadflow/leadflow/services/nurture/app"
)

// A re-drive goes on past a lead whose own re-drive fails (its recycle
// names a program nobody defined), answering that lead with its error,
// and says of a lead both re-driven in another group and written by
// nurture that it did both.
func TestRedriveGoesOnPastALeadThatFails(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)

	// Another group that dead-letters one lead's rejection until fixed.
	const other = "crm-sync"
	var broken atomic.Bool
	broken.Store(true)
	both := uuid.NewString()
	octx, ocancel := context.WithCancel(context.Background())
	odone := make(chan error, 1)
	go func() {
		odone <- consume.Run(octx, w.nats.JS, consume.Config{Stream: stream, Group: other, Partitions: 1,
			Filter: func(int) []string { return []string{eventstore.LeadSubjects} }, Key: eventstore.LeadID, Logger: testLog()},
			func(_ context.Context, m consume.Msg) error {
				if broken.Load() && m.Key == both && m.Header.Get(eventstore.HeaderType) == "LeadRejected" {
					return consume.Permanent(errString("the CRM refused it"))
				}
				return nil
			})
	}()
	t.Cleanup(func() {
		ocancel()
		if err := <-odone; err != nil {
			t.Errorf("group %s: %v", other, err)
		}
	})

	stopDropping := w.droppingConsumer(t)
	stuck, dropped := uuid.NewString(), uuid.NewString()
	w.accepted(t, stuck, "smb", 30)
	w.write(t, stuck, lifecycle.Command{Name: lifecycle.Recycle, Reason: "spring campaign"},
		&eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_MANUAL, Note: "spring campaign", ProgramId: "nowhere"})
	for _, l := range []string{dropped, both} {
		w.accepted(t, l, "smb", 30)
		w.reject(t, l, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	}
	w.settle(t, group)
	stopDropping()
	s := w.start(t)
	testenv.Eventually(t, 30*time.Second, func() bool {
		rep, err := s.client.FindLostLeads(ctx, &nurturev1.FindLostLeadsRequest{})
		return err == nil && slices.ContainsFunc(rep.GetParked(), func(p *nurturev1.ParkedLead) bool { return p.GetLeadId() == both })
	}, "lead %s is not parked in %s", both, other)
	broken.Store(false)

	res, err := s.client.RedriveLeads(ctx, &nurturev1.RedriveLeadsRequest{LeadIds: []string{stuck, dropped, both}})
	if err != nil {
		t.Fatalf("re-drive: %v", err)
	}
	got := map[string]*nurturev1.Redriven{}
	for _, r := range res.GetLeads() {
		got[r.GetLeadId()] = r
	}
	if r := got[stuck]; r.GetAction() != nurturev1.RedriveAction_REDRIVE_ACTION_FAILED || !strings.Contains(r.GetError(), "nowhere") {
		t.Fatalf("the lead whose program is missing: %v, want FAILED naming the program", r)
	}
	if r := got[dropped]; r.GetAction() != nurturev1.RedriveAction_REDRIVE_ACTION_WRITTEN || r.GetError() != "" {
		t.Fatalf("the lead after it: %v, want WRITTEN", r)
	}
	if r := got[both]; r.GetAction() != nurturev1.RedriveAction_REDRIVE_ACTION_REDRIVEN_AND_WRITTEN || !slices.Equal(r.GetGroups(), []string{other}) ||
		len(r.GetEventTypes()) == 0 || r.GetEventTypes()[0] != "LeadRecycled" {
		t.Fatalf("the lead parked in %s and owed a recycle: %v, want REDRIVEN_AND_WRITTEN", other, r)
	}
	for _, l := range []string{dropped, both} {
		if evs := w.nurtured(t, l); len(ofType(evs, "LeadRecycled")) != 1 {
			t.Fatalf("lead %s after the re-drive: %v", l, types(evs))
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// A dead letter whose key is not a lead (a group on model.routing keys
// its messages model_routing) parks no lead: the check does not list it
// as one, so a re-drive of every lost and parked lead it lists goes
// through instead of being refused for a malformed lead id. The dead
// letter itself is still listed with the others (leadctl dlq).
func TestNonLeadDeadLetterIsNoParkedLead(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)

	// A reference group, as projector-ref, that cannot handle the routing.
	const ref = "x-ref"
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() {
		rdone <- consume.Run(rctx, w.nats.JS, consume.Config{Stream: stream, Group: ref, Partitions: 1,
			Filter: func(int) []string { return []string{"model.routing"} }, Logger: testLog()},
			func(context.Context, consume.Msg) error { return consume.Permanent(errString("no such team")) })
	}()
	t.Cleanup(func() {
		rcancel()
		if err := <-rdone; err != nil {
			t.Errorf("group %s: %v", ref, err)
		}
	})
	ev, err := envelope.NewEvent("", &eventv1.RoutingChanged{Version: 1, ChangedBy: marketer}, envelope.Meta{Actor: marketer}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.Append(ctx, "model.routing", 0, ev); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		dls, err := consume.DeadLetters(ctx, w.nats.JS, consume.DefaultDeadLetterStream)
		return err == nil && slices.ContainsFunc(dls, func(d consume.DeadLetter) bool { return d.Group == ref && d.Key == "model_routing" })
	}, "model.routing is not dead-lettered in %s", ref)

	// A lead whose way back a consumer dropped, for the re-drive to fix.
	stopDropping := w.droppingConsumer(t)
	dropped := uuid.NewString()
	w.accepted(t, dropped, "smb", 30)
	w.reject(t, dropped, eventv1.RejectReason_REJECT_REASON_NOT_READY, "smb")
	w.settle(t, group)
	stopDropping()
	s := w.start(t)

	// What leadctl does: re-drive every lost and parked lead listed.
	rep := w.find(t, s.client, &nurturev1.FindLostLeadsRequest{})
	ids := lostIDs(rep)
	for _, p := range rep.GetParked() {
		ids = append(ids, p.GetLeadId())
	}
	res, err := s.client.RedriveLeads(ctx, &nurturev1.RedriveLeadsRequest{LeadIds: ids})
	if err != nil {
		t.Fatalf("re-drive of %v: %v", ids, err)
	}
	if got := parkedIDs(rep); len(got) != 0 {
		t.Fatalf("parked %v, want none: model_routing is no lead", got)
	}
	if got := lostIDs(rep); !slices.Equal(got, []string{dropped}) {
		t.Fatalf("lost %v, want %v", got, []string{dropped})
	}
	if r := res.GetLeads(); len(r) != 1 || r[0].GetAction() != nurturev1.RedriveAction_REDRIVE_ACTION_WRITTEN {
		t.Fatalf("re-drive: %v, want %s WRITTEN", r, dropped)
	}
}

// A lead whose skip an operator asked for, not served yet (the group's
// owner is away), is answered as pending: the skip is its way back (and
// drops its dead event), not a failure and not a re-drive.
func TestRedriveOfALeadWithAPendingSkip(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t)
	lead := uuid.NewString()
	w.capture(t, lead)
	const g = "x-lead"
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() {
		rdone <- consume.Run(rctx, w.nats.JS, consume.Config{Stream: stream, Group: g, Partitions: 1, Key: eventstore.LeadID,
			Filter: func(int) []string { return []string{eventstore.LeadSubject(lead)} }, Logger: testLog()},
			func(context.Context, consume.Msg) error { return consume.Permanent(errString("cannot")) })
	}()
	var dead consume.DeadLetter
	testenv.Eventually(t, 30*time.Second, func() bool {
		dls, err := consume.DeadLetters(ctx, w.nats.JS, consume.DefaultDeadLetterStream)
		i := slices.IndexFunc(dls, func(d consume.DeadLetter) bool { return d.Group == g })
		if err != nil || i < 0 {
			return false
		}
		dead = dls[i]
		return true
	}, "the lead is not dead-lettered in %s", g)
	rcancel()
	if err := <-rdone; err != nil {
		t.Fatal(err)
	}
	if err := consume.Skip(ctx, w.nats.JS, consume.DefaultDeadLetterStream, g, lead, dead.StreamSeq); err != nil {
		t.Fatal(err)
	}
	s := w.start(t)
	res, err := s.client.RedriveLeads(ctx, &nurturev1.RedriveLeadsRequest{LeadIds: []string{lead}})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.GetLeads(); len(r) != 1 || r[0].GetAction() != nurturev1.RedriveAction_REDRIVE_ACTION_PENDING || !slices.Contains(r[0].GetGroups(), g) {
		t.Fatalf("re-drive: %v, want %s pending in %s (its skip waiting)", r, lead, g)
	}
}

// staleListing lists each dead letter of one group under a sequence it
// no longer has, as a listing does when the event was re-driven and died
// again (or a later one died) between the listing and the request.
type staleListing struct {
	*adapters.Groups
	group string
}

func (s staleListing) DeadLetters(ctx context.Context) ([]consume.DeadLetter, error) {
	dls, err := s.Groups.DeadLetters(ctx)
	for i := range dls {
		if dls[i].Group == s.group {
			dls[i].StreamSeq--
		}
	}
	return dls, err
}

// A lead whose dead letter in nurture's own group is another event than
// the one listed is still parked there: it is re-driven there, and the
// re-drive writes nothing beside it, since a step written while events
// wait behind the dead one would come before them.
func TestRedriveOfALeadWhoseDeadLetterChanged(t *testing.T) {
	w := newWorld(t)
	s := w.start(t)
	ctx := ctxT(t)
	l := uuid.NewString()
	w.accepted(t, l, "smb", 30)
	w.write(t, l, lifecycle.Command{Name: lifecycle.Recycle, Reason: "spring campaign"},
		&eventv1.LeadRecycled{Cause: eventv1.RecycleCause_RECYCLE_CAUSE_MANUAL, Note: "spring campaign", ProgramId: "spring-2027"})
	w.activity(t, l, webinar) // parked behind the recycle
	eventually(t, 20*time.Second, func() bool {
		rep := w.find(t, s.client, &nurturev1.FindLostLeadsRequest{})
		return slices.Equal(parkedIDs(rep), []string{group + "/" + l}) && len(rep.GetParked()[0].GetParkedSeqs()) == 1
	}, "lead %s is not parked behind its recycle", l)
	put(t, s.client, &eventv1.NurtureProgram{ProgramId: "spring-2027", Name: "Spring 2027", Duration: days(90),
		ExitRules: &eventv1.NurtureExitRules{ReengageOn: []eventv1.ActivityType{demo}}})

	log := slog.New(slog.DiscardHandler)
	js := w.nats.JS
	b := app.New(adapters.NewLeads(w.store), adapters.NewPrograms(w.store), adapters.NewTimers(js, time.Hour),
		adapters.NewIndex(js, stream, log), staleListing{adapters.NewGroups(js, stream, consume.DefaultDeadLetterStream), group}, app.WithLogger(log))
	res, err := b.RedriveLeads(ctx, []string{l}, envelope.Meta{Actor: marketer})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Action != app.RedriveRedriven || !slices.Equal(res[0].Groups, []string{group}) || len(res[0].EventTypes) != 0 {
		t.Fatalf("re-drive: %+v, want %s re-driven in %s, nothing written beside it", res, l, group)
	}
	w.nurtured(t, l)
	w.settle(t, group)
	if evs := w.events(t, l); len(ofType(evs, "NurtureEnrolled")) != 1 {
		t.Fatalf("lead %s after the re-drive: %v, want one enrolment", l, types(evs))
	}
}
