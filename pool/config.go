package pool

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/image"
)

// ContainerType is the kind of session a pool runs.
type ContainerType string

// Container types: Python code-interpreter sessions, or sessions of the
// user's own image (customContainerTemplate), reached over HTTP.
const (
	PythonLTS       ContainerType = "PythonLTS"
	CustomContainer ContainerType = "CustomContainer"
)

// LifecycleType says when a session ends.
type LifecycleType string

// Lifecycle types, as in Azure: Timed sessions end after a cooldown without
// requests; OnContainerExit sessions (custom containers) end when their
// container exits or at maxAlivePeriodInSeconds.
const (
	Timed           LifecycleType = "Timed"
	OnContainerExit LifecycleType = "OnContainerExit"
)

// Egress settings of sessionNetworkConfiguration.status.
const (
	EgressDisabled = "EgressDisabled"
	EgressEnabled  = "EgressEnabled"
)

// Config configures one session pool. Field names and meanings follow
// Azure's Microsoft.App/sessionPools resource; the YAML keys are Azure's.
// The zero value of every field means its default (see DefaultConfig).
type Config struct {
	// Name is the pool's name in URLs and labels: 3-63 characters, a
	// lowercase letter first, then lowercase letters, digits or '-'.
	Name          string        `yaml:"name"`
	ContainerType ContainerType `yaml:"containerType"`
	// Image is the sandbox image; default the image `sandpool image build`
	// makes.
	Image string `yaml:"image"`
	// Runtime is the OCI runtime: runsc (the pinned current gVisor,
	// default), runsc-debian (Debian's runsc), runc, a Kata build, or an
	// OCI runtime's absolute path.
	Runtime string `yaml:"runtime"`
	// Isolation is what sandboxes must report (container, gvisor, vm);
	// default from the runtime. A mismatch fails the sandbox.
	Isolation      sandbox.Isolation `yaml:"isolation"`
	Resources      ResourcesConfig   `yaml:"resources"`
	Scale          ScaleConfig       `yaml:"scaleConfiguration"`
	Lifecycle      LifecycleConfig   `yaml:"lifecycleConfiguration"`
	SessionNetwork NetworkConfig     `yaml:"sessionNetworkConfiguration"`
	Execution      ExecutionConfig   `yaml:"execution"`
	// CustomContainer is the template of a CustomContainer pool, as in
	// Azure's customContainerTemplate.
	CustomContainer *CustomContainerTemplate `yaml:"customContainerTemplate"`
}

// CustomContainerTemplate is Azure's customContainerTemplate: one
// container of the user's image and its ingress port.
type CustomContainerTemplate struct {
	Containers []ContainerTemplate `yaml:"containers"`
	Ingress    IngressConfig       `yaml:"ingress"`
}

// ContainerTemplate is the container of a CustomContainer pool.
type ContainerTemplate struct {
	// Image must be in the podman image store: sandpool never pulls.
	Image string `yaml:"image"`
	Name  string `yaml:"name"`
	// Command replaces the image's entrypoint and Args its command, as in
	// Kubernetes.
	Command   []string            `yaml:"command"`
	Args      []string            `yaml:"args"`
	Env       []EnvVar            `yaml:"env"`
	Resources *ContainerResources `yaml:"resources"`
	Probes    []Probe             `yaml:"probes"`
}

// EnvVar is one environment variable of a custom container.
type EnvVar struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
	// SecretRef is Azure's; sandpool has no secret store and refuses it.
	SecretRef string `yaml:"secretRef"`
}

// ContainerResources is a custom container's size: Azure's place for what
// resources.cpu and resources.memory say (those win when both are set).
type ContainerResources struct {
	CPU    float64  `yaml:"cpu"`
	Memory Quantity `yaml:"memory"`
}

