package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/leadflow/leadflow/pkg/auth"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
)

// call dials one service and runs f, turning "nothing answers" into a clear
// error naming the flag that sets the address.
func call(ctx context.Context, o *options, name, addr string, f func(context.Context, *grpc.ClientConn) error) error {
	var sent sentHeaders
	conn, err := o.dial(addr, grpc.WithStatsHandler(&sent))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	err = f(ctx, conn)
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("%w: %s", errUnknownLead, status.Convert(err).Message())
	}
	if status.Code(err) == codes.Unauthenticated {
		return needsToken(o, name, err)
	}
	if status.Code(err) == codes.Unavailable && conn.GetState() == connectivity.Ready {
		// Reached: an UNAVAILABLE is the service's own answer (an
		// unknown outcome, revocations not read yet), not a wrong address.
		return err
	}
	err = o.unanswered(name, addr, err)
	if c := status.Code(err); (c == codes.Unavailable || c == codes.DeadlineExceeded) && !sent.any.Load() {
		// No request left leadctl (nothing listening, or a server that
		// took the connection and never spoke): nothing was written.
		return fmt.Errorf("%w%w", err, errNotSent)
	}
	return err
}

// errNotSent marks a call no request of which reached a connection.
var errNotSent = errors.New("")

// sentHeaders records whether a call sent a request's headers on a
// connection: before that, nothing of it can have been handled.
type sentHeaders struct{ any atomic.Bool }

func (s *sentHeaders) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (s *sentHeaders) HandleRPC(_ context.Context, st stats.RPCStats) {
	if _, ok := st.(*stats.OutHeader); ok {
		s.any.Store(true)
	}
}
func (s *sentHeaders) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (s *sentHeaders) HandleConn(context.Context, stats.ConnStats)                       {}

// needsToken names where leadctl takes a token, when name refused a call
// for want of one.
func needsToken(o *options, name string, err error) error {
	if status.Code(err) == codes.Unauthenticated && o.token == "" {
		return fmt.Errorf("%s: %w (set $LEADFLOW_TOKEN or --token: make run prints one)", name, err)
	}
	return err
}

// withRequestID tells, for a write that got no answer (in time), how to
// learn its outcome: the same request id again answers the first write,
// where a new run, with a new id, would write again.
func withRequestID(err error, id string) error {
	if c := status.Code(err); (c == codes.DeadlineExceeded || c == codes.Unavailable) && !errors.Is(err, errNotSent) {
		return fmt.Errorf("%w\nit may have been written: run it again with --request-id %s to get its answer, not a second write", err, id)
	}
	return err
}

// asFlags names the flags a user typed in an INVALID_ARGUMENT whose
// fields all are a command's (fields maps each to its flag): "--to" where
// the API says "to_rep_id". Other errors are left as they are.
func asFlags(err error, fields map[string]string) error {
	st := status.Convert(err)
	if err == nil || st.Code() != codes.InvalidArgument {
		return err
	}
	var said []string
	for _, d := range st.Details() {
		br, ok := d.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		for _, v := range br.GetFieldViolations() {
			flag, ok := fields[v.GetField()]
			if !ok {
				return err
			}
			said = append(said, flag+": "+v.GetDescription())
		}
	}
	if len(said) == 0 {
		return err
	}
	return fmt.Errorf("%w: %s", errUsage, strings.Join(said, "; "))
}

// repeatable tells, for a write that got no answer (in time), that
// running it again is safe: the command is its own key (a merge of the
// same pair, an erasure), and a repeat answers as done.
func repeatable(err error) error {
	if c := status.Code(err); (c == codes.DeadlineExceeded || c == codes.Unavailable) && !errors.Is(err, errNotSent) {
		return fmt.Errorf("%w\nit may have been done: running it again is safe, and answers as done if it was", err)
	}
	return err
}

