package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox"
)

// fakeEngine is an in-memory Engine for the pool's bookkeeping. Its
// sandboxes cannot run code (their Conn never connects).
type fakeEngine struct {
	mu      sync.Mutex
	delay   time.Duration
	fail    error
	n       int
	running map[string]bool
	labels  map[string]map[string]string
	creates atomic.Int32
	removes atomic.Int32
}

func newFake() *fakeEngine {
	return &fakeEngine{running: map[string]bool{}, labels: map[string]map[string]string{}}
}

func (f *fakeEngine) handle(id string) *sandbox.Sandbox {
	return &sandbox.Sandbox{ID: id, Conn: sandbox.NewConn(sandbox.DialFunc(func(context.Context) (io.ReadWriteCloser, error) {
		return nil, errors.New("fake sandboxes cannot be dialed")
	}))}
}

func (f *fakeEngine) Create(ctx context.Context, spec sandbox.Spec) (*sandbox.Sandbox, error) {
	f.creates.Add(1)
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	f.n++
	id := fmt.Sprintf("c%d", f.n)
	f.running[id] = true
	f.labels[id] = spec.Labels
	return f.handle(id), nil
}

func (f *fakeEngine) Open(ctx context.Context, id string) (*sandbox.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.running[id] {
		return nil, sandbox.ErrGone
	}
	sb := f.handle(id)
	sb.BootInfo.Kernel.Ready = true
	return sb, nil
}

func (f *fakeEngine) List(ctx context.Context, labels map[string]string) ([]sandbox.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sandbox.Summary
	for id, l := range f.labels {
		match := true
		for k, v := range labels {
			match = match && l[k] == v
		}
		if match {
			out = append(out, sandbox.Summary{ID: id, Labels: l, Running: f.running[id]})
		}
	}
	return out, nil
}

func (f *fakeEngine) Remove(ctx context.Context, id string) error {
	f.removes.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.running, id)
	delete(f.labels, id)
	return nil
}

func (f *fakeEngine) isRunning(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running[id]
}

