package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	nurturev1 "github.com/leadflow/leadflow/pkg/gen/leadflow/nurture/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/timer"
	"github.com/leadflow/leadflow/services/nurture/adapters"
	"github.com/leadflow/leadflow/services/nurture/app"
	"github.com/leadflow/leadflow/services/nurture/ports"
)

// run wires nurture's parts and runs them until ctx is done: the gRPC
// API, the lead consumer group, the review timer group and the index the
// no-lost-lead check reads. ready, if set, is told the address it listens
// on. Any part failing stops the rest.
func run(ctx context.Context, cfg Config, log *slog.Logger, ready func(net.Addr)) error {
	if cfg.NATSURL == "" {
		return errors.New("-nats is required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.TimerStream == "" {
		cfg.TimerStream = adapters.DefaultTimerStream
	}
	if err := timer.CheckTTL("-timer-ttl", cfg.TimerTTL); err != nil {
		return err
	}
	nc, js, err := eventstore.Dial(cfg.NATSURL, "nurture", eventstore.WithUser(cfg.NATSUser, cfg.NATSPassword), eventstore.WithCA(cfg.TLS.NATSCAFile))
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
	store := eventstore.New(js, cfg.Stream)
	index := adapters.NewIndex(js, cfg.Stream, log)
	opts := []app.Option{app.WithLogger(log)}
	if cfg.afterAppend != nil {
		opts = append(opts, app.WithAfterAppend(cfg.afterAppend))
	}
	if cfg.shortestProgram > 0 {
		opts = append(opts, app.WithShortestProgram(cfg.shortestProgram))
	}
	a := app.New(adapters.NewLeads(store), adapters.NewPrograms(store), adapters.NewTimers(js, cfg.TimerTTL), index,
		adapters.NewGroups(js, cfg.Stream, consume.DefaultDeadLetterStream), opts...)
	events := ports.NewEvents(a, log)

	srv, err := grpcserver.ForService(ctx, log, js, cfg.AuthKeys, cfg.TLS)
	if err != nil {
		return err
	}
	nurturev1.RegisterNurtureServiceServer(srv.Server, ports.NewGRPC(a, log))
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	api, err := srv.ListenHTTP(cfg.HTTPAddr, nurturev1.RegisterNurtureServiceHandler)
	if err != nil {
		lis.Close()
		return err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	part := func(i int, f func() error) {
		wg.Go(func() {
			if errs[i] = f(); errs[i] != nil {
				cancel(errs[i])
			}
		})
	}
	part(0, func() error { return index.Run(ctx) })
	part(1, func() error {
		// Every replica takes some lead partitions; a lead's events are
		// handled by one replica at a time, in order.
		return consume.Run(ctx, js, consume.Config{
			Stream: cfg.Stream, Group: app.Group,
			Partitions: eventstore.Partitions, Filter: eventstore.PartitionSubjects, Key: eventstore.LeadID,
			Workers: cfg.Workers, AckWait: cfg.AckWait, ShutdownGrace: cfg.Grace, Logger: log,
		}, events.Lead)
	})
	part(2, func() error {
		return consume.Run(ctx, js, consume.Config{
			Stream: cfg.TimerStream, Group: app.TimerGroup,
			Partitions: eventstore.Partitions, Filter: adapters.FiredSubjects, Key: adapters.TimerLeadID,
			Workers: cfg.Workers, AckWait: cfg.AckWait, ShutdownGrace: cfg.Grace, Logger: log,
			// A fired copy is work, not history: see handoff's.
			DropHandled: true,
		}, events.Timer)
	})
	log.Info("nurture serving", "grpc", lis.Addr().String(), "http", api, "nats", config.Redacted(cfg.NATSURL), "stream", cfg.Stream, "timers", cfg.TimerStream)
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
