package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	handoffv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/timer"
	"github.com/leadflow/leadflow/pkg/vault"
	"github.com/leadflow/leadflow/services/handoff/adapters"
	"github.com/leadflow/leadflow/services/handoff/app"
	"github.com/leadflow/leadflow/services/handoff/ports"
)

// maxHeld is how many messages one partition of a consumer hands out
// unacknowledged.
const maxHeld = 64

// run wires handoff's parts and runs them until ctx is done: the gRPC
// API, the lead consumer (routing, timer scheduling, capacity), the timer
// consumer, the routing consumer (what a routing change asks of the
// leads) and the capacity watcher. ready, if set, is told the address
// it listens on. Any part failing stops the rest.
func run(ctx context.Context, cfg Config, log *slog.Logger, ready func(net.Addr)) error {
	if cfg.NATSURL == "" {
		return errors.New("-nats is required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.TimerStream == "" {
		cfg.TimerStream = adapters.DefaultTimerStream
	}
	if err := timer.CheckTTL("-timer-ttl", cfg.TimerTTL); err != nil {
		return err
	}
	nc, js, err := eventstore.Dial(cfg.NATSURL, "handoff", eventstore.WithUser(cfg.NATSUser, cfg.NATSPassword), eventstore.WithCA(cfg.TLS.NATSCAFile))
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{Name: cfg.Stream, Replicas: cfg.Replicas}); err != nil {
		return err
	}
	if err := adapters.EnsureTimerStream(ctx, js, cfg.TimerStream, cfg.Replicas); err != nil {
		return err
	}
	loads, err := adapters.NewLoads(ctx, js, cfg.LoadsBucket, cfg.Replicas)
	if err != nil {
		return err
	}
	opts := []app.Option{app.WithLogger(log), app.WithRouteRetry(cfg.RouteRetry)}
	if cfg.crashPoints != nil {
		opts = append(opts, app.WithCrashPoints(cfg.crashPoints))
	}
	if cfg.MasterKey != "" {
		master, err := config.Key("-master-key", cfg.MasterKey)
		if err != nil {
			return err
		}
		readMasters, err := config.Keys("-read-master-keys", cfg.ReadMasterKeys)
		if err != nil {
			return err
		}
		v, err := vault.New(ctx, js, vault.Config{Replicas: cfg.Replicas, MasterKey: master, ReadMasterKeys: readMasters})
		if err != nil {
			return err
		}
		defer v.Close()
		opts = append(opts, app.WithPersonal(adapters.NewPersonal(v)))
	}
	store := eventstore.New(js, cfg.Stream)
	a := app.New(adapters.NewLeads(store), adapters.NewStore(store, js), loads, adapters.NewTimers(js, cfg.TimerTTL), opts...)
	events := ports.NewEvents(a, log)

	srv, err := grpcserver.ForService(ctx, log, js, cfg.AuthKeys, cfg.TLS)
	if err != nil {
		return err
	}
	handoffv1.RegisterHandoffServiceServer(srv.Server, ports.NewGRPC(a, log))
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	api, err := srv.ListenHTTP(cfg.HTTPAddr, handoffv1.RegisterHandoffServiceHandler)
	if err != nil {
		lis.Close()
		return err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	errs := make([]error, 5)
	part := func(i int, f func() error) {
		wg.Go(func() {
			if errs[i] = f(); errs[i] != nil {
				cancel(errs[i])
			}
		})
	}
	part(0, func() error { loads.Watch(ctx, log); return nil })
	part(1, func() error {
		// Every replica takes some lead partitions; a lead's events are
		// handled by one replica at a time, in order.
		return consume.Run(ctx, js, consume.Config{
			Stream: cfg.Stream, Group: ports.Group,
			Partitions: eventstore.Partitions, Filter: eventstore.PartitionSubjects, Key: eventstore.LeadID,
			Workers: cfg.Workers, AckWait: cfg.AckWait, ShutdownGrace: cfg.Grace, Logger: log,
			// A routing decision takes a few round trips: holding more than
			// the workers can start on soon only adds progress acks.
			MaxHeld: maxHeld,
		}, events.Lead)
	})
	part(2, func() error {
		return consume.Run(ctx, js, consume.Config{
			Stream: cfg.TimerStream, Group: ports.TimerGroup,
			Partitions: eventstore.Partitions, Filter: adapters.FiredSubjects, Key: adapters.TimerLeadID,
			Workers: cfg.Workers, AckWait: cfg.AckWait, ShutdownGrace: cfg.Grace, Logger: log, MaxHeld: maxHeld,
			// A fired copy is work, not history (the lead's events are):
			// a lead queued for a month would leave thousands.
			DropHandled: !cfg.keepFired,
		}, events.Timer)
	})
	part(4, func() error {
		// Rare, and each redone from the routing data as it is now.
		return consume.Run(ctx, js, consume.Config{
			Stream: cfg.Stream, Group: ports.RoutingGroup,
			Filter: func(int) []string { return []string{adapters.RoutingSubject} },
			// Changes stored before the group existed were done by their
			// requests (one whose process died first waits for a retry of
			// it, as before the group): replaying them all would only cost.
			DeliverPolicy: jetstream.DeliverNewPolicy,
			Workers:       1, AckWait: cfg.AckWait, ShutdownGrace: cfg.Grace, Logger: log,
		}, events.Routing)
	})
	log.Info("handoff serving", "grpc", lis.Addr().String(), "http", api, "nats", config.Redacted(cfg.NATSURL), "stream", cfg.Stream, "timers", cfg.TimerStream)
	if cfg.httpReady != nil {
		cfg.httpReady(api)
	}
	if ready != nil {
		ready(lis.Addr())
	}
	part(3, func() error { return srv.Serve(ctx, lis, cfg.Grace) })
	wg.Wait()
	// Flush what the connection still buffers before closing it.
	if derr := nc.Drain(); derr != nil && !errors.Is(derr, context.Canceled) {
		log.Warn("nats drain", "err", derr)
	}
	return errors.Join(errs...)
}