// IngressConfig is where a custom container listens.
type IngressConfig struct {
	// TargetPort is the container's HTTP port (required).
	TargetPort int `yaml:"targetPort"`
	// TimeoutInSeconds bounds the wait for a forwarded request's response
	// headers (a sandpool extension; default 240, as Azure's ingress).
	// Bodies and upgraded connections may last longer.
	TimeoutInSeconds int `yaml:"timeoutInSeconds"`

	// The rest are sandpool extensions: a container's answers are served
	// on sandpool's own origin, so by default nothing it sends can act as
	// sandpool in a browser, and callers' credentials stay out of it.

	// StripRequestHeaders are removed from requests before they reach the
	// container; nil means DefaultStripRequestHeaders, and a list given
	// replaces it (an empty list strips none). Authorization, hop-by-hop
	// headers and sandpool's own are removed whatever it says.
	StripRequestHeaders []string `yaml:"stripRequestHeaders"`
	// AllowSetCookie passes the container's Set-Cookie (and
	// Clear-Site-Data) to callers: cookies it sets apply to sandpool's
	// whole origin.
	AllowSetCookie bool `yaml:"allowSetCookie"`
	// AllowCORS passes the container's Access-Control-* headers: what it
	// allows, other sites may read.
	AllowCORS bool `yaml:"allowCors"`
	// AllowActiveContent serves the container's responses without the
	// Content-Security-Policy: sandbox sandpool otherwise adds, so its
	// HTML may run script as sandpool's origin.
	AllowActiveContent bool `yaml:"allowActiveContent"`
}

// DefaultStripRequestHeaders are the credentials a custom container does
// not receive unless its pool says otherwise.
var DefaultStripRequestHeaders = []string{"Cookie", "X-Api-Key", "Proxy-Authorization"}

