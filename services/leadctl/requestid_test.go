package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
)

// slowNurture answers RecycleLead after the caller gave up, having done
// it, and keeps the request ids it got.
type slowNurture struct {
	nurturev1.UnimplementedNurtureServiceServer
	mu  sync.Mutex
	ids []string
}

func (s *slowNurture) RecycleLead(ctx context.Context, r *nurturev1.RecycleLeadRequest) (*nurturev1.RecycleLeadResponse, error) {
	s.mu.Lock()
	s.ids = append(s.ids, r.GetRequestId())
	s.mu.Unlock()
	<-ctx.Done()
	return nil, ctx.Err()
}

// A write that gets no answer in time may have been done: leadctl names
// the request id that learns its outcome (a rerun without it writes
// again), and sends that id when told to.
func TestAWriteWithoutAnAnswerNamesItsRequestID(t *testing.T) {
	fake := &slowNurture{}
	addr := serveFake(t, func(srv *grpc.Server) { nurturev1.RegisterNurtureServiceServer(srv, fake) })

	lead := uuid.NewString()
	recycle := func(extra ...string) error {
		_, err := runCtl(context.Background(), append([]string{"--nurture", addr, "--timeout", "300ms",
			"recycle", lead, "--note", "asked to pause"}, extra...)...)
		return err
	}
	err := recycle()
	fake.mu.Lock()
	first := fake.ids[0]
	fake.mu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "--request-id "+first) {
		t.Fatalf("recycle without an answer: %v, want the request id %s named", err, first)
	}
	_ = recycle("--request-id", first)
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.ids) != 2 || fake.ids[1] != first {
		t.Errorf("request ids sent: %v, want %s twice", fake.ids, first)
	}
}

// unknownNurture answers RecycleLead as a service whose write's outcome
// is unknown does.
type unknownNurture struct {
	nurturev1.UnimplementedNurtureServiceServer
}

func (unknownNurture) RecycleLead(context.Context, *nurturev1.RecycleLeadRequest) (*nurturev1.RecycleLeadResponse, error) {
	return nil, status.Error(codes.Unavailable, "the write's outcome is unknown; send the same request again")
}

// An UNAVAILABLE the service answered is not "cannot reach it": the
// address is right, and the write may have been done. Nothing listening
// is.
func TestAnUnavailableAnswerIsNotAnUnreachableService(t *testing.T) {
	addr := serveFake(t, func(srv *grpc.Server) { nurturev1.RegisterNurtureServiceServer(srv, unknownNurture{}) })
	_, err := runCtl(context.Background(), "--nurture", addr, "recycle", uuid.NewString(), "--note", "asked to pause")
	if err == nil || strings.Contains(err.Error(), "cannot reach") || !strings.Contains(err.Error(), "--request-id") {
		t.Errorf("recycle answered UNAVAILABLE: %v, want the answer and the request id, not an unreachable nurture", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	_, err = runCtl(context.Background(), "--nurture", closed, "--timeout", "2s", "recycle", uuid.NewString(), "--note", "asked to pause")
	if err == nil || !strings.Contains(err.Error(), "cannot reach nurture") {
		t.Errorf("recycle with nothing listening: %v, want nurture named unreachable", err)
	}
	// Nothing was sent, so nothing may have been written.
	if err != nil && (strings.Contains(err.Error(), "may have been") || strings.Contains(err.Error(), "--request-id")) {
		t.Errorf("recycle with nothing listening: %v, want no word of a write that may have been done", err)
	}
	_, err = runCtl(context.Background(), "--intake", closed, "--timeout", "2s", "erase", uuid.NewString(), "--reason", "ticket 9")
	if err == nil || !strings.Contains(err.Error(), "cannot reach intake") || strings.Contains(err.Error(), "may have been") {
		t.Errorf("erase with nothing listening: %v, want intake unreachable and no word of a write done", err)
	}
	// A frozen service: it takes the connection and never speaks, so the
	// call runs out of time before a request is sent.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 16)
	t.Cleanup(func() {
		mute.Close()
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	})
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			select {
			case accepted <- c:
			default:
				c.Close()
			}
		}
	}()
	_, err = runCtl(context.Background(), "--handoff", mute.Addr().String(), "--timeout", "1s", "assign", uuid.NewString(), "--to", "ana")
	if err == nil || !strings.Contains(err.Error(), "did not answer") || strings.Contains(err.Error(), "may have been") {
		t.Errorf("assign to a service that never speaks: %v, want no answer in time and no word of a write done", err)
	}
}

// Each lost lead gets one fix, chosen by what it misses: a lead whose
// contact attempts ran out is nurture's to recycle, not another rep's
// (its status and owner read like a breach's).
func TestLostNamesTheFixForWhatTheLeadMisses(t *testing.T) {
	rep := &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_REP, Id: "ann"}
	queue := &eventv1.Owner{Kind: eventv1.OwnerKind_OWNER_KIND_QUEUE, Id: "nurture"}
	for _, c := range []struct {
		status             eventv1.LeadStatus
		owner              *eventv1.Owner
		missing, want, not string
	}{
		{eventv1.LeadStatus_LEAD_STATUS_ACCEPTED, rep, "recycle to nurture (contact attempts exhausted)", "leadctl lost --redrive", "leadctl reassign"},
		{eventv1.LeadStatus_LEAD_STATUS_ACCEPTED, rep, "escalation of the SLA breach: reassignment to another rep", "leadctl reassign", "lost --redrive"},
		{eventv1.LeadStatus_LEAD_STATUS_LOST, queue, "recycle to nurture", "leadctl recycle", "attempts ran out"},
		// nurture's redrive writes what these are owed (nurture/app/owed.go)
		{eventv1.LeadStatus_LEAD_STATUS_NURTURING, queue, "exit at the review date", "leadctl lost --redrive", "no fix is known"},
		{eventv1.LeadStatus_LEAD_STATUS_NEW, nil, "scoring and qualification", "leadctl dlq list", "no fix is known"},
	} {
		var out bytes.Buffer
		err := writeLost(&out, &nurturev1.FindLostLeadsResponse{TotalLost: 1, Lost: []*nurturev1.LostLead{{LeadId: "l", Status: c.status,
			Owner: c.owner, LastEventType: "SLABreached", MissingStep: c.missing, Reason: nurturev1.LostReason_LOST_REASON_OVERDUE}}})
		fixes := out.String()[strings.Index(out.String(), "to fix:"):]
		if err != nil || !strings.Contains(fixes, c.want) || strings.Contains(fixes, c.not) {
			t.Errorf("missing %q: %v\n%s\nwant %q, not %q", c.missing, err, out.String(), c.want, c.not)
		}
	}
}

// slowIntake answers merges after the caller gave up.
type slowIntake struct {
	intakev1.UnimplementedIntakeServiceServer
}

func (slowIntake) MergeLeads(ctx context.Context, _ *intakev1.MergeLeadsRequest) (*intakev1.MergeLeadsResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A merge with no answer in time says running it again is safe: the pair
// is its key, so a repeat answers as done (it said nothing, though the
// first had been written).
func TestAMergeWithoutAnAnswerSaysARepeatIsSafe(t *testing.T) {
	addr := serveFake(t, func(srv *grpc.Server) { intakev1.RegisterIntakeServiceServer(srv, slowIntake{}) })
	_, err := runCtl(context.Background(), "--intake", addr, "--timeout", "300ms", "merge", uuid.NewString(), uuid.NewString(), "--reason", "same person")
	if err == nil || !strings.Contains(err.Error(), "running it again is safe") {
		t.Fatalf("merge without an answer: %v", err)
	}
}
