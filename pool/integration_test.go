package pool_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/image"
	"github.com/sandpool/sandpool/sandbox/podman"
)

func TestMain(m *testing.M) { podmantest.Main(m) }

// harness runs managers of one pool on a real engine, as a server would
// across restarts (same state directory, same server id).
type harness struct {
	t        testing.TB
	eng      *podman.Engine
	cfg      pool.Config
	dir      string
	serverID string
	reg      *prometheus.Registry
}

func newHarness(t testing.TB, rt podmantest.Runtime, eng *podman.Engine, cfg pool.Config) *harness {
	cfg.Name = fmt.Sprintf("it-%s-%s", rt.Name, strings.ToLower(t.Name()[4:min(len(t.Name()), 14)]))
	cfg.Name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, cfg.Name)
	cfg.Name = strings.TrimRight(cfg.Name, "-")
	cfg.Runtime, cfg.Isolation, cfg.Image = rt.Name, rt.Isolation, image.Tag()
	h := &harness{t: t, eng: eng, cfg: cfg, dir: t.TempDir(), serverID: podmantest.ServerID("pool")}
	t.Cleanup(func() {
		// Whatever the test did, its sandboxes go.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		list, err := eng.List(ctx, map[string]string{pool.LabelServer: h.serverID, pool.LabelPool: cfg.Name})
		if err != nil {
			t.Errorf("listing sandboxes: %v", err)
		}
		for _, c := range list {
			_ = eng.Remove(ctx, c.ID)
		}
	})
	return h
}

