// Package podmantest is the harness of sandpool's integration tests: real
// podman services (one per runtime, supervised by sandbox/podman), the real
// agent binary, the real image. Every sandbox a test creates carries this
// run's label and is removed in t.Cleanup; Main fails the run if any is left.
// When podman, a runtime or the image is missing, tests skip with a message
// saying what is missing, unless SANDPOOL_REQUIRE_PODMAN=1 (set by `make
// test`), which turns the skip into a failure.
package podmantest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/image"
	"github.com/sandpool/sandpool/sandbox/podman"
)

// Runtime is an OCI runtime under test and the isolation it provides.
type Runtime struct {
	Name      string
	Isolation sandbox.Isolation
	// Platform is gVisor's platform; "" is the engine's default.
	Platform string
}

// Key names the runtime and its platform (runsc, runsc:systrap).
func (rt Runtime) Key() string {
	if rt.Platform == "" {
		return rt.Name
	}
	return rt.Name + ":" + rt.Platform
}

// The runtimes integration tests run under: runc, the current gVisor
// (runsc, sandpool's default) and Debian's 2022 gVisor (runsc-debian).
var (
	Runc        = Runtime{Name: sandbox.RuntimeRunc, Isolation: sandbox.IsolationContainer}
	Runsc       = Runtime{Name: sandbox.RuntimeGVisor, Isolation: sandbox.IsolationGVisor}
	RunscDebian = Runtime{Name: sandbox.RuntimeGVisorDebian, Isolation: sandbox.IsolationGVisor}
	// RunscSystrap is the current gVisor on its systrap platform (the
	// default is ptrace, measured faster here).
	RunscSystrap = Runtime{Name: sandbox.RuntimeGVisor, Isolation: sandbox.IsolationGVisor, Platform: podman.PlatformSystrap}
)

// Runtimes lists the runtimes every integration test runs under.
func Runtimes() []Runtime { return []Runtime{Runc, Runsc} }

// AllRuntimes adds Debian's runsc, for the tests of the engine and of
// isolation (the battery), which say what differs between the two gVisors.
func AllRuntimes() []Runtime { return []Runtime{Runc, Runsc, RunscDebian} }

// LabelRun marks the containers of one test binary's run.
const LabelRun = "sandpool.test"

