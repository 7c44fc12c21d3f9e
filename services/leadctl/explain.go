package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
)

func explainCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "explain <lead id>",
		Short: "Why a lead has its score: every rule that counted, and the model version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := leadIDs(&args[0]); err != nil {
				return err
			}
			var resp *qualificationv1.ExplainScoreResponse
			err := call(cmd.Context(), o, "qualification", o.qualification, func(ctx context.Context, conn *grpc.ClientConn) error {
				var err error
				resp, err = qualificationv1.NewQualificationServiceClient(conn).ExplainScore(ctx, &qualificationv1.ExplainScoreRequest{LeadId: args[0]})
				return err
			})
			if errors.Is(err, errUnknownLead) {
				return noScore(cmd.Context(), o, args[0], err)
			}
			if err != nil {
				return err
			}
			if o.output == "json" {
				return printProto(cmd, resp)
			}
			s := resp.GetScore()
			fmt.Fprintf(cmd.OutOrStdout(), "lead %s: %d of threshold %d (fit %d + engagement %d), model v%d\n",
				resp.GetLeadId(), s.GetTotal(), s.GetThreshold(), s.GetFit(), s.GetEngagement(), s.GetModelVersion())
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			for _, r := range s.GetReasons() {
				fmt.Fprintf(tw, "  %+d\t%s\t%s\n", r.GetPoints(), r.GetRuleId(), r.GetDescription())
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			// The total alone misleads: a rule may disqualify a lead over
			// the threshold, and a nurtured one over it waits for nurture.
			fmt.Fprintf(cmd.OutOrStdout(), "verdict: %s; the lead is %s now\n", verdictOf(s),
				strings.TrimPrefix(resp.GetStatus().String(), "LEAD_STATUS_"))
			return nil
		},
	}
}

// verdictOf words what a score decided.
func verdictOf(s *eventv1.LeadScored) string {
	switch s.GetVerdict() {
	case eventv1.ScoreVerdict_SCORE_VERDICT_QUALIFY:
		return "qualifies"
	case eventv1.ScoreVerdict_SCORE_VERDICT_DISQUALIFY:
		d := s.GetDisqualify()
		if d.GetNotNow() {
			return fmt.Sprintf("not now, by rule %s (%s)", d.GetRuleId(), d.GetReason())
		}
		return fmt.Sprintf("disqualified by rule %s (%s)", d.GetRuleId(), d.GetReason())
	}
	return "none"
}

// noScore words qualification's NotFound, which it answers alike for a
// lead it never saw and one not scored yet: the stream tells them apart.
// unknown is that answer, returned as it is when the stream cannot tell.
func noScore(ctx context.Context, o *options, id string, unknown error) error {
	s, closeConn, err := o.store()
	if err != nil {
		return unknown
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if v, err := s.Version(ctx, eventstore.LeadSubject(id)); err != nil || v == 0 {
		return unknown
	}
	return fmt.Errorf("lead %s has no score yet: qualification scores it when it reads the lead's capture or activity (leadctl timeline %s shows how far it got)", id, id)
}
