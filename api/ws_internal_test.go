package api

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
)

// TestF2OutboxBoundsEveryMessage: failure and done messages count against
// the outbox's bound like output does: with nobody taking, pushes stop at
// wsMaxPending bytes.
func TestF2OutboxBoundsEveryMessage(t *testing.T) {
	for _, typ := range []string{"failure", "done", "stdout"} {
		t.Run(typ, func(t *testing.T) {
			o := newOutbox()
			ctx, cancel := context.WithCancel(context.Background())
			var pushed atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; ctx.Err() == nil && i < 100000; i++ {
					m := wsOut{Type: typ, ID: "exec-0001", Message: strings.Repeat("m", 1000)}
					switch typ {
					case "failure":
						m = failureMsg("exec-0001", errcode.New(errcode.InvalidArgument, strings.Repeat("m", 1000)))
					case "stdout":
						m = wsOut{Type: typ, ID: "exec-" + strings.Repeat("1", i%2+8), Text: strings.Repeat("t", 1000)}
					}
					o.push(ctx, m)
					pushed.Add(1)
				}
			}()
			// Wait for the pushes to stop, then end the blocked one.
			for last := int64(-1); ; time.Sleep(100 * time.Millisecond) {
				if n := pushed.Load(); n == last {
					break
				} else {
					last = n
				}
			}
			cancel()
			<-done
			o.mu.Lock()
			defer o.mu.Unlock()
			if o.bytes > wsMaxPending+2048 {
				t.Fatalf("%d bytes of %s messages wait, bound %d", o.bytes, typ, wsMaxPending)
			}
			if pushed.Load() >= 100000 {
				t.Fatal("pushes never blocked")
			}
		})
	}
}
