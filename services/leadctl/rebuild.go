package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
)

// rebuildResult is what `rebuild -o json` prints.
type rebuildResult struct {
	Schema   string  `json:"schema"`
	Replaced string  `json:"replaced"`
	Events   uint64  `json:"events"`
	Position uint64  `json:"position"`
	Resumed  bool    `json:"resumed"`
	Followed bool    `json:"followed"`
	Seconds  float64 `json:"seconds"`
}

func rebuildCmd(o *options) *cobra.Command {
	var poll time.Duration
	c := &cobra.Command{
		Use:   "rebuild",
		Short: "Rebuild the projector's read models from the stream into a fresh schema, then swap; follows it to the end",
		Long: `rebuild asks the projector to replay the whole stream into a fresh schema
while the current one keeps serving, and follows it until the new schema
has swapped in and caught up. A rebuild already running (here or in another
replica) is followed instead of started. Ctrl-C stops following, not the
rebuild.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if poll <= 0 {
				return fmt.Errorf("%w: --poll must be positive", errUsage)
			}
			conn, err := o.dial(o.projector)
			if err != nil {
				return err
			}
			defer conn.Close()
			p := projectorv1.NewProjectorServiceClient(conn)
			res, err := rebuild(cmd, o, p, poll)
			if err != nil {
				return needsToken(o, "projector", err)
			}
			if o.output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			how := "rebuilt"
			if res.Followed {
				how = "followed the running rebuild:"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d events into schema %s (replacing %s) up to stream seq %d in %s; it serves now\n",
				how, res.Events, res.Schema, orDash(res.Replaced), res.Position, time.Duration(res.Seconds*float64(time.Second)).Round(time.Millisecond))
			return nil
		},
	}
	c.Flags().DurationVar(&poll, "poll", 200*time.Millisecond, "how often to ask the projector how far it has got")
	return c
}

// unrecordedWait is how long leadctl follows a rebuild that has not
// recorded itself before it asks the projector again.
var unrecordedWait = 2 * time.Second

// silentFor is how long leadctl asks again a projector that stopped
// answering during a rebuild: one killed is restarted within seconds.
var silentFor = 15 * time.Second

// rebuild starts (or joins) the rebuild and polls GetProjectionStatus
// until it is done or has failed.
func rebuild(cmd *cobra.Command, o *options, p projectorv1.ProjectorServiceClient, poll time.Duration) (rebuildResult, error) {
	ctx := cmd.Context()
	unreachable := func(err error) error { return o.unanswered("projector", o.projector, err) }
	statusOf := func() (*projectorv1.GetProjectionStatusResponse, error) {
		cctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		return p.GetProjectionStatus(cctx, &projectorv1.GetProjectionStatusRequest{})
	}
	before, err := statusOf()
	if err != nil {
		return rebuildResult{}, unreachable(err)
	}
	started := time.Now()
	res := rebuildResult{}
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	sr, err := p.StartRebuild(cctx, &projectorv1.StartRebuildRequest{})
	cancel()
	switch {
	case status.Code(err) == codes.AlreadyExists:
		res.Followed = true
		fmt.Fprintln(cmd.ErrOrStderr(), "a rebuild is already running; following it")
	case status.Code(err) == codes.DeadlineExceeded && ctx.Err() == nil:
		// The start drops the schema before and migrates the new one
		// first, which may take longer: it runs on in the projector.
		res.Followed = true
		fmt.Fprintf(cmd.ErrOrStderr(), "the projector did not answer the start within --timeout (%s); following the rebuild it runs\n", o.timeout)
	case err != nil:
		return res, unreachable(err)
	default:
		res.Schema = sr.GetSchema()
		b := before.GetRebuild()
		res.Resumed = b != nil && b.GetSchema() == res.Schema && !b.GetDone()
	}
	bar := newProgress(cmd.ErrOrStderr(), "rebuild", 0)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	asked := time.Now()
	var silent time.Time // since when the projector has not answered
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				bar.finish(int64(res.Position), "stopped following")
				return res, errors.New("stopped following; the rebuild goes on in the projector (leadctl rebuild follows it again)")
			case <-tick.C:
			}
		}
		st, err := statusOf()
		switch c := status.Code(err); {
		case err == nil:
		case ctx.Err() != nil:
			continue // stopped following, above
		case c != codes.Unavailable && c != codes.DeadlineExceeded && c != codes.Internal && c != codes.Unknown:
			// A refused token, say: asking again would not help.
			bar.finish(int64(res.Position), "refused")
			return res, fmt.Errorf("rebuild into %s: the projector at %s refused its status: %w\n"+
				"the rebuild goes on in the projector (leadctl rebuild follows it again)", orDash(res.Schema), o.projector, err)
		}
		if err != nil {
			// It answered before: killed, it is back within seconds (or
			// another replica answers) and says whether the rebuild runs.
			if silent.IsZero() {
				silent = time.Now()
			}
			if time.Since(silent) < silentFor {
				bar.set(int64(res.Position), int64(res.Position), "the projector does not answer; asking again")
				continue
			}
			bar.finish(int64(res.Position), "no answer")
			return res, fmt.Errorf("rebuild into %s: the projector at %s stopped answering for %s: %w\n"+
				"a rebuild stops with the projector that runs it (here after stream seq %d): leadctl rebuild resumes it",
				orDash(res.Schema), o.projector, silentFor, err, res.Position)
		}
		silent = time.Time{}
		pr := st.GetRebuild()
		// Followed, the running rebuild may not have recorded itself yet
		// (it is dropping the schema before it, or migrating): the status
		// still shows the rebuild done before this run, not the one to follow.
		prev := before.GetRebuild()
		earlier := res.Followed && res.Schema == "" && pr.GetDone() && prev.GetDone() && prev.GetSchema() == pr.GetSchema()
		if res.Followed && res.Schema == "" && (pr == nil || earlier) && time.Since(asked) >= unrecordedWait {
			// Or it stopped before it recorded itself: ask again, which
			// starts one if none runs.
			asked = time.Now()
			cctx, cancel := context.WithTimeout(ctx, o.timeout)
			sr, err := p.StartRebuild(cctx, &projectorv1.StartRebuildRequest{})
			cancel()
			switch c := status.Code(err); {
			case err == nil:
				res.Followed, res.Schema = false, sr.GetSchema()
			case c != codes.AlreadyExists && c != codes.DeadlineExceeded:
				return res, unreachable(err)
			}
		}
		if pr != nil && !earlier && (res.Schema == "" || pr.GetSchema() == res.Schema) {
			res.Schema, res.Replaced, res.Events, res.Position = pr.GetSchema(), pr.GetReplaces(), pr.GetEvents(), pr.GetPosition()
			// While it folds in memory nothing is applied yet: the messages
			// read show how far it has got.
			at, note := pr.GetPosition(), "replaying into "+pr.GetSchema()
			switch {
			case pr.GetSwapped():
				note = "swapped to " + pr.GetSchema() + ", catching up"
			case at == 0:
				at, note = pr.GetEvents(), "reading into "+pr.GetSchema()
			}
			bar.set(int64(at), int64(max(pr.GetEnd(), at)), note)
			// StartRebuild clears a resumed rebuild's old error before it
			// answers, so any error is this run's; followed, the one it
			// resumes may show the last run's until it gets that far, so
			// only one that stopped running failed.
			if e := pr.GetError(); e != "" && (!res.Followed || !pr.GetRunning()) {
				bar.finish(int64(pr.GetPosition()), "failed")
				return res, fmt.Errorf("rebuild into %s failed at stream seq %d: %s", pr.GetSchema(), pr.GetPosition(), e)
			}
			if pr.GetDone() && st.GetActiveSchema() == pr.GetSchema() {
				bar.finish(int64(pr.GetPosition()), "swapped to "+pr.GetSchema())
				res.Seconds = time.Since(started).Seconds()
				return res, nil
			}
			if !pr.GetDone() && !pr.GetRunning() {
				bar.finish(int64(pr.GetPosition()), "cut off")
				return res, fmt.Errorf("rebuild into %s stopped at stream seq %d: no projector runs it (the one that did stopped); "+
					"leadctl rebuild resumes it", pr.GetSchema(), pr.GetPosition())
			}
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
