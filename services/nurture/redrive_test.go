package main

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/pkg/testenv"
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
