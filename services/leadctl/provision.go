package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/natsauth"
	"github.com/leadflow/leadflow/pkg/provision"
)

func provisionCmd(o *options) *cobra.Command {
	var replicas int
	c := &cobra.Command{
		Use:   "provision",
		Short: "Make every stream and bucket, or bring them to their settings (as the NATS user " + natsauth.Provisioner + "; before the services start)",
		Long: "Makes every stream and bucket Leadflow uses, each with the settings its code wants, or brings one made\n" +
			"before to them. The services' NATS users may only look streams up, so run this once before they\n" +
			"first start, and again after an upgrade; it is idempotent. Connect as the " + natsauth.Provisioner + " user\n" +
			"(--nats-user " + natsauth.Provisioner + "); --replicas must match the services' -replicas.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if replicas < 1 {
				return fmt.Errorf("%w: --replicas must be at least 1, not %d", errUsage, replicas)
			}
			// A refused request is never answered, only reported to the
			// connection: stop at the first instead of waiting out the retries.
			ctx, cancel := context.WithCancelCause(cmd.Context())
			defer cancel(nil)
			refused := func(_ *nats.Conn, _ *nats.Subscription, err error) {
				if errors.Is(err, nats.ErrPermissionViolation) {
					cancel(fmt.Errorf("NATS refused the NATS user %q (connect as %q): %w", o.natsUser, natsauth.Provisioner, err))
				}
			}
			nc, js, err := eventstore.Dial(o.nats, "leadctl-provision", nats.Timeout(o.timeout), eventstore.WithUser(o.natsUser, o.natsPassword),
				eventstore.WithCA(o.natsCA), nats.ErrorHandler(refused))
			if err != nil {
				return fmt.Errorf("cannot reach NATS at %s: %w", config.Redacted(o.nats), err)
			}
			defer nc.Close()
			// Run again after an upgrade without --replicas, the default 1
			// would bring a cluster's streams down to one copy.
			if !cmd.Flags().Changed("replicas") && os.Getenv("LEADFLOW_REPLICAS") == "" {
				st, err := js.Stream(ctx, eventstore.DefaultStream)
				switch {
				case errors.Is(err, jetstream.ErrStreamNotFound):
					// A first provisioning: the default stands.
				case err != nil:
					return fmt.Errorf("read %s's replicas, to keep them (--replicas not given): %w", eventstore.DefaultStream, err)
				case st.CachedInfo().Config.Replicas != replicas:
					have := st.CachedInfo().Config.Replicas
					return fmt.Errorf("%w: %s has %d replicas and --replicas is not given (default %d): pass --replicas %d to keep them, or the count you want",
						errUsage, eventstore.DefaultStream, have, replicas, have)
				}
			}
			if err := provision.All(ctx, js, replicas); err != nil {
				if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
					return cause
				}
				if eventstore.HasErrorCode(err, eventstore.ErrCodeReplicasNotSupported) {
					return fmt.Errorf("%w: --replicas %d needs a NATS cluster of at least %d servers; this one is a single server (--replicas 1)", errUsage, replicas, replicas)
				}
				return err
			}
			if o.output == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"streams": provision.Streams(), "replicas": replicas})
			}
			for _, s := range provision.Streams() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\tready, %d replica(s)\n", s, replicas)
			}
			return nil
		},
	}
	def, _ := strconv.Atoi(envOr("LEADFLOW_REPLICAS", "1"))
	c.Flags().IntVar(&replicas, "replicas", def, "replicas of every stream ($LEADFLOW_REPLICAS; 3 in a cluster: the services' -replicas)")
	return c
}