// unanswered tells "nothing there" (Unavailable) from "there, but slower
// than --timeout" (DeadlineExceeded): the fixes differ.
func (o *options) unanswered(name, addr string, err error) error {
	switch status.Code(err) {
	case codes.Unavailable:
		return fmt.Errorf("cannot reach %s at %s (set --%s): %w", name, addr, name, err)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s did not answer within --timeout (%s) at %s: %w", name, o.timeout, addr, err)
	}
	return err
}

// dial is how leadctl reaches a service: over TLS when --tls-ca names
// their CA, else plaintext (`make run`), with the operator's token when
// there is one.
func (o *options) dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if o.tlsCA != "" {
		c, err := credentials.NewClientTLSFromFile(o.tlsCA, "")
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		creds = c
	}
	// An answer is read whole however large (the no-lost-lead check lists
	// every parked lead): the default 4 MiB would fail when most needed.
	return grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(creds), auth.Bearer(o.token),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32))}, opts...)...)
}

// printProto prints m as every -o json is printed: see protoJSON.
func printProto(cmd *cobra.Command, m proto.Message) error {
	b, err := protoJSON.Marshal(m)
	if err != nil {
		return err
	}
	return writeJSON(cmd.OutOrStdout(), json.RawMessage(b))
}

func lostCmd(o *options) *cobra.Command {
	var redrive bool
	var limit uint32
	var asOf string
	var grace time.Duration
	c := &cobra.Command{
		Use:   "lost",
		Short: "Every lead that breaks the no-lost-lead invariant, every parked lead and every orphan claim (exit status 3 when there are any)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit > maxLostLimit {
				return fmt.Errorf("%w: --limit is at most %d", errUsage, maxLostLimit)
			}
			if grace < 0 {
				return fmt.Errorf("%w: --grace must not be negative", errUsage)
			}
			if redrive && asOf != "" {
				// A lead due only later is owed nothing now: the re-drive
				// would answer "owed nothing" for what --as-of listed.
				return fmt.Errorf("%w: --redrive re-drives what is lost now; --as-of only lists", errUsage)
			}
			if redrive && limit == 0 {
				limit = maxLostLimit // a re-drive is for every lost lead there is
			}
			req := &nurturev1.FindLostLeadsRequest{Limit: limit}
			if asOf != "" {
				t, err := time.Parse(time.RFC3339, asOf)
				if err != nil {
					return fmt.Errorf("%w: --as-of %q: want RFC 3339, like 2026-12-01T09:30:00Z", errUsage, asOf)
				}
				req.AsOf = timestamppb.New(t)
			}
			if grace > 0 {
				req.OverdueGrace = durationpb.New(grace)
			}
			find := func() (resp *nurturev1.FindLostLeadsResponse, err error) {
				err = call(cmd.Context(), o, "nurture", o.nurture, func(ctx context.Context, conn *grpc.ClientConn) error {
					resp, err = nurturev1.NewNurtureServiceClient(conn).FindLostLeads(ctx, req)
					return err
				})
				return resp, err
			}
			resp, err := find()
			if err != nil {
				return err
			}
			if redrive {
				// Every page of it, judged as the first was: past the first
				// page are leads a re-drive fixes too, below those it
				// cannot, which stay stuck longest.
				for page := resp; len(page.GetLost()) == int(limit) && limit > 0; {
					last := page.GetLost()[len(page.GetLost())-1]
					req.AsOf = resp.GetAsOf()
					req.After = &nurturev1.LostCursor{StuckFor: last.GetStuckFor(), LeadId: last.GetLeadId()}
					if page, err = find(); err != nil {
						return err
					}
					resp.Lost = append(resp.Lost, page.GetLost()...)
				}
				return redriveLost(cmd, o, resp)
			}
			if o.output == "json" {
				err = printProto(cmd, resp)
			} else {
				err = writeLost(cmd.OutOrStdout(), resp)
			}
			if n := int(resp.GetTotalLost()) + len(resp.GetParked()) + len(resp.GetOrphanClaims()); err == nil && n > 0 {
				return &foundError{what: fmt.Sprintf("%d lost, %d parked, %d orphan claims", resp.GetTotalLost(), len(resp.GetParked()), len(resp.GetOrphanClaims()))}
			}
			return err
		},
	}
	c.Flags().BoolVar(&redrive, "redrive", false, "re-drive the dead letters and write the nurture steps listed leads are owed (others need their own fix)")
	c.Flags().Uint32Var(&limit, "limit", 0, fmt.Sprintf("list at most this many lost leads (default 1000, with --redrive %d; at most %d)", maxLostLimit, maxLostLimit))
	c.Flags().StringVar(&asOf, "as-of", "", "judge today's leads' deadlines at this time (RFC 3339; default now): not their state then (leadctl state --as-of)")
	c.Flags().DurationVar(&grace, "grace", 0, "do not report a deadline missed by less than this")
	return c
}

