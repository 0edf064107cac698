package mcp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/rs/zerolog"
)

// maxStdioMessage bounds one JSON-RPC message read from stdin.
const maxStdioMessage = 64 << 20

// Bridge relays an MCP stdio client (in, out) to a remote sandpool's
// Streamable HTTP endpoint, with header (the Authorization token) on every
// request, until in ends or ctx is cancelled. The remote server binds the
// sandbox to the bridge's MCP session, so one bridge process is one
// conversation. Only JSON-RPC messages are written to out.
func Bridge(ctx context.Context, endpoint string, header map[string]string, in io.Reader, out io.Writer, log zerolog.Logger) error {
	tr, err := transport.NewStreamableHTTP(endpoint, transport.WithHTTPHeaders(header))
	if err != nil {
		return fmt.Errorf("mcp bridge: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := tr.Start(ctx); err != nil {
		return fmt.Errorf("mcp bridge: %w", err)
	}
	defer tr.Close()

	var wmu sync.Mutex
	write := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			return
		}
		wmu.Lock()
		defer wmu.Unlock()
		_, _ = out.Write(append(b, '\n'))
	}
	tr.SetNotificationHandler(func(n mcp.JSONRPCNotification) { write(n) })

	var (
		mu      sync.Mutex
		pending = map[string]context.CancelFunc{}
		wg      sync.WaitGroup
	)
	defer wg.Wait()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxStdioMessage)
	for sc.Scan() {
		line := append([]byte(nil), sc.Bytes()...)
		if len(line) == 0 {
			continue
		}
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(line, &msg); err != nil {
			write(mcp.NewJSONRPCError(mcp.NewRequestId(nil), mcp.PARSE_ERROR, "not a JSON-RPC message", nil))
			continue
		}
		hasID := len(msg.ID) > 0 && string(msg.ID) != "null"
		switch {
		case msg.Method != "" && hasID:
			var id mcp.RequestId
			_ = json.Unmarshal(msg.ID, &id)
			rctx, rcancel := context.WithCancel(ctx)
			mu.Lock()
			pending[string(msg.ID)] = rcancel
			mu.Unlock()
			req := transport.JSONRPCRequest{JSONRPC: mcp.JSONRPC_VERSION, ID: id, Method: msg.Method}
			if len(msg.Params) > 0 {
				req.Params = msg.Params
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := tr.SendRequest(rctx, req)
				mu.Lock()
				_, live := pending[string(msg.ID)]
				delete(pending, string(msg.ID))
				mu.Unlock()
				rcancel()
				if !live {
					return // cancelled by the client: no response is due
				}
				if err != nil {
					log.Warn().Err(err).Str("method", req.Method).Msg("the sandpool server did not answer")
					write(mcp.NewJSONRPCError(id, mcp.INTERNAL_ERROR, "the sandpool server did not answer: "+err.Error(), nil))
					return
				}
				if req.Method == string(mcp.MethodInitialize) && resp.Error == nil {
					var ir struct {
						ProtocolVersion string `json:"protocolVersion"`
					}
					if json.Unmarshal(resp.Result, &ir) == nil && ir.ProtocolVersion != "" {
						tr.SetProtocolVersion(ir.ProtocolVersion)
					}
				}
				write(resp)
			}()
		case msg.Method != "":
			var n mcp.JSONRPCNotification
			if err := json.Unmarshal(line, &n); err != nil {
				continue
			}
			if err := tr.SendNotification(ctx, n); err != nil {
				log.Warn().Err(err).Str("method", n.Method).Msg("forwarding a notification")
			}
			if n.Method == string(mcp.MethodNotificationCancelled) {
				var p struct {
					RequestID json.RawMessage `json:"requestId"`
				}
				_ = json.Unmarshal(msg.Params, &p)
				mu.Lock()
				if c := pending[string(p.RequestID)]; c != nil {
					delete(pending, string(p.RequestID))
					c()
				}
				mu.Unlock()
			}
		}
		// Responses to server requests: the tools make none.
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("mcp bridge: reading stdin: %w", err)
	}
	return nil
}
