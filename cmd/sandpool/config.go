package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/podman"
)

// fileConfig is sandpool's configuration file: the server and its pools.
// Every field has a default, so no file is needed.
type fileConfig struct {
	Server serverConfig `yaml:"server"`
	Pools  []poolEntry  `yaml:"pools"`
}

// poolEntry is a pool's configuration with, optionally, its own auth
// (replacing the server's for that pool).
type poolEntry struct {
	pool.Config `yaml:",inline"`
	Auth        *api.AuthConfig `yaml:"auth"`
}

type serverConfig struct {
	// Listen is the HTTP address; default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// Auth: API keys and/or JWT validation for every pool (a pool may
	// replace it). Without any, the server runs unauthenticated and
	// listens on loopback only, unless AllowUnauthenticatedRemote.
	Auth                       api.AuthConfig `yaml:"auth"`
	AllowUnauthenticatedRemote bool           `yaml:"allowUnauthenticatedRemote"`
	// Limits bound request sizes, timeouts and per-caller rates.
	Limits api.Limits `yaml:"limits"`
	// AllowedHosts: host names the server answers to besides loopback
	// names and IP addresses ("*.example.com" for a domain's names);
	// AllowedOrigins: other sites' pages (scheme://host[:port]) that may
	// execute, upload, delete or open WebSockets from a browser.
	AllowedHosts   []string `yaml:"allowedHosts"`
	AllowedOrigins []string `yaml:"allowedOrigins"`
	// StateDir holds the session secret, pool state and podman sockets;
	// default /var/lib/sandpool (serve) or the first free one of
	// /var/lib/sandpool/mcp/0..15 (an embedded `sandpool mcp`). One process
	// at a time owns it.
	StateDir string `yaml:"stateDir"`
	// ServerID is put on every sandbox; a server adopts only its own.
	// Default "sandpool" (serve), or for an embedded `sandpool mcp` one
	// derived from its state directory, so that it never adopts or reaps
	// a server's sandboxes, nor another `sandpool mcp`'s.
	ServerID string `yaml:"serverId"`
	// Agent is the sandpool-agent binary; default next to sandpool.
	Agent string `yaml:"agent"`
	// Engines configures the engine of a runtime: socket points it at an
	// existing podman service ({runsc: {socket: /run/podman/podman.sock}};
	// without one sandpool starts and supervises a service per runtime),
	// platform picks gVisor's platform (ptrace or systrap; default ptrace
	// for runsc, measured faster here, see the README).
	Engines map[string]engineConfig `yaml:"engines"`
	Log     logConfig               `yaml:"log"`
	// MCP configures the MCP endpoint (Streamable HTTP at /mcp and
	// /pools/{pool}/mcp).
	MCP mcpConfig `yaml:"mcp"`

	// labels are put on every sandbox besides the pool's own (sandpool
	// bench marks its run with them); not configurable from the file.
	labels map[string]string
	// embedded marks the configuration of an embedded `sandpool mcp`:
	// StateDir "" means the first free default slot, ServerID "" one
	// derived from the state directory (see lockState).
	embedded bool
}

type mcpConfig struct {
	// Disabled turns the MCP endpoints off.
	Disabled bool `yaml:"disabled"`
	// Pool is the pool served at /mcp; default the first pool.
	Pool string `yaml:"pool"`
	// IdleTimeoutInSeconds ends MCP sessions idle this long, releasing
	// their sandboxes; default the pool's cooldownPeriodInSeconds.
	IdleTimeoutInSeconds int `yaml:"idleTimeoutInSeconds"`
}

type engineConfig struct {
	Socket   string `yaml:"socket"`
	Platform string `yaml:"platform"`
}

type logConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// loadConfig reads path ("" means no file: all defaults), rejecting
// unknown fields, and checks everything, naming each bad field.
func loadConfig(path string) (*fileConfig, error) { return loadConfigFor(path, false) }

// loadMCPConfig is loadConfig for an embedded `sandpool mcp`, whose state
// directory and server id default to its own (see lockState).
func loadMCPConfig(path string) (*fileConfig, error) { return loadConfigFor(path, true) }

