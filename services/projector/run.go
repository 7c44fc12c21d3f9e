package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/leadflow/leadflow/pkg/config"
	"github.com/leadflow/leadflow/pkg/consume"
	"github.com/leadflow/leadflow/pkg/eventstore"
	projectorv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	"github.com/leadflow/leadflow/pkg/grpcserver"
	"github.com/leadflow/leadflow/pkg/project"
	"github.com/leadflow/leadflow/services/projector/adapters"
	"github.com/leadflow/leadflow/services/projector/app"
	"github.com/leadflow/leadflow/services/projector/dashboard"
	"github.com/leadflow/leadflow/services/projector/ports"
)

// run wires the projector's parts and runs them until ctx is done: the
// projection with its two consumer groups, the gRPC API (and its
// HTTP/JSON side when cfg.HTTPAddr is set) and, when cfg.HTTP is set, the
// dashboard. ready, if set, is told the gRPC address. Any part failing
// stops the rest.
func run(ctx context.Context, cfg Config, log *slog.Logger, ready func(net.Addr)) error {
	if cfg.NATSURL == "" {
		return errors.New("-nats is required")
	}
	if cfg.Postgres == "" {
		return errors.New("-postgres is required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2048
	}
	if cfg.Flushers <= 0 {
		cfg.Flushers = 3
	}
	nc, js, err := eventstore.Dial(cfg.NATSURL, "projector", eventstore.WithUser(cfg.NATSUser, cfg.NATSPassword), eventstore.WithCA(cfg.TLS.NATSCAFile))
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
		Subjects: adapters.Subjects, MaxBatch: cfg.Workers, Flushers: cfg.Flushers, Rules: adapters.Rules, Logger: log}, adapters.ReadModel{})
	if err != nil {
		return err
	}
	stream := adapters.NewStream(js, cfg.Stream)
	queries := adapters.NewQueries(proj)
	whatIfs, err := adapters.NewWhatIfs(ctx, pool)
	if err != nil {
		return err
	}
	// Open dashboards hear of every committed batch (Handle returns nil
	// only once its batch is in PostgreSQL), of a rebuild's swap (every
	// replica reads the new schema: relayed as a change), and of scoring
	// model changes, which the read model does not hold.
	live := dashboard.NewLive(0)
	a := app.New(queries, proj, stream, stream, whatIfs, app.WithLogger(log), app.WithRebuilt(func() { live.Changed(0) }))
	defer a.Close()

	handle := func(ctx context.Context, m consume.Msg) error {
		err := proj.Handle(ctx, m)
		if err == nil {
			live.Changed(m.Seq)
		}
		return err
	}
	if _, err := nc.Subscribe(eventstore.ModelSubject("scoring"), func(*nats.Msg) { live.Refresh() }); err != nil {
		return fmt.Errorf("watch scoring model: %w", err)
	}
	// The other replicas' commits too, over core NATS: one subject per
	// stream, so projectors of two streams on one server stay apart.
	if err := live.Share(nc, "leadflow.projector.live."+cfg.Stream); err != nil {
		return err
	}

	srv, err := grpcserver.ForService(ctx, log, js, cfg.AuthKeys, cfg.TLS)
	if err != nil {
		return err
	}
	projectorv1.RegisterProjectorServiceServer(srv.Server, ports.NewGRPC(a, log))
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	var web net.Listener
	if cfg.HTTP != "" {
		if web, err = net.Listen("tcp", cfg.HTTP); err != nil {
			lis.Close()
			return fmt.Errorf("listen %s: %w", cfg.HTTP, err)
		}
	}
	api, err := srv.ListenHTTP(cfg.HTTPAddr, projectorv1.RegisterProjectorServiceHandler)
	if err != nil {
		lis.Close()
		if web != nil {
			web.Close()
		}
		return err
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
	errs := make([]error, 6)
	part := func(i int, f func() error) {
		wg.Go(func() {
			if errs[i] = f(); errs[i] != nil {
				cancel(errs[i])
			}
		})
	}
	gc := ports.GroupConfig{Stream: cfg.Stream, Workers: cfg.Workers, AckWait: cfg.AckWait, ShutdownGrace: cfg.Grace, Logger: log}
	part(0, func() error { return consume.Run(ctx, js, ports.LeadGroupConfig(gc), handle) })
	part(1, func() error { return consume.Run(ctx, js, ports.ReferenceGroupConfig(gc), handle) })
	part(3, func() error { live.Run(ctx); return nil })
	dash := ""
	if web != nil {
		dash = "http://" + web.Addr().String() + "/"
		if srv.TLSConfig() != nil {
			dash = "https://" + web.Addr().String() + "/"
		}
		h := dashboard.New(dashboard.Config{Reports: a, Behind: queries, History: stream, Live: live, Log: log, Auth: srv.Verifier()})
		part(4, func() error { return serveHTTP(ctx, web, srv.TLSConfig(), h, cfg.Grace, log) })
		if cfg.dashboardReady != nil {
			cfg.dashboardReady(web.Addr())
		}
	}
	part(5, func() error {
		for {
			if err := a.ResumeRebuild(ctx); err != nil && ctx.Err() == nil {
				log.Warn("resume or start a rebuild", "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(cmp.Or(cfg.resumeEvery, app.ResumeEvery)):
			}
		}
	})
	log.Info("projector serving", "grpc", lis.Addr().String(), "http", api, "dashboard", dash, "nats", config.Redacted(cfg.NATSURL), "stream", cfg.Stream)
	if cfg.httpReady != nil {
		cfg.httpReady(api)
	}
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

// serveHTTP serves the dashboard on lis (over TLS with certs, if set)
// until ctx ends, then shuts down within grace. Live streams never go
// idle, so their requests' context is ended first.
func serveHTTP(ctx context.Context, lis net.Listener, certs *tls.Config, h http.Handler, grace time.Duration, log *slog.Logger) error {
	reqs, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		BaseContext: func(net.Listener) context.Context { return reqs },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn), TLSConfig: certs}
	served := make(chan error, 1)
	go func() {
		if certs != nil {
			served <- hs.ServeTLS(lis, "", "")
			return
		}
		served <- hs.Serve(lis)
	}()
	select {
	case err := <-served:
		return fmt.Errorf("dashboard: %w", err)
	case <-ctx.Done():
	}
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := hs.Shutdown(sctx)
	<-served
	if err != nil {
		return fmt.Errorf("dashboard shutdown: %w", err)
	}
	return nil
}