func (f *fakeEngine) kill(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running[id] = false
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestPool(t *testing.T, f *fakeEngine, dir string, cfg Config, clk *clock) *Pool {
	t.Helper()
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := NewHasher([]byte(strings.Repeat("s", 32)))
	cfg.Image = "localhost/test:1"
	p, err := New(context.Background(), cfg, Options{
		Engine: f, Hasher: h, StateDir: dir,
		Settings: Settings{Metrics: m, Log: zerolog.Nop(), Tick: time.Hour, HealthInterval: time.Hour, Now: clk.Now},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func key(t *testing.T, principal, id string) SessionKey {
	t.Helper()
	i, err := ParseIdentifier(id)
	if err != nil {
		t.Fatal(err)
	}
	return Key(Principal(principal), i)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestCapacityIsExact(t *testing.T) {
	f := newFake()
	f.delay = 20 * time.Millisecond
	cfg := Config{Scale: ScaleConfig{MaxConcurrentSessions: 5, ReadySessionInstances: intp(2)}}
	p := newTestPool(t, f, t.TempDir(), cfg, &clock{t: time.Now()})
	waitFor(t, "warm pool", func() bool { return p.Status().Ready == 2 })

	var ok, full atomic.Int32
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, release, err := p.acquire(context.Background(), key(t, "p", fmt.Sprintf("id-%02d", i)))
			switch {
			case err == nil:
				ok.Add(1)
				release()
			case errors.Is(err, ErrCapacity):
				full.Add(1)
			default:
				t.Errorf("acquire: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 5 || full.Load() != 7 {
		t.Fatalf("%d allocated and %d refused; want 5 and 7", ok.Load(), full.Load())
	}
	if st := p.Status(); st.Allocated != 5 {
		t.Fatalf("status %+v", st)
	}
	// An existing session still works at the cap.
	if _, release, err := p.acquire(context.Background(), key(t, "p", "id-00")); err == nil {
		release()
	} else if !errors.Is(err, ErrCapacity) {
		t.Fatal(err)
	}
}

func TestConcurrentFirstUseSharesOneSession(t *testing.T) {
	f := newFake()
	f.delay = 50 * time.Millisecond
	p := newTestPool(t, f, t.TempDir(), Config{Scale: ScaleConfig{ReadySessionInstances: intp(0)}}, &clock{t: time.Now()})
	var wg sync.WaitGroup
	got := make([]*Session, 10)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, release, err := p.acquire(context.Background(), key(t, "p", "shared"))
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = s
			release()
		}()
	}
	wg.Wait()
	for _, s := range got[1:] {
		if s != got[0] || s.sb != got[0].sb {
			t.Fatal("concurrent first requests got different sessions")
		}
	}
	if n := f.creates.Load(); n != 1 {
		t.Fatalf("%d sandboxes created, want 1", n)
	}
	// Another principal with the same identifier gets its own sandbox.
	s2, release, err := p.acquire(context.Background(), key(t, "q", "shared"))
	if err != nil {
		t.Fatal(err)
	}
	release()
	if s2.sb.ID == got[0].sb.ID {
		t.Fatal("two principals share a sandbox")
	}
}

func TestCooldownAndMaxAlive(t *testing.T) {
	f := newFake()
	clk := &clock{t: time.Now()}
	cfg := Config{
		Scale:     ScaleConfig{ReadySessionInstances: intp(0)},
		Lifecycle: LifecycleConfig{CooldownPeriodInSeconds: 60, MaxAlivePeriodInSeconds: 300},
	}
	p := newTestPool(t, f, t.TempDir(), cfg, clk)
	idle, busy := key(t, "p", "idle"), key(t, "p", "busy")
	s1, rel1, _ := p.acquire(context.Background(), idle)
	rel1()
	s2, rel2, _ := p.acquire(context.Background(), busy) // stays in flight
	clk.Add(61 * time.Second)
	p.expire()
	if _, err := p.Session(idle); !errors.Is(err, ErrNoSession) {
		t.Fatal("an idle session outlived its cooldown")
	}
	if _, err := p.Session(busy); err != nil {
		t.Fatal("a session with a request in flight was ended by its cooldown")
	}
	waitFor(t, "removal", func() bool { return !f.isRunning(s1.sb.ID) })
	// Past maxAlive, the busy session leaves the table at once (a new
	// request gets a new session) but its sandbox lives until the request ends.
	clk.Add(240 * time.Second)
	p.expire()
	if _, err := p.Session(busy); !errors.Is(err, ErrNoSession) {
		t.Fatal("a session outlived maxAlivePeriodInSeconds")
	}
	if !f.isRunning(s2.sb.ID) {
		t.Fatal("the sandbox of a request in flight was removed")
	}
	rel2()
	p.expire()
	waitFor(t, "removal after the request", func() bool { return !f.isRunning(s2.sb.ID) })
	if st := p.Status(); st.Allocated != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestLostSessionIsReportedOnce(t *testing.T) {
	f := newFake()
	p := newTestPool(t, f, t.TempDir(), Config{Scale: ScaleConfig{ReadySessionInstances: intp(0)}}, &clock{t: time.Now()})
	k := key(t, "p", "doomed")
	s, rel, err := p.acquire(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	rel()
	f.kill(s.sb.ID)
	p.checkHealth()
	if _, _, err := p.acquire(context.Background(), k); !errors.Is(err, ErrSessionLost) || errcode.Of(err) != errcode.SessionLost {
		t.Fatalf("first use after death: %v", err)
	}
	s2, rel2, err := p.acquire(context.Background(), k)
	if err != nil {
		t.Fatalf("second use after death: %v", err)
	}
	rel2()
	if s2.sb.ID == s.sb.ID {
		t.Fatal("a dead sandbox was reused")
	}
}

func TestCreationFailuresShowAndBackOff(t *testing.T) {
	f := newFake()
	f.fail = errcode.New(errcode.Unavailable, "the sandbox engine is unavailable")
	p := newTestPool(t, f, t.TempDir(), Config{}, &clock{t: time.Now()})
	waitFor(t, "a failure", func() bool { return p.Status().CreationFailures > 0 })
	st := p.Status()
	if st.LastError != "the sandbox engine is unavailable" {
		t.Fatalf("status %+v", st)
	}
	n := f.creates.Load()
	for range 20 {
		p.refill() // the clock does not move: backoff holds
	}
	if f.creates.Load() != n {
		t.Fatal("refill ignored the backoff")
	}
	_, _, err := p.acquire(context.Background(), key(t, "p", "cold"))
	if errcode.Of(err) != errcode.Unavailable {
		t.Fatalf("cold start on a failing engine: %v", err)
	}
	if st := p.Status(); st.Allocated != 0 || st.Pending != 0 {
		t.Fatalf("a failed allocation left state: %+v", st)
	}
}

func TestAdoptionRestoresSessions(t *testing.T) {
	f := newFake()
	dir := t.TempDir()
	clk := &clock{t: time.Now()}
	cfg := Config{Scale: ScaleConfig{ReadySessionInstances: intp(1)}}
	p := newTestPool(t, f, dir, cfg, clk)
	waitFor(t, "warm pool", func() bool { return p.Status().Ready == 1 })
	k := key(t, "p", "kept-session")
	s, rel, _ := p.acquire(context.Background(), k)
	rel()
	waitFor(t, "refill", func() bool { return p.Status().Ready == 1 })
	p.Close(context.Background())
	// A stray without the pool's spec, and a stopped one.
	f.mu.Lock()
	f.labels["stray"] = map[string]string{LabelServer: "sandpool", LabelPool: "default", LabelSpec: "other"}
	f.running["stray"] = true
	f.labels["stopped"] = map[string]string{LabelServer: "sandpool", LabelPool: "default", LabelSpec: p.labels[LabelSpec]}
	f.mu.Unlock()

	p2 := newTestPool(t, f, dir, cfg, clk)
	st := p2.Status()
	if st.Allocated != 1 || st.Ready != 1 || st.Adopted != 2 {
		t.Fatalf("after restart: %+v", st)
	}
	s2, rel2, err := p2.acquire(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	rel2()
	if s2.sb.ID != s.sb.ID {
		t.Fatal("the session did not get its sandbox back")
	}
	if l := p2.Sessions("p"); len(l) != 1 || l[0].Identifier.String() != "kept-session" {
		t.Fatalf("listing after restart: %+v", l)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running["stray"] || f.labels["stopped"] != nil {
		t.Fatal("strays were not removed")
	}
}

func TestCloseDrainsRequestsInFlight(t *testing.T) {
	f := newFake()
	p := newTestPool(t, f, t.TempDir(), Config{Scale: ScaleConfig{ReadySessionInstances: intp(0)}}, &clock{t: time.Now()})
	k := key(t, "p", "draining")
	s, rel, err := p.acquire(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- p.Close(context.Background()) }()
	waitFor(t, "close to begin", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.closed })
	if _, _, err := p.acquire(context.Background(), k); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("a request during shutdown: %v", err)
	}
	select {
	case <-closed:
		t.Fatal("Close returned with a request in flight")
	case <-time.After(100 * time.Millisecond):
	}
	rel()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if !f.isRunning(s.sb.ID) {
		t.Fatal("Close removed a session's sandbox")
	}
	// A deadline bounds the drain.
	p2 := newTestPool(t, f, t.TempDir(), Config{Scale: ScaleConfig{ReadySessionInstances: intp(0)}}, &clock{t: time.Now()})
	_, rel2, _ := p2.acquire(context.Background(), key(t, "p", "stuck-request"))
	defer rel2()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p2.Close(ctx); errcode.Of(err) != errcode.Timeout {
		t.Fatalf("Close past its deadline: %v", err)
	}
}

// TestF6PrincipalSessionQuota: one principal holds at most
// maxSessionsPerPrincipal sessions of a pool, refused with its own code
// while the pool has room; ending, expiring or failing to create a
// session gives the slot back; other principals are unaffected.
func TestF6PrincipalSessionQuota(t *testing.T) {
	f := newFake()
	f.delay = 10 * time.Millisecond
	clk := &clock{t: time.Now()}
	cfg := Config{Scale: ScaleConfig{MaxConcurrentSessions: 8, MaxSessionsPerPrincipal: 2, ReadySessionInstances: intp(0)},
		Lifecycle: LifecycleConfig{CooldownPeriodInSeconds: 60}}
	p := newTestPool(t, f, t.TempDir(), cfg, clk)
	acquire := func(principal, id string) error {
		_, release, err := p.acquire(context.Background(), key(t, principal, id))
		if err == nil {
			release()
		}
		return err
	}

	// Concurrent first uses by one principal: exactly the quota succeeds.
	var ok, quota atomic.Int32
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := acquire("mallory", fmt.Sprintf("grab-%02d", i)); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrPrincipalQuota) && errcode.Of(err) == errcode.PrincipalSessionQuota:
				quota.Add(1)
			default:
				t.Errorf("acquire: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 2 || quota.Load() != 8 {
		t.Fatalf("%d allocated, %d refused by quota; want 2 and 8", ok.Load(), quota.Load())
	}
	// Its sessions still work; others still get theirs.
	var held []string
	for _, s := range p.Sessions("mallory") {
		held = append(held, s.Identifier.String())
		if err := acquire("mallory", s.Identifier.String()); err != nil {
			t.Fatalf("an existing session at the quota: %v", err)
		}
	}
	for _, id := range []string{"alice-1", "alice-2"} {
		if err := acquire("alice", id); err != nil {
			t.Fatalf("another principal: %v", err)
		}
	}
	if err := acquire("alice", "alice-3"); !errors.Is(err, ErrPrincipalQuota) {
		t.Fatalf("alice's third: %v", err)
	}

	// Delete gives a slot back.
	if err := p.Delete(context.Background(), key(t, "mallory", held[0])); err != nil {
		t.Fatal(err)
	}
	if err := acquire("mallory", "grab-new"); err != nil {
		t.Fatalf("after a delete: %v", err)
	}
	// A failed creation gives its slot back.
	f.mu.Lock()
	f.fail = errcode.New(errcode.Unavailable, "engine down")
	f.mu.Unlock()
	if err := acquire("bob", "bob-1"); errcode.Of(err) != errcode.Unavailable {
		t.Fatalf("failing creation: %v", err)
	}
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	p.mu.Lock()
	p.retryAt = time.Time{}
	n := p.held["bob"]
	p.mu.Unlock()
	if n != 0 {
		t.Fatalf("a failed creation still counts %d against bob", n)
	}
	// Expiry gives the slots back.
	clk.Add(2 * time.Minute)
	p.expire()
	waitFor(t, "expired sessions removed", func() bool { return p.Status().Allocated == 0 && p.Status().Deleting == 0 })
	for _, id := range []string{"again-1", "again-2"} {
		if err := acquire("mallory", id); err != nil {
			t.Fatalf("after expiry: %v", err)
		}
	}
	// The capacity error stays distinct: a pool full of quota-abiding
	// principals says capacity_exceeded.
	for _, pr := range []string{"c1", "c2", "c3"} {
		for _, id := range []string{"x-001", "x-002"} {
			err := acquire(pr, id)
			if err != nil && !errors.Is(err, ErrCapacity) {
				t.Fatalf("%s %s: %v", pr, id, err)
			}
		}
	}
	if err := acquire("c4", "x-001"); !errors.Is(err, ErrCapacity) {
		t.Fatalf("full pool: %v", err)
	}
}

func TestF6MaxSessionsPerPrincipalConfig(t *testing.T) {
	for _, tc := range []struct {
		max, per, want int
		bad            bool
	}{
		{max: 10, per: 0, want: 10},
		{max: 10, per: 3, want: 3},
		{max: 4, per: 9, want: 4},
		{max: 4, per: -1, bad: true},
	} {
		c := Config{Scale: ScaleConfig{MaxConcurrentSessions: tc.max, MaxSessionsPerPrincipal: tc.per}}
		err := c.Normalize()
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), "scaleConfiguration.maxSessionsPerPrincipal") {
				t.Errorf("%+v: %v, want a refusal naming the field", tc, err)
			}
			continue
		}
		if err != nil || c.Scale.MaxSessionsPerPrincipal != tc.want {
			t.Errorf("%+v: %d, %v; want %d", tc, c.Scale.MaxSessionsPerPrincipal, err, tc.want)
		}
	}
}
