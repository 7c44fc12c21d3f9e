package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
)

// call dials one service and runs f, turning "nothing answers" into a clear
// error naming the flag that sets the address.
func call(ctx context.Context, o *options, name, addr string, f func(context.Context, *grpc.ClientConn) error) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	err = f(ctx, conn)
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.Unavailable, codes.DeadlineExceeded:
		return fmt.Errorf("cannot reach %s at %s (set --%s): %w", name, addr, name, err)
	case codes.NotFound:
		return fmt.Errorf("%w: %s", errUnknownLead, status.Convert(err).Message())
	default:
		return err
	}
}

func printProto(cmd *cobra.Command, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
	return err
}

func lostCmd(o *options) *cobra.Command {
	var redrive bool
	c := &cobra.Command{
		Use:   "lost",
		Short: "Every lead that breaks the no-lost-lead invariant, every parked lead and every orphan claim",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp *nurturev1.FindLostLeadsResponse
			err := call(cmd.Context(), o, "nurture", o.nurture, func(ctx context.Context, conn *grpc.ClientConn) error {
				var err error
				resp, err = nurturev1.NewNurtureServiceClient(conn).FindLostLeads(ctx, &nurturev1.FindLostLeadsRequest{})
				return err
			})
			if err != nil {
				return err
			}
			if redrive {
				var ids []string
				for _, l := range resp.GetLost() {
					ids = append(ids, l.GetLeadId())
				}
				for _, p := range resp.GetParked() {
					ids = append(ids, p.GetLeadId())
				}
				if len(ids) > 0 {
					err := call(cmd.Context(), o, "nurture", o.nurture, func(ctx context.Context, conn *grpc.ClientConn) error {
						_, err := nurturev1.NewNurtureServiceClient(conn).RedriveLeads(ctx, &nurturev1.RedriveLeadsRequest{LeadIds: ids})
						return err
					})
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "re-drive requested for %d lead(s); run leadctl lost again to see them clean\n", len(ids))
					return nil
				}
			}
			if o.output == "json" {
				return printProto(cmd, resp)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "checked %d leads up to stream seq %d: %d lost, %d parked, %d orphan claims\n",
				resp.GetLeadsChecked(), resp.GetStreamSeq(), resp.GetTotalLost(), len(resp.GetParked()), len(resp.GetOrphanClaims()))
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			if len(resp.GetLost()) > 0 {
				fmt.Fprintln(tw, "\nLEAD\tWHY\tLAST EVENT\tMISSING STEP\tOWNER\tSTUCK FOR")
				for _, l := range resp.GetLost() {
					fmt.Fprintf(tw, "%s\t%s\t%s (seq %d)\t%s\t%s\t%s\n", l.GetLeadId(), strings.TrimPrefix(l.GetReason().String(), "LOST_REASON_"),
						l.GetLastEventType(), l.GetLastEventSeq(), l.GetMissingStep(), protoOwner(l.GetOwner()), l.GetStuckFor().AsDuration().Round(time.Second))
				}
			}
			if len(resp.GetParked()) > 0 {
				fmt.Fprintln(tw, "\nPARKED LEAD\tGROUP\tDEAD SEQ\tPARKED\tERROR")
				for _, p := range resp.GetParked() {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", p.GetLeadId(), p.GetGroup(), p.GetDeadSeq(), len(p.GetParkedSeqs()), oneLine(p.GetError(), 60))
				}
			}
			if len(resp.GetOrphanClaims()) > 0 {
				fmt.Fprintln(tw, "\nORPHAN CLAIM\tKIND\tLEAD\tAGE")
				for _, c := range resp.GetOrphanClaims() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.GetSubject(), c.GetKind(), c.GetLeadId(), c.GetAge().AsDuration().Round(time.Second))
				}
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&redrive, "redrive", false, "put every lost and parked lead back on track")
	return c
}

func protoOwner(o *eventv1.Owner) string {
	if o.GetId() == "" {
		return "-"
	}
	return strings.ToLower(strings.TrimPrefix(o.GetKind().String(), "OWNER_KIND_")) + " " + o.GetId()
}

func eraseCmd(o *options) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "erase <lead id> --reason <why>",
		Short: "Erase a lead's personal data (crypto-shredding); its history stays",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := uuid.Parse(args[0]); err != nil {
				return fmt.Errorf("%w: lead id %q is not a UUID", errUsage, args[0])
			}
			if reason == "" {
				return fmt.Errorf("%w: --reason is required (kept in the clear: do not name the person)", errUsage)
			}
			var resp *intakev1.EraseLeadResponse
			err := call(cmd.Context(), o, "intake", o.intake, func(ctx context.Context, conn *grpc.ClientConn) error {
				var err error
				resp, err = intakev1.NewIntakeServiceClient(conn).EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: args[0], Reason: reason,
					Actor: &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "leadctl", Team: eventv1.Team_TEAM_OPERATIONS}})
				return err
			})
			if err != nil {
				return err
			}
			if o.output == "json" {
				return printProto(cmd, resp)
			}
			if resp.GetReplayed() {
				fmt.Fprintf(cmd.OutOrStdout(), "lead %s was already erased\n", args[0])
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lead %s erased at version %d: its keys are shredded and its identities released\n", args[0], resp.GetVersion())
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, e.g. a ticket number")
	return c
}

func exportCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "export <lead id>",
		Short: "Everything held about a lead, decrypted, for an access request (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := uuid.Parse(args[0]); err != nil {
				return fmt.Errorf("%w: lead id %q is not a UUID", errUsage, args[0])
			}
			var resp *intakev1.ExportLeadResponse
			err := call(cmd.Context(), o, "intake", o.intake, func(ctx context.Context, conn *grpc.ClientConn) error {
				var err error
				resp, err = intakev1.NewIntakeServiceClient(conn).ExportLead(ctx, &intakev1.ExportLeadRequest{LeadId: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			return printProto(cmd, resp)
		},
	}
}