func loadConfigFor(path string, embedded bool) (*fileConfig, error) {
	c := fileConfig{Server: serverConfig{embedded: embedded}}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	s := &c.Server
	if s.Listen == "" {
		s.Listen = "127.0.0.1:8080"
	}
	if s.StateDir == "" && !embedded {
		s.StateDir = defaultStateDir
	}
	if s.ServerID == "" && !embedded {
		s.ServerID = "sandpool"
	}
	if s.Log.Level == "" {
		s.Log.Level = "info"
	}
	var errs []error
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		errs = append(errs, fmt.Errorf("server.listen: %w", err))
	}
	if len(c.Pools) == 0 {
		c.Pools = []poolEntry{{}}
	}
	if err := s.Limits.Normalize(); err != nil {
		errs = append(errs, fmt.Errorf("server.%w", err))
	}
	if err := api.ValidateAuth(s.Auth); err != nil {
		errs = append(errs, fmt.Errorf("server.auth.%w", err))
	}
	for _, p := range c.Pools {
		if p.Auth != nil {
			if err := api.ValidateAuth(*p.Auth); err != nil {
				errs = append(errs, fmt.Errorf("pools[%s].auth.%w", p.Name, err))
			}
		}
	}
	if c.unauthenticated() && !s.AllowUnauthenticatedRemote && !loopback(s.Listen) {
		errs = append(errs, fmt.Errorf("server.listen: %s is not a loopback address and a pool has no auth; configure server.auth or set server.allowUnauthenticatedRemote", s.Listen))
	}
	found := s.MCP.Pool == ""
	for i := range c.Pools {
		// The server's per-principal session quota is every pool's default.
		if sc := &c.Pools[i].Scale; sc.MaxSessionsPerPrincipal == 0 {
			sc.MaxSessionsPerPrincipal = s.Limits.MaxSessionsPerPrincipal
		}
		if err := c.Pools[i].Normalize(); err != nil {
			errs = append(errs, err)
		}
		found = found || c.Pools[i].Name == s.MCP.Pool && c.Pools[i].ContainerType != pool.CustomContainer
	}
	if !found {
		errs = append(errs, fmt.Errorf("server.mcp.pool: no Python pool %q (MCP's tools run Python)", s.MCP.Pool))
	}
	for rt, e := range s.Engines {
		switch {
		case e.Platform == "":
		case !sandbox.IsGVisor(rt):
			errs = append(errs, fmt.Errorf("server.engines.%s.platform: applies to gVisor runtimes only", rt))
		case e.Platform != podman.PlatformPtrace && e.Platform != podman.PlatformSystrap:
			errs = append(errs, fmt.Errorf("server.engines.%s.platform: must be ptrace or systrap, not %q", rt, e.Platform))
		}
	}
	if s.MCP.IdleTimeoutInSeconds < 0 {
		errs = append(errs, errors.New("server.mcp.idleTimeoutInSeconds: must not be negative"))
	}
	return &c, errors.Join(errs...)
}

// poolConfigs are the pools' configurations alone.
func (c *fileConfig) poolConfigs() []pool.Config {
	out := make([]pool.Config, len(c.Pools))
	for i, p := range c.Pools {
		out[i] = p.Config
	}
	return out
}

// poolAuth are the pools' own auth settings, by pool name.
func (c *fileConfig) poolAuth() map[string]api.AuthConfig {
	out := map[string]api.AuthConfig{}
	for _, p := range c.Pools {
		if p.Auth != nil {
			out[p.Name] = *p.Auth
		}
	}
	return out
}

// unauthenticated reports whether some pool takes requests without a token.
func (c *fileConfig) unauthenticated() bool {
	none := func(a api.AuthConfig) bool { return len(a.APIKeys) == 0 && a.JWT == nil }
	for _, p := range c.Pools {
		a := c.Server.Auth
		if p.Auth != nil {
			a = *p.Auth
		}
		if none(a) {
			return true
		}
	}
	return false
}

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
