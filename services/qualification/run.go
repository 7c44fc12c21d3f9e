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
	qualificationv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/lifecycle"
	"github.com/leadflow/leadflow/services/qualification/adapters"
	"github.com/leadflow/leadflow/services/qualification/app"
	"github.com/leadflow/leadflow/services/qualification/ports"
)

// run wires qualification's parts and runs them until ctx is done: the
// gRPC API, the live scoring consumer and the re-score runner. ready, if
// set, is told the address it listens on. Any part failing stops the rest.
func run(ctx context.Context, cfg Config, log *slog.Logger, ready func(net.Addr)) error {
	if cfg.NATSURL == "" {
		return errors.New("-nats is required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	nc, js, err := eventstore.Dial(cfg.NATSURL, "qualification", eventstore.WithUser(cfg.NATSUser, cfg.NATSPassword), eventstore.WithCA(cfg.TLS.NATSCAFile))
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{Name: cfg.Stream, Replicas: cfg.Replicas}); err != nil {
		return err
	}
	store := eventstore.New(js, cfg.Stream)
	policy := lifecycle.DefaultPolicy()
	if cfg.EngageWithin > 0 {
		policy.EngageWithin = cfg.EngageWithin
	}
	a := app.New(adapters.NewLeads(store), adapters.NewModels(store, js), adapters.NewScans(js, cfg.Stream), app.WithLogger(log), app.WithPolicy(policy))
	events := ports.NewEvents(a, log)

	srv, err := grpcserver.ForService(ctx, log, js, cfg.AuthKeys, cfg.TLS)
	if err != nil {
		return err
	}
	qualificationv1.RegisterQualificationServiceServer(srv.Server, ports.NewGRPC(a, log))
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	api, err := srv.ListenHTTP(cfg.HTTPAddr, qualificationv1.RegisterQualificationServiceHandler)
	if err != nil {
		lis.Close()
		return err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	part := func(i int, f func() error) {
		wg.Go(func() {
			if errs[i] = f(); errs[i] != nil {
				cancel(errs[i])
			}
		})
	}
	part(0, func() error {
		// Every replica takes some lead partitions; a lead's events are
		// scored by one replica at a time, in order.
		return consume.Run(ctx, js, consume.Config{
			Stream: cfg.Stream, Group: ports.Group,
			Partitions: eventstore.Partitions, Filter: eventstore.PartitionSubjects, Key: eventstore.LeadID,
			Workers: cfg.Workers, AckWait: cfg.AckWait, ShutdownGrace: cfg.Grace, Logger: log,
		}, events.Score)
	})
	part(1, func() error {
		return events.Rescores(ctx, js, ports.RescoreConfig{Stream: cfg.Stream, Workers: cfg.Workers, AckWait: cfg.AckWait, Logger: log})
	})
	log.Info("qualification serving", "grpc", lis.Addr().String(), "http", api, "nats", config.Redacted(cfg.NATSURL), "stream", cfg.Stream)
	if cfg.httpReady != nil {
		cfg.httpReady(api)
	}
	if ready != nil {
		ready(lis.Addr())
	}
	part(2, func() error { return srv.Serve(ctx, lis, cfg.Grace) })
	wg.Wait()
	// Flush what the connection still buffers before closing it.
	if derr := nc.Drain(); derr != nil && !errors.Is(derr, context.Canceled) {
		log.Warn("nats drain", "err", derr)
	}
	return errors.Join(errs...)
}
