package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/logging"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/image"
	"github.com/sandpool/sandpool/sandbox/podman"
)

// labelBench marks every container of one `sandpool bench` run (value: the
// run's id), so that the run can find and remove all of them, also those
// the podman CLI made for the baselines.
const labelBench = "sandpool.bench"

// Sample counts derived from --samples, so that one default run takes a
// few minutes per runtime: podman exec and podman run cost a lot each, and
// podman exec leaves a conmon behind for minutes.
const (
	defaultSamples      = 200
	maxFirstSamples     = 20 // default of --first-samples: min(--samples, 20)
	maxColdSamples      = 5  // first executions with no warm sandbox: min(5, --first-samples/4)
	maxExecSamples      = 20 // podman exec per execution: min(20, --samples)
	maxRunSamples       = 5  // podman run --rm per execution: min(5, --samples/40)
	benchSettle         = 3 * time.Second
	benchPoolTimeout    = 5 * time.Minute
	benchCleanupTimeout = 3 * time.Minute
	// benchCode is the tiny execution of the round-trip figures.
	benchCode = "x = 1"
	// benchStreamCode prints at once, then keeps running.
	benchStreamCode = "import time; print('a'); time.sleep(0.2)"
)

// benchOptions are the flags of `sandpool bench`.
type benchOptions struct {
	runtimes     []string
	samples      int
	firstSamples int
	burst        int
	idle         int
	json         bool
	stateDir     string
	agent        string
	image        string
	logLevel     string
	labels       map[string]string
}

var (
	benchLabelKey   = regexp.MustCompile(`^sandpool\.[a-z0-9._-]+$`)
	benchLabelValue = regexp.MustCompile(`^[A-Za-z0-9._-]{0,128}$`)
	// benchReserved are the labels sandpool itself sets.
	benchReserved = []string{labelBench, pool.LabelServer, pool.LabelPool, pool.LabelSpec,
		podman.LabelEngine, podman.LabelIsolation, podman.LabelUID}
)

func (o *benchOptions) check() error {
	var errs []error
	for name, v := range map[string]int{"--samples": o.samples, "--first-samples": o.firstSamples, "--burst": o.burst, "--idle": o.idle} {
		if v < 1 {
			errs = append(errs, fmt.Errorf("%s: must be at least 1", name))
		}
	}
	for _, rt := range o.runtimes {
		name, platform := splitRuntime(rt)
		switch {
		case !slices.Contains(benchRuntimes, name):
			errs = append(errs, fmt.Errorf("--runtime: %q: sandpool bench measures %s", rt, strings.Join(benchRuntimes, ", ")))
		case platform != "" && (!sandbox.IsGVisor(name) || platform != podman.PlatformPtrace && platform != podman.PlatformSystrap):
			errs = append(errs, fmt.Errorf("--runtime: %q: a platform (ptrace or systrap) applies to the runsc runtimes", rt))
		}
	}
	if len(slices.Compact(slices.Sorted(slices.Values(o.runtimes)))) != len(o.runtimes) {
		errs = append(errs, errors.New("--runtime: a runtime is named twice"))
	}
	for k, v := range o.labels {
		switch {
		case !benchLabelKey.MatchString(k):
			errs = append(errs, fmt.Errorf("--label: key %q must match sandpool.[a-z0-9._-]+", k))
		case slices.Contains(benchReserved, k):
			errs = append(errs, fmt.Errorf("--label: %s is sandpool's own", k))
		case !benchLabelValue.MatchString(v):
			errs = append(errs, fmt.Errorf("--label: value of %s must match [A-Za-z0-9._-]{0,128}", k))
		}
	}
	return errors.Join(errs...)
}