// start starts a manager; it is closed when the test ends (closing twice
// is harmless).
func (h *harness) start() *pool.Manager {
	h.t.Helper()
	h.reg = prometheus.NewRegistry()
	met, err := pool.NewMetrics(h.reg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m, err := pool.NewManager(ctx, []pool.Config{h.cfg}, pool.ManagerOptions{
		Engines:  map[string]pool.Engine{h.cfg.Runtime: h.eng},
		StateDir: h.dir,
		Settings: pool.Settings{
			ServerID: h.serverID, Metrics: met,
			Labels: map[string]string{podmantest.LabelRun: podmantest.RunID()},
			Log:    zerolog.New(zerolog.NewTestWriter(h.t)).Level(zerolog.WarnLevel),
			Tick:   200 * time.Millisecond, HealthInterval: 500 * time.Millisecond,
		},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func (h *harness) count() int {
	h.t.Helper()
	list, err := h.eng.List(context.Background(), map[string]string{pool.LabelServer: h.serverID, pool.LabelPool: h.cfg.Name})
	if err != nil {
		h.t.Fatal(err)
	}
	return len(list)
}

func newBenchHarness(b *testing.B, rt podmantest.Runtime, cfg pool.Config) *harness {
	podmantest.Check(b, rt)
	return newHarness(b, rt, podmantest.Engine(b, rt), cfg)
}

func key(t *testing.T, principal, id string) pool.SessionKey {
	t.Helper()
	i, err := pool.ParseIdentifier(id)
	if err != nil {
		t.Fatal(err)
	}
	return pool.Key(pool.Principal(principal), i)
}

// exec runs code and returns the result's text, or the exception's name.
func exec(t *testing.T, p *pool.Pool, k pool.SessionKey, code string) (string, error) {
	t.Helper()
	col := sandbox.Collector{Max: 1 << 20}
	res, err := p.Execute(context.Background(), k, sandbox.ExecRequest{Code: code, Timeout: 30 * time.Second}, col.Sink())
	if err != nil {
		return "", err
	}
	if col.Out.Error != nil {
		return col.Out.Error.Name, nil
	}
	if res.Status != sandbox.StatusOK {
		return "", fmt.Errorf("status %s: %s", res.Status, res.Reason)
	}
	if col.Out.Result == nil {
		return strings.TrimSpace(string(col.Out.Stdout)), nil
	}
	return col.Out.Result.Data["text/plain"], nil
}

func mustExec(t *testing.T, p *pool.Pool, k pool.SessionKey, code, want string) {
	t.Helper()
	got, err := exec(t, p, k, code)
	if err != nil || got != want {
		t.Fatalf("%q: got %q, %v; want %q", code, got, err, want)
	}
}

func waitStatus(t *testing.T, p *pool.Pool, what string, cond func(pool.Status) bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond(p.Status()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, p.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func eachRuntime(t *testing.T, f func(t *testing.T, rt podmantest.Runtime)) {
	for _, rt := range podmantest.Runtimes() {
		t.Run(rt.Name, func(t *testing.T) {
			t.Parallel()
			podmantest.Check(t, rt)
			f(t, rt)
		})
	}
}

func ptr(n int) *int { return &n }

// TestSessions: warm allocation, state per session, principals kept apart,
// capacity, explicit delete, and a restart that loses nothing.
func TestSessions(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime) {
		h := newHarness(t, rt, podmantest.Engine(t, rt), pool.Config{
			Scale: pool.ScaleConfig{MaxConcurrentSessions: 3, ReadySessionInstances: ptr(1)},
		})
		m := h.start()
		p := m.Pool(h.cfg.Name)
		waitStatus(t, p, "one ready sandbox", func(s pool.Status) bool { return s.Ready == 1 })

		alice, bob := key(t, "alice", "conversation-1"), key(t, "bob", "conversation-1")
		mustExec(t, p, alice, "x = 41\nopen('notes.txt', 'w').write('kept')\nx + 1", "42")
		if got := histCount(t, h.reg, "sandpool_allocation_seconds", "warm"); got != 1 {
			t.Errorf("warm allocations = %v, want 1", got)
		}
		info, err := p.Session(alice)
		if err != nil || info.State != pool.StateAllocated || info.Identifier.String() != "conversation-1" {
			t.Fatalf("session: %+v %v", info, err)
		}
		// Same identifier, other principal: another sandbox entirely.
		mustExec(t, p, bob, "import os\n[n for n in dir() if n == 'x'] + [os.path.exists('notes.txt')]", "[False]")
		mustExec(t, p, key(t, "alice", "conversation-2"), "1", "1")
		// At the cap: a new identifier is refused, existing ones work.
		if _, err := exec(t, p, key(t, "alice", "conversation-3"), "1"); !errors.Is(err, pool.ErrCapacity) || errcode.Of(err) != errcode.CapacityExceeded {
			t.Fatalf("over capacity: %v", err)
		}
		mustExec(t, p, alice, "x", "41")
		if err := p.Delete(context.Background(), bob); err != nil {
			t.Fatal(err)
		}
		if err := p.Delete(context.Background(), bob); !errors.Is(err, pool.ErrNoSession) {
			t.Fatalf("deleting twice: %v", err)
		}
		mustExec(t, p, key(t, "alice", "conversation-3"), "3", "3")
		waitStatus(t, p, "refill", func(s pool.Status) bool { return s.Ready == 1 && s.Allocated == 3 && s.Deleting == 0 })

		// Restart: sessions come back with their state; the warm one too.
		if err := m.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		before := h.count()
		m = h.start()
		p = m.Pool(h.cfg.Name)
		st := p.Status()
		if st.Allocated != 3 || st.Ready != 1 || st.Adopted != 4 || h.count() != before {
			t.Fatalf("after restart: %+v, %d sandboxes (had %d)", st, h.count(), before)
		}
		mustExec(t, p, alice, "x + 1, open('notes.txt').read()", "(42, 'kept')")
		if l := p.Sessions("alice"); len(l) != 3 || l[0].Identifier.String() != "conversation-1" {
			t.Fatalf("alice's sessions after restart: %+v", l)
		}
		if n := len(p.Sessions("bob")); n != 0 {
			t.Fatalf("bob has %d sessions", n)
		}
	})
}

// histCount is the number of samples of histogram name with source.
func histCount(t *testing.T, reg *prometheus.Registry, name, source string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == source {
					n += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return n
}

// TestLifecycle: cooldown ends idle sessions, a running execution keeps
// its session, a killed sandbox is reported lost once and replaced, bad
// identifiers create nothing.
func TestLifecycle(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime) {
		eng := podmantest.Engine(t, rt)
		h := newHarness(t, rt, eng, pool.Config{
			Scale:     pool.ScaleConfig{MaxConcurrentSessions: 4, ReadySessionInstances: ptr(0)},
			Lifecycle: pool.LifecycleConfig{CooldownPeriodInSeconds: 2},
		})
		p := h.start().Pool(h.cfg.Name)

		if _, err := p.Execute(context.Background(), pool.SessionKey{Principal: "a"}, sandbox.ExecRequest{Code: "1"}, nil); errcode.Of(err) != errcode.InvalidIdentifier {
			t.Fatalf("no identifier: %v", err)
		}
		if n := h.count(); n != 0 {
			t.Fatalf("%d sandboxes after bad requests", n)
		}

		busy, idle := key(t, "a", "busy-session"), key(t, "a", "idle-session")
		mustExec(t, p, idle, "1", "1")
		// 4 s of work against a 2 s cooldown: the session must survive it.
		mustExec(t, p, busy, "import time\ny = 7\ntime.sleep(4)\ny", "7")
		if _, err := p.Session(idle); !errors.Is(err, pool.ErrNoSession) {
			t.Fatal("the idle session outlived its cooldown")
		}
		mustExec(t, p, busy, "y", "7")
		waitStatus(t, p, "one session", func(s pool.Status) bool { return s.Allocated == 1 && s.Deleting == 0 })
		if n := h.count(); n != 1 {
			t.Fatalf("%d sandboxes, want 1 (the idle one removed)", n)
		}

		// Kill the busy session's sandbox from outside.
		list, _ := eng.List(context.Background(), map[string]string{pool.LabelPool: h.cfg.Name})
		if len(list) != 1 {
			t.Fatalf("%d sandboxes", len(list))
		}
		if err := eng.Kill(context.Background(), list[0].ID); err != nil {
			t.Fatal(err)
		}
		if _, err := exec(t, p, busy, "y"); !errors.Is(err, pool.ErrSessionLost) && errcode.Of(err) != errcode.SessionLost {
			t.Fatalf("after the sandbox died: %v", err)
		}
		mustExec(t, p, busy, "'y' in dir()", "False")
	})
}

// TestEngineOutage: with the podman service stopped, new sessions fail
// clearly and the pool shows it; once it is back, everything works.
func TestEngineOutage(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime) {
		eng, err := podmantest.NewEngine(t, rt, podmantest.Agent(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Close() })
		h := newHarness(t, rt, eng, pool.Config{Scale: pool.ScaleConfig{ReadySessionInstances: ptr(0)}})
		p := h.start().Pool(h.cfg.Name)
		kept := key(t, "a", "before-outage")
		mustExec(t, p, kept, "z = 5", "")

		eng.Service().Stop()
		_, err = exec(t, p, key(t, "a", "during-outage"), "1")
		if errcode.Of(err) != errcode.Unavailable {
			t.Fatalf("new session during the outage: %v", err)
		}
		if st := p.Status(); st.CreationFailures == 0 || st.LastError == "" || strings.Contains(st.LastError, "/") {
			t.Fatalf("status during the outage: %+v", st)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := eng.Service().Start(ctx); err != nil {
			t.Fatal(err)
		}
		mustExec(t, p, kept, "z", "5")
		mustExec(t, p, key(t, "a", "after-outage"), "2", "2")
		if st := p.Status(); st.CreationFailures != 0 || st.Allocated != 2 {
			t.Fatalf("status after the outage: %+v", st)
		}
	})
}

// TestRestartMidUse: shutdown waits for an execution in flight, refuses new
// work, and the next start keeps sessions (whatever the config now says)
// but replaces warm sandboxes made from a spec that changed.
func TestRestartMidUse(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime) {
		h := newHarness(t, rt, podmantest.Engine(t, rt), pool.Config{
			Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(1)},
		})
		m := h.start()
		p := m.Pool(h.cfg.Name)
		k := key(t, "alice", "mid-use")
		mustExec(t, p, k, "x = 1\nopen('kept.txt', 'w').write('yes')", "3")
		waitStatus(t, p, "refill", func(s pool.Status) bool { return s.Ready == 1 })

		done := make(chan error, 1)
		go func() {
			got, err := exec(t, p, k, "import time\ntime.sleep(3)\nx = 2\nx")
			if err == nil && got != "2" {
				err = fmt.Errorf("got %q", got)
			}
			done <- err
		}()
		waitStatus(t, p, "the execution to start", func(s pool.Status) bool { return s.InFlight == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Fatalf("close: %v", err)
		}
		// The execution's caller gets its result a moment after the pool
		// counts it done; a Close that did not wait would be seconds early.
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("the execution in flight: %v", err)
			}
		case <-time.After(time.Second):
			t.Fatal("Close returned before the execution in flight ended")
		}
		if _, err := exec(t, p, k, "x"); !errors.Is(err, pool.ErrShuttingDown) {
			t.Fatalf("after close: %v", err)
		}

		// A new image size changes the spec: the warm sandbox is replaced,
		// the session keeps its sandbox.
		h.cfg.Resources.Memory = 768 << 20
		p = h.start().Pool(h.cfg.Name)
		if st := p.Status(); st.Allocated != 1 || st.Adopted != 1 {
			t.Fatalf("after restart: %+v", st)
		}
		mustExec(t, p, k, "x, open('kept.txt').read()", "(2, 'yes')")
		waitStatus(t, p, "a new warm sandbox", func(s pool.Status) bool { return s.Ready == 1 && s.Deleting == 0 })
		if n := h.count(); n != 2 {
			t.Fatalf("%d sandboxes, want 2", n)
		}
	})
}

