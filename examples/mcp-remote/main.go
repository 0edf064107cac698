// Command mcp-remote is a remote MCP client of a sandpool server: it opens
// one MCP session (one conversation, one sandbox) over Streamable HTTP,
// runs each argument as a Python cell in it, prints what came back and
// saves figures as PNG files. Closing the session releases the sandbox.
//
//	SANDPOOL_URL=http://127.0.0.1:8080 SANDPOOL_TOKEN=... \
//	  go run ./examples/mcp-remote 'x = 6 * 7' 'print(x)' 'import matplotlib.pyplot as plt; plt.plot([1, 3, 2]); plt.show()'
package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mcp-remote:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cells []string) error {
	base := strings.TrimSuffix(os.Getenv("SANDPOOL_URL"), "/")
	if base == "" {
		base = "http://127.0.0.1:8080"
	}
	c, err := client.NewStreamableHttpClient(base+"/mcp",
		transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + os.Getenv("SANDPOOL_TOKEN")}))
	if err != nil {
		return err
	}
	defer c.Close()
	// Print the cell's output as it streams (progress notifications).
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/progress" {
			if m, ok := n.Params.AdditionalFields["message"].(string); ok {
				fmt.Fprint(os.Stderr, m)
			}
		}
	})
	if err := c.Start(ctx); err != nil {
		return err
	}
	var init mcp.InitializeRequest
	init.Params.ClientInfo = mcp.Implementation{Name: "sandpool-example", Version: "1"}
	init.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	if _, err := c.Initialize(ctx, init); err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	figures := 0
	for i, code := range cells {
		var req mcp.CallToolRequest
		req.Params.Name = "execute_python"
		req.Params.Arguments = map[string]any{"code": code}
		req.Params.Meta = &mcp.Meta{ProgressToken: fmt.Sprintf("cell-%d", i)}
		res, err := c.CallTool(ctx, req)
		if err != nil {
			return err
		}
		fmt.Printf("--- cell %d (isError=%v)\n", i+1, res.IsError)
		for _, content := range res.Content {
			if t, ok := mcp.AsTextContent(content); ok {
				fmt.Println(t.Text)
			}
			if img, ok := mcp.AsImageContent(content); ok {
				figures++
				png, _ := base64.StdEncoding.DecodeString(img.Data)
				name := fmt.Sprintf("figure-%d.png", figures)
				if err := os.WriteFile(name, png, 0o644); err != nil {
					return err
				}
				fmt.Printf("[figure saved to %s, %d bytes]\n", name, len(png))
			}
		}
	}
	return nil
}
