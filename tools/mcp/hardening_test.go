package mcp_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/rs/zerolog"

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
