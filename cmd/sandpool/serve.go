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
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/logging"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox/podman"
	"github.com/sandpool/sandpool/tools"
	mcpsrv "github.com/sandpool/sandpool/tools/mcp"
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

// running is what startPools started: the pools, their metrics registry,
// and what to close, in order.
type running struct {
	mgr     *pool.Manager
	reg     *prometheus.Registry
	closers []func() error
}

func (r *running) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		_ = r.closers[i]()
	}
}

// startPools starts an engine per runtime and the configured pools.
func startPools(ctx context.Context, cfg *fileConfig, log zerolog.Logger) (_ *running, retErr error) {
	r := &running{}
	defer func() {
		if retErr != nil {
			r.close()
		}
	}()
	// First: the engines' sockets are in the state directory too.
	lock, err := lockState(&cfg.Server)
	if err != nil {
		return nil, err
	}
	r.closers = append(r.closers, lock.Close)
	engines := map[string]pool.Engine{}
	for _, p := range cfg.poolConfigs() {
		if engines[p.Runtime] != nil {
			continue
		}
		e, err := podman.New(ctx, podman.Config{
			Runtime:   p.Runtime,
			Socket:    cfg.Server.Engines[p.Runtime].Socket,
			Platform:  cfg.Server.Engines[p.Runtime].Platform,
			StateDir:  cfg.Server.StateDir,
			AgentPath: cfg.Server.Agent,
			Log:       logging.Component(log, "engine").With().Str("runtime", p.Runtime).Logger(),
		})
		if err != nil {
			return nil, fmt.Errorf("start the %s engine: %w", p.Runtime, err)
		}
		r.closers = append(r.closers, e.Close)
		engines[p.Runtime] = e
	}
	r.reg = prometheus.NewRegistry()
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	met, err := pool.NewMetrics(r.reg)
	if err != nil {
		return nil, err
	}
	m, err := pool.NewManager(ctx, cfg.poolConfigs(), pool.ManagerOptions{
		Engines: engines, StateDir: cfg.Server.StateDir,
		Settings: pool.Settings{ServerID: cfg.Server.ServerID, Metrics: met, Labels: cfg.Server.labels, Log: logging.Component(log, "pool")},
	})
	if err != nil {
		return nil, err
	}
	r.mgr = m
	r.closers = append(r.closers, func() error {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
		defer cancel()
		return m.Close(dctx)
	})
	return r, nil
}

// mcpServer builds the MCP server of pool p.
func mcpServer(m *pool.Manager, p *pool.Pool, cfg mcpConfig, log zerolog.Logger) (*mcpsrv.Server, error) {
	idle := time.Duration(cfg.IdleTimeoutInSeconds) * time.Second
	if idle <= 0 {
		idle = time.Duration(p.Config().Lifecycle.CooldownPeriodInSeconds) * time.Second
	}
	return mcpsrv.New(mcpsrv.Options{
		Service:   tools.NewService(p, tools.PoolLimits(p.Config())),
		Secret:    m.Hasher().Derive("mcp"),
		Principal: api.PrincipalFrom,
		IdleTTL:   idle,
		Version:   version,
		Log:       logging.Component(log, "mcp").With().Str("pool", p.Name()).Logger(),
	})
}

// newSurface builds the HTTP surface of the running pools, with an MCP
// server per Python pool unless MCP is disabled (closed by run.close).
func newSurface(ctx context.Context, cfg *fileConfig, run *running, log zerolog.Logger) (*api.Server, error) {
	m := run.mgr
	var mcpFor func(string) http.Handler
	if !cfg.Server.MCP.Disabled {
		servers := map[string]*mcpsrv.Server{}
		for _, p := range m.Pools() {
			if p.Config().ContainerType == pool.CustomContainer {
				continue // MCP's tools run Python
			}
			ms, err := mcpServer(m, p, cfg.Server.MCP, log)
			if err != nil {
				return nil, err
			}
			servers[p.Name()] = ms
			run.closers = append(run.closers, func() error {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
				defer cancel()
				return ms.Close(dctx)
			})
		}
		mcpFor = func(name string) http.Handler { return servers[name].Handler() }
	}
	return api.New(ctx, api.Options{
		Manager: m, Auth: cfg.Server.Auth, PoolAuth: cfg.poolAuth(), Limits: cfg.Server.Limits,
		Metrics: promhttp.HandlerFor(run.reg, promhttp.HandlerOpts{}), Log: logging.Component(log, "http"),
		MCP: mcpFor, MCPPool: cfg.Server.MCP.Pool,
		AllowedHosts: cfg.Server.AllowedHosts, AllowedOrigins: cfg.Server.AllowedOrigins,
	})
}

func serve(ctx context.Context, cfg *fileConfig, cmd *cobra.Command) error {
	log, err := logging.New(cmd.ErrOrStderr(), logging.Options{Level: cfg.Server.Log.Level, Format: cfg.Server.Log.Format})
	if err != nil {
		return fmt.Errorf("server.log.level: %w", err)
	}
	run, err := startPools(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer run.close()
	m := run.mgr
	surface, err := newSurface(ctx, cfg, run, log)
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
	go func() { served <- srv.Serve(surface.Listener(ln)) }()
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
