// Command leadctl is the operators' CLI: a lead's timeline and state
// straight from the stream, lost leads, dead letters, replays through the
// state machine, projection rebuilds, a live tail, a score's explanation. Its defaults match `make run`; the token and NATS user `make run` prints come from the environment.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/eventstore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := newRoot(os.Stdout).ExecuteContext(ctx)
	var found *foundError
	switch {
	case errors.As(err, &found):
		os.Exit(3) // what it found is printed already
	case err != nil:
		fmt.Fprintln(os.Stderr, "leadctl:", err)
		os.Exit(1)
	}
}

// foundError is a check that ran and found what it looks for (lost
// leads): exit status 3, for a cron job or an alert, apart from 1 for a
// check that could not run.
type foundError struct{ what string }

func (e *foundError) Error() string { return e.what }

// options are the flags every command shares.
type options struct {
	nats          string
	natsUser      string
	natsPassword  string
	natsCA        string
	tlsCA         string
	stream        string
	qualification string
	intake        string
	nurture       string
	handoff       string
	projector     string
	output        string
	timeout       time.Duration
	token         string
}

// errUsage marks a mistake in the command line.
var errUsage = errors.New("usage")

func newRoot(out io.Writer) *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:           "leadctl",
		Short:         "Operate Leadflow: timelines, state, lost leads, dead letters, replay, rebuild, tail, explain, assign, reassign, recycle, disqualify, merge, erase, export, API tokens, provisioning",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if o.output != "text" && o.output != "json" {
				return fmt.Errorf("%w: -o must be text or json, not %q", errUsage, o.output)
			}
			// Read here, not as flag defaults, so that --help never prints a secret.
			o.natsUser = cmp.Or(o.natsUser, os.Getenv("LEADFLOW_NATS_USER"))
			o.natsPassword = cmp.Or(o.natsPassword, os.Getenv("LEADFLOW_NATS_PASSWORD"))
			o.token = cmp.Or(o.token, os.Getenv("LEADFLOW_TOKEN"))
			return nil
		},
	}
	root.SetOut(out)
	f := root.PersistentFlags()
	f.StringVar(&o.nats, "nats", envOr("LEADFLOW_NATS_URL", "nats://127.0.0.1:4333"), "NATS URL ($LEADFLOW_NATS_URL)")
	f.Lookup("nats").DefValue = config.Redacted(o.nats) // help is pasted into tickets
	f.StringVar(&o.natsUser, "nats-user", "", "NATS user, the operator's ($LEADFLOW_NATS_USER; make run prints it)")
	f.StringVar(&o.natsPassword, "nats-password", "", "NATS password ($LEADFLOW_NATS_PASSWORD)")
	f.StringVar(&o.natsCA, "nats-ca", os.Getenv("LEADFLOW_NATS_CA"), "PEM CA of the NATS server's certificate: connect over TLS ($LEADFLOW_NATS_CA)")
	f.StringVar(&o.tlsCA, "tls-ca", os.Getenv("LEADFLOW_TLS_CA"), "PEM CA of the services' certificate: call their APIs over TLS ($LEADFLOW_TLS_CA; empty: plaintext)")
	f.StringVar(&o.stream, "stream", envOr("LEADFLOW_STREAM", eventstore.DefaultStream), "event stream ($LEADFLOW_STREAM)")
	f.StringVar(&o.intake, "intake", envOr("LEADFLOW_INTAKE_ADDR", "127.0.0.1:7101"), "intake gRPC address ($LEADFLOW_INTAKE_ADDR)")
	f.StringVar(&o.qualification, "qualification", envOr("LEADFLOW_QUALIFICATION_ADDR", "127.0.0.1:7102"), "qualification gRPC address ($LEADFLOW_QUALIFICATION_ADDR)")
	f.StringVar(&o.handoff, "handoff", envOr("LEADFLOW_HANDOFF_ADDR", "127.0.0.1:7103"), "handoff gRPC address ($LEADFLOW_HANDOFF_ADDR)")
	f.StringVar(&o.nurture, "nurture", envOr("LEADFLOW_NURTURE_ADDR", "127.0.0.1:7104"), "nurture gRPC address ($LEADFLOW_NURTURE_ADDR)")
	f.StringVar(&o.projector, "projector", envOr("LEADFLOW_PROJECTOR_ADDR", "127.0.0.1:7105"), "projector gRPC address ($LEADFLOW_PROJECTOR_ADDR)")
	f.StringVarP(&o.output, "output", "o", "text", "output: text or json")
	f.DurationVar(&o.timeout, "timeout", 5*time.Second, "how long to wait for a server")
	f.StringVar(&o.token, "token", "", "bearer token for the services' APIs ($LEADFLOW_TOKEN; make run prints one)")
	root.AddCommand(timelineCmd(o), stateCmd(o), dlqCmd(o), tailCmd(o), explainCmd(o), lostCmd(o), assignCmd(o), reassignCmd(o), recycleCmd(o), disqualifyCmd(o), eraseCmd(o), exportCmd(o), findCmd(o),
		mergeCmd(o, false), mergeCmd(o, true),
		replayCmd(o), rebuildCmd(o), queuesCmd(o), tokenCmd(o), provisionCmd(o))
	return root
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// connect dials NATS, failing fast with a clear error when nothing answers.
func (o *options) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, js, err := eventstore.Dial(o.nats, "leadctl", nats.Timeout(o.timeout), eventstore.WithUser(o.natsUser, o.natsPassword),
		eventstore.WithCA(o.natsCA))
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach NATS at %s (is `make run` up? set --nats, --nats-user): %w", config.Redacted(o.nats), err)
	}
	return nc, js, nil
}

// withJS connects and runs f within --timeout.
func (o *options) withJS(ctx context.Context, f func(context.Context, jetstream.JetStream) error) error {
	nc, js, err := o.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return f(ctx, js)
}

func (o *options) store() (*eventstore.Store, func(), error) {
	nc, js, err := o.connect()
	if err != nil {
		return nil, nil, err
	}
	return eventstore.New(js, o.stream), nc.Close, nil
}
