// Package provision makes every stream and bucket Leadflow uses, each with
// the settings the code that owns it wants. It runs as the NATS user
// "provisioner" (pkg/natsauth), once before the services start and again
// after an upgrade that changes a setting (`leadctl provision`, make run,
// make chaos, the deploy's provision Job).
//
// Services only look their streams up, as their users may not create or
// update a stream: a stream's settings can republish its messages to the
// JetStream API or source another stream, and the server does not check
// either against the permissions of the user who set them
// (docs/operations.md, "NATS users"). Without users (tests, make bench) a
// service still makes what is missing itself, with the same settings.
package provision

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	"github.com/leadflow/leadflow/pkg/timer"
	"github.com/leadflow/leadflow/pkg/vault"
)

// The timer streams (pkg/timer) of the services that keep timers: schedules
// on <prefix>.at.<partition>.<lead>.<timer id>, fired copies on
// <prefix>.fired.<partition>.<lead>.
var (
	IntakeTimers = timer.Stream{Name: "INTAKE_TIMERS", Prefix: "intake.timer",
		Description: "intake's timers: the second half of erasures, in case the first was cut short"}
	HandoffTimers = timer.Stream{Name: "HANDOFF_TIMERS", Prefix: "handoff.timer",
		Description: "handoff SLA timers: message schedules and their fired copies"}
	NurtureTimers = timer.Stream{Name: "NURTURE_TIMERS", Prefix: "nurture.timer",
		Description: "nurture review timers: message schedules and their fired copies"}
)

// LoadsBucket is handoff's bucket of each rep's open leads.
const LoadsBucket = "HANDOFF_LOAD"

// Loads is the loads bucket's configuration (bucket "" is LoadsBucket).
func Loads(bucket string, replicas int) jetstream.KeyValueConfig {
	if bucket == "" {
		bucket = LoadsBucket
	}
	return jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "handoff: each rep's open leads, for capacity (a derived index; the lead stream is the truth)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	}
}

// All makes, or brings to their settings, every stream and bucket with
// replicas replicas (1 on a single server, 3 in a cluster, as the
// services' -replicas). Each step is idempotent and retried as
// eventstore.Setup does, so it can run again at any time.
func All(ctx context.Context, js jetstream.JetStream, replicas int) error {
	steps := []struct {
		what string
		do   func() error
	}{
		{eventstore.DefaultStream, func() error {
			_, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{Replicas: replicas})
			return err
		}},
		{"KV_" + vault.DefaultBucket, func() error {
			_, err := vault.EnsureBucket(ctx, js, vault.DefaultBucket, replicas)
			return err
		}},
		{"KV_" + auth.RevokedBucket, func() error { return auth.EnsureRevocations(ctx, js, replicas) }},
		{consume.DefaultDeadLetterStream + ", KV_" + consume.DefaultMembersBucket, func() error {
			return consume.EnsureStreams(ctx, js, "", "", replicas)
		}},
		{IntakeTimers.Name, func() error { return IntakeTimers.Ensure(ctx, js, replicas) }},
		{HandoffTimers.Name, func() error { return HandoffTimers.Ensure(ctx, js, replicas) }},
		{NurtureTimers.Name, func() error { return NurtureTimers.Ensure(ctx, js, replicas) }},
		{"KV_" + LoadsBucket, func() error {
			sctx, cancel := eventstore.WithSetupTimeout(ctx)
			defer cancel()
			return eventstore.Setup(sctx, nil, func(ctx context.Context) error {
				_, err := js.CreateOrUpdateKeyValue(ctx, Loads("", replicas))
				return err
			})
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("provision %s: %w", s.what, err)
		}
	}
	return nil
}

// Streams names every stream All makes, buckets' included, for the
// provisioner's permissions and the tests.
func Streams() []string {
	return []string{eventstore.DefaultStream, "KV_" + vault.DefaultBucket, "KV_" + auth.RevokedBucket,
		consume.DefaultDeadLetterStream, "KV_" + consume.DefaultMembersBucket,
		IntakeTimers.Name, HandoffTimers.Name, NurtureTimers.Name, "KV_" + LoadsBucket}
}