// Probe is an Azure container probe. sandpool supports the Startup probe
// (the sandbox is Ready only once it passes); a container that exits later
// is handled by the pool's lifecycle.
type Probe struct {
	Type      string        `yaml:"type"`
	HTTPGet   *ProbeHTTPGet `yaml:"httpGet"`
	TCPSocket *ProbeTCP     `yaml:"tcpSocket"`
	// The probe passes within InitialDelaySeconds + FailureThreshold x
	// PeriodSeconds (default 0 + 3 x 10), or the sandbox fails. sandpool
	// checks continuously within that window, not once per period.
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
	SuccessThreshold    int `yaml:"successThreshold"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
}

// ProbeHTTPGet probes a path with a GET that must answer 2xx.
type ProbeHTTPGet struct {
	Path string `yaml:"path"`
	Port int    `yaml:"port"`
}

// ProbeTCP probes that a port accepts connections.
type ProbeTCP struct {
	Port int `yaml:"port"`
}

// ResourcesConfig is a sandbox's size.
type ResourcesConfig struct {
	// CPU in cores; default 1.
	CPU float64 `yaml:"cpu"`
	// Memory such as "1Gi", "512Mi" or a byte count; default 1Gi.
	Memory Quantity `yaml:"memory"`
	// Disk bounds /mnt/data (the session's files); default 256Mi.
	Disk Quantity `yaml:"disk"`
}

// ScaleConfig is Azure's scaleConfiguration, plus how many sandboxes may be
// created at once.
type ScaleConfig struct {
	// MaxConcurrentSessions bounds allocated sessions; default 10.
	MaxConcurrentSessions int `yaml:"maxConcurrentSessions"`
	// ReadySessionInstances is the size of the warm pool; nil means the
	// default, 1. (A pointer, so that an explicit 0 means none.)
	ReadySessionInstances *int `yaml:"readySessionInstances"`
	// CreationConcurrency bounds sandboxes being created at once; default 4.
	CreationConcurrency int `yaml:"creationConcurrency"`
	// MaxSessionsPerPrincipal bounds the sessions one principal holds in
	// the pool at once (a sandpool extension), so that one caller cannot
	// take every session. Default: the server's
	// limits.maxSessionsPerPrincipal, else maxConcurrentSessions. Values
	// above maxConcurrentSessions mean maxConcurrentSessions.
	MaxSessionsPerPrincipal int `yaml:"maxSessionsPerPrincipal"`
}

// LifecycleConfig is Azure's lifecycleConfiguration.
type LifecycleConfig struct {
	LifecycleType LifecycleType `yaml:"lifecycleType"`
	// CooldownPeriodInSeconds: a Timed session with no request for this
	// long is deleted; default 300. Every request resets it.
	CooldownPeriodInSeconds int `yaml:"cooldownPeriodInSeconds"`
	// MaxAlivePeriodInSeconds bounds any session's life; default 86400.
	MaxAlivePeriodInSeconds int `yaml:"maxAlivePeriodInSeconds"`
}

// NetworkConfig is Azure's sessionNetworkConfiguration.
type NetworkConfig struct {
	// Status is EgressDisabled (default) or EgressEnabled.
	Status string `yaml:"status"`
}

// ExecutionConfig bounds executions (a sandpool extension).
type ExecutionConfig struct {
	// DefaultTimeoutInSeconds applies when a request gives none; default 60.
	DefaultTimeoutInSeconds int `yaml:"defaultTimeoutInSeconds"`
	// MaxTimeoutInSeconds caps what a request may ask for; default 600.
	MaxTimeoutInSeconds int `yaml:"maxTimeoutInSeconds"`
	// MaxOutput caps stdout and each of stderr per execution; default 1Mi.
	MaxOutput Quantity `yaml:"maxOutput"`
}

// Defaults.
const (
	DefaultPoolName    = "default"
	DefaultRuntime     = sandbox.RuntimeGVisor
	defaultCooldown    = 300
	defaultMaxAlive    = 86400
	defaultMaxAliveOCE = 3600 // OnContainerExit, as Azure's CLI
	defaultIngressWait = 240
	defaultAppDisk     = 64 * sandbox.MiB
	defaultMaxSessions = 10
	defaultReady       = 1
	defaultCreating    = 4
	defaultExecTimeout = 60
	defaultExecMax     = 600
)

// DefaultConfig returns the configuration of a pool with every default.
func DefaultConfig() Config {
	var c Config
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	def := sandbox.DefaultResources()
	if c.ContainerType == CustomContainer {
		setDef(&c.Resources.Disk, Quantity(defaultAppDisk))
		if cc := c.CustomContainer; cc != nil {
			if len(cc.Containers) == 1 && cc.Containers[0].Resources != nil {
				r := cc.Containers[0].Resources
				setDef(&c.Resources.CPU, r.CPU)
				setDef(&c.Resources.Memory, r.Memory)
			}
			setDef(&cc.Ingress.TimeoutInSeconds, defaultIngressWait)
		}
		if c.Lifecycle.LifecycleType == OnContainerExit {
			setDef(&c.Lifecycle.MaxAlivePeriodInSeconds, defaultMaxAliveOCE)
		}
	}
	setDef(&c.Name, DefaultPoolName)
	setDef(&c.ContainerType, PythonLTS)
	if cc := c.CustomContainer; c.Image == "" && c.ContainerType == CustomContainer && cc != nil && len(cc.Containers) == 1 {
		c.Image = cc.Containers[0].Image
	}
	if c.Image == "" {
		c.Image = image.Tag()
	}
	setDef(&c.Runtime, DefaultRuntime)
	if c.Isolation == "" {
		c.Isolation = sandbox.IsolationOf(c.Runtime)
	}
	setDef(&c.Resources.CPU, def.CPUs)
	setDef(&c.Resources.Memory, Quantity(def.Memory))
	setDef(&c.Resources.Disk, Quantity(def.DataSize))
	setDef(&c.Scale.MaxConcurrentSessions, defaultMaxSessions)
	if c.Scale.ReadySessionInstances == nil {
		n := defaultReady
		c.Scale.ReadySessionInstances = &n
	}
	setDef(&c.Scale.CreationConcurrency, defaultCreating)
	if c.Scale.MaxSessionsPerPrincipal == 0 || c.Scale.MaxSessionsPerPrincipal > c.Scale.MaxConcurrentSessions {
		c.Scale.MaxSessionsPerPrincipal = c.Scale.MaxConcurrentSessions
	}
	setDef(&c.Lifecycle.LifecycleType, Timed)
	if c.Lifecycle.LifecycleType == Timed {
		setDef(&c.Lifecycle.CooldownPeriodInSeconds, defaultCooldown)
	}
	setDef(&c.Lifecycle.MaxAlivePeriodInSeconds, defaultMaxAlive)
	setDef(&c.SessionNetwork.Status, EgressDisabled)
	setDef(&c.Execution.DefaultTimeoutInSeconds, defaultExecTimeout)
	setDef(&c.Execution.MaxTimeoutInSeconds, defaultExecMax)
	setDef(&c.Execution.MaxOutput, Quantity(sandbox.DefaultMaxOutput))
}

func setDef[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

var poolName = regexp.MustCompile(`^[a-z][a-z0-9-]{2,62}$`)

// headerName is an HTTP field name (RFC 9110 token).
var headerName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")

// Normalize fills in defaults and checks every field. Its error names each
// bad field by its YAML path.
func (c *Config) Normalize() error {
	c.setDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("pool %q: %s: "+format, append([]any{c.Name, field}, args...)...))
	}
	if !poolName.MatchString(c.Name) || strings.HasSuffix(c.Name, "-") {
		bad("name", "must be 3-63 characters: a lowercase letter, then lowercase letters, digits or '-'")
	}
	switch c.ContainerType {
	case PythonLTS:
		if c.CustomContainer != nil {
			bad("customContainerTemplate", "applies to CustomContainer pools only")
		}
	case CustomContainer:
		c.checkCustom(bad)
	default:
		bad("containerType", "must be PythonLTS or CustomContainer, not %q", c.ContainerType)
	}
	switch c.Runtime {
	case sandbox.RuntimeRunc, sandbox.RuntimeGVisor, sandbox.RuntimeGVisorDebian:
	default:
		if !strings.HasPrefix(c.Runtime, "kata") && !(filepath.IsAbs(c.Runtime) && filepath.Clean(c.Runtime) == c.Runtime) {
			bad("runtime", "must be runsc, runsc-debian, runc, a kata runtime or an absolute path, not %q", c.Runtime)
		}
	}
	switch c.Isolation {
	case sandbox.IsolationContainer, sandbox.IsolationGVisor, sandbox.IsolationVM:
	default:
		bad("isolation", "must be container, gvisor or vm, not %q", c.Isolation)
	}
	if c.Resources.CPU <= 0 || c.Resources.CPU > 256 || math.IsNaN(c.Resources.CPU) {
		bad("resources.cpu", "must be more than 0 and at most 256, not %v", c.Resources.CPU)
	}
	if c.Resources.Memory < 128*sandbox.MiB {
		bad("resources.memory", "must be at least 128Mi, not %s", c.Resources.Memory)
	}
	if c.Resources.Disk < sandbox.MiB {
		bad("resources.disk", "must be at least 1Mi, not %s", c.Resources.Disk)
	}
	s := &c.Scale
	if s.MaxConcurrentSessions < 1 || s.MaxConcurrentSessions > 10000 {
		bad("scaleConfiguration.maxConcurrentSessions", "must be 1 to 10000, not %d", s.MaxConcurrentSessions)
	}
	if n := *s.ReadySessionInstances; n < 0 {
		bad("scaleConfiguration.readySessionInstances", "must not be negative, not %d", n)
	} else if n > s.MaxConcurrentSessions {
		bad("scaleConfiguration.readySessionInstances", "must not exceed maxConcurrentSessions (%d), not %d", s.MaxConcurrentSessions, n)
	}
	if s.MaxSessionsPerPrincipal < 1 && s.MaxConcurrentSessions >= 1 {
		bad("scaleConfiguration.maxSessionsPerPrincipal", "must be positive, not %d", s.MaxSessionsPerPrincipal)
	}
	if s.CreationConcurrency < 1 || s.CreationConcurrency > 64 {
		bad("scaleConfiguration.creationConcurrency", "must be 1 to 64, not %d", s.CreationConcurrency)
	}
	l := &c.Lifecycle
	switch l.LifecycleType {
	case Timed:
	case OnContainerExit:
		if c.ContainerType != CustomContainer {
			bad("lifecycleConfiguration.lifecycleType", "OnContainerExit applies to CustomContainer pools only")
		}
		if l.CooldownPeriodInSeconds != 0 {
			bad("lifecycleConfiguration.cooldownPeriodInSeconds", "does not apply to OnContainerExit (a session ends when its container exits, or at maxAlivePeriodInSeconds)")
		}
	default:
		bad("lifecycleConfiguration.lifecycleType", "must be Timed or OnContainerExit, not %q", l.LifecycleType)
	}
	if l.LifecycleType == Timed && (l.CooldownPeriodInSeconds < 1 || l.CooldownPeriodInSeconds > 7*86400) {
		bad("lifecycleConfiguration.cooldownPeriodInSeconds", "must be 1 to 604800, not %d", l.CooldownPeriodInSeconds)
	}
	if l.MaxAlivePeriodInSeconds < 1 || l.MaxAlivePeriodInSeconds > 30*86400 {
		bad("lifecycleConfiguration.maxAlivePeriodInSeconds", "must be 1 to 2592000, not %d", l.MaxAlivePeriodInSeconds)
	}
	switch c.SessionNetwork.Status {
	case EgressDisabled, EgressEnabled:
	default:
		bad("sessionNetworkConfiguration.status", "must be EgressDisabled or EgressEnabled, not %q", c.SessionNetwork.Status)
	}
	e := &c.Execution
	if e.MaxTimeoutInSeconds < 1 || e.MaxTimeoutInSeconds > 86400 {
		bad("execution.maxTimeoutInSeconds", "must be 1 to 86400, not %d", e.MaxTimeoutInSeconds)
	}
	if e.DefaultTimeoutInSeconds < 1 || e.DefaultTimeoutInSeconds > e.MaxTimeoutInSeconds {
		bad("execution.defaultTimeoutInSeconds", "must be 1 to maxTimeoutInSeconds (%d), not %d", e.MaxTimeoutInSeconds, e.DefaultTimeoutInSeconds)
	}
	if e.MaxOutput < 1024 || e.MaxOutput > 64*sandbox.MiB {
		bad("execution.maxOutput", "must be 1Ki to 64Mi, not %s", e.MaxOutput)
	}
	if len(errs) == 0 {
		if _, err := c.spec(nil); err != nil {
			errs = append(errs, fmt.Errorf("pool %q: %w", c.Name, err))
		}
	}
	return errors.Join(errs...)
}

// checkCustom checks the template of a CustomContainer pool.
func (c *Config) checkCustom(bad func(field, format string, args ...any)) {
	cc := c.CustomContainer
	if cc == nil {
		bad("customContainerTemplate", "is required for a CustomContainer pool")
		return
	}
	if len(cc.Containers) != 1 {
		bad("customContainerTemplate.containers", "must hold exactly one container, not %d", len(cc.Containers))
		return
	}
	ct := &cc.Containers[0]
	const f = "customContainerTemplate.containers[0]."
	if ct.Image == "" {
		bad(f+"image", "is required")
	}
	if c.Image != ct.Image {
		bad("image", "a CustomContainer pool takes its image from customContainerTemplate")
	}
	for i, e := range ct.Env {
		if e.SecretRef != "" {
			bad(fmt.Sprintf(f+"env[%d].secretRef", i), "secrets are not supported; give value")
		}
	}
	if p := cc.Ingress.TargetPort; p < 1 || p > 65535 {
		bad("customContainerTemplate.ingress.targetPort", "must be 1 to 65535, not %d", p)
	}
	if t := cc.Ingress.TimeoutInSeconds; t < 1 || t > 86400 {
		bad("customContainerTemplate.ingress.timeoutInSeconds", "must be 1 to 86400, not %d", t)
	}
	for i, h := range cc.Ingress.StripRequestHeaders {
		if !headerName.MatchString(h) {
			bad(fmt.Sprintf("customContainerTemplate.ingress.stripRequestHeaders[%d]", i), "%q is not a header name", h)
		}
	}
	startups := 0
	for i, pr := range ct.Probes {
		pf := fmt.Sprintf(f+"probes[%d].", i)
		switch pr.Type {
		case "Startup":
			startups++
		case "Liveness":
			bad(pf+"type", "Liveness probes are not supported: a container that exits is handled by the pool's lifecycle")
		default:
			bad(pf+"type", "must be Startup, not %q", pr.Type)
		}
		if (pr.HTTPGet == nil) == (pr.TCPSocket == nil) {
			bad(pf+"httpGet", "give exactly one of httpGet and tcpSocket")
		}
		port := 0
		if pr.HTTPGet != nil {
			port = pr.HTTPGet.Port
			if !strings.HasPrefix(pr.HTTPGet.Path, "/") {
				bad(pf+"httpGet.path", "must start with /")
			}
		} else if pr.TCPSocket != nil {
			port = pr.TCPSocket.Port
		}
		if port != 0 && port != cc.Ingress.TargetPort {
			bad(pf+"port", "must be the target port %d: sandpool reaches only that port", cc.Ingress.TargetPort)
		}
		for name, v := range map[string]int{"initialDelaySeconds": pr.InitialDelaySeconds, "periodSeconds": pr.PeriodSeconds,
			"failureThreshold": pr.FailureThreshold, "timeoutSeconds": pr.TimeoutSeconds} {
			if v < 0 || v > 3600 {
				bad(pf+name, "must be 0 to 3600, not %d", v)
			}
		}
		if pr.SuccessThreshold > 1 {
			bad(pf+"successThreshold", "must be 1")
		}
	}
	if startups > 1 {
		bad(f+"probes", "at most one Startup probe")
	}
}

// startup is a custom container's Startup probe, or nil.
func (ct *ContainerTemplate) startup() *Probe {
	for i := range ct.Probes {
		if ct.Probes[i].Type == "Startup" {
			return &ct.Probes[i]
		}
	}
	return nil
}

// startWindow is how long a custom container may take to pass its
// Startup probe (or open its port): Azure's initialDelaySeconds +
// failureThreshold x periodSeconds, with Azure's defaults.
func (ct *ContainerTemplate) startWindow() time.Duration {
	delay, period, failures := 0, 10, 3
	if pr := ct.startup(); pr != nil {
		delay = pr.InitialDelaySeconds
		period = cmp.Or(pr.PeriodSeconds, period)
		failures = cmp.Or(pr.FailureThreshold, failures)
	}
	return time.Duration(delay+period*failures) * time.Second
}

// ready is the warm pool's target size.
func (c *Config) ready() int { return *c.Scale.ReadySessionInstances }

func (c *Config) cooldown() time.Duration {
	return time.Duration(c.Lifecycle.CooldownPeriodInSeconds) * time.Second
}

func (c *Config) maxAlive() time.Duration {
	return time.Duration(c.Lifecycle.MaxAlivePeriodInSeconds) * time.Second
}

// spec is the sandbox spec of the pool's sandboxes, with labels.
func (c *Config) spec(labels map[string]string) (sandbox.Spec, error) {
	r := sandbox.DefaultResources()
	r.CPUs = c.Resources.CPU
	r.Memory = int64(c.Resources.Memory)
	r.DataSize = int64(c.Resources.Disk)
	s := sandbox.Spec{
		Image:     c.Image,
		Isolation: c.Isolation,
		Network:   sandbox.NetworkNone,
		Resources: r,
		Labels:    labels,
	}
	if c.SessionNetwork.Status == EgressEnabled {
		s.Network = sandbox.NetworkEgress
	}
	if c.ContainerType == CustomContainer && c.CustomContainer != nil && len(c.CustomContainer.Containers) == 1 {
		ct := &c.CustomContainer.Containers[0]
		s.Image = ct.Image
		s.Preload = []string{}
		s.App = &sandbox.App{Command: ct.Command, Args: ct.Args, Port: c.CustomContainer.Ingress.TargetPort}
		if pr := ct.startup(); pr != nil && pr.HTTPGet != nil {
			s.App.ReadyPath = pr.HTTPGet.Path
		}
		// The window runs from the container's start; creating it comes
		// on top.
		s.App.ReadyTimeout = ct.startWindow()
		s.StartTimeout = s.App.ReadyTimeout + 30*time.Second
		if len(ct.Env) > 0 {
			s.Env = map[string]string{}
			for _, e := range ct.Env {
				s.Env[e.Name] = e.Value
			}
		}
	}
	return s, s.Normalize()
}

// Quantity is a size in bytes, written in YAML as a number of bytes or with
// a binary (Ki, Mi, Gi, Ti) or decimal (k, M, G, T) suffix: "512Mi",
// "0.5Gi", "1G".
type Quantity int64

var quantitySuffix = map[string]float64{
	"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
}

var quantityRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([kKMGT]i?)?$`)

// ParseQuantity parses a size such as "512Mi".
func ParseQuantity(s string) (Quantity, error) {
	m := quantityRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size (examples: 1073741824, 512Mi, 0.5Gi)", s)
	}
	mult, ok := quantitySuffix[m[2]]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit", s)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Quantity(f * mult), nil
}

// UnmarshalYAML accepts a number of bytes or a string with a unit.
func (q *Quantity) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a size must be a number or a string like 512Mi", n.Line)
	}
	v, err := ParseQuantity(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*q = v
	return nil
}

// Bytes is q as a plain int64.
func (q Quantity) Bytes() int64 { return int64(q) }

// String formats q with the largest binary unit that divides it.
func (q Quantity) String() string {
	for _, u := range []struct {
		s string
		n int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if q != 0 && int64(q)%u.n == 0 {
			return strconv.FormatInt(int64(q)/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(int64(q), 10)
}
