// Command websocket runs Python cells in one sandpool session and prints
// their output live, as it streams over the WebSocket endpoint.
//
//	SANDPOOL_URL=http://127.0.0.1:8080 SANDPOOL_TOKEN=... go run ./examples/websocket \
//	  'import time' 'for i in range(3): print(i, flush=True); time.sleep(1)'
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/sandpool/sandpool/api/client"
	"github.com/sandpool/sandpool/pool"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "websocket:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cells []string) error {
	url := os.Getenv("SANDPOOL_URL")
	if url == "" {
		url = "http://127.0.0.1:8080"
	}
	c, err := client.New(url, os.Getenv("SANDPOOL_POOL"), os.Getenv("SANDPOOL_TOKEN"))
	if err != nil {
		return err
	}
	id := os.Getenv("SANDPOOL_IDENTIFIER")
	if id == "" {
		id = fmt.Sprintf("websocket-example-%d", time.Now().UnixNano())
	}
	ident, err := pool.ParseIdentifier(id)
	if err != nil {
		return err
	}
	k := pool.Key("", ident)
	start := time.Now()
	// Ctrl-C interrupts the running cell (the session survives).
	for i, code := range cells {
		fmt.Printf("[%6.3fs] cell %d\n", time.Since(start).Seconds(), i+1)
		res, err := c.Execute(ctx, k, pool.ExecRequest{Code: code, Timeout: 5 * time.Minute}, func(ev pool.Event) {
			at := time.Since(start).Seconds()
			switch ev.Kind {
			case pool.EventStdout:
				fmt.Printf("[%6.3fs] stdout %q\n", at, ev.Text)
			case pool.EventStderr:
				fmt.Printf("[%6.3fs] stderr %q\n", at, ev.Text)
			case pool.EventDisplay, pool.EventResult:
				for mime, v := range ev.Data {
					if mime == "text/plain" {
						fmt.Printf("[%6.3fs] %s\n", at, v)
					} else {
						fmt.Printf("[%6.3fs] (%s, %d bytes)\n", at, mime, len(v))
					}
				}
			case pool.EventError:
				fmt.Printf("[%6.3fs] %s: %s\n", at, ev.Error.Name, ev.Error.Value)
			}
		})
		if err != nil {
			return err
		}
		fmt.Printf("[%6.3fs] done: %s in %v\n", time.Since(start).Seconds(), res.Status, res.Duration)
	}
	return nil
}
