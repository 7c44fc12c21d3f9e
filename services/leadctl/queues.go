package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
)

// queuePage is how many of a queue's leads one call reads: the
// projector's most.
var queuePage int32 = 500

func queuesCmd(o *options) *cobra.Command {
	var segment string
	c := &cobra.Command{
		Use:   "queues [queue id]",
		Short: "What the queues before a rep hold now (projector); with a queue id, its leads",
		Long: `queues lists, per queue that holds MQLs (routing, the fallback queue) or
escalated leads (a manager's queue, manager:<team>), how many leads wait,
how many are past their deadline and the first deadline. With a queue id
it lists that queue's leads, newest capture first; hand one on with
leadctl assign <lead> --to <rep> (an MQL in routing or the fallback
queue) or leadctl reassign <lead> --to <rep> --reason <why> (a lead in a
manager's queue).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp proto.Message
			err := call(cmd.Context(), o, "projector", o.projector, func(ctx context.Context, conn *grpc.ClientConn) error {
				p := projectorv1.NewProjectorServiceClient(conn)
				var err error
				if len(args) == 0 {
					resp, err = p.GetQueues(ctx, &projectorv1.GetQueuesRequest{Segment: segment})
				} else {
					// Every page: a queue can hold more than one.
					all := &projectorv1.SearchLeadsResponse{}
					req := &projectorv1.SearchLeadsRequest{QueueId: args[0], Segment: segment, PageSize: queuePage}
					for {
						page, err := p.SearchLeads(ctx, req)
						if err != nil {
							return err
						}
						all.Leads = append(all.Leads, page.GetLeads()...)
						if req.PageToken = page.GetNextPageToken(); req.PageToken == "" {
							break
						}
					}
					resp = all
				}
				return err
			})
			if err != nil {
				return err
			}
			if o.output == "json" {
				return printProto(cmd, resp)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			switch r := resp.(type) {
			case *projectorv1.GetQueuesResponse:
				if len(r.GetQueues()) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "no lead waits in a queue")
					return nil
				}
				fmt.Fprintln(tw, "QUEUE\tHOLDS\tLEADS\tOVERDUE\tFIRST DUE")
				for _, q := range r.GetQueues() {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", q.GetQueueId(), leadStatus(q.GetStatus()), q.GetLeads(), q.GetOverdue(), at(q.GetFirstDeadline()))
				}
			case *projectorv1.SearchLeadsResponse:
				if len(r.GetLeads()) == 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "queue %s holds no lead\n", args[0])
					return nil
				}
				fmt.Fprintln(tw, "LEAD\tSTATUS\tSEGMENT\tLAST REP\tDUE")
				for _, l := range r.GetLeads() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.GetLeadId(), leadStatus(l.GetStatus()), orDash(l.GetSegment()), orDash(l.GetRepId()), at(l.GetDeadline()))
				}
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&segment, "segment", "", "count one segment's leads only")
	return c
}
