package main

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/logging"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox/podman"
)

// drainTimeout bounds how long shutdown waits for executions in flight.
const drainTimeout = 60 * time.Second

func serveCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the configured session pools and keep them warm",
		Long: `serve starts the pools of the configuration file (or one default pool),
adopts the sandboxes a previous run left, keeps readySessionInstances
sandboxes warm, and serves the HTTP API: the Azure dynamic-sessions data
plane under /pools/{pool}, /pools, /healthz, /readyz and /metrics. On
SIGINT or SIGTERM it drains executions in flight and leaves sessions
running for the next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, cmd)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (YAML); default: one pool with every default")
	return cmd
}

func serve(ctx context.Context, cfg *fileConfig, cmd *cobra.Command) (retErr error) {
	log, err := logging.New(cmd.ErrOrStderr(), logging.Options{Level: cfg.Server.Log.Level, Format: cfg.Server.Log.Format})
	if err != nil {
		return fmt.Errorf("server.log.level: %w", err)
	}
	engines := map[string]pool.Engine{}
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}()
	for _, p := range cfg.poolConfigs() {
		if engines[p.Runtime] != nil {
			continue
		}
		e, err := podman.New(ctx, podman.Config{
			Runtime:   p.Runtime,
			Socket:    cfg.Server.Engines[p.Runtime].Socket,
			StateDir:  cfg.Server.StateDir,
			AgentPath: cfg.Server.Agent,
			Log:       logging.Component(log, "engine").With().Str("runtime", p.Runtime).Logger(),
		})
		if err != nil {
			return fmt.Errorf("start the %s engine: %w", p.Runtime, err)
		}
		closers = append(closers, e.Close)
		engines[p.Runtime] = e
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	met, err := pool.NewMetrics(reg)
	if err != nil {
		return err
	}
	m, err := pool.NewManager(ctx, cfg.poolConfigs(), pool.ManagerOptions{
		Engines: engines, StateDir: cfg.Server.StateDir,
		Settings: pool.Settings{ServerID: cfg.Server.ServerID, Metrics: met, Log: logging.Component(log, "pool")},
	})
	if err != nil {
		return err
	}
	closers = append(closers, func() error {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
		defer cancel()
		return m.Close(dctx)
	})

	surface, err := api.New(ctx, api.Options{
		Manager: m, Auth: cfg.Server.Auth, PoolAuth: cfg.poolAuth(), Limits: cfg.Server.Limits,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Log: logging.Component(log, "http"),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		surface.Close(ctx)
		return fmt.Errorf("server.listen: %w", err)
	}
	srv := surface.HTTPServer(stdlog.New(logging.Component(log, "http"), "", 0))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	for _, p := range m.Pools() {
		st := p.Status()
		log.Info().Str("pool", st.Name).Str("runtime", p.Config().Runtime).Int("ready", st.Ready).
			Int("allocated", st.Allocated).Int("readySessionInstances", st.ReadySessionInstances).Msg("pool started")
	}
	log.Info().Str("listen", ln.Addr().String()).Msg("serving")
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	}
	log.Info().Msg("shutting down: draining executions; sessions stay for the next start")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	surface.Close(sctx)
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn().Err(err).Msg("http shutdown")
	}
	return nil
}
