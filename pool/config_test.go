package pool

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sandpool/sandpool/sandbox"
)

func intp(n int) *int { return &n }

func TestConfigDefaults(t *testing.T) {
	c := Config{}
	if err := c.Normalize(); err != nil {
		t.Fatalf("the zero config must be valid: %v", err)
	}
	if c.Name != "default" || c.Runtime != "runsc" || c.Isolation != sandbox.IsolationGVisor ||
		c.SessionNetwork.Status != EgressDisabled || c.Lifecycle.LifecycleType != Timed ||
		*c.Scale.ReadySessionInstances != 1 || c.Scale.MaxConcurrentSessions != 10 {
		t.Fatalf("defaults: %+v", c)
	}
	spec, err := c.spec(nil)
	if err != nil || spec.Network != sandbox.NetworkNone {
		t.Fatalf("default spec: network %q, %v", spec.Network, err)
	}
	for rt, iso := range map[string]sandbox.Isolation{"runsc-debian": sandbox.IsolationGVisor, "/usr/bin/runsc": sandbox.IsolationGVisor, "runc": sandbox.IsolationContainer} {
		c := Config{Runtime: rt}
		if err := c.Normalize(); err != nil || c.Isolation != iso {
			t.Errorf("runtime %s: isolation %q, %v", rt, c.Isolation, err)
		}
	}
	z := Config{Scale: ScaleConfig{ReadySessionInstances: intp(0)}}
	if err := z.Normalize(); err != nil || z.ready() != 0 {
		t.Fatalf("an explicit 0 ready instances must stay 0: %d %v", z.ready(), err)
	}
}

func TestConfigRejects(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*Config)
		field string
	}{
		{"negative max", func(c *Config) { c.Scale.MaxConcurrentSessions = -1 }, "scaleConfiguration.maxConcurrentSessions"},
		{"negative ready", func(c *Config) { c.Scale.ReadySessionInstances = intp(-2) }, "scaleConfiguration.readySessionInstances"},
		{"ready above max", func(c *Config) { c.Scale.MaxConcurrentSessions = 2; c.Scale.ReadySessionInstances = intp(3) }, "readySessionInstances"},
		{"unknown runtime", func(c *Config) { c.Runtime = "crun" }, "runtime"},
		{"relative runtime path", func(c *Config) { c.Runtime = "bin/runsc" }, "runtime"},
		{"unclean runtime path", func(c *Config) { c.Runtime = "/opt/../usr/bin/runsc" }, "runtime"},
		{"bad isolation", func(c *Config) { c.Isolation = "none" }, "isolation"},
		{"bad name", func(c *Config) { c.Name = "Bad_Name" }, "name"},
		{"negative cooldown", func(c *Config) { c.Lifecycle.CooldownPeriodInSeconds = -5 }, "cooldownPeriodInSeconds"},
		{"bad lifecycle", func(c *Config) { c.Lifecycle.LifecycleType = "Forever" }, "lifecycleType"},
		{"on exit for python", func(c *Config) { c.Lifecycle.LifecycleType = OnContainerExit }, "lifecycleType"},
		{"custom without template", func(c *Config) { c.ContainerType = CustomContainer }, "customContainerTemplate"},
		{"template for python", func(c *Config) { c.CustomContainer = custom() }, "customContainerTemplate"},
		{"two containers", func(c *Config) {
			c.ContainerType, c.CustomContainer = CustomContainer, custom()
			c.CustomContainer.Containers = append(c.CustomContainer.Containers, c.CustomContainer.Containers[0])
		}, "customContainerTemplate.containers"},
		{"no image", func(c *Config) {
			c.ContainerType, c.CustomContainer = CustomContainer, custom()
			c.CustomContainer.Containers[0].Image = ""
		}, "containers[0].image"},
		{"no target port", func(c *Config) {
			c.ContainerType, c.CustomContainer = CustomContainer, custom()
			c.CustomContainer.Ingress.TargetPort = 0
		}, "ingress.targetPort"},
		{"secret", func(c *Config) {
			c.ContainerType, c.CustomContainer = CustomContainer, custom()
			c.CustomContainer.Containers[0].Env = []EnvVar{{Name: "A", SecretRef: "s"}}
		}, "env[0].secretRef"},
		{"liveness", func(c *Config) {
			c.ContainerType, c.CustomContainer = CustomContainer, custom()
			c.CustomContainer.Containers[0].Probes = []Probe{{Type: "Liveness", TCPSocket: &ProbeTCP{Port: 8080}}}
		}, "probes[0].type"},
		{"probe on another port", func(c *Config) {
			c.ContainerType, c.CustomContainer = CustomContainer, custom()
			c.CustomContainer.Containers[0].Probes = []Probe{{Type: "Startup", HTTPGet: &ProbeHTTPGet{Path: "/", Port: 22}}}
		}, "probes[0].port"},
		{"cooldown on exit", func(c *Config) {
			c.ContainerType, c.CustomContainer = CustomContainer, custom()
			c.Lifecycle = LifecycleConfig{LifecycleType: OnContainerExit, CooldownPeriodInSeconds: 300}
		}, "cooldownPeriodInSeconds"},
		{"bad egress", func(c *Config) { c.SessionNetwork.Status = "Open" }, "sessionNetworkConfiguration.status"},
		{"tiny memory", func(c *Config) { c.Resources.Memory = 1 << 20 }, "resources.memory"},
		{"negative cpu", func(c *Config) { c.Resources.CPU = -1 }, "resources.cpu"},
		{"default above max", func(c *Config) { c.Execution.MaxTimeoutInSeconds = 10; c.Execution.DefaultTimeoutInSeconds = 20 }, "execution.defaultTimeoutInSeconds"},
		{"zero concurrency", func(c *Config) { c.Scale.CreationConcurrency = -1 }, "creationConcurrency"},
	}
	for _, tc := range tests {
		c := Config{}
		tc.mod(&c)
		err := c.Normalize()
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %q does not name %s", tc.name, err, tc.field)
		}
	}
}

