package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
)

func dlqCmd(o *options) *cobra.Command {
	c := &cobra.Command{
		Use:   "dlq",
		Short: "Dead letters and the leads parked behind them",
	}
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "Every dead letter and parked lead, of every consumer group",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var dls []consume.DeadLetter
			if err := o.withJS(cmd.Context(), func(ctx context.Context, js jetstream.JetStream) (err error) {
				dls, err = consume.DeadLetters(ctx, js, consume.DefaultDeadLetterStream)
				return err
			}); err != nil {
				return err
			}
			if o.output == "json" {
				if dls == nil {
					dls = []consume.DeadLetter{}
				}
				for i := range dls {
					if dls[i].Parked == nil {
						dls[i].Parked = []uint64{} // a list, for scripts, even when empty
					}
				}
				return writeJSON(cmd.OutOrStdout(), dls)
			}
			if len(dls) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no dead letters")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tLEAD\tDEAD SEQ\tSINCE\tPARKED\tERROR")
			for _, d := range dls {
				since := "-"
				if !d.At.IsZero() {
					since = time.Since(d.At).Round(time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\n", d.Group, d.Key, d.StreamSeq, since, len(d.Parked), gist(d.Error, d.Key, 120))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "\nfix the cause, then: leadctl dlq redrive <group> <lead> --seq <dead seq>   (or skip it: leadctl dlq skip <group> <lead> --seq <dead seq>)")
			if slices.ContainsFunc(dls, func(d consume.DeadLetter) bool { return d.StreamSeq == 0 }) {
				// Parked with no dead event: nothing to skip, a re-drive
				// hands the parked ones over in order.
				fmt.Fprintln(cmd.OutOrStdout(), "a lead with DEAD SEQ 0 has only parked events: leadctl dlq redrive <group> <lead> (no --seq) releases them")
			}
			return nil
		},
	})
	for _, op := range []struct {
		name, short, seqUsage string
		do                    func(context.Context, jetstream.JetStream, string, string, string, uint64) error
	}{
		{"redrive", "Handle a lead's dead event again, then what is parked behind it, in order",
			"the dead event's stream sequence (DEAD SEQ in dlq list): act only if it is still the dead one; 0 acts on whichever it is when served", consume.Redrive},
		// A skip drops an event, so it must name the one the operator read:
		// a skip of "whichever is dead" served after another skip drops
		// the next event too, unseen.
		{"skip", "Drop a lead's dead event, then handle what is parked behind it, in order",
			"the dead event's stream sequence (DEAD SEQ in dlq list), required: only that event is dropped", consume.Skip},
	} {
		var (
			seq  uint64
			wait time.Duration
		)
		use := op.name + " <group> <lead id>"
		if op.name == "skip" {
			use += " --seq <dead seq>"
		}
		sub := &cobra.Command{
			Use:   use,
			Short: op.short,
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				if op.name == "skip" && seq == 0 {
					return fmt.Errorf("%w: skip needs --seq <dead seq>, the DEAD SEQ leadctl dlq list shows: it drops that event only, never one that died after you looked (a lead listed with DEAD SEQ 0 has nothing to skip: leadctl dlq redrive <group> <lead> releases what is parked)", errUsage)
				}
				if u, err := uuid.Parse(args[1]); err == nil {
					args[1] = u.String() // a lead's key is its id in its one form
				}
				nc, js, err := o.connect()
				if err != nil {
					return err
				}
				defer nc.Close()
				// What its stream no longer holds (expired, as fired timers
				// do) is dropped unhandled when the request is served: said
				// below, not passed off as handled. Checked before the
				// request's --timeout starts, which it must not use up.
				gone, err := goneFromStream(cmd.Context(), js, op.name, args[0], args[1])
				if err != nil {
					// Only a warning is lost: the request still goes.
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: could not check that the events are still in their stream: %v\n", err)
				}
				ctx := cmd.Context()
				if f := cmd.Flag("timeout"); f != nil && f.Changed {
					// Else consume's 10 s bounds the request.
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, o.timeout)
					defer cancel()
				}
				err = op.do(ctx, js, consume.DefaultDeadLetterStream, args[0], args[1], seq)
				switch {
				case errors.Is(err, consume.ErrNotFound):
					return fmt.Errorf("group %s has no dead letter for lead %s (see leadctl dlq list)", args[0], args[1])
				case errors.Is(err, consume.ErrOtherDeadLetter):
					return fmt.Errorf("%w; nothing done (see leadctl dlq list)", err)
				case err != nil:
					return err
				}
				if wait > 0 {
					if err := waitServed(cmd.Context(), js, op.name, args[0], args[1], wait); err != nil {
						return err
					}
					if gone != "" {
						return fmt.Errorf("%s of lead %s served by group %s, but %s: dropped unhandled, so the steps they carried never ran", op.name, args[1], args[0], gone)
					}
				}
				if o.output == "json" {
					out := map[string]any{"group": args[0], "lead": args[1], "seq": seq, "requested": op.name, "served": wait > 0}
					if gone != "" {
						out["gone"] = gone // dropped unhandled when served
					}
					return writeJSON(cmd.OutOrStdout(), out)
				}
				if wait > 0 {
					what := "its dead event and what was parked behind it are handled"
					if op.name == "skip" {
						what = "its dead event was dropped unhandled, and what was parked behind it is handled"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s of lead %s served by group %s: %s\n", op.name, args[1], args[0], what)
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s of lead %s requested from group %s; the partition's owner serves it when one runs (leadctl dlq list shows it gone; --wait waits for it)\n", op.name, args[1], args[0])
				if gone != "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s: they will be dropped unhandled\n", gone)
				}
				return nil
			},
		}
		sub.Flags().Uint64Var(&seq, "seq", 0, op.seqUsage)
		sub.Flags().DurationVar(&wait, "wait", 0, "wait this long for a member of the group to serve the request, and say how it went (0: return once it is stored)")
		c.AddCommand(sub)
	}
	return c
}