// maxLostLimit is the most lost leads nurture lists in one answer;
// redriveBatch the most leads one RedriveLeads call takes.
const (
	maxLostLimit = 10000
	redriveBatch = 1000
)

// redriveLost asks nurture to re-drive every lost and parked lead of
// resp, each once, a batch at a time, and says what was done.
func redriveLost(cmd *cobra.Command, o *options, resp *nurturev1.FindLostLeadsResponse) error {
	var ids []string
	seen := map[string]bool{}
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, l := range resp.GetLost() {
		add(l.GetLeadId())
	}
	for _, p := range resp.GetParked() {
		add(p.GetLeadId())
	}
	all := &nurturev1.RedriveLeadsResponse{}
	// Nurture answers the leads it got to before the call's deadline; the
	// rest are asked for again. A call that fails ends the asking, and
	// what was answered before it is still told.
	var stopped error
	for rest := ids; len(rest) > 0; {
		batch := rest[:min(redriveBatch, len(rest))]
		var got []*nurturev1.Redriven
		err := call(cmd.Context(), o, "nurture", o.nurture, func(ctx context.Context, conn *grpc.ClientConn) error {
			r, err := nurturev1.NewNurtureServiceClient(conn).RedriveLeads(ctx, &nurturev1.RedriveLeadsRequest{LeadIds: batch})
			got = r.GetLeads()
			return err
		})
		if err == nil && len(got) == 0 {
			err = errors.New("nurture answered for none of them")
		}
		if err != nil {
			stopped = fmt.Errorf("re-drive stopped after %d of %d leads: %w", len(all.GetLeads()), len(ids), err)
			break
		}
		all.Leads = append(all.Leads, got...)
		answered := map[string]bool{}
		for _, l := range got {
			answered[l.GetLeadId()] = true
		}
		rest = slices.DeleteFunc(slices.Clone(rest), func(id string) bool { return answered[id] })
	}
	counts := map[nurturev1.RedriveAction]int{}
	for _, l := range all.GetLeads() {
		counts[l.GetAction()]++
	}
	failed := counts[nurturev1.RedriveAction_REDRIVE_ACTION_FAILED]
	// The summary is printed whole either way; a failure still exits
	// non-zero, so a script or an operator does not take it for done.
	errFailed := stopped
	if failed > 0 {
		errFailed = errors.Join(stopped, fmt.Errorf("re-drive failed for %d of %d lead(s): the summary names each with its error", failed, len(ids)))
	}
	if o.output == "json" {
		if err := printProto(cmd, all); err != nil {
			return err
		}
		return errFailed
	}
	w := cmd.OutOrStdout()
	if len(ids) == 0 {
		fmt.Fprintln(w, "no lost or parked lead: nothing to re-drive")
		return nil
	}
	both := counts[nurturev1.RedriveAction_REDRIVE_ACTION_REDRIVEN_AND_WRITTEN]
	redriven, written := counts[nurturev1.RedriveAction_REDRIVE_ACTION_REDRIVEN]+both, counts[nurturev1.RedriveAction_REDRIVE_ACTION_WRITTEN]+both
	none := counts[nurturev1.RedriveAction_REDRIVE_ACTION_NONE]
	fmt.Fprintf(w, "re-drive requested for %d lead(s): %d dead letters handed back, %d written by nurture, %d owed nothing, %d unknown, %d failed\n",
		len(ids), redriven, written, none, counts[nurturev1.RedriveAction_REDRIVE_ACTION_NOT_FOUND], failed)
	if n := counts[nurturev1.RedriveAction_REDRIVE_ACTION_PENDING]; n > 0 {
		fmt.Fprintf(w, "%d lead(s) left as they were: an operator's skip of their dead letter already waits for their group's owner, and drops the dead event when served (leadctl dlq list)\n", n)
	}
	if stopped != nil {
		fmt.Fprintf(w, "%d lead(s) without an answer (those of the failed call may have been re-driven): %v; run leadctl lost --redrive again\n",
			len(ids)-len(all.GetLeads()), stopped)
	}
	for _, l := range all.GetLeads() {
		if l.GetAction() == nurturev1.RedriveAction_REDRIVE_ACTION_FAILED {
			fmt.Fprintf(w, "  %s failed: %s\n", l.GetLeadId(), l.GetError())
		}
	}
	// Only what was handed back or written can come out clean; a dead
	// letter handed back can fail again.
	if n := redriven + written - both; n > 0 {
		fmt.Fprintf(w, "run leadctl lost again to check the %d re-driven lead(s)\n", n)
	}
	if none > 0 {
		fmt.Fprintf(w, "%d lead(s) were owed nothing a re-drive gives, so it does not fix them: leadctl lost names the fix for each\n", none)
	}
	return errFailed
}