// TestF6PrincipalQuotaPodman: maxSessionsPerPrincipal holds on real
// sandboxes, with the pool's capacity still free for others.
func TestF6PrincipalQuotaPodman(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime) {
		h := newHarness(t, rt, podmantest.Engine(t, rt), pool.Config{
			Scale: pool.ScaleConfig{MaxConcurrentSessions: 3, MaxSessionsPerPrincipal: 1, ReadySessionInstances: ptr(1)},
		})
		p := h.start().Pool(h.cfg.Name)
		alice := key(t, "alice", "conversation-1")
		mustExec(t, p, alice, "x = 1\nx", "1")
		_, err := exec(t, p, key(t, "alice", "conversation-2"), "1")
		if !errors.Is(err, pool.ErrPrincipalQuota) || errcode.Of(err) != errcode.PrincipalSessionQuota {
			t.Fatalf("alice's second session: %v", err)
		}
		mustExec(t, p, alice, "x + 1", "2")
		mustExec(t, p, key(t, "bob", "conversation-2"), "2", "2")
		if err := p.Delete(context.Background(), alice); err != nil {
			t.Fatal(err)
		}
		mustExec(t, p, key(t, "alice", "conversation-2"), "3", "3")
		if st := p.Status(); st.Allocated != 2 {
			t.Fatalf("status %+v, want 2 allocated", st)
		}
	})
}
