package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/leadflow/leadflow/pkg/eventstore"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	"github.com/leadflow/leadflow/pkg/lifecycle"
)

// errUnknownLead is a lead id with no events in the stream.
var errUnknownLead = errors.New("unknown lead")

// leadIDs puts each lead id in the one form the stream and the services
// know (lower case, with dashes), refusing one that is not a UUID: a lead's
// subject is made of its id, so an id pasted in upper case or braces would
// name a subject with no events.
func leadIDs(ids ...*string) error {
	for _, id := range ids {
		u, err := uuid.Parse(*id)
		if err != nil {
			return fmt.Errorf("%w: lead id %q is not a UUID", errUsage, *id)
		}
		*id = u.String()
	}
	return nil
}

// loadLead reads a lead's events from the stream, refusing an id that is
// not a UUID or has no events.
func loadLead(ctx context.Context, o *options, id string) ([]eventstore.Record, error) {
	if err := leadIDs(&id); err != nil {
		return nil, err
	}
	s, closeConn, err := o.store()
	if err != nil {
		return nil, err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	// Every event, not the version chain: one a bypassing write stepped
	// over is what the operator is looking for.
	recs, err := s.LoadEvery(ctx, eventstore.LeadSubject(id))
	if err != nil {
		return nil, fmt.Errorf("read lead %s from stream %s: %w", id, o.stream, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w %s: no events in stream %s", errUnknownLead, id, o.stream)
	}
	return recs, nil
}

func timelineCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "timeline <lead id>",
		Short: "A lead's events straight from the stream, in order, with causation links",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			recs, err := loadLead(cmd.Context(), o, args[0])
			if err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSONEvents(cmd.OutOrStdout(), recs)
			}
			return writeTimeline(cmd.OutOrStdout(), recs)
		},
	}
}

// writeTimeline prints one line an event. The causation column names the
// earlier event of this lead that caused it (#n), a timer (its name and
// the event whose step set it), the outside request, or else the cause's
// whole id (a model's activation): event ids are UUIDv7s, whose first
// digits are only the time.
func writeTimeline(w io.Writer, recs []eventstore.Record) error {
	index := map[string]int{}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSEQ\tRECORDED\tEVENT\tBY\tCAUSED BY\tSTATUS\tOWNER\tDEADLINE")
	for i, r := range recs {
		ev := r.Event
		index[ev.GetEventId()] = i + 1
		cause := "request"
		if n, ok := index[ev.GetCausationId()]; ok {
			cause = fmt.Sprintf("#%d", n)
		} else if step, name, ok := timerCause(ev.GetCausationId()); ok {
			cause = "timer " + ev.GetCausationId()
			if n, ok := index[step]; ok {
				cause = fmt.Sprintf("timer %s of #%d", name, n)
			}
		} else if ev.GetCausationId() != "" && ev.GetCausationId() != ev.GetCorrelationId() {
			cause = ev.GetCausationId()
		}
		st := lifecycle.FromProto(ev.GetLifecycle())
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i+1, r.Seq,
			ev.GetRecordedAt().AsTime().UTC().Format(time.DateTime), ev.GetEventType(), by(ev), cause,
			st.Status, orDash(owner(st.Owner)), orDash(deadline(st.Deadline)))
	}
	return tw.Flush()
}

// timerCause splits a timer's causation id, named after the event that
// started its step ("<event id>-accept-warn"), into that event's id and
// the timer's name.
func timerCause(id string) (step, name string, ok bool) {
	const n = len("00000000-0000-0000-0000-000000000000")
	if len(id) <= n+1 || id[n] != '-' {
		return "", "", false
	}
	if _, err := uuid.Parse(id[:n]); err != nil {
		return "", "", false
	}
	return id[:n], id[n+1:], true
}

func writeJSONEvents(w io.Writer, recs []eventstore.Record) error {
	out := make([]json.RawMessage, len(recs))
	for i, r := range recs {
		b, err := protoJSON.Marshal(r.Event)
		if err != nil {
			return err
		}
		out[i] = json.RawMessage(fmt.Sprintf(`{"seq":%d,"event":%s}`, r.Seq, b))
	}
	return writeJSON(w, out)
}

