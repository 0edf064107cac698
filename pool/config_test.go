package pool

import (
	"strings"
	"testing"

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
		{"bad isolation", func(c *Config) { c.Isolation = "none" }, "isolation"},
		{"bad name", func(c *Config) { c.Name = "Bad_Name" }, "name"},
		{"negative cooldown", func(c *Config) { c.Lifecycle.CooldownPeriodInSeconds = -5 }, "cooldownPeriodInSeconds"},
		{"bad lifecycle", func(c *Config) { c.Lifecycle.LifecycleType = "Forever" }, "lifecycleType"},
		{"on exit for python", func(c *Config) { c.Lifecycle.LifecycleType = OnContainerExit }, "lifecycleType"},
		{"custom container", func(c *Config) { c.ContainerType = CustomContainer }, "containerType"},
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
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
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
