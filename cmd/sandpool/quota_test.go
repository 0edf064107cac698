package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestF6ServerQuotaIsPoolDefault: limits.maxSessionsPerPrincipal is the
// default of every pool's scaleConfiguration.maxSessionsPerPrincipal.
func TestF6ServerQuotaIsPoolDefault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandpool.yaml")
	err := os.WriteFile(path, []byte(`server:
  limits: {maxSessionsPerPrincipal: 3}
pools:
  - name: inherits
  - name: own
    scaleConfiguration: {maxConcurrentSessions: 10, maxSessionsPerPrincipal: 5}
  - name: small
    scaleConfiguration: {maxConcurrentSessions: 2, readySessionInstances: 0}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{3, 5, 2} {
		if got := cfg.Pools[i].Scale.MaxSessionsPerPrincipal; got != want {
			t.Errorf("pool %s: maxSessionsPerPrincipal %d, want %d", cfg.Pools[i].Name, got, want)
		}
	}
}
