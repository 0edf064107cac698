package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/image"
)

func TestConfigErrorsNameTheField(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"pools: [{scaleConfiguration: {maxConcurrentSessions: -3}}]", "scaleConfiguration.maxConcurrentSessions"},
		{"pools: [{scaleConfiguration: {maxConcurrentSessions: 2, readySessionInstances: 5}}]", "scaleConfiguration.readySessionInstances"},
		{"pools: [{runtime: crun}]", "runtime"},
		{"pools: [{lifecycleConfiguration: {cooldownPeriodInSeconds: -1}}]", "cooldownPeriodInSeconds"},
		{"pools: [{scaleConfiguration: {maxSessions: 3}}]", "maxSessions"},
		{"server: {listen: nowhere}", "server.listen"},
		{"server: {engines: {runsc: {platform: kvm}}}", "server.engines.runsc.platform: must be ptrace or systrap"},
		{"server: {engines: {runc: {platform: ptrace}}}", "server.engines.runc.platform: applies to gVisor runtimes only"},
		{"pools: [{name: a}, {name: a}]", "name"},
		{"server: {listen: '0.0.0.0:0'}", "server.listen: 0.0.0.0:0 is not a loopback address"},
		{"server: {listen: '0.0.0.0:0', auth: {apiKeys: [{name: a, key: short}]}}", "apiKeys[0].key"},
		{"server: {listen: '0.0.0.0:0', auth: {apiKeys: [{name: a, key: 0123456789abcdef}]}}\npools: [{name: open, auth: {}}]", "server.listen"},
		{"server: {limits: {maxCodeBytes: 8Mi}}", "limits.maxCodeBytes"},
	}
	dir := t.TempDir()
	for i, tc := range tests {
		path := filepath.Join(dir, fmt.Sprintf("c%d.yaml", i))
		os.WriteFile(path, []byte(tc.yaml), 0o600)
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"serve", "--config", path}, strings.NewReader(""), io.Discard, &stderr)
		if code == 0 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want an error naming %s", tc.yaml, code, stderr.String(), tc.want)
		}
	}
}

// TestServeKeepsPoolWarm runs `sandpool serve` with a config file: the pool
// fills to readySessionInstances, /metrics shows it, and a signal stops
// the server while its sandboxes stay for the next start.
func TestServeKeepsPoolWarm(t *testing.T) {
	rt := podmantest.Runc
	eng := podmantest.Engine(t, rt)
	serverID := podmantest.ServerID("serve")
	podmantest.RemoveLabelled(t, eng, map[string]string{pool.LabelServer: serverID})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	state := t.TempDir()
	cfg := fmt.Sprintf(`server:
  listen: %s
  stateDir: %s
  serverId: %s
  agent: %s
  engines: {runc: {socket: %s}}
  auth: {apiKeys: [{name: ci, key: serve-test-key-0123456789}]}
pools:
  - name: warm
    runtime: runc
    image: %s
    scaleConfiguration: {maxConcurrentSessions: 4, readySessionInstances: 2}
`, addr, state, serverID, podmantest.Agent(t), eng.Socket(), image.Tag())
	path := filepath.Join(state, "sandpool.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr podmantest.Buffer
	go func() {
		done <- run(ctx, []string{"serve", "--config", path}, strings.NewReader(""), io.Discard, &stderr)
	}()
	// /metrics takes the token, as every route does when auth is on.
	metrics := func() string {
		req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer serve-test-key-0123456789")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return ""
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return string(b)
	}
	want := `sandpool_sandboxes{pool="warm",state="Ready"} 2`
	var body string
	for deadline := time.Now().Add(3 * time.Minute); !strings.Contains(body, want); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("metrics never showed %s:\n%s\nstderr:\n%s", want, body, stderr.String())
		}
		body = metrics()
	}
	// The data plane answers with the key, and only with it.
	exec := func(token string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/pools/warm/executions?identifier=serve-test&api-version=2025-10-02-preview", strings.NewReader(`{"code":"40 + 2"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := exec("serve-test-key-0123456789"); code != 200 || !strings.Contains(body, `"executionResult":"42"`) {
		t.Fatalf("execution: %d %s", code, body)
	}
	if code, _ := exec("wrong-key-0123456789"); code != 401 {
		t.Fatalf("wrong key: %d", code)
	}
	for !strings.Contains(body, want) || !strings.Contains(body, `sandpool_sandboxes{pool="warm",state="Allocated"} 1`) { // refilled
		time.Sleep(200 * time.Millisecond)
		body = metrics()
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d: %s", code, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("serve did not stop")
	}
	list, err := eng.List(context.Background(), map[string]string{pool.LabelServer: serverID})
	if err != nil || len(list) != 3 {
		t.Fatalf("after shutdown: %d sandboxes (%v), want the session's and the 2 warm ones kept", len(list), err)
	}
}

// TestExampleConfigLoads: the README's example file is valid, and says
// which field is wrong when its key is missing.
func TestExampleConfigLoads(t *testing.T) {
	const path = "../../examples/pools/sandpool.yaml"
	t.Setenv("SANDPOOL_KEY", "")
	if _, err := loadConfig(path); err == nil || !strings.Contains(err.Error(), "server.auth.apiKeys[0].key") {
		t.Fatalf("without SANDPOOL_KEY: %v", err)
	}
	t.Setenv("SANDPOOL_KEY", "example-key-0123456789")
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pools) == 0 || cfg.Pools[0].Name != "python" {
		t.Fatalf("pools: %+v", cfg.Pools)
	}
}

// TestCustomContainerExample: the custom-container example as the README
// runs it: its pool configuration under `sandpool serve` (only the server
// section is the test's), then the README's curl calls.
func TestCustomContainerExample(t *testing.T) {
	podmantest.AppImage(t) // also tags the :latest the example names
	raw, err := os.ReadFile("../../examples/custom-container/sandpool.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	eng := podmantest.Engine(t, podmantest.Runsc)
	serverID := podmantest.ServerID("custom-example")
	podmantest.RemoveLabelled(t, eng, map[string]string{pool.LabelServer: serverID})
	addr, key := freeAddr(t), "demo-key-0123456789"
	doc["server"] = map[string]any{
		"listen": addr, "stateDir": t.TempDir(), "serverId": serverID, "agent": podmantest.Agent(t),
		"engines": map[string]any{"runsc": map[string]any{"socket": eng.Socket()}},
		"auth":    map[string]any{"apiKeys": []any{map[string]any{"name": "demo", "key": key}}},
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sandpool.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	serveConfig(t, path, addr)
	get := func(p string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/pools/apps"+p, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/?identifier=user-123"); code != 200 || !strings.Contains(body, "hello from a sandpool custom container (session ") {
		t.Errorf("greeting: %d %q", code, body)
	}
	for i := 1; i <= 2; i++ {
		if code, body := get("/count?identifier=user-123"); code != 200 || !strings.Contains(body, fmt.Sprintf(`"count":%d`, i)) {
			t.Errorf("count: %d %q", code, body)
		}
	}
	if code, body := get("/count?identifier=user-456"); !strings.Contains(body, `"count":1`) {
		t.Errorf("another identifier: %d %q", code, body)
	}
	if code, body := get("/events?identifier=user-123&n=3"); code != 200 || strings.Count(body, "data: ") != 3 {
		t.Errorf("events: %d %q", code, body)
	}
}

// TestVersion: the version, then the pinned gVisor's.
func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version"}, strings.NewReader(""), &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || lines[1] != "gvisor "+sandbox.GVisorVersion {
		t.Errorf("sandpool version printed %q", out.String())
	}
}
