package api_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/pool"
)

// TestF1LongExecutionOutlivesBodyDeadline: the body deadline ends with
// the body: an execution that runs past it still answers.
func TestF1LongExecutionOutlivesBodyDeadline(t *testing.T) {
	eachRuntime(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(1)}}, func(t *testing.T, e *env) {
		c := e.server(api.Options{Limits: api.Limits{BodyTimeoutSeconds: 1}}, nil)
		r := c.post("/executions?identifier=long-body&api-version=2025-10-02-preview", `{"code":"import time; time.sleep(3); print('slept')"}`)
		want(t, r, 200, "")
		if m := r.json(t); m["status"] != "Succeeded" || !strings.Contains(string(r.body), "slept") {
			t.Fatalf("%s", r.body)
		}
	})
}

// TestF9ForwardEndsAtMaxAlive: a forwarded stream that would go on ends
// when its session's life (maxAlivePeriodInSeconds) ends.
func TestF9ForwardEndsAtMaxAlive(t *testing.T) {
	cfg := appConfig(t, pool.Timed)
	cfg.Lifecycle.MaxAlivePeriodInSeconds = 4
	eachRuntimeApp(t, cfg, func(t *testing.T, e *env) {
		c := e.server(api.Options{}, nil)
		start := time.Now()
		req, _ := http.NewRequest("GET", c.base+"/events?identifier=alive-stream&n=1000", nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		events := 0
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data:") {
				events++
			}
		}
		// 1000 events take 100 s; the session lives 4 s.
		if d := time.Since(start); d > 30*time.Second || events == 0 || events >= 1000 {
			t.Fatalf("the stream lasted %v with %d events", d, events)
		}
	})
}