// writeLost prints the check for people: per lead its status, owner, last
// event, the step it misses and for how long, why, and how to fix it.
func writeLost(w io.Writer, resp *nurturev1.FindLostLeadsResponse) error {
	fmt.Fprintf(w, "checked %d leads up to stream seq %d in %s: %d lost, %d parked, %d orphan claims\n",
		resp.GetLeadsChecked(), resp.GetStreamSeq(), resp.GetTook().AsDuration().Round(time.Microsecond),
		resp.GetTotalLost(), len(resp.GetParked()), len(resp.GetOrphanClaims()))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var fixes []string
	fix := func(f string) {
		if !slices.Contains(fixes, f) {
			fixes = append(fixes, f)
		}
	}
	if n := len(resp.GetLost()); uint64(n) < resp.GetTotalLost() {
		fmt.Fprintf(w, "the first %d of %d lost leads (--limit lists more)\n", n, resp.GetTotalLost())
	}
	if len(resp.GetLost()) > 0 {
		fmt.Fprintln(tw, "\nLEAD\tSTATUS\tOWNER\tLAST EVENT\tAT\tMISSING STEP\tSTUCK FOR\tWHY")
		for _, l := range resp.GetLost() {
			why := strings.ToLower(strings.TrimPrefix(l.GetReason().String(), "LOST_REASON_"))
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s: %s\n", l.GetLeadId(), leadStatus(l.GetStatus()), protoOwner(l.GetOwner()),
				l.GetLastEventType(), at(l.GetLastEventAt()), l.GetMissingStep(), l.GetStuckFor().AsDuration().Round(time.Second), why, l.GetDetail())
			switch {
			case l.GetReason() == nurturev1.LostReason_LOST_REASON_DROPPED:
				fix("leadctl lost --redrive: nurture writes the steps it owes")
			case l.GetReason() == nurturev1.LostReason_LOST_REASON_STALLED:
				fix("start the stopped service named under WHY: its group takes the waiting leads in order")
			case l.GetOwner().GetKind() == eventv1.OwnerKind_OWNER_KIND_QUEUE && l.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_ASSIGNED:
				fix("leadctl reassign <lead> --to <rep> --reason <why>: the manager's hand-on from the queue")
			case l.GetOwner().GetKind() == eventv1.OwnerKind_OWNER_KIND_QUEUE && l.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_MQL:
				fix("leadctl assign <lead> --to <rep>: a queued MQL routed by hand")
			case l.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_OPPORTUNITY:
				fix("the deal's rep closes it won or lost, or moves its expected close (handoff's MoveOpportunityStage with expected_close)")
			case strings.Contains(l.GetMissingStep(), "contact attempts exhausted"):
				// Attempts exhausted: nurture owes the recycle, not a rep.
				fix("leadctl lost --redrive: nurture recycles a lead whose contact attempts ran out (if a dead letter parked it: leadctl dlq list)")
			case (l.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_ASSIGNED || l.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_ACCEPTED) &&
				l.GetOwner().GetKind() == eventv1.OwnerKind_OWNER_KIND_REP:
				// A breach nobody escalated, whatever came after it, or a
				// deadline no timer watched.
				fix("leadctl reassign <lead> --to <rep> --reason <why>: another rep takes a lead its rep holds past its deadline")
			case l.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_NEW && l.GetLastEventType() == "LeadScored":
				fix("leadctl lost --redrive: nurture recycles a new lead no score qualified by its deadline (or leadctl recycle <lead> --note <why>)")
			case l.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_NEW:
				// Its last event waits for a score: nurture recycles only
				// what a score left past its deadline.
				fix("qualification scores a new lead's last event: if it is stuck, see leadctl dlq list for qualification's dead letter; once scored past its deadline, leadctl lost --redrive recycles it")
			case l.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_NURTURING:
				fix("leadctl lost --redrive: nurture writes the step a nurtured lead is owed (its re-engagement, or its exit at the review date)")
			case l.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_RECYCLED || l.GetStatus() == eventv1.LeadStatus_LEAD_STATUS_LOST:
				fix("leadctl lost --redrive: nurture writes the recycle or enrolment it owes (if it owes none: leadctl recycle <lead> --note <why>)")
			default:
				fix("leadctl timeline <lead>: no fix is known for this case; the timeline shows where the lead stopped")
			}
		}
	}
	if len(resp.GetParked()) > 0 {
		fmt.Fprintln(tw, "\nPARKED LEAD\tSTATUS\tOWNER\tLAST EVENT\tAT\tMISSING STEP\tSTUCK FOR\tGROUP\tDEAD EVENT\tWAITING\tERROR")
		for _, p := range resp.GetParked() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s (seq %d)\t%d\t%s\n", p.GetLeadId(), leadStatus(p.GetStatus()), protoOwner(p.GetOwner()),
				orDash(p.GetLastEventType()), at(p.GetLastEventAt()), orDash(p.GetMissingStep()), p.GetStuckFor().AsDuration().Round(time.Second),
				p.GetGroup(), orDash(p.GetDeadEventType()), p.GetDeadSeq(), len(p.GetParkedSeqs()), oneLine(p.GetError(), 300))
			fix(fmt.Sprintf("fix the cause under ERROR, then: leadctl dlq redrive %s %s --seq %d (or leadctl lost --redrive)", p.GetGroup(), p.GetLeadId(), p.GetDeadSeq()))
		}
	}
	if len(resp.GetOrphanClaims()) > 0 {
		fmt.Fprintln(tw, "\nORPHAN CLAIM\tKIND\tLEAD\tAGE")
		for _, c := range resp.GetOrphanClaims() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.GetSubject(), c.GetKind(), c.GetLeadId(), c.GetAge().AsDuration().Round(time.Second))
		}
		fix("an orphan claim is adopted by the next capture of that identity")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(fixes) > 0 {
		fmt.Fprintln(w, "\nto fix:")
		for _, f := range fixes {
			fmt.Fprintln(w, "  "+f)
		}
	}
	return nil
}

