package api_test

import (
	"testing"

	"github.com/sandpool/sandpool/pool"
)

// TestInprocWebSocket is TestWebSocket over the in-process engine: auth,
// event order, streaming, order of executions, interrupt, bad input, a
// full queue, a slow reader, an oversized frame, a close mid-execution.
//
// Not parallel: it measures the heap while a slow reader is fed.
func TestInprocWebSocket(t *testing.T) {
	testWebSocket(t, newInprocEnv(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 4, ReadySessionInstances: ptr(0)},
		Execution: pool.ExecutionConfig{MaxOutput: 64 << 20}}))
}