// waitServed waits for group to serve the request on lead: an error when
// none did within wait (no member running?) or the lead is dead-lettered
// again.
func waitServed(ctx context.Context, js jetstream.JetStream, op, group, lead string, wait time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err := consume.Served(wctx, js, consume.DefaultDeadLetterStream, group, lead)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s of lead %s requested from group %s, not served within --wait %s: is a member of %s running? The request stays, and one serves it when it starts (leadctl dlq list shows it gone)",
			op, lead, group, wait, group)
	}
	if err != nil {
		return err
	}
	dls, err := consume.DeadLetters(ctx, js, consume.DefaultDeadLetterStream)
	if err != nil {
		return err
	}
	for _, d := range dls {
		if d.Group == group && d.Key == lead && d.StreamSeq != 0 {
			return fmt.Errorf("%s of lead %s served by group %s, and it failed again: its dead event is seq %d now (%s), %d parked behind it; see leadctl dlq list",
				op, lead, group, d.StreamSeq, oneLine(d.Error, 200), len(d.Parked))
		}
	}
	return nil
}

// goneFromStream says which of group's messages of lead, that a request
// op would handle (the dead one for a re-drive, those parked behind it),
// their stream no longer holds; "" when it holds them all.
func goneFromStream(ctx context.Context, js jetstream.JetStream, op, group, lead string) (string, error) {
	// A leader that answers nothing (an election) must not hold the
	// request back: the check is only a warning.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	dls, err := consume.DeadLetters(ctx, js, consume.DefaultDeadLetterStream)
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(dls, func(d consume.DeadLetter) bool { return d.Group == group && d.Key == lead })
	if i < 0 || dls[i].Stream == "" {
		return "", nil // nothing to do: the request says so
	}
	d := dls[i]
	seqs := d.Parked
	if op != "skip" && d.StreamSeq != 0 {
		seqs = append([]uint64{d.StreamSeq}, seqs...)
	}
	var gone []string
	for _, seq := range seqs {
		// From the leader: a replica behind it has "not found" for a
		// message it has not caught up to.
		if _, err := eventstore.LeaderMsg(ctx, js, d.Stream, seq); errors.Is(err, jetstream.ErrMsgNotFound) {
			gone = append(gone, fmt.Sprint(seq))
		} else if err != nil {
			return "", fmt.Errorf("stream %s seq %d: %w", d.Stream, seq, err)
		}
	}
	if len(gone) == 0 {
		return "", nil
	}
	return fmt.Sprintf("stream %s no longer holds seq %s (expired or removed)", d.Stream, strings.Join(gone, ", ")), nil
}

// gist is a dead letter's error for a column n wide: without what the
// row says already (the lead's subject and sequence, or the lead, that
// begin a consumer's errors), and cut in the middle, since a Go error
// ends with its cause and some say what happened first.
func gist(err, key string, n int) string {
	s := strings.Join(strings.Fields(err), " ")
	if key != "" {
		if i := strings.Index(s, key+" seq "); i >= 0 && strings.HasPrefix(s, "lead.") && !strings.Contains(s[:i], " ") {
			if _, rest, ok := strings.Cut(s[i:], ": "); ok {
				s = rest
			}
		}
		s = strings.TrimPrefix(s, "lead "+key+": ")
	}
	if r := []rune(s); len(r) > n {
		head := (n - 1) / 2
		return string(r[:head]) + "…" + string(r[len(r)-(n-1-head):])
	}
	return s
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