func leadStatus(s eventv1.LeadStatus) string { return strings.TrimPrefix(s.String(), "LEAD_STATUS_") }

func at(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.DateTime)
}

func reassignCmd(o *options) *cobra.Command {
	var to, reason, requestID string
	c := &cobra.Command{
		Use:   "reassign <lead id> --to <rep> --reason <why>",
		Short: "Give an assigned or accepted lead to another rep (handoff), e.g. a breached SLA nobody escalated",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkWrite("reason", reason, &args[0]); err != nil {
				return err
			}
			if to == "" {
				return fmt.Errorf("%w: --to is required", errUsage)
			}
			requestID = cmp.Or(requestID, uuid.NewString())
			var resp *handoffv1.ReassignLeadResponse
			err := call(cmd.Context(), o, "handoff", o.handoff, func(ctx context.Context, conn *grpc.ClientConn) error {
				var err error
				resp, err = handoffv1.NewHandoffServiceClient(conn).ReassignLead(ctx, &handoffv1.ReassignLeadRequest{LeadId: args[0], ToRepId: to,
					RequestId: requestID, Reason: reason, ReassignedBy: o.actor()})
				return err
			})
			if err != nil {
				return withRequestID(asFlags(err, map[string]string{"to_rep_id": "--to", "reason": "--reason"}), requestID)
			}
			if o.output == "json" {
				return printProto(cmd, resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lead %s reassigned to rep %s%s\n", args[0], to, repeat(resp.GetReplayed()))
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "the rep who takes the lead")
	c.Flags().StringVar(&reason, "reason", "", "why, kept on the event")
	c.Flags().StringVar(&requestID, "request-id", "", "makes a repeat of this command answer the first reassignment (default: a new id per run)")
	return c
}

func assignCmd(o *options) *cobra.Command {
	var to, requestID string
	c := &cobra.Command{
		Use:   "assign <lead id> --to <rep>",
		Short: "Give an MQL waiting in a queue (routing, the fallback queue) to a rep by hand (handoff)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := leadIDs(&args[0]); err != nil {
				return err
			}
			if to == "" {
				return fmt.Errorf("%w: --to is required", errUsage)
			}
			requestID = cmp.Or(requestID, uuid.NewString())
			var resp *handoffv1.AssignLeadResponse
			err := call(cmd.Context(), o, "handoff", o.handoff, func(ctx context.Context, conn *grpc.ClientConn) error {
				var err error
				resp, err = handoffv1.NewHandoffServiceClient(conn).AssignLead(ctx, &handoffv1.AssignLeadRequest{LeadId: args[0], RepId: to,
					RequestId: requestID, AssignedBy: o.actor()})
				return err
			})
			if err != nil {
				return withRequestID(asFlags(err, map[string]string{"rep_id": "--to"}), requestID)
			}
			if o.output == "json" {
				return printProto(cmd, resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lead %s assigned to rep %s%s\n", args[0], to, repeat(resp.GetReplayed()))
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "the rep who takes the lead")
	c.Flags().StringVar(&requestID, "request-id", "", "makes a repeat of this command answer the first assignment (default: a new id per run)")
	return c
}

// actor is who leadctl's writes name: the caller its token names, so an
// erasure or a hand-on records the operator who did it; "leadctl" when
// the services run without auth.
func (o *options) actor() *eventv1.Actor {
	if p, err := auth.Claimed(o.token); err == nil {
		return p.Actor()
	}
	return &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Id: "leadctl", Team: eventv1.Team_TEAM_OPERATIONS}
}

func protoOwner(o *eventv1.Owner) string {
	if o.GetId() == "" {
		return "-"
	}
	return strings.ToLower(strings.TrimPrefix(o.GetKind().String(), "OWNER_KIND_")) + " " + o.GetId()
}

// mergeCmd is merge, or with undo unmerge: intake's MergeLeads and
// UnmergeLeads, for the candidates replay lists.
func mergeCmd(o *options, undo bool) *cobra.Command {
	var reason string
	verb, short := "merge", "Merge the absorbed lead into the survivor (intake): its identities and later captures go to the survivor"
	if undo {
		verb, short = "unmerge", "Undo a merge (intake): each lead gets back what came through it, by replay (consents and qualifications the merge caused: see README's known weaknesses)"
	}
	c := &cobra.Command{
		Use:   verb + " <survivor lead id> <absorbed lead id> --reason <why>",
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkWrite("reason", reason, &args[0], &args[1]); err != nil {
				return err
			}
			// Both answers read alike.
			var resp interface {
				proto.Message
				GetSurvivorVersion() uint64
				GetAbsorbedVersion() uint64
				GetReplayed() bool
			}
			err := call(cmd.Context(), o, "intake", o.intake, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				c := intakev1.NewIntakeServiceClient(conn)
				if undo {
					resp, err = c.UnmergeLeads(ctx, &intakev1.UnmergeLeadsRequest{SurvivorLeadId: args[0], AbsorbedLeadId: args[1], Reason: reason, Actor: o.actor()})
				} else {
					resp, err = c.MergeLeads(ctx, &intakev1.MergeLeadsRequest{SurvivorLeadId: args[0], AbsorbedLeadId: args[1], Reason: reason, Actor: o.actor()})
				}
				return err
			})
			if err != nil {
				return repeatable(err)
			}
			if o.output == "json" {
				return printProto(cmd, resp)
			}
			switch replayed := resp.GetReplayed(); {
			case replayed && undo:
				fmt.Fprintf(cmd.OutOrStdout(), "lead %s is not merged into %s (any more)\n", args[1], args[0])
			case replayed:
				fmt.Fprintf(cmd.OutOrStdout(), "lead %s was already merged into %s\n", args[1], args[0])
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "%sd: survivor %s at version %d, absorbed %s at version %d\n", verb, args[0], resp.GetSurvivorVersion(), args[1], resp.GetAbsorbedVersion())
			}
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, kept on the event in the clear, e.g. a ticket number")
	return c
}

// repeat tells a repeated --request-id's answer from a first one.
func repeat(replayed bool) string {
	if replayed {
		return " (the first answer to this --request-id; nothing written)"
	}
	return ""
}

// checkWrite checks a write's lead ids and the text a person must give
// with it (flag), which is required.
func checkWrite(flag, text string, ids ...*string) error {
	if err := leadIDs(ids...); err != nil {
		return err
	}
	if text == "" {
		return fmt.Errorf("%w: --%s is required (kept in the clear: do not name the person)", errUsage, flag)
	}
	return nil
}

func recycleCmd(o *options) *cobra.Command {
	var note, programID, requestID string
	c := &cobra.Command{
		Use:   "recycle <lead id> --note <why> [--program <id>]",
		Short: "Send a lead to nurture by hand (nurture): a NEW, ACCEPTED, LOST or RECYCLED lead, enrolled at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkWrite("note", note, &args[0]); err != nil {
				return err
			}
			requestID = cmp.Or(requestID, uuid.NewString())
			var resp *nurturev1.RecycleLeadResponse
			err := call(cmd.Context(), o, "nurture", o.nurture, func(ctx context.Context, conn *grpc.ClientConn) error {
				var err error
				resp, err = nurturev1.NewNurtureServiceClient(conn).RecycleLead(ctx, &nurturev1.RecycleLeadRequest{LeadId: args[0], Note: note,
					ProgramId: programID, RequestId: requestID, Actor: o.actor()})
				return err
			})
			if err != nil {
				return withRequestID(err, requestID)
			}
			if o.output == "json" {
				return printProto(cmd, resp)
			}
			enrolled := "its enrolment is owed; nurture writes it when the recycle reaches its consumer"
			if resp.GetEnrolledEventId() != "" {
				enrolled = fmt.Sprintf("enrolled in %s, review %s", resp.GetProgramId(), at(resp.GetReviewAt()))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lead %s recycled (journey cycle %d): %s%s\n", args[0], resp.GetCycle(), enrolled, repeat(resp.GetReplayed()))
			return nil
		},
	}
	c.Flags().StringVar(&note, "note", "", "why, kept on the event in the clear")
	c.Flags().StringVar(&programID, "program", "", "the program to enrol the lead in (default: nurture's entry rules choose)")
	c.Flags().StringVar(&requestID, "request-id", "", "makes a repeat of this command answer the first recycle (default: a new id per run)")
	return c
}

