package mcp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/tools"
	mcpsrv "github.com/sandpool/sandpool/tools/mcp"
)

// panicky is a Backend whose executions panic with a value that must not
// reach the client.
type panicky struct{ tools.Backend }

func (panicky) Execute(context.Context, pool.SessionKey, pool.ExecRequest, pool.Sink) (*pool.Result, error) {
	panic("secret at /var/lib/sandpool/pools/x.json")
}

func (panicky) Delete(context.Context, pool.SessionKey) error { return nil }

// TestF9MCPPanicStaysInTheServer: a panic in a tool handler is an internal
// error for the client, without the panic's value.
func TestF9MCPPanicStaysInTheServer(t *testing.T) {
	h, _ := pool.NewHasher([]byte(strings.Repeat("k", 32)))
	var log strings.Builder
	ms, err := mcpsrv.New(mcpsrv.Options{
		Service: tools.NewService(panicky{}, tools.Limits{}),
		Secret:  h.Derive("mcp"),
		Log:     zerolog.New(&log),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(ms.Handler())
	t.Cleanup(func() {
		ts.Close()
		ms.Close(context.Background())
	})
	c, err := client.NewStreamableHttpClient(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var ir mcp.InitializeRequest
	ir.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
	ir.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	if _, err := c.Initialize(ctx, ir); err != nil {
		t.Fatal(err)
	}
	var req mcp.CallToolRequest
	req.Params.Name, req.Params.Arguments = "execute_python", map[string]any{"code": "1"}
	res, err := c.CallTool(ctx, req)
	if err != nil {
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "/var/lib") {
			t.Fatalf("the panic reached the client: %v", err)
		}
		t.Fatalf("a panic is a protocol error: %v", err)
	}
	if !res.IsError || strings.Contains(text(res), "secret") || strings.Contains(text(res), "/var/lib") {
		t.Fatalf("result: %+v", res)
	}
	if !strings.Contains(log.String(), "tool handler panicked") {
		t.Fatalf("the panic was not logged: %s", log.String())
	}
}

// TestF9MCPSessionsHiddenFromREST: the sandbox of an MCP conversation is
// MCP's alone: the same caller's REST listing does not show it, and REST
// with its identifier reaches another session.
func TestF9MCPSessionsHiddenFromREST(t *testing.T) {
	for _, rt := range podmantest.Runtimes() {
		t.Run(rt.Name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, rt)
			ctx := context.Background()
			a, _ := e.connect(aliceKey, nil)
			if r := call(t, a, ctx, "execute_python", map[string]any{"code": "planted = 'mcp-only'"}); r.IsError {
				t.Fatalf("%s", text(r))
			}
			rest := strings.TrimSuffix(e.url, "/mcp") + "/pools/" + e.pool.Name()
			do := func(method, path, body string) map[string]any {
				req, _ := http.NewRequest(method, rest+path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+aliceKey)
				if body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				var m map[string]any
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatalf("%d %s", res.StatusCode, b)
				}
				return m
			}
			if m := do("GET", "/listSessions?api-version=2025-10-02-preview", ""); m["count"] != float64(0) {
				t.Fatalf("REST lists the MCP conversation's session: %v", m)
			}
			mine := e.pool.Sessions(pool.Principal("key:alice").Within("mcp"))
			if len(mine) != 1 {
				t.Fatalf("%d MCP sessions", len(mine))
			}
			id := mine[0].Identifier.String()
			m := do("POST", "/executions?api-version=2025-10-02-preview&identifier="+url.QueryEscape(id), `{"code":"print(globals().get('planted'))"}`)
			if out, _ := json.Marshal(m); strings.Contains(string(out), "mcp-only") {
				t.Fatalf("REST reached the MCP conversation's sandbox: %s", out)
			}
		})
	}
}
