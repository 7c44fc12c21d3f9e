package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
)

func explainCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "explain <lead id>",
		Short: "Why a lead has its score: every rule that counted, and the model version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := uuid.Parse(args[0]); err != nil {
				return fmt.Errorf("%w: lead id %q is not a UUID", errUsage, args[0])
			}
			var resp *qualificationv1.ExplainScoreResponse
			err := call(cmd.Context(), o, "qualification", o.qualification, func(ctx context.Context, conn *grpc.ClientConn) error {
				var err error
				resp, err = qualificationv1.NewQualificationServiceClient(conn).ExplainScore(ctx, &qualificationv1.ExplainScoreRequest{LeadId: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			if o.output == "json" {
				b, err := protojson.Marshal(resp)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return err
			}
			s := resp.GetScore()
			fmt.Fprintf(cmd.OutOrStdout(), "lead %s: %d of threshold %d (fit %d + engagement %d), model v%d\n",
				resp.GetLeadId(), s.GetTotal(), s.GetThreshold(), s.GetFit(), s.GetEngagement(), s.GetModelVersion())
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			for _, r := range s.GetReasons() {
				fmt.Fprintf(tw, "  %+d\t%s\t%s\n", r.GetPoints(), r.GetRuleId(), r.GetDescription())
			}
			return tw.Flush()
		},
	}
}
