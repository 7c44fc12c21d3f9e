package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
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
			cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy}
			if last > 0 {
				// Start a few events back: the last n of the stream's
				// matching events are not indexed, so start by sequence.
				ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
				st, err := js.Stream(ctx, o.stream)
				cancel()
				if err != nil {
					return fmt.Errorf("stream %s: %w", o.stream, err)
				}
				cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
				cfg.OptStartSeq = max(1, st.CachedInfo().State.LastSeq-uint64(last)+1)
			}
			cons, err := js.OrderedConsumer(cmd.Context(), o.stream, cfg)
			if err != nil {
				return fmt.Errorf("follow %s: %w", o.stream, err)
			}
			out := cmd.OutOrStdout()
			for {
				m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) || cmd.Context().Err() != nil {
					return nil
				}
				if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
					continue
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
