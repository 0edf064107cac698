package inproc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

// Runtime is the runtime name the in-process engine stands in for in a pool
// configuration (pools accept only real runtimes' names).
const Runtime = "runc"

// ForTest returns an engine for t, removed with every sandbox left when t
// ends; t is skipped when the host has no python3.
func ForTest(t testing.TB, cfg Config) *Engine {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("skipping in-process engine test: %v", err)
	}
	e := New(cfg)
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("closing the in-process engine: %v", err)
		}
	})
	return e
}

// Manager starts a pool manager with the one pool cfg on a fresh in-process
// engine (cfg's runtime and isolation are set to match it), with its own
// state directory; the manager and then the engine are closed when t ends.
func Manager(t testing.TB, cfg pool.Config, opts ...func(*pool.ManagerOptions)) (*pool.Manager, *Engine) {
	t.Helper()
	e := ForTest(t, Config{})
	cfg.Runtime, cfg.Isolation = Runtime, sandbox.IsolationOf(Runtime)
	if cfg.Image == "" {
		cfg.Image = "inproc"
	}
	met, err := pool.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	id := "inproc-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	mo := pool.ManagerOptions{
		Engines:  map[string]pool.Engine{Runtime: e},
		StateDir: t.TempDir(),
		Settings: pool.Settings{
			ServerID: id[:min(len(id), 100)],
			Metrics:  met,
			Log:      zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		},
	}
	for _, o := range opts {
		o(&mo)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := pool.NewManager(ctx, []pool.Config{cfg}, mo)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the engine's: runs before it.
	t.Cleanup(func() { m.Close(context.Background()) })
	return m, e
}