var (
	runID    = randHex(6)
	stateDir string

	mu      sync.Mutex
	engines = map[string]*podman.Engine{}
	agent   string
	wrapper string
	agentEr error
	once    sync.Once
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RunID is this run's label value.
func RunID() string { return runID }

// ServerIDPrefix starts the server id of every sandpool a test runs, so a
// sandbox such a server made and its test left behind is found even
// without the run label (scripts/sweep.sh looks for it too).
const ServerIDPrefix = "t-"

// ServerID is the server id for a sandpool server a test runs: this run's
// id and name. Main fails the run if any sandbox of such a server is left.
func ServerID(name string) string { return ServerIDPrefix + runID + "-" + name }

// Main runs the tests, then removes every container of this run that is
// left, and fails if there was any: a leaked container is a bug. It then
// fails the run if a goroutine is left (goleak), once the engines are
// closed.
func Main(m *testing.M) {
	code := m.Run()
	if c := cleanup(); c != 0 {
		code = c
	}
	if code == 0 {
		if err := goleak.Find(LeakOptions()...); err != nil {
			fmt.Fprintf(os.Stderr, "podmantest: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// LeakOptions are goleak's options for a test binary of sandpool: the
// goroutines that live as long as the process, started by libraries on
// first use and not ours to stop.
func LeakOptions() []goleak.Option {
	return []goleak.Option{}
}

// cleanup removes what the run left and closes the engines; it returns 1
// when a container was left.
func cleanup() (code int) {
	mu.Lock()
	defer mu.Unlock()
	for name, e := range engines {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		// This run's: the run label, or a server id of this run (servers
		// under test label their sandboxes with their own id only).
		all, err := e.List(ctx, nil)
		if err != nil {
			fmt.Fprintf(os.Stderr, "podmantest: listing %s containers: %v\n", name, err)
			code = 1
		}
		left := slices.DeleteFunc(all, func(c sandbox.Summary) bool {
			return c.Labels[LabelRun] != runID && !strings.HasPrefix(c.Labels[pool.LabelServer], ServerIDPrefix+runID+"-")
		})
		for _, c := range left {
			fmt.Fprintf(os.Stderr, "podmantest: LEAK: %s container %s was not removed by its test\n", name, c.Name)
			_ = e.Remove(ctx, c.ID)
			code = 1
		}
		cancel()
		e.Close()
	}
	if stateDir != "" {
		os.RemoveAll(stateDir)
	}
	return code
}

func required() bool { return os.Getenv("SANDPOOL_REQUIRE_PODMAN") == "1" }

// skip skips (or, when integration tests are required, fails) the test.
func skip(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if required() {
		t.Fatalf("integration prerequisite missing: %s", msg)
	}
	t.Skipf("skipping integration test: %s (run `make test` to set everything up)", msg)
}

// Agent builds the static agent binary (and the runsc wrapper) once per
// test binary.
func Agent(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		dir, err := os.MkdirTemp("", "sandpool-test-")
		if err != nil {
			agentEr = err
			return
		}
		stateDir = dir
		agent = filepath.Join(dir, "sandpool-agent")
		wrapper = filepath.Join(dir, "sandpool-runsc")
		cmd := exec.Command("go", "build", "-o", dir, "github.com/sandpool/sandpool/cmd/sandpool-agent", "github.com/sandpool/sandpool/cmd/sandpool-runsc")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentEr = fmt.Errorf("building the agent: %v\n%s", err, out)
		}
	})
	if agentEr != nil {
		t.Fatal(agentEr)
	}
	return agent
}

var (
	appOnce  sync.Once
	appImage string
	appErr   error
)

// AppImage builds (or finds, when unchanged) the example custom-container
// image with examples/custom-container/build.sh, once per test binary, and
// returns its tag.
func AppImage(t testing.TB) string {
	t.Helper()
	appOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			appErr = err
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			appErr = fmt.Errorf("go is not on PATH: %w", err)
			return
		}
		cmd := exec.Command("bash", filepath.Join(root, "examples/custom-container/build.sh"))
		cmd.Env = append(os.Environ(), "GO="+goBin)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			appErr = fmt.Errorf("building the example custom-container image: %v\n%s", err, stderr.String())
			return
		}
		appImage = strings.TrimSpace(string(out))
	})
	if appErr != nil {
		t.Fatal(appErr)
	}
	return appImage
}

// repoRoot is the directory holding go.mod, from the test's directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// AppSpec returns a custom-container spec for rt running the example
// application (with its test-only fault routes) on port 8080.
func AppSpec(t testing.TB, rt Runtime) sandbox.Spec {
	s := Spec(rt)
	s.Image = AppImage(t)
	s.App = &sandbox.App{Port: 8080, ReadyPath: "/healthz"}
	s.Env = map[string]string{"DEMO_FAULTS": "1"}
	s.Resources.Memory = 256 * sandbox.MiB
	s.Resources.DataSize = 16 * sandbox.MiB
	return s
}

// Wrapper is the runsc wrapper binary (sandpool-runsc) of this run.
func Wrapper(t testing.TB) string {
	Agent(t)
	return wrapper
}

// StateDir is this run's sandpool state directory.
func StateDir(t testing.TB) string {
	Agent(t)
	return stateDir
}

