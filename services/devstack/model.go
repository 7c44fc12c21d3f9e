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
// anyone. The idempotency key and the approvals make a second run a no-op.
func seedModel(ctx context.Context, conns map[string]*grpc.ClientConn, out io.Writer) error {
	conn := conns["qualification"]
	if conn == nil {
		return nil
	}
	q := qualificationv1.NewQualificationServiceClient(conn)
	prop, err := q.ProposeModel(ctx, &qualificationv1.ProposeModelRequest{
		Model:          scoring.ToProto(scoring.Default()),
		ProposedBy:     &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "maria.marketing-ops", Team: eventv1.Team_TEAM_MARKETING},
		IdempotencyKey: "demo-model-1",
	})
	if err != nil {
		return fmt.Errorf("propose model: %w", err)
	}
	for _, approver := range []*eventv1.Actor{
		{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "maria.marketing-ops", Team: eventv1.Team_TEAM_MARKETING},
		{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "sam.sales-lead", Team: eventv1.Team_TEAM_SALES},
	} {
		if _, err := q.ApproveModel(ctx, &qualificationv1.ApproveModelRequest{Version: prop.GetVersion(), Approver: approver}); err != nil {
			return fmt.Errorf("approve model v%d by %s: %w", prop.GetVersion(), approver.GetId(), err)
		}
	}
	fmt.Fprintf(out, "\nScoring model v%d proposed by marketing, approved by marketing and sales: active.\n", prop.GetVersion())
	return nil
}