// parseConfig decodes a pool as the config file does and normalizes it.
func parseConfig(t *testing.T, src string) Config {
	t.Helper()
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	return c
}

func custom() *CustomContainerTemplate {
	return &CustomContainerTemplate{Containers: []ContainerTemplate{{Image: "localhost/app:1"}}, Ingress: IngressConfig{TargetPort: 8080}}
}

// A pool written as Azure's sessionPools resource describes it.
func TestConfigCustomContainerYAML(t *testing.T) {
	src := `
name: apps
containerType: CustomContainer
runtime: runc
scaleConfiguration: {maxConcurrentSessions: 10, readySessionInstances: 2}
lifecycleConfiguration: {lifecycleType: OnContainerExit}
customContainerTemplate:
  containers:
    - image: localhost/app:1
      name: app
      command: [/app]
      args: [--verbose]
      env: [{name: GREETING, value: hi}, {name: PATH, value: /bin}]
      resources: {cpu: 0.25, memory: 0.5Gi}
      probes:
        - type: Startup
          httpGet: {path: /healthz, port: 8080}
          failureThreshold: 5
          periodSeconds: 2
  ingress: {targetPort: 8080}
`
	c := parseConfig(t, src)
	if c.Image != "localhost/app:1" || c.Resources.CPU != 0.25 || c.Resources.Memory != 512<<20 || c.Resources.Disk != defaultAppDisk ||
		c.Lifecycle.MaxAlivePeriodInSeconds != defaultMaxAliveOCE || c.CustomContainer.Ingress.TimeoutInSeconds != defaultIngressWait {
		t.Fatalf("parsed: %+v", c)
	}
	spec, err := c.spec(nil)
	if err != nil {
		t.Fatal(err)
	}
	a := spec.App
	if a == nil || a.Port != 8080 || a.ReadyPath != "/healthz" || a.Command[0] != "/app" || a.Args[0] != "--verbose" ||
		spec.Env["GREETING"] != "hi" || spec.Env["PATH"] != "/bin" || spec.Image != "localhost/app:1" || spec.Network != sandbox.NetworkNone {
		t.Fatalf("spec: %+v %+v", spec, a)
	}
	if a.ReadyTimeout != 10*time.Second {
		t.Errorf("ready timeout %v: want the probe's window (5 x 2 s)", a.ReadyTimeout)
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
name: data
runtime: runc
resources: {cpu: 0.5, memory: 0.5Gi, disk: 64Mi}
scaleConfiguration: {maxConcurrentSessions: 40, readySessionInstances: 0}
lifecycleConfiguration: {lifecycleType: Timed, cooldownPeriodInSeconds: 600}
sessionNetworkConfiguration: {status: EgressEnabled}
execution: {defaultTimeoutInSeconds: 30, maxTimeoutInSeconds: 120, maxOutput: 256Ki}
`
	c := parseConfig(t, src)
	if c.Resources.Memory != 512<<20 || c.Resources.Disk != 64<<20 || c.Execution.MaxOutput != 256<<10 ||
		c.ready() != 0 || c.Isolation != sandbox.IsolationContainer || c.Lifecycle.MaxAlivePeriodInSeconds != defaultMaxAlive {
		t.Fatalf("parsed: %+v", c)
	}
	spec, _ := c.spec(nil)
	if spec.Network != sandbox.NetworkEgress {
		t.Fatal("EgressEnabled must give the sandbox a network")
	}
	for _, bad := range []string{"resources: {memory: lots}", "scaleConfiguration: {maxSessions: 3}"} {
		dec := yaml.NewDecoder(strings.NewReader(bad))
		dec.KnownFields(true)
		if err := dec.Decode(&Config{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestQuantity(t *testing.T) {
	for in, want := range map[string]Quantity{"1024": 1024, "1Ki": 1024, "0.5Gi": 512 << 20, "2G": 2e9, "1 Mi": 1 << 20} {
		got, err := ParseQuantity(in)
		if err != nil || got != want {
			t.Errorf("ParseQuantity(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1Xi", "Gi", "1e9"} {
		if _, err := ParseQuantity(in); err == nil {
			t.Errorf("ParseQuantity(%q) accepted", in)
		}
	}
	if s := Quantity(512 << 20).String(); s != "512Mi" {
		t.Errorf("String = %s", s)
	}
}

// TestF4IngressConfig: the ingress rules' defaults, a list of the pool's
// own, an explicit empty list, and bad header names.
func TestF4IngressConfig(t *testing.T) {
	parse := func(ingress string) (*Config, error) {
		var c Config
		src := "name: apps\ncontainerType: CustomContainer\ncustomContainerTemplate:\n  containers: [{image: localhost/app:1}]\n  ingress: " + ingress + "\n"
		if err := yaml.Unmarshal([]byte(src), &c); err != nil {
			t.Fatal(err)
		}
		return &c, c.Normalize()
	}
	for _, tc := range []struct {
		ingress string
		want    []string
	}{
		{"{targetPort: 8080}", nil}, // the default
		{"{targetPort: 8080, stripRequestHeaders: [X-Session-Token]}", []string{"X-Session-Token"}},
		{"{targetPort: 8080, stripRequestHeaders: []}", []string{}},
	} {
		c, err := parse(tc.ingress)
		if err != nil {
			t.Fatalf("%s: %v", tc.ingress, err)
		}
		in := c.CustomContainer.Ingress
		if got := in.StripRequestHeaders; strings.Join(got, ",") != strings.Join(tc.want, ",") || (got == nil) != (tc.want == nil) {
			t.Errorf("%s: strip %q, want %q", tc.ingress, got, tc.want)
		}
		if in.AllowSetCookie || in.AllowCORS || in.AllowActiveContent {
			t.Errorf("%s: an opt-in is on by default: %+v", tc.ingress, in)
		}
	}
	c, err := parse("{targetPort: 8080, allowSetCookie: true, allowCors: true, allowActiveContent: true}")
	if in := c.CustomContainer.Ingress; err != nil || !in.AllowSetCookie || !in.AllowCORS || !in.AllowActiveContent {
		t.Errorf("opt-ins: %+v %v", in, err)
	}
	if _, err := parse(`{targetPort: 8080, stripRequestHeaders: ["Bad Header"]}`); err == nil || !strings.Contains(err.Error(), "ingress.stripRequestHeaders[0]") {
		t.Errorf("a bad header name: %v", err)
	}
}
