package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	intakev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/intake/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/intake/adapters"
	"github.com/leadflow/leadflow/services/intake/app"
	"github.com/leadflow/leadflow/services/intake/ports"
)

// rewrapEvery is how often a process with read master keys rewraps what
// they wrapped: a replica still on the old -master-key (a rollout under
// way) wraps new and rewritten keys with it, so one pass is not the end.
const rewrapEvery = 5 * time.Minute

// rewrap stores every data key again under the master key, each pass
// retried until done, a pass every every while ctx lasts. A pass that
// rewraps nothing, begun after every intake and handoff replica runs
// this -master-key, is when the read master keys may go.
func rewrap(ctx context.Context, keys *vault.Vault, every time.Duration, log *slog.Logger) {
	for {
		begun := time.Now()
		n, err := keys.Rewrap(ctx)
		wait := every
		if err == nil {
			log.Info("master key rotation: every stored data key is wrapped with -master-key; -read-master-keys may go after a pass that rewraps none, begun once every intake and handoff replica runs this -master-key",
				"rewrapped", n, "pass_begun", begun.UTC().Format(time.RFC3339))
		} else {
			log.Warn("master key rotation: rewrap failed, retrying", "rewrapped", n, "err", err)
			wait = min(every, 10*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// run wires intake's parts and serves until ctx is done. ready, if set,
// is told the address it listens on.
func run(ctx context.Context, cfg Config, log *slog.Logger, ready func(net.Addr)) error {
	if cfg.NATSURL == "" {
		return errors.New("-nats is required")
	}
	master, err := config.Key("-master-key", cfg.MasterKey)
	if err != nil {
		return err
	}
	blind, err := config.Key("-blind-key", cfg.BlindKey)
	if err != nil {
		return err
	}
	readMasters, err := config.Keys("-read-master-keys", cfg.ReadMasterKeys)
	if err != nil {
		return err
	}
	nc, js, err := eventstore.Dial(cfg.NATSURL, "intake", eventstore.WithUser(cfg.NATSUser, cfg.NATSPassword), eventstore.WithCA(cfg.TLS.NATSCAFile))
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{Name: cfg.Stream, Replicas: cfg.Replicas}); err != nil {
		return err
	}
	sctx, cancel := eventstore.WithSetupTimeout(ctx)
	err = eventstore.Setup(sctx, log, func(ctx context.Context) error { return auth.EnsureRevocations(ctx, js, cfg.Replicas) })
	cancel()
	if err != nil {
		return fmt.Errorf("revocations bucket: %w", err)
	}
	keys, err := vault.New(ctx, js, vault.Config{Replicas: cfg.Replicas, MasterKey: master, ReadMasterKeys: readMasters, BlindKey: blind})
	if err != nil {
		return err
	}
	defer keys.Close()
	if len(readMasters) > 0 {
		go rewrap(ctx, keys, cmp.Or(cfg.rewrapEvery, rewrapEvery), log)
	}
	if err := adapters.TimerStream.Ensure(ctx, js, cfg.Replicas); err != nil {
		return err
	}
	store := eventstore.New(js, cfg.Stream)
	opts := []app.Option{app.WithLogger(log), app.WithLater(adapters.NewLater(js, 0), cfg.finishAfter)}
	if cfg.crashPoints != nil {
		opts = append(opts, app.WithCrashPoints(cfg.crashPoints))
	}
	var leads app.Leads = adapters.NewLeads(store)
	if cfg.leads != nil {
		leads = cfg.leads(leads)
	}
	a := app.New(leads, adapters.NewCampaigns(store), keys, opts...)

	srv, err := grpcserver.ForService(ctx, log, js, cfg.AuthKeys, cfg.TLS)
	if err != nil {
		return err
	}
	port := ports.NewGRPC(a, log)
	port.Linger = cmp.Or(cfg.importLinger, port.Linger)
	intakev1.RegisterIntakeServiceServer(srv.Server, port)
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	api, err := srv.ListenHTTP(cfg.HTTPAddr, intakev1.RegisterIntakeServiceHandler)
	if err != nil {
		lis.Close()
		return err
	}
	log.Info("intake serving", "grpc", lis.Addr().String(), "http", api, "nats", config.Redacted(cfg.NATSURL), "stream", cfg.Stream)
	if cfg.httpReady != nil {
		cfg.httpReady(api)
	}
	if ready != nil {
		ready(lis.Addr())
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	part := func(i int, f func() error) {
		wg.Go(func() {
			if errs[i] = f(); errs[i] != nil {
				stop(errs[i])
			}
		})
	}
	part(0, func() error {
		// Rare (erasures), and idempotent whatever their order: one
		// partition, few workers, in whichever replica holds it.
		return consume.Run(ctx, js, consume.Config{
			Stream: adapters.TimerStream.Name, Group: adapters.TimerGroup,
			Partitions: 1, Filter: adapters.FiredTimers, Key: adapters.TimerStream.LeadID,
			Workers: 4, ShutdownGrace: cfg.Grace, Logger: log, DropHandled: true,
		}, ports.Timers(a, log))
	})
	part(1, func() error { return srv.Serve(ctx, lis, cfg.Grace) })
	wg.Wait()
	// Flush what the connection still buffers before closing it.
	if derr := nc.Drain(); derr != nil && !errors.Is(derr, context.Canceled) {
		log.Warn("nats drain", "err", derr)
	}
	return errors.Join(errs...)
}
