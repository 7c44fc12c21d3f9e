package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
)

// showNurture follows a rejected lead back to nurture and out again: it is
// recycled and enrolled, requests a demo, is re-engaged, and qualification
// makes it an MQL again in journey cycle 2.
func showNurture(ctx context.Context, conns map[string]*grpc.ClientConn, leadID, email string, out io.Writer) error {
	if conns["nurture"] == nil || leadID == "" {
		return nil
	}
	n := nurturev1.NewNurtureServiceClient(conns["nurture"])
	intake := intakev1.NewIntakeServiceClient(conns["intake"])
	wait := func(what string, ok func(*nurturev1.GetLeadNurtureResponse) bool) (*nurturev1.GetLeadNurtureResponse, error) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			r, err := n.GetLeadNurture(ctx, &nurturev1.GetLeadNurtureRequest{LeadId: leadID})
			if err == nil && ok(r) {
				return r, nil
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s: %s (%v)", email, what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	fmt.Fprintln(out, "\nBack to nurture and back again (nurture, then qualification):")
	r, err := wait("not enrolled", func(r *nurturev1.GetLeadNurtureResponse) bool { return len(r.GetSteps()) >= 2 })
	if err != nil {
		return err
	}
	for _, s := range r.GetSteps()[:2] {
		fmt.Fprintf(out, "  %-26s %s: %s\n", email, s.GetEventType(), s.GetSummary())
	}
	if _, err := intake.RecordActivity(ctx, &intakev1.RecordActivityRequest{LeadId: leadID, ActivityId: "demo-nurture-comeback",
		Type: eventv1.ActivityType_ACTIVITY_TYPE_DEMO_REQUEST}); err != nil {
		return fmt.Errorf("%s: activity: %w", email, err)
	}
	// Qualified again starts cycle 2 (a later run may find a later cycle);
	// handoff may route it at once.
	r, err = wait("not an MQL again", func(r *nurturev1.GetLeadNurtureResponse) bool { return r.GetCycle() >= 2 })
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  %-26s requested a demo: re-engaged, MQL again in journey cycle 2; %s\n", "", standing(r))
	return nil
}

// standing says where the lead is now, which a later run finds moved on.
func standing(r *nurturev1.GetLeadNurtureResponse) string {
	s := "now " + strings.TrimPrefix(r.GetStatus().String(), "LEAD_STATUS_")
	if c := r.GetCycle(); c != 2 {
		s += fmt.Sprintf(" in cycle %d", c)
	}
	if o := r.GetOwner().GetId(); o != "" {
		s += ", owner " + o
	}
	return s
}