// Check skips the test unless podman, rt and the image are available.
func Check(t testing.TB, rt Runtime) {
	t.Helper()
	if os.Geteuid() != 0 {
		skip(t, "needs root (rootful podman; gVisor does not run rootless)")
	}
	if _, err := exec.LookPath("podman"); err != nil {
		skip(t, "podman is not installed")
	}
	if err := podman.RuntimeInstalled(rt.Name); err != nil {
		skip(t, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !image.Exists(ctx, "") {
		skip(t, "the sandbox image %s is not built (make image)", image.Tag())
	}
}

// Engine returns this test binary's engine for rt (a supervised podman
// service of its own), creating it on first use.
func Engine(t testing.TB, rt Runtime) *podman.Engine {
	t.Helper()
	Check(t, rt)
	agentPath := Agent(t)
	mu.Lock()
	defer mu.Unlock()
	if e, ok := engines[rt.Key()]; ok {
		return e
	}
	e, err := NewEngine(t, rt, agentPath)
	if err != nil {
		t.Fatalf("starting the %s engine: %v", rt.Key(), err)
	}
	engines[rt.Key()] = e
	return e
}

// NewEngine starts an engine with a podman service of its own that the
// caller must Close. Tests that stop or restart the service use one.
func NewEngine(t testing.TB, rt Runtime, agentPath string) (*podman.Engine, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return podman.New(ctx, podman.Config{
		Runtime:        rt.Name,
		Platform:       rt.Platform,
		StateDir:       stateDir,
		AgentPath:      agentPath,
		RuntimeWrapper: wrapper,
		// Not a test writer: the shared engine outlives the test that
		// created it.
		Log: zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Str("runtime", rt.Name).Logger(),
	})
}

// Spec returns a spec for rt with the test labels and the built image.
func Spec(rt Runtime) sandbox.Spec {
	return sandbox.Spec{
		Image:     image.Tag(),
		Isolation: rt.Isolation,
		Labels:    map[string]string{"sandpool.pool": "test", LabelRun: runID},
	}
}

// Create creates a sandbox on e and removes it when the test ends,
// whatever the outcome.
func Create(t testing.TB, e *podman.Engine, spec sandbox.Spec) *sandbox.Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sb, err := e.Create(ctx, spec)
	if err != nil {
		t.Fatalf("creating a %s sandbox: %v", e.Runtime(), err)
	}
	t.Cleanup(func() { Remove(t, e, sb) })
	return sb
}

// Remove closes and removes a sandbox; removing twice is harmless.
func Remove(t testing.TB, e *podman.Engine, sb *sandbox.Sandbox) {
	t.Helper()
	sb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.Remove(ctx, sb.ID); err != nil && !strings.Contains(err.Error(), "no such") {
		t.Errorf("removing sandbox %s: %v", sb.Name, err)
	}
}

// ReportLatency reports the p50 and p99 of d in milliseconds as custom
// benchmark metrics. It sorts d.
func ReportLatency(b *testing.B, d []time.Duration) { ReportLatencyAs(b, "", d) }

// ReportLatencyAs is ReportLatency with the metrics' names prefixed, for a
// baseline measured in the same run ("direct-p50-ms").
func ReportLatencyAs(b *testing.B, prefix string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	pct := func(p float64) float64 {
		return float64(d[min(len(d)-1, int(float64(len(d))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), prefix+"p50-ms")
	b.ReportMetric(pct(0.99), prefix+"p99-ms")
}

// Manager starts a real pool manager with the one pool cfg on rt's engine
// (cfg's runtime, isolation and image are filled in), with its own state
// directory and a server id of the test's; every sandbox of that server is
// removed when the test ends, whatever the outcome.
func Manager(t testing.TB, rt Runtime, cfg pool.Config, opts ...func(*pool.ManagerOptions)) *pool.Manager {
	t.Helper()
	eng := Engine(t, rt)
	cfg.Runtime, cfg.Isolation = rt.Name, rt.Isolation
	if cfg.ContainerType != pool.CustomContainer {
		cfg.Image = image.Tag()
	}
	serverID := "t-" + runID + "-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	RemoveLabelled(t, eng, map[string]string{pool.LabelServer: serverID})
	met, err := pool.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mo := pool.ManagerOptions{
		Engines: map[string]pool.Engine{rt.Name: eng}, StateDir: t.TempDir(),
		Settings: pool.Settings{ServerID: serverID, Metrics: met,
			Labels: map[string]string{LabelRun: runID},
			Log:    zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)},
	}
	for _, o := range opts {
		o(&mo)
	}
	m, err := pool.NewManager(ctx, []pool.Config{cfg}, mo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// RemoveLabelled removes every sandbox on e that carries labels when the
// test ends, whatever its outcome (for sandboxes a server under test made).
// A creation the server had in flight when it stopped can land a moment
// after the first sweep, so the sweep repeats until a listing is empty.
func RemoveLabelled(t testing.TB, e *podman.Engine, labels map[string]string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for round := 0; round < 5; round++ {
			list, err := e.List(ctx, labels)
			if err != nil {
				t.Errorf("listing the test's sandboxes: %v", err)
				return
			}
			if len(list) == 0 && round > 0 {
				return
			}
			for _, c := range list {
				_ = e.Remove(ctx, c.ID)
			}
			time.Sleep(time.Second)
		}
	})
}