func benchCmd() *cobra.Command {
	o := benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure sandpool on this machine, each figure beside a baseline measured in the same run",
		Long: `bench starts pools of sandboxes behind an in-process HTTP server on
loopback, as serve does, and measures for each runtime: runc, runsc-debian
(Debian's 2022 gVisor) and runsc (the pinned current gVisor), a gVisor one
optionally with its platform (runsc:ptrace, runsc:systrap):

  execute         x = 1 on an allocated session over the HTTP API
  first_execution the first execution on a new identifier, a warm sandbox waiting
  burst_answered  --burst new identifiers at once (readySessionInstances = --burst):
                  until every first execution answered
  burst_refilled  ... until the warm pool is back to --burst ready (from the burst's start)
  ws_first_chunk  WebSocket: from sending print('a'); time.sleep(0.2) to its first stdout chunk
  mcp_execute     MCP tools/call execute_python x = 1 over Streamable HTTP
  idle_memory     host memory of an idle warm sandbox (PSS of its processes), --idle of them
  idle_density    idle sandboxes per GiB, from idle_memory
  checkpoint      (current gVisor) checkpoint of an idle kernel with numpy,
                  pandas and matplotlib imported; checkpoint_image its size
  restore_first   restore of that image to its first execution, beside the
                  cold creation of the same sandbox to its first execution

Baselines: podman exec and podman run --rm per execution (podman CLI),
sandpool without a warm sandbox, the same execution in process, and plain
containers of the same image. They run after every sandpool figure, since
podman exec leaves conmon processes behind for minutes.

Every container carries the label sandpool.bench=<run id> and is removed at
the end, also on failure or Ctrl-C. Progress goes to stderr; the table (or,
with --json, JSON) to stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("first-samples") {
				o.firstSamples = min(o.samples, maxFirstSamples)
			}
			if len(o.runtimes) == 0 {
				o.runtimes = installedRuntimes()
				if len(o.runtimes) == 0 {
					return errors.New("none of " + strings.Join(benchRuntimes, ", ") + " is installed")
				}
			}
			return runBench(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.runtimes, "runtime", nil, "runtimes to measure, RUNTIME[:PLATFORM]: runc, runsc-debian, runsc, runsc:ptrace, runsc:systrap (default: runc, runsc-debian, runsc, those installed)")
	f.IntVar(&o.samples, "samples", defaultSamples, fmt.Sprintf("samples of each round trip (execute, ws_first_chunk, mcp_execute); the podman exec baselines take min(%d, N), podman run --rm min(%d, N/40) (at least 1)", maxExecSamples, maxRunSamples))
	f.IntVar(&o.firstSamples, "first-samples", maxFirstSamples, fmt.Sprintf("first executions on new identifiers (default min(--samples, %d)); the baseline without a warm sandbox takes min(%d, M/4) (at least 1)", maxFirstSamples, maxColdSamples))
	f.IntVar(&o.burst, "burst", 8, "new identifiers at once in the burst (and readySessionInstances of its pool)")
	f.IntVar(&o.idle, "idle", 5, "idle sandboxes measured for density")
	f.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	f.StringVar(&o.stateDir, "state-dir", "", "directory for sandpool's state (default: a temporary directory, removed at the end)")
	f.StringVar(&o.agent, "agent", "", "the static sandpool-agent binary (default: next to sandpool, then on PATH)")
	f.StringVar(&o.image, "image", image.Tag(), "sandbox image")
	f.StringVar(&o.logLevel, "log-level", "warn", "log level of the pools and the server (logs go to stderr)")
	f.StringToStringVar(&o.labels, "label", nil, "extra label key=value on every container of the run (keys sandpool.*)")
	return cmd
}

// benchRuntimes are the runtimes bench measures.
var benchRuntimes = []string{sandbox.RuntimeRunc, sandbox.RuntimeGVisorDebian, sandbox.RuntimeGVisor}

// splitRuntime splits a --runtime value, RUNTIME[:PLATFORM].
func splitRuntime(v string) (name, platform string) {
	name, platform, _ = strings.Cut(v, ":")
	return name, platform
}

// installedRuntimes are the runtimes bench knows that are installed.
func installedRuntimes() []string {
	var out []string
	for _, rt := range benchRuntimes {
		if podman.RuntimeInstalled(rt) == nil {
			out = append(out, rt)
		}
	}
	return out
}

// The figures, in the order they are reported.
var benchFigures = []struct{ id, title string }{
	{"execute", "execute x = 1, allocated session (HTTP)"},
	{"first_execution", "first execution, new identifier, warm sandbox (HTTP)"},
	{"burst_answered", "burst: all first executions answered"},
	{"burst_refilled", "burst: warm pool refilled (from burst start)"},
	{"ws_first_chunk", "WebSocket: send to first stdout chunk"},
	{"mcp_execute", "MCP tools/call execute_python x = 1"},
	{"idle_memory", "idle sandbox memory (PSS)"},
	{"idle_density", "idle sandboxes per GiB"},
	{"checkpoint", "checkpoint of an idle kernel (numpy, pandas, matplotlib)"},
	{"checkpoint_image", "checkpoint image size"},
	{"restore_first", "restore to its first execution"},
}

// benchValue is one measured figure: a latency distribution (N, P50,
// P99) or a single Value.
type benchValue struct {
	Unit  string   `json:"unit"`
	N     int      `json:"n"`
	P50   *float64 `json:"p50,omitempty"`
	P99   *float64 `json:"p99,omitempty"`
	Value *float64 `json:"value,omitempty"`
}

// benchBaseline is a baseline of a figure.
type benchBaseline struct {
	Name string `json:"name"`
	benchValue
}

// benchFigure is one figure of one runtime and its baselines.
type benchFigure struct {
	Runtime   string          `json:"runtime"`
	Figure    string          `json:"figure"`
	Title     string          `json:"title"`
	Sandpool  *benchValue     `json:"sandpool"`
	Baselines []benchBaseline `json:"baselines"`
}

// benchReport is what `sandpool bench --json` prints.
type benchReport struct {
	Version         string         `json:"version"`
	Image           string         `json:"image"`
	Started         time.Time      `json:"started"`
	DurationSeconds float64        `json:"durationSeconds"`
	Host            benchHost      `json:"host"`
	Runtimes        []string       `json:"runtimes"`
	Samples         int            `json:"samples"`
	FirstSamples    int            `json:"firstSamples"`
	Burst           int            `json:"burst"`
	Idle            int            `json:"idle"`
	Figures         []*benchFigure `json:"figures"`
}

type benchHost struct {
	CPUs          int    `json:"cpus"`
	Kernel        string `json:"kernel"`
	Podman        string `json:"podman"`
	LoadAvgBefore string `json:"loadAvgBefore"`
	LoadAvgAfter  string `json:"loadAvgAfter"`
}

func latencyValue(d []time.Duration) *benchValue {
	if len(d) == 0 {
		return nil
	}
	d = slices.Clone(d)
	slices.Sort(d)
	pct := func(p float64) *float64 {
		v := roundTo(float64(d[min(len(d)-1, int(float64(len(d))*p))])/float64(time.Millisecond), 3)
		return &v
	}
	return &benchValue{Unit: "ms", N: len(d), P50: pct(0.50), P99: pct(0.99)}
}

func singleValue(unit string, n int, v float64) *benchValue {
	v = roundTo(v, 3)
	return &benchValue{Unit: unit, N: n, Value: &v}
}

func roundTo(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// bench is one run of `sandpool bench`.
type bench struct {
	o        benchOptions
	progress io.Writer
	log      zerolog.Logger
	runID    string
	serverID string
	key      string // the API key of the in-process server
	stateDir string
	engines  map[string]*podman.Engine
	figures  map[string]*benchFigure // by runtime + "/" + figure
	report   benchReport
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func runBench(ctx context.Context, o benchOptions, stdout, stderr io.Writer) (retErr error) {
	if err := o.check(); err != nil {
		return err
	}
	if _, err := exec.LookPath("podman"); err != nil {
		return errors.New("podman is not installed")
	}
	for _, rt := range o.runtimes {
		name, _ := splitRuntime(rt)
		if err := podman.RuntimeInstalled(name); err != nil {
			return fmt.Errorf("--runtime: %s: %w", rt, err)
		}
	}
	if err := exec.CommandContext(ctx, "podman", "image", "exists", o.image).Run(); err != nil {
		return fmt.Errorf("the sandbox image %s is not in podman's image store (sandpool image build)", o.image)
	}
	log, err := logging.New(stderr, logging.Options{Level: o.logLevel})
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	b := &bench{o: o, progress: stderr, log: log, runID: randomHex(6), key: "bench-" + randomHex(16),
		engines: map[string]*podman.Engine{}, figures: map[string]*benchFigure{}}
	b.serverID = "bench-" + b.runID
	b.report = benchReport{Version: version, Image: o.image, Started: time.Now(), Runtimes: o.runtimes,
		Samples: o.samples, FirstSamples: o.firstSamples, Burst: o.burst, Idle: o.idle}
	b.report.Host = benchHost{CPUs: runtime.NumCPU(), Kernel: readTrim("/proc/sys/kernel/osrelease"),
		Podman: podmanVersion(ctx), LoadAvgBefore: loadAvg()}
	for _, rt := range o.runtimes {
		for _, f := range benchFigures {
			b.figures[rt+"/"+f.id] = &benchFigure{Runtime: rt, Figure: f.id, Title: f.title, Baselines: []benchBaseline{}}
		}
	}

	b.stateDir = o.stateDir
	if b.stateDir == "" {
		dir, err := os.MkdirTemp("", "sandpool-bench-")
		if err != nil {
			return err
		}
		b.stateDir = dir
		defer os.RemoveAll(dir)
	}
	b.say("run %s, state in %s", b.runID, b.stateDir)
	defer func() {
		for _, e := range b.engines {
			e.Close()
		}
	}()
	// Whatever happens (failure, Ctrl-C), every container of the run goes.
	defer func() {
		if err := b.removeAll(context.WithoutCancel(ctx)); err != nil {
			retErr = errors.Join(retErr, err)
		}
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "bench: interrupted; the run's containers are removed")
			retErr = exitError{130}
		}
	}()
	for _, rt := range o.runtimes {
		b.say("%s: starting a podman service", rt)
		name, platform := splitRuntime(rt)
		e, err := podman.New(ctx, podman.Config{Runtime: name, Platform: platform, StateDir: b.stateDir, AgentPath: o.agent,
			Log: logging.Component(log, "engine").With().Str("runtime", rt).Logger()})
		if err != nil {
			return fmt.Errorf("start the %s engine: %w", rt, err)
		}
		b.engines[rt] = e
	}
	// sandpool's figures first, every runtime; then the baselines, whose
	// podman exec leaves conmon processes that would slow what follows.
	for _, rt := range o.runtimes {
		if err := b.sandpoolFigures(ctx, rt); err != nil {
			return fmt.Errorf("%s: %w", rt, err)
		}
	}
	for _, rt := range o.runtimes {
		if err := b.baselines(ctx, rt); err != nil {
			return fmt.Errorf("%s baselines: %w", rt, err)
		}
	}
	b.report.DurationSeconds = roundTo(time.Since(b.report.Started).Seconds(), 1)
	b.report.Host.LoadAvgAfter = loadAvg()
	for _, rt := range o.runtimes {
		for _, f := range benchFigures {
			// Figures a runtime does not have (checkpoint under runc) are left out.
			if fig := b.figures[rt+"/"+f.id]; fig.Sandpool != nil || len(fig.Baselines) > 0 {
				b.report.Figures = append(b.report.Figures, fig)
			}
		}
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(b.report)
	}
	return writeBenchTable(stdout, &b.report)
}

// say writes a progress line with the time since the start.
func (b *bench) say(format string, args ...any) {
	at := time.Since(b.report.Started).Round(100 * time.Millisecond)
	fmt.Fprintf(b.progress, "bench: %6.1fs "+format+"\n", append([]any{at.Seconds()}, args...)...)
}

func (b *bench) fig(rt, id string) *benchFigure { return b.figures[rt+"/"+id] }

func (b *bench) baseline(rt, id, name string, v *benchValue) {
	if v != nil {
		f := b.fig(rt, id)
		f.Baselines = append(f.Baselines, benchBaseline{Name: name, benchValue: *v})
	}
}

// labels are the labels of every container of the run, with extra.
func (b *bench) labels(extra map[string]string) map[string]string {
	out := map[string]string{labelBench: b.runID}
	for k, v := range b.o.labels {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// removeAll removes every container of the run, on every engine.
func (b *bench) removeAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, benchCleanupTimeout)
	defer cancel()
	var errs []error
	for rt := range b.engines {
		errs = append(errs, b.removeRuntime(ctx, rt))
	}
	return errors.Join(errs...)
}

func (b *bench) removeRuntime(ctx context.Context, rt string) error {
	e := b.engines[rt]
	list, err := e.List(ctx, map[string]string{labelBench: b.runID})
	if err != nil {
		return fmt.Errorf("listing the run's %s containers: %w", rt, err)
	}
	errs := make([]error, len(list))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, c := range list {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := e.Remove(ctx, c.ID); err != nil {
				errs[i] = fmt.Errorf("removing container %s: %w", c.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// benchServer is sandpool as serve runs it, on a loopback port: pools,
// the HTTP API with an API key, MCP.
type benchServer struct {
	b       *bench
	rt      string
	run     *running
	surface *api.Server
	srv     *http.Server
	base    string
	hc      *http.Client
	closed  sync.Once
}

func (b *bench) poolConfig(rt, name string, maxSessions, ready int) poolEntry {
	rtName, _ := splitRuntime(rt)
	return poolEntry{Config: pool.Config{Name: poolName(name, rt), Runtime: rtName, Image: b.o.image,
		Scale: pool.ScaleConfig{MaxConcurrentSessions: maxSessions, ReadySessionInstances: &ready}}}
}

// startServer starts the pools on rt's engine and serves them.
func (b *bench) startServer(ctx context.Context, rt string, pools ...poolEntry) (_ *benchServer, retErr error) {
	cfg := &fileConfig{Pools: pools, Server: serverConfig{
		StateDir: b.stateDir, ServerID: b.serverID, Agent: b.o.agent,
		Engines: map[string]engineConfig{b.engines[rt].Runtime(): {Socket: b.engines[rt].Socket()}},
		Auth:    api.AuthConfig{APIKeys: []api.APIKey{{Name: "bench", Key: b.key}}},
		// Rate limits would throttle the round trips.
		Limits: api.Limits{RequestsPerSecond: 1e6, Burst: 1e6, ConcurrentRequests: 1024},
		MCP:    mcpConfig{Pool: pools[0].Name},
		labels: b.labels(nil),
	}}
	s := &benchServer{b: b, rt: rt, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	defer func() {
		if retErr != nil {
			s.close(ctx)
		}
	}()
	var err error
	if s.run, err = startPools(ctx, cfg, b.log); err != nil {
		return nil, err
	}
	if s.surface, err = newSurface(ctx, cfg, s.run, b.log); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.base = "http://" + ln.Addr().String()
	s.srv = s.surface.HTTPServer(stdlog.New(io.Discard, "", 0))
	go func() { _ = s.srv.Serve(s.surface.Listener(ln)) }()
	return s, nil
}

// close stops the server and its pools and removes the run's containers
// on its runtime (the pools leave theirs running, as serve does).
func (s *benchServer) close(ctx context.Context) {
	s.closed.Do(func() { s.doClose(ctx) })
}

func (s *benchServer) doClose(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), benchCleanupTimeout)
	defer cancel()
	if s.srv != nil {
		_ = s.srv.Close()
	}
	if s.surface != nil {
		s.surface.Close(ctx)
	}
	if s.run != nil {
		s.run.close()
	}
	s.hc.CloseIdleConnections()
	if err := s.b.removeRuntime(ctx, s.rt); err != nil {
		s.b.log.Warn().Err(err).Msg("removing the pools' sandboxes")
	}
}

func (s *benchServer) pool(name string) *pool.Pool { return s.run.mgr.Pool(poolName(name, s.rt)) }

// poolName is the name of the bench's pool name for runtime rt.
func poolName(name, rt string) string { return name + "-" + strings.ReplaceAll(rt, ":", "-") }

// execute posts code to the executions route of p for identifier and
// times the round trip.
func (s *benchServer) execute(ctx context.Context, p *pool.Pool, identifier, code string) (time.Duration, error) {
	body, _ := json.Marshal(map[string]string{"code": code})
	u := s.base + "/pools/" + p.Name() + "/executions?api-version=2025-10-02-preview&identifier=" + url.QueryEscape(identifier)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.b.key)
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	res, err := s.hc.Do(req)
	if err != nil {
		return 0, err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if res.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"Succeeded"`)) {
		return 0, fmt.Errorf("execution: %s: %.300s", res.Status, b)
	}
	return d, nil
}

