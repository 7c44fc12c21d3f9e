package main

import (
	"context"
	"fmt"
	"io"

	"google.golang.org/grpc"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	// The demo model is data that lives with the qualification service;
	// devstack is a launcher, not a service, and only reads it.
	"github.com/leadflow/leadflow/pkg/scoring"
)

// seedModel proposes the demo scoring model and signs it off, once by
// marketing and once by sales, as both teams must before it scores
// anyone: each with their own token, as a sign-off acts as its caller. The
// idempotency key and the approvals make a second run a no-op.
func seedModel(ctx context.Context, conns map[string]*grpc.ClientConn, as asCaller, out io.Writer) error {
	conn := conns["qualification"]
	if conn == nil {
		return nil
	}
	q := qualificationv1.NewQualificationServiceClient(conn)
	maria := &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "maria.marketing-ops", Team: eventv1.Team_TEAM_MARKETING}
	mctx, err := as(ctx, maria, "models:propose")
	if err != nil {
		return err
	}
	prop, err := q.ProposeModel(mctx, &qualificationv1.ProposeModelRequest{
		Model:          scoring.ToProto(scoring.Default()),
		ProposedBy:     maria,
		IdempotencyKey: "demo-model-1",
	})
	if err != nil {
		return fmt.Errorf("propose model: %w", err)
	}
	for _, approver := range []*eventv1.Actor{
		maria,
		{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "sam.sales-lead", Team: eventv1.Team_TEAM_SALES},
	} {
		actx, err := as(ctx, approver, "models:approve")
		if err != nil {
			return err
		}
		if _, err := q.ApproveModel(actx, &qualificationv1.ApproveModelRequest{Version: prop.GetVersion(), Approver: approver}); err != nil {
			return fmt.Errorf("approve model v%d by %s: %w", prop.GetVersion(), approver.GetId(), err)
		}
	}
	// On a later run another version may have been signed off since.
	list, err := q.ListModelVersions(ctx, &qualificationv1.ListModelVersionsRequest{})
	if err != nil {
		return fmt.Errorf("list model versions: %w", err)
	}
	state := "active"
	if v := list.GetActiveVersion(); v != prop.GetVersion() {
		state = fmt.Sprintf("v%d, signed off since, is active", v)
	}
	fmt.Fprintf(out, "\nScoring model v%d proposed by marketing, approved by marketing and sales: %s.\n", prop.GetVersion(), state)
	return nil
}
