package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/pool"
)

const v2025 = "&api-version=2025-10-02-preview"

// withOperation posts an execution with the operation-id header.
func (c *client) withOperation(t *testing.T, path, op, body string) response {
	t.Helper()
	req, err := http.NewRequest("POST", c.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("operation-id", op)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (c *client) as(token string) *client {
	o := *c
	o.token = token
	return &o
}

// TestF5OperationIDsPerPrincipal: a caller-chosen operation-id belongs to
// its principal: another principal using the same id neither overwrites
// nor sees the first one's result, and reusing one's own id is refused.
func TestF5OperationIDsPerPrincipal(t *testing.T) {
	eachRuntime(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(0)}}, func(t *testing.T, e *env) {
		alice := e.server(api.Options{}, nil)
		bob := alice.as(bobKey)
		const op = "shared-operation-0001"
		q := "/executions?identifier=op-session" + v2025
		want(t, alice.withOperation(t, q, op, `{"code":"'from alice'"}`), 200, "")
		want(t, bob.withOperation(t, q, op, `{"code":"'from bob'"}`), 200, "")
		got := alice.get("/executions/" + op + "?identifier=op-session" + v2025)
		want(t, got, 200, "")
		if res, _ := got.json(t)["result"].(map[string]any); res["executionResult"] != "from alice" {
			t.Fatalf("alice's result after bob used her id: %s", got.body)
		}
		got = bob.get("/executions/" + op + "?identifier=op-session" + v2025)
		if res, _ := got.json(t)["result"].(map[string]any); res["executionResult"] != "from bob" {
			t.Fatalf("bob's result: %s", got.body)
		}
		r := alice.withOperation(t, q, op, `{"code":"'again'"}`)
		want(t, r, http.StatusConflict, "operation_id_in_use")
	})
}

// TestF6AsyncExecutionsHoldConcurrency: running asynchronous executions
// count against their principal's concurrency (limits.maxStreamsPerPrincipal and concurrentRequests);
// another principal is unaffected, and the slots come back when they end.
func TestF6AsyncExecutionsHoldConcurrency(t *testing.T) {
	eachRuntime(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 4, ReadySessionInstances: ptr(0)}}, func(t *testing.T, e *env) {
		alice := e.server(api.Options{Limits: api.Limits{ConcurrentRequests: 4, MaxStreamsPerPrincipal: 2}}, nil)
		bob := alice.as(bobKey)
		slow := `{"executionType":"Asynchronous","code":"import time\ntime.sleep(3)\n1"}`
		var locs []string
		for _, id := range []string{"hold-1", "hold-2"} {
			r := alice.post("/executions?identifier="+id+v2025, slow)
			want(t, r, http.StatusAccepted, "")
			locs = append(locs, strings.TrimPrefix(r.header.Get("Operation-Location"), "/pools/"+e.cfg.Name))
		}
		r := alice.post("/executions?identifier=hold-1"+v2025, slow)
		want(t, r, http.StatusTooManyRequests, "rate_limited")
		if r.header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
		// Polling still works beside the holds; bob is not affected.
		want(t, alice.get(locs[0]), 200, "")
		want(t, bob.post("/executions?identifier=hold-3"+v2025, `{"executionType":"Asynchronous","code":"1"}`), http.StatusAccepted, "")
		for _, loc := range locs {
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
				if m := alice.get(loc).json(t); m["status"] != "Running" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("asynchronous execution still running")
				}
			}
		}
		want(t, alice.post("/executions?identifier=hold-1"+v2025, `{"executionType":"Asynchronous","code":"1"}`), http.StatusAccepted, "")
	})
}
