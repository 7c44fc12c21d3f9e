package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/leadflow/leadflow/pkg/envelope"
	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
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
			// A typo, or a type no lead subject holds, would match nothing
			// and look like a quiet stream.
			if typ != "" && notOnLeads[typ] {
				return fmt.Errorf("%w: --type %s: tail follows lead events, and %s is stored on a campaign's or a model's subject", errUsage, typ, typ)
			}
			if typ != "" && !slices.Contains(leadEventTypes(), typ) {
				return fmt.Errorf("%w: --type %q is not a lead event type; known: %s", errUsage, typ, strings.Join(leadEventTypes(), ", "))
			}
			if last < 0 {
				return fmt.Errorf("%w: --last must be 0 or more stream messages, not %d", errUsage, last)
			}
			if service != "" && !slices.Contains(writers(), service) {
				return fmt.Errorf("%w: --service %q is not a service that writes events; known: %s",
					errUsage, service, strings.Join(writers(), ", "))
			}
			filter := eventstore.LeadSubjects
			if lead != "" {
				if err := leadIDs(&lead); err != nil {
					return err
				}
				filter = eventstore.LeadSubject(lead)
			}
			nc, js, err := o.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			// Quiet is no events, so a lost connection says so: it is
			// followed again from where it was once NATS is back.
			errOut := cmd.ErrOrStderr()
			nc.SetDisconnectErrHandler(func(c *nats.Conn, err error) {
				if err == nil || c.IsClosed() {
					return // tail's own close, as it ends
				}
				fmt.Fprintf(errOut, "leadctl tail: lost NATS at %s (%v); reconnecting, nothing shows until it is back\n", o.nats, err)
			})
			nc.SetReconnectHandler(func(*nats.Conn) {
				fmt.Fprintf(errOut, "leadctl tail: NATS is back at %s; following on\n", o.nats)
			})
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
				if service != "" && writtenBy(ev) != service {
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
					by(ev), st.Status, orDash(owner(st.Owner)))
			}
		},
	}
	c.Flags().StringVar(&lead, "lead", "", "only this lead")
	c.Flags().StringVar(&typ, "type", "", "only this event type, e.g. LeadQualified")
	c.Flags().StringVar(&service, "service", "", "only events written by this service, a person's commands through its API included: "+strings.Join(writers(), ", "))
	c.Flags().IntVar(&last, "last", 0, "start this many stream messages back instead of at the end")
	return c
}

// commandedThrough names, for each event type, the service whose API
// writes it for a person or an integration: those events name the caller
// as their actor (a rep accepting, an operator recycling), not the
// service. A test holds it to envelope.Types.
var commandedThrough = map[string]string{
	"ActivityRecorded": "intake", "CampaignCostRecorded": "intake", "CampaignRegistered": "intake", "ConsentChanged": "intake",
	"LeadCaptured": "intake", "LeadErased": "intake", "LeadMerged": "intake", "LeadResubmitted": "intake", "LeadUnmerged": "intake",
	"MergeCandidateFound": "intake",
	"LeadDisqualified":    "qualification", "LeadQualified": "qualification", "LeadScored": "qualification",
	"ScoringModelActivated": "qualification", "ScoringModelApproved": "qualification", "ScoringModelProposed": "qualification",
	"ScoringModelRescoreCompleted": "qualification", "ScoringModelRescoreStarted": "qualification",
	"ContactAttempted": "handoff", "DealLost": "handoff", "DealWon": "handoff", "LeadAccepted": "handoff", "LeadAssigned": "handoff",
	"LeadQueued": "handoff", "LeadReassigned": "handoff", "LeadRejected": "handoff", "MarketingTargetSet": "handoff",
	"OpportunityCreated": "handoff", "OpportunityStageChanged": "handoff", "PoolTurnTaken": "handoff", "RoutingChanged": "handoff",
	"SLABreached": "handoff", "SLAWarned": "handoff",
	"LeadRecycled": "nurture", "LeadReengaged": "nurture", "NurtureEnrolled": "nurture", "NurtureExited": "nurture",
	"NurtureProgramChanged": "nurture",
}

// notOnLeads are the event types stored on campaign and model subjects,
// not on a lead's.
var notOnLeads = map[string]bool{
	"CampaignRegistered": true, "CampaignCostRecorded": true,
	"ScoringModelProposed": true, "ScoringModelApproved": true, "ScoringModelActivated": true,
	"ScoringModelRescoreStarted": true, "ScoringModelRescoreCompleted": true,
	"RoutingChanged": true, "PoolTurnTaken": true, "MarketingTargetSet": true, "NurtureProgramChanged": true,
}

// leadEventTypes are the event types stored on lead subjects, sorted.
func leadEventTypes() []string {
	return slices.DeleteFunc(envelope.Types(), func(t string) bool { return notOnLeads[t] })
}

// writtenBy is the service that wrote ev: the actor when a service acted
// on its own (a timer, a consumer: handoff recycles a lead whose attempts
// ran out), else the service whose API the caller went through. An event
// that names a caller came through an API, whatever actor the request
// named.
func writtenBy(ev *eventv1.Event) string {
	if a := ev.GetActor(); a.GetKind() == eventv1.ActorKind_ACTOR_KIND_SERVICE && ev.GetCaller() == nil && slices.Contains(writers(), a.GetId()) {
		return a.GetId()
	}
	return commandedThrough[ev.GetEventType()]
}

// writers are the services that write events, sorted.
func writers() []string {
	return slices.Compact(slices.Sorted(maps.Values(commandedThrough)))
}

// eventTypes are the event types this schema knows, sorted: the
// payload messages of Event, so a new event needs no change here.