func disqualifyCmd(o *options) *cobra.Command {
	var reason, requestID string
	var notNow bool
	c := &cobra.Command{
		Use:   "disqualify <lead id> --reason <why> [--not-now]",
		Short: "Disqualify a NEW, MQL or nurtured lead by hand (qualification): it ends, or with --not-now goes to nurture",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkWrite("reason", reason, &args[0]); err != nil {
				return err
			}
			requestID = cmp.Or(requestID, uuid.NewString())
			var resp *qualificationv1.DisqualifyLeadResponse
			err := call(cmd.Context(), o, "qualification", o.qualification, func(ctx context.Context, conn *grpc.ClientConn) error {
				var err error
				resp, err = qualificationv1.NewQualificationServiceClient(conn).DisqualifyLead(ctx, &qualificationv1.DisqualifyLeadRequest{
					LeadId: args[0], Reason: reason, NotNow: notNow, RequestId: requestID, DecidedBy: o.actor()})
				return err
			})
			if err != nil {
				return withRequestID(err, requestID)
			}
			if o.output == "json" {
				return printProto(cmd, resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lead %s is %s at version %d%s\n", args[0], leadStatus(resp.GetStatus()), resp.GetVersion(), repeat(resp.GetReplayed()))
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, kept on the event in the clear, e.g. spam")
	c.Flags().BoolVar(&notNow, "not-now", false, "not ready rather than not a lead: nurture takes it")
	c.Flags().StringVar(&requestID, "request-id", "", "makes a repeat of this command answer the first verdict (default: a new id per run)")
	return c
}

func eraseCmd(o *options) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "erase <lead id> --reason <why>",
		Short: "Erase a lead's personal data (crypto-shredding); its history stays",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkWrite("reason", reason, &args[0]); err != nil {
				return err
			}
			var resp *intakev1.EraseLeadResponse
			err := call(cmd.Context(), o, "intake", o.intake, func(ctx context.Context, conn *grpc.ClientConn) error {
				var err error
				resp, err = intakev1.NewIntakeServiceClient(conn).EraseLead(ctx, &intakev1.EraseLeadRequest{LeadId: args[0], Reason: reason,
					Actor: o.actor()})
				return err
			})
			if err != nil {
				return repeatable(err)
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

func findCmd(o *options) *cobra.Command {
	var email, ext string
	c := &cobra.Command{
		Use:   "find --email <address> | --external-id <system>:<id>",
		Short: "The lead a person's email or CRM id leads to, for an access or erasure request; writes nothing (intake)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &intakev1.FindLeadRequest{Email: email}
			if ext != "" {
				system, id, ok := strings.Cut(ext, ":")
				if !ok {
					return fmt.Errorf("%w: --external-id is <system>:<id>, e.g. salesforce:0015g00000ABC", errUsage)
				}
				req.ExternalId = &eventv1.ExternalId{System: system, Id: id}
			}
			if (email == "") == (ext == "") {
				return fmt.Errorf("%w: give --email or --external-id, one of the two", errUsage)
			}
			var resp *intakev1.FindLeadResponse
			err := call(cmd.Context(), o, "intake", o.intake, func(ctx context.Context, conn *grpc.ClientConn) error {
				var err error
				resp, err = intakev1.NewIntakeServiceClient(conn).FindLead(ctx, req)
				return err
			})
			if err != nil {
				return asFlags(err, map[string]string{"email": "--email", "external_id.system": "--external-id", "external_id.id": "--external-id"})
			}
			if o.output == "json" {
				return printProto(cmd, resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lead %s (by %s)\n", resp.GetLeadId(), resp.GetMatchedBy())
			if s := resp.GetSurvivorLeadId(); s != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "merged into lead %s: its person's later data is there (leadctl export %s covers both)\n", s, s)
			}
			return nil
		},
	}
	c.Flags().StringVar(&email, "email", "", "the person's email address, as they gave it")
	c.Flags().StringVar(&ext, "external-id", "", "the person's id in another system, <system>:<id>")
	return c
}

func exportCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "export <lead id>",
		Short: "Everything held about a lead, decrypted, for an access request (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := leadIDs(&args[0]); err != nil {
				return err
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
