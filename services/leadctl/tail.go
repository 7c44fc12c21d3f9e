package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/leadflow/leadflow/pkg/envelope"
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
			// A typo would match nothing and look like a quiet stream.
			if typ != "" && !slices.Contains(envelope.Types(), typ) {
				return fmt.Errorf("%w: --type %q is not an event type; known: %s", errUsage, typ, strings.Join(envelope.Types(), ", "))
			}
			if service != "" && !slices.Contains(writers, service) {
				return fmt.Errorf("%w: --service %q is not a service that writes events; known: %s (intake's events name their caller)",
					errUsage, service, strings.Join(writers, ", "))
			}
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
					b, err := protoJSON.Marshal(ev)
					if err != nil {
						return err
					}
					// One line an event; compacted, as protojson may space it.
					var line bytes.Buffer
					if err := json.Compact(&line, fmt.Appendf(nil, `{"seq":%d,"event":%s}`, meta.Sequence.Stream, b)); err != nil {
						return err
					}
					fmt.Fprintln(out, line.String())
					continue
				}
				st := lifecycle.FromProto(ev.GetLifecycle())
				fmt.Fprintf(out, "%d  %s  %-22s %-36s %-20s → %s %s\n", meta.Sequence.Stream,
					ev.GetRecordedAt().AsTime().UTC().Format(time.TimeOnly), ev.GetEventType(), ev.GetLeadId(),
					by(ev), st.Status, owner(st.Owner))
			}
		},
	}
	c.Flags().StringVar(&lead, "lead", "", "only this lead")
	c.Flags().StringVar(&typ, "type", "", "only this event type, e.g. LeadQualified")
	c.Flags().StringVar(&service, "service", "", "only events written by this service: "+strings.Join(writers, ", "))
	c.Flags().IntVar(&last, "last", 0, "start this many stream messages back instead of at the end")
	return c
}

// writers are the services that write lead events as themselves (actor
// id); intake writes as its caller.
var writers = []string{"handoff", "nurture", "qualification"}

// eventTypes are the event types this schema knows, sorted: the
// payload messages of Event, so a new event needs no change here.