func stateCmd(o *options) *cobra.Command {
	var asOf string
	c := &cobra.Command{
		Use:   "state <lead id>",
		Short: "A lead's state, now or as of a point in time, from the stream",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var at, through time.Time
			if asOf != "" {
				t, err := time.Parse(time.RFC3339, asOf)
				if err != nil {
					return fmt.Errorf("%w: --as-of %q: want RFC 3339, like 2026-12-01T09:30:00Z", errUsage, asOf)
				}
				at, through = t, t
				if !strings.Contains(asOf, ".") {
					// A time to the second, as timeline prints them, holds
					// that whole second.
					through = t.Add(time.Second - 1)
				}
			}
			recs, err := loadLead(cmd.Context(), o, args[0])
			if err != nil {
				return err
			}
			if asOf == "" {
				// Now is after every event the stream holds: writers stamp
				// recorded_at by their own clocks, so this machine's clock
				// a little behind must not hide the newest.
				at = time.Now()
				for _, r := range recs {
					if t := r.Event.GetRecordedAt().AsTime(); t.After(at) {
						at = t
					}
				}
				through = at
			}
			s, ok := stateAsOf(recs, through)
			if !ok {
				first := recs[0].Event
				return fmt.Errorf("%w %s: nothing of it was recorded yet at %s (--as-of goes by when events were recorded: its first, "+
					"recorded at %s, says it happened at %s)", errUnknownLead, args[0], through.UTC().Format(time.RFC3339Nano),
					first.GetRecordedAt().AsTime().UTC().Format(time.RFC3339Nano), first.GetOccurredAt().AsTime().UTC().Format(time.RFC3339Nano))
			}
			s.AsOf = at.UTC().Format(time.RFC3339Nano)
			if o.output == "json" {
				return writeJSON(cmd.OutOrStdout(), s)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "lead\t%s\nas of\t%s\nstatus\t%s\nowner\t%s\ndeadline\t%s\nscore\t%d\nattempts\t%d\nlast event\t#%d %s (seq %d)\n",
				s.Lead, s.AsOf, s.Status, orDash(s.Owner), orDash(s.Deadline), s.Score, s.Attempts, s.Events, s.LastEvent, s.Version)
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&asOf, "as-of", "", "a time in RFC 3339: the state after the last event recorded by then, whenever it says it happened (default: now, or the lead's last event if its writer's clock is ahead)")
	return c
}

// leadState is a lead's state after its last event recorded at or before
// AsOf. Every event carries the state after it, so no fold is needed.
type leadState struct {
	Lead      string `json:"lead"`
	AsOf      string `json:"as_of"`
	Status    string `json:"status"`
	Owner     string `json:"owner"`
	Deadline  string `json:"deadline"`
	Score     int    `json:"score"`
	Attempts  int    `json:"attempts"`
	Events    int    `json:"events"`
	LastEvent string `json:"last_event"`
	Version   uint64 `json:"version"`
}

func stateAsOf(recs []eventstore.Record, at time.Time) (leadState, bool) {
	n := 0
	for n < len(recs) && !recs[n].Event.GetRecordedAt().AsTime().After(at) {
		n++
	}
	if n == 0 {
		return leadState{}, false
	}
	last := recs[n-1]
	st := lifecycle.FromProto(last.Event.GetLifecycle())
	return leadState{
		Lead: last.Event.GetLeadId(), AsOf: at.UTC().Format(time.RFC3339Nano), Status: st.Status.String(),
		Owner: owner(st.Owner), Deadline: deadline(st.Deadline), Score: st.Score, Attempts: st.Attempts,
		Events: n, LastEvent: last.Event.GetEventType(), Version: last.Seq,
	}, true
}

// by is who an event names as its actor, and the API caller beside it
// when the request named someone else.
func by(ev *eventv1.Event) string {
	if c := ev.GetCaller(); c != nil {
		return actor(ev.GetActor()) + " via " + actor(c)
	}
	return actor(ev.GetActor())
}

func actor(a *eventv1.Actor) string {
	if a == nil {
		return "-"
	}
	return strings.ToLower(strings.TrimPrefix(a.GetKind().String(), "ACTOR_KIND_")) + ":" + a.GetId()
}

// owner and deadline are "" for none: JSON says so, and the tables
// print it as "-" (orDash).
func owner(o lifecycle.Owner) string {
	if o.ID == "" {
		return ""
	}
	return o.String()
}

func deadline(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// protoJSON prints proto messages like leadctl's own JSON: every field,
// zero ones too (a script's .lost[] must not fail when all is well), under
// its proto name (snake_case). writeJSON then indents it: protojson varies
// its whitespace on purpose.
var protoJSON = protojson.MarshalOptions{EmitUnpopulated: true, UseProtoNames: true}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
