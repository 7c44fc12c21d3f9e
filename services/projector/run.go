package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/services/projector/adapters"
	"github.com/leadflow/leadflow/services/projector/app"
	"github.com/leadflow/leadflow/services/projector/ports"
)

// run wires the projector's parts and runs them until ctx is done: the
// projection with its two consumer groups, and the gRPC API. ready, if
// set, is told the address it listens on. Any part failing stops the rest.
func run(ctx context.Context, cfg Config, log *slog.Logger, ready func(net.Addr)) error {
	if cfg.NATSURL == "" {
		return errors.New("-nats is required")
	}
	if cfg.Postgres == "" {
		return errors.New("-postgres is required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	nc, js, err := eventstore.Dial(cfg.NATSURL, "projector")
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := eventstore.EnsureStream(ctx, js, eventstore.StreamConfig{Name: cfg.Stream, Replicas: cfg.Replicas}); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, cfg.Postgres)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer pool.Close()
	// Migrations are applied here, before anything is consumed or served.
	proj, err := project.New(ctx, project.Config{Name: adapters.Name, Pool: pool, JS: js, Stream: cfg.Stream,
		Subjects: adapters.Subjects, MaxBatch: cfg.Workers, Logger: log}, adapters.ReadModel{})
	if err != nil {
		return err
	}
	stream := adapters.NewStream(js, cfg.Stream)
	a := app.New(adapters.NewQueries(proj), proj, stream, stream, app.WithLogger(log))
	defer a.Close()

	srv := grpcserver.New(log)
	projectorv1.RegisterProjectorServiceServer(srv.Server, ports.NewGRPC(a, log))
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The projection's batcher outlives the consumers that feed it: it
	// stops once they have handed back their partitions.
	pctx, pcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer pcancel()
	var batcher sync.WaitGroup
	var batchErr error
	batcher.Go(func() { batchErr = proj.Run(pctx) })

	var wg sync.WaitGroup
	errs := make([]error, 3)
	part := func(i int, f func() error) {
		wg.Go(func() {
			if errs[i] = f(); errs[i] != nil {
				cancel(errs[i])
			}
		})
	}
	gc := ports.GroupConfig{Stream: cfg.Stream, Workers: cfg.Workers, AckWait: cfg.AckWait, ShutdownGrace: cfg.Grace, Logger: log}
	part(0, func() error { return consume.Run(ctx, js, ports.LeadGroupConfig(gc), proj.Handle) })
	part(1, func() error { return consume.Run(ctx, js, ports.ReferenceGroupConfig(gc), proj.Handle) })
	log.Info("projector serving", "grpc", lis.Addr().String(), "nats", cfg.NATSURL, "stream", cfg.Stream)
	if ready != nil {
		ready(lis.Addr())
	}
	part(2, func() error { return srv.Serve(ctx, lis, cfg.Grace) })
	wg.Wait()
	a.Close() // rebuilds and what-ifs use the connections closed below
	pcancel()
	batcher.Wait()
	if derr := nc.Drain(); derr != nil && !errors.Is(derr, context.Canceled) {
		log.Warn("nats drain", "err", derr)
	}
	return errors.Join(append(errs, batchErr)...)
}
