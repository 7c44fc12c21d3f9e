package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

func tailCmd(o *options) *cobra.Command {
	var lead, typ, service string
	var last int
	c := &cobra.Command{
		Use:   "tail",
		Short: "Follow lead events live, filtered by lead, type or writing service",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter := eventstore.LeadSubjects
			if lead != "" {
				if _, err := uuid.Parse(lead); err != nil {
					return fmt.Errorf("%w: --lead %q is not a UUID", errUsage, lead)
				}
				filter = eventstore.LeadSubject(lead)
			}
			nc, js, err := o.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			// Start by sequence, read once: an ordered consumer started
			// "new" restarts at the then end whenever it is recreated
			// before its first message, and would skip what came between.
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			st, err := js.Stream(ctx, o.stream)
			cancel()
			if err != nil {
				return fmt.Errorf("stream %s: %w", o.stream, err)
			}
			end := st.CachedInfo().State.LastSeq
			start := end + 1
			if last > 0 {
				// The last n stream messages, not n matching events: the
				// stream does not index them by filter.
				start = end - min(uint64(last), end) + 1
			}
			cons, err := js.OrderedConsumer(cmd.Context(), o.stream, jetstream.OrderedConsumerConfig{
				FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start})
			if err != nil {
				return fmt.Errorf("follow %s: %w", o.stream, err)
			}
			it, err := cons.Messages()
			if err != nil {
				return fmt.Errorf("follow %s: %w", o.stream, err)
			}
			stop := context.AfterFunc(cmd.Context(), it.Stop)
			defer stop()
			defer it.Stop()
			out := cmd.OutOrStdout()
			for {
				m, err := it.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) || cmd.Context().Err() != nil {
					return nil
				}
				if err != nil {
					return err
				}
				if typ != "" && m.Headers().Get(eventstore.HeaderType) != typ {
					continue
				}
				ev, err := eventstore.DecodeEvent(m.Data())
				if err != nil {
					return err
				}
				if service != "" && ev.GetActor().GetId() != service {
					continue
				}
				meta, _ := m.Metadata()
				if o.output == "json" {
					b, err := protojson.Marshal(ev)
					if err != nil {
						return err
					}
					fmt.Fprintf(out, "{\"seq\":%d,\"event\":%s}\n", meta.Sequence.Stream, b)
					continue
				}
				st := lifecycle.FromProto(ev.GetLifecycle())
				fmt.Fprintf(out, "%d  %s  %-22s %-36s %-20s → %s %s\n", meta.Sequence.Stream,
					ev.GetRecordedAt().AsTime().UTC().Format(time.TimeOnly), ev.GetEventType(), ev.GetLeadId(),
					actor(ev.GetActor()), st.Status, owner(st.Owner))
			}
		},
	}
	c.Flags().StringVar(&lead, "lead", "", "only this lead")
	c.Flags().StringVar(&typ, "type", "", "only this event type, e.g. LeadQualified")
	c.Flags().StringVar(&service, "service", "", "only events written by this actor id, e.g. qualification")
	c.Flags().IntVar(&last, "last", 0, "start this many stream messages back instead of at the end")
	return c
}