// deleteSession ends the session of identifier on p.
func (s *benchServer) deleteSession(ctx context.Context, p *pool.Pool, identifier string) error {
	u := s.base + "/pools/" + p.Name() + "/session?api-version=2025-10-02-preview&identifier=" + url.QueryEscape(identifier)
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.b.key)
	res, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("deleting a session: %s: %.300s", res.Status, b)
	}
	return nil
}

// waitQuiet waits until p has at least ready warm sandboxes and nothing
// being created or removed, so that no background work skews a sample.
func waitQuiet(ctx context.Context, p *pool.Pool, ready int) error {
	deadline := time.Now().Add(benchPoolTimeout)
	for {
		st := p.Status()
		if st.Ready >= ready && st.Pending == 0 && st.Deleting == 0 {
			return nil
		}
		if st.CreationFailures >= 3 {
			return fmt.Errorf("pool %s cannot create sandboxes: %s", st.Name, st.LastError)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pool %s: %d of %d sandboxes ready after %s", st.Name, st.Ready, ready, benchPoolTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// loadAvg is the host's 1, 5 and 15 minute load averages: other work on
// the host shows in every figure.
func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func podmanVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "podman", "version", "--format", "{{.Client.Version}}").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// formatValue renders a value for the table.
func formatValue(v *benchValue) string {
	if v == nil {
		return "-"
	}
	num := func(x float64) string {
		switch {
		case x >= 100:
			return strconv.FormatFloat(x, 'f', 0, 64)
		case x >= 10:
			return strconv.FormatFloat(x, 'f', 1, 64)
		}
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
	if v.Value != nil {
		return fmt.Sprintf("%s %s (n=%d)", num(*v.Value), v.Unit, v.N)
	}
	return fmt.Sprintf("p50 %s / p99 %s %s (n=%d)", num(*v.P50), num(*v.P99), v.Unit, v.N)
}

func writeBenchTable(w io.Writer, r *benchReport) error {
	fmt.Fprintf(w, "sandpool bench %s: image %s; %d CPUs, kernel %s, podman %s; load average %s before, %s after; took %s\n\n",
		r.Version, r.Image, r.Host.CPUs, r.Host.Kernel, r.Host.Podman, r.Host.LoadAvgBefore, r.Host.LoadAvgAfter,
		(time.Duration(r.DurationSeconds * float64(time.Second))).Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNTIME\tFIGURE\tSANDPOOL\tBASELINE\tBASELINE VALUE")
	for _, f := range r.Figures {
		if len(f.Baselines) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\n", f.Runtime, f.Title, formatValue(f.Sandpool))
		}
		for i, bl := range f.Baselines {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Runtime, f.Title, formatValue(f.Sandpool), bl.Name, formatValue(&bl.benchValue))
			} else {
				fmt.Fprintf(tw, "\t\t\t%s\t%s\n", bl.Name, formatValue(&bl.benchValue))
			}
		}
	}
	return tw.Flush()
}
